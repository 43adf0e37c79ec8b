// SPDX-License-Identifier: GPL-2.0

//! The unstable tree: pages that held still for a pass and wait for a twin, by keyed hash.
//!
//! It is a red-black tree of sorted runs: each tree node holds up to [`RUN`] entries of 16 bytes
//! in one kmalloc-1k buffer, sorted by hash, and is keyed by a hash no greater than its first
//! entry and greater than every entry of the run before it. A lookup costs O(log n) integer
//! compares; an entry costs about 25 bytes (a run is 69% full on average, at least half full),
//! where a tree node per page would cost a kmalloc-64 and more.
//!
//! Content stays out of the order: an unstable page may change after it went in, which would
//! corrupt a tree ordered by content. Entries with one hash are told apart by `memcmp` at lookup,
//! and since the hash is keyed by a secret, an entry of the right hash whose content differs is
//! a page that changed since: the caller removes it. A run holds at most [`SAME_HASH`] entries of
//! one hash; a page over that waits a pass. Nothing a tenant writes makes a lookup cost more
//! than a constant number of page compares.

use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

use super::slots::Loc;
use crate::stats::{self, Stat};

/// Entries per run: 63 × 16 bytes fill one kmalloc-1k buffer.
const RUN: usize = 63;
/// Most entries of one hash in the tree at once.
pub(crate) const SAME_HASH: usize = 4;

/// A page in the unstable tree.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) hash: u64,
    pub(crate) loc: Loc,
}

/// The unstable tree.
///
/// # Invariants
///
/// Each run is sorted by hash, non-empty, has capacity [`RUN`], and holds no hash below its key
/// nor any at or above the next run's key.
pub(crate) struct UnstableTree {
    runs: RBTree<u64, KVec<Entry>>,
    len: usize,
    /// How many runs there are.
    run_count: usize,
}

/// What one run takes: its kmalloc-1k buffer and its kmalloc-64 tree node.
const RUN_BYTES: i64 = 1024 + 64;

impl UnstableTree {
    pub(crate) fn new() -> Self {
        Self {
            runs: RBTree::new(),
            len: 0,
            run_count: 0,
        }
    }

    /// Counts `n` more (or fewer) runs, in `metadata_bytes` too.
    fn count_runs(&mut self, n: i64) {
        self.run_count = self.run_count.saturating_add_signed(n as isize);
        stats::add(Stat::MetadataBytes, n * RUN_BYTES);
    }

    /// The key of the run where `hash` belongs: the greatest key at or below it, else the first.
    fn run_of(&self, hash: u64) -> Option<u64> {
        match self.runs.cursor_lower_bound(&hash) {
            Some(c) if *c.current().0 == hash => Some(hash),
            Some(c) => Some(c.peek_prev().map_or(*c.current().0, |(k, _)| *k)),
            None => self.runs.cursor_back().map(|c| *c.current().0),
        }
    }

    /// The entries with `hash`.
    pub(crate) fn find(&self, hash: u64) -> &[Entry] {
        let Some(run) = self.run_of(hash).and_then(|k| self.runs.get(&k)) else {
            return &[];
        };
        let lo = run.partition_point(|e| e.hash < hash);
        let hi = run.partition_point(|e| e.hash <= hash);
        run.get(lo..hi).unwrap_or(&[])
    }

    /// Removes `entry`; whether it was there.
    pub(crate) fn remove(&mut self, entry: Entry) -> bool {
        let Some(key) = self.run_of(entry.hash) else {
            return false;
        };
        let Some(run) = self.runs.get_mut(&key) else {
            return false;
        };
        let lo = run.partition_point(|e| e.hash < entry.hash);
        let Some(i) = run.get(lo..).and_then(|rest| {
            rest.iter()
                .take_while(|e| e.hash == entry.hash)
                .position(|e| *e == entry)
        }) else {
            return false;
        };
        if run.remove(lo + i).is_err() {
            return false;
        }
        if run.is_empty() {
            self.runs.remove(&key);
            self.count_runs(-1);
        }
        self.len -= 1;
        true
    }

    /// Adds `entry`. Fails without memory, or with `EBUSY` if [`SAME_HASH`] entries of its hash
    /// are in already: the page then waits for the next pass.
    pub(crate) fn insert(&mut self, entry: Entry) -> Result {
        let Some(key) = self.run_of(entry.hash) else {
            let mut run = KVec::with_capacity(RUN, GFP_KERNEL)?;
            run.push_within_capacity(entry)?;
            self.runs
                .try_create_and_insert(entry.hash, run, GFP_KERNEL)?;
            self.count_runs(1);
            self.len += 1;
            return Ok(());
        };
        let key = if entry.hash < key {
            // Below every run: the first run now starts at this hash.
            self.rekey(key, entry.hash)?;
            entry.hash
        } else {
            key
        };
        let Some(run) = self.runs.get_mut(&key) else {
            return Err(EINVAL);
        };
        let at = run.partition_point(|e| e.hash <= entry.hash);
        let same = at - run.partition_point(|e| e.hash < entry.hash);
        if same >= SAME_HASH {
            return Err(EBUSY);
        }
        if run.len() < RUN {
            run.insert_within_capacity(at, entry).map_err(|_| ENOMEM)?;
            self.len += 1;
            return Ok(());
        }
        // Full: split near the middle, between two hashes (a hash has at most SAME_HASH
        // entries, so one is within reach), then put the entry in its half.
        let mut mid = RUN / 2;
        while mid < RUN && run.get(mid).map(|e| e.hash) == run.get(mid - 1).map(|e| e.hash) {
            mid += 1;
        }
        let split_hash = run.get(mid).map(|e| e.hash).ok_or(EINVAL)?;
        let reservation = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let mut upper = KVec::with_capacity(RUN, GFP_KERNEL)?;
        for e in run.get(mid..).unwrap_or(&[]) {
            upper.push_within_capacity(*e)?;
        }
        run.truncate(mid);
        let (target, at) = if entry.hash < split_hash {
            (run, at)
        } else {
            (&mut upper, at - mid)
        };
        // Cannot fail: both halves have room and `at` is in bounds.
        let _ = target.insert_within_capacity(at, entry);
        self.runs.insert(reservation.into_node(split_hash, upper));
        self.count_runs(1);
        self.len += 1;
        Ok(())
    }

    /// Moves the run keyed `old` to key `new` (no run lies between them).
    fn rekey(&mut self, old: u64, new: u64) -> Result {
        // Allocate first: once the run is out of the tree, nothing may fail.
        let reservation = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let node = self.runs.remove_node(&old).ok_or(EINVAL)?;
        let (_, run) = node.to_key_value();
        self.runs.insert(reservation.into_node(new, run));
        Ok(())
    }

    /// Empties the tree (the end of a full scan, as in KSM).
    pub(crate) fn clear(&mut self) {
        self.runs = RBTree::new();
        self.count_runs(-(self.run_count as i64));
        self.len = 0;
    }
}
