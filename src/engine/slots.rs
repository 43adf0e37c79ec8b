// SPDX-License-Identifier: GPL-2.0

//! The mm table: every opted-in mm rksm scans, with where its pass stands.
//!
//! The table is a red-black tree keyed by a [`Tag`] rksm gives each mm when it first meets it.
//! A tag is 24 bits, so a page's place fits in one `u64` ([`Loc`]) in the trees and in a stable
//! page's reverse map. Lookups by tag and the round-robin step (the next tag up) cost
//! O(log processes); finding the slot of an `mm_struct` uses an index sorted by pointer, rebuilt
//! once per pass.

use kernel::mm::Mm;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::sync::aref::ARef;

use super::pass::{self, Deltas, Record};
use crate::ffi;
use crate::intervals::Covered;
use crate::merge_policy::Owner;
use crate::mm;
use crate::stats::{self, Stat};

/// rksm's name for an mm while it is in the table: 1 to `TAG_MAX`.
pub(crate) type Tag = u32;
const TAG_BITS: u32 = 24;
const TAG_MAX: Tag = (1 << TAG_BITS) - 1;
/// Bits of a page number a [`Loc`] holds: user addresses below 2^52 (4 PiB).
const PAGE_BITS: u32 = 64 - TAG_BITS;
const PAGE_SHIFT: u32 = kernel::page::PAGE_SHIFT as u32;

/// A page's place, (tag, address), packed in 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Loc(u64);

impl Loc {
    /// A placeholder that is never a place: tag 0 is never given.
    pub(crate) const EMPTY: Loc = Loc(0);

    /// The place of `addr` in the mm tagged `tag`; `None` above 4 PiB, which 4-level page tables
    /// never reach (such a page merges only into stable pages, never through the trees).
    pub(crate) fn new(tag: Tag, addr: usize) -> Option<Self> {
        let page = (addr >> PAGE_SHIFT) as u64;
        (page >> PAGE_BITS == 0 && tag <= TAG_MAX)
            .then_some(Self(u64::from(tag) << PAGE_BITS | page))
    }

    pub(crate) fn tag(self) -> Tag {
        (self.0 >> PAGE_BITS) as Tag
    }

    pub(crate) fn addr(self) -> usize {
        ((self.0 & ((1 << PAGE_BITS) - 1)) as usize) << PAGE_SHIFT
    }
}

/// Where the pass over one mm stands, and what the previous pass saw.
///
/// # Invariants
///
/// `prev` is sorted by address. `next_sorted` is true only if `next` is.
pub(crate) struct PassState {
    /// What the current pass has scanned.
    pub(crate) covered: Covered,
    /// Where the current pass continues.
    pub(crate) cursor: usize,
    /// Whether the current pass already went back below its cursor once.
    pub(crate) wrapped: bool,
    /// Records of the previous pass, sorted by address.
    prev: KVVec<Record>,
    /// Records of this pass, in scan order.
    next: KVVec<Record>,
    next_sorted: bool,
    /// What `prev` and `next` take, as last added to `metadata_bytes`.
    bytes: usize,
}

impl PassState {
    fn new() -> Self {
        Self {
            covered: Covered::new(),
            cursor: 0,
            wrapped: false,
            prev: KVVec::new(),
            next: KVVec::new(),
            next_sorted: true,
            bytes: 0,
        }
    }

    /// Brings `metadata_bytes` up to date with the records' allocations.
    fn account(&mut self) {
        let now = (self.prev.capacity() + self.next.capacity()) * core::mem::size_of::<Record>();
        stats::add(Stat::MetadataBytes, now as i64 - self.bytes as i64);
        self.bytes = now;
    }

    /// The previous pass's record of `addr`, with IN_UNSTABLE cleared (the page is being
    /// visited again), and whether it was set: one search for both.
    pub(crate) fn take_prev(&mut self, addr: usize) -> (Option<Record>, bool) {
        let Some(r) = pass::find(&self.prev, addr).and_then(|i| self.prev.get_mut(i)) else {
            return (None, false);
        };
        let was = r.unshared();
        r.set_flags(r.flags() & !pass::IN_UNSTABLE);
        (Some(*r), was)
    }

    /// The page at `addr` left the unstable tree (and `merged`, or not): updates its record in
    /// this pass or the last; whether it had IN_UNSTABLE. A record this pass pushed out of
    /// address order is not searched: it stays counted in `pages_unshared` until its next
    /// visit, which also finds the merge.
    pub(crate) fn leave_unstable(&mut self, addr: usize, merged: bool) -> bool {
        let in_next = if self.next_sorted {
            pass::leave_unstable(&mut self.next, addr, merged)
        } else {
            None
        };
        in_next
            .or_else(|| pass::leave_unstable(&mut self.prev, addr, merged))
            .unwrap_or(false)
    }

    /// Records a visited page; false without memory (the page then looks new next pass).
    pub(crate) fn push(&mut self, record: Record) -> bool {
        if self.next.is_empty() {
            // One allocation of about the right size, not a series of doublings.
            let _ = self.next.reserve(self.prev.len(), GFP_KERNEL);
        }
        if self.next.last().is_some_and(|l| l.addr() >= record.addr()) {
            self.next_sorted = false;
        }
        let cap = self.next.capacity();
        let pushed = self.next.push(record, GFP_KERNEL).is_ok();
        if self.next.capacity() != cap {
            // The bytes follow the capacities, which seldom move.
            self.account();
        }
        pushed
    }

    /// Whether any merge of this mm is on record.
    pub(crate) fn has_merges(&self) -> bool {
        self.prev.iter().any(Record::merged) || self.next.iter().any(Record::merged)
    }

    /// Every record, of both passes (for `run=2`).
    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        Iterator::chain(self.prev.iter(), self.next.iter())
    }

    /// The pass over this mm is complete: this pass's records become the previous ones.
    /// Hands each merge the pass did not meet again to `gone`.
    pub(crate) fn finish(&mut self, gone: impl FnMut(&Record)) {
        if !self.next_sorted {
            self.next.sort_unstable_by_key(|r| r.addr());
        }
        apply(pass::finish(&self.prev, &self.next, gone));
        self.prev = core::mem::take(&mut self.next);
        // Give back what the growth of `next` over-allocated; without memory it simply stays.
        let _ = self.prev.shrink_to(self.prev.len(), GFP_KERNEL);
        self.account();
        self.next_sorted = true;
        self.covered.clear();
        self.cursor = 0;
        self.wrapped = false;
    }

    /// Forgets every record, keeping the counters right.
    pub(crate) fn forget(&mut self) {
        apply(pass::forget(&self.prev, &self.next));
        self.prev = KVVec::new();
        self.next = KVVec::new();
        self.account();
        self.next_sorted = true;
        self.covered.clear();
        self.cursor = 0;
        self.wrapped = false;
    }
}

impl Drop for PassState {
    fn drop(&mut self) {
        self.forget();
    }
}

fn apply(d: Deltas) {
    stats::add(Stat::Records, d.records);
    stats::add(Stat::ZeroPages, d.zero_pages);
    stats::add(Stat::PagesUnshared, d.unshared);
}

/// One opted-in mm and where its pass stands.
pub(crate) struct MmSlot {
    pub(crate) mm: ARef<Mm>,
    /// Whose it is, as rksm first met it: what its merge domain is made of.
    pub(crate) owner: Owner,
    pub(crate) pass: PassState,
    /// What this slot added to the mm's `/proc/<pid>/ksm_stat` counters.
    shown: ProcStat,
}

/// The two per-process counters of `/proc/<pid>/ksm_stat` rksm keeps: `ksm_merging_pages` and
/// `ksm_rmap_items` (here, pages rksm tracks).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct ProcStat {
    merging: usize,
    items: usize,
}

impl MmSlot {
    /// Shows the pass just finished in the mm's `ksm_stat` counters: its stable merges and its
    /// records. Adds the difference to what this slot showed before, so whatever KSM itself
    /// left there stays counted. O(records), once per pass.
    pub(crate) fn show_stats(&mut self) {
        let now = ProcStat {
            merging: self
                .pass
                .records()
                .filter(|r| r.flags() & super::pass::STABLE_MERGED != 0)
                .count(),
            items: self.pass.records().count(),
        };
        self.show(now);
    }

    fn show(&mut self, now: ProcStat) {
        if now == self.shown {
            return;
        }
        let delta = |new: usize, old: usize| (new as i64).wrapping_sub(old as i64) as c_long;
        // SAFETY: The `mm` holds an mm_count reference, so the mm_struct is allocated; only rksmd
        // writes these fields while KSM is stopped (see the shim).
        unsafe {
            ffi::rksm_mm_ksm_stat_add(
                self.mm.as_raw().cast(),
                delta(now.merging, self.shown.merging),
                delta(now.items, self.shown.items),
            )
        };
        self.shown = now;
    }
}

impl Drop for MmSlot {
    fn drop(&mut self) {
        // The mm leaves rksm: take back what it showed.
        self.show(ProcStat::default());
    }
}

/// Every mm rksm scans, by tag.
pub(crate) struct MmTable {
    slots: RBTree<Tag, MmSlot>,
    /// The last tag handed out.
    last_tag: Tag,
    /// The serial number of the next new slot ([`Owner::serial`]): never reused.
    next_serial: u64,
}

impl MmTable {
    pub(crate) fn new() -> Self {
        Self {
            slots: RBTree::new(),
            last_tag: 0,
            next_serial: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn get(&self, tag: Tag) -> Option<&MmSlot> {
        self.slots.get(&tag)
    }

    pub(crate) fn get_mut(&mut self, tag: Tag) -> Option<&mut MmSlot> {
        self.slots.get_mut(&tag)
    }

    /// The first tag above `tag` (`None`: from the start): the round-robin step.
    pub(crate) fn next_after(&self, tag: Option<Tag>) -> Option<Tag> {
        let from = tag.map_or(0, |t| t.saturating_add(1));
        if tag == Some(Tag::MAX) {
            return None;
        }
        self.slots.cursor_lower_bound(&from).map(|c| *c.current().0)
    }

    pub(crate) fn remove(&mut self, tag: Tag) {
        self.slots.remove(&tag);
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut MmSlot> {
        self.slots.values_mut()
    }

    pub(crate) fn clear(&mut self) {
        self.slots = RBTree::new();
    }

    /// Brings the table up to date at the start of a pass: drops the mms for which `keep` is
    /// false, and adds the mms in `found` that are not in the table yet. O(P log P).
    pub(crate) fn update(
        &mut self,
        found: KVVec<mm::Process>,
        keep: impl Fn(&MmSlot) -> bool,
    ) -> Result {
        let mut known: KVVec<(usize, Tag)> = KVVec::with_capacity(found.len(), GFP_KERNEL)?;
        let mut dropped: KVVec<Tag> = KVVec::new();
        for (tag, slot) in self.slots.iter() {
            if keep(slot) {
                known.push((mm::id(&slot.mm), *tag), GFP_KERNEL)?;
            } else {
                dropped.push(*tag, GFP_KERNEL)?;
            }
        }
        for tag in dropped.iter() {
            self.slots.remove(tag);
        }
        known.sort_unstable_by_key(|k| k.0);
        for process in found.into_iter() {
            if known
                .binary_search_by_key(&mm::id(&process.mm), |k| k.0)
                .is_ok()
            {
                continue;
            }
            let Some(tag) = self.free_tag() else {
                // 16 million mms at once: the rest waits for a free tag.
                break;
            };
            let owner = Owner {
                uid: process.uid,
                serial: self.next_serial,
            };
            // 2^64 new mms cannot happen in one load; wrapping would still not panic.
            self.next_serial = self.next_serial.wrapping_add(1);
            let slot = MmSlot {
                mm: process.mm,
                owner,
                pass: PassState::new(),
                shown: ProcStat::default(),
            };
            self.slots.try_create_and_insert(tag, slot, GFP_KERNEL)?;
        }
        Ok(())
    }

    /// A tag no slot uses, round-robin so a tag is not reused soon after its mm left.
    fn free_tag(&mut self) -> Option<Tag> {
        for _ in 0..TAG_MAX {
            self.last_tag = if self.last_tag >= TAG_MAX {
                1
            } else {
                self.last_tag + 1
            };
            if self.slots.get(&self.last_tag).is_none() {
                return Some(self.last_tag);
            }
        }
        None
    }
}
