// SPDX-License-Identifier: GPL-2.0

//! The merging engine: which mm to scan next, what a scanned page becomes, and undoing merges.
//!
//! rksmd owns the [`Engine`]; nothing else touches it, so it needs no lock of its own. A page's
//! way: [`Engine::scan_round`] -> [`range_walk::walk`] (under the mmap lock, a batch at a time)
//! -> [`Engine::visit`] (no lock: it may need another mm's) -> the trees -> a merge
//! ([`merge`]) -> a stable page ([`crate::stable`]).
//!
//! Costs, per pass: each mm's VMAs are looked at once from its cursor (and once more at most,
//! from address 0, for memory mapped below the cursor during the pass); each page costs one
//! record lookup (binary search), at most two stable-tree lookups (by its last hash, then by
//! a new one) and one hash, and, if it held still, one unstable-tree lookup with a bounded
//! number of page compares; mms are found by tag in a
//! red-black tree. Nothing grows faster than linearly in pages, VMAs, processes or stable pages.
//!
//! Locks: an mmap lock is held only around one walk batch or one merge, never two at once
//! (two mmap locks would be a lock-order problem lockdep rightly reports). See [`crate::mm`].

use kernel::prelude::*;

use crate::ffi;
use crate::intervals::{next_to_scan, Covered};
use crate::knobs::Snapshot;
use crate::merge_policy::MergePolicy;
use crate::mm::{self, Locked, VmaKind};
use crate::page::Releases;
use crate::range_walk::{self, Found, WalkStats};
use crate::smart_scan::Age;
use crate::stats::{self, Stat};

mod locs;
mod merge;
pub(crate) mod pass;
mod slots;
mod stable_tree;
mod unmerge;
mod unstable_tree;

use pass::{Record, STABLE_MERGED, ZERO_MERGED};
use slots::{MmTable, Tag};
use stable_tree::StableTree;
use unstable_tree::UnstableTree;

/// Pages one walk batch may hand over before the mmap lock is dropped to process them.
const BATCH: usize = 64;

/// The mergeable VMAs of a locked mm from an address on, as `(start, end)` ranges.
#[derive(Clone)]
struct MergeableRanges<'a> {
    locked: &'a Locked<'a>,
    addr: usize,
    /// `merge_exec`: executable VMAs are mergeable too.
    merge_exec: bool,
}

impl Iterator for MergeableRanges<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            let vma = self.locked.vma_next(self.addr)?;
            self.addr = vma.end();
            if mm::kind(vma, self.merge_exec) == VmaKind::Mergeable {
                return Some((vma.start(), vma.end()));
            }
        }
    }
}

/// The span of one pmd (one PTE table): 2 MiB.
const PMD_SPAN: usize = 1 << 21;

/// Gathers into `out` (flat `[start, end]` pairs) the uncovered range `[addr, run_end)` and,
/// if it ends inside `addr`'s pmd span, the uncovered parts of the mergeable VMAs after it in
/// that span, in address order, up to [`range_walk::MAX_RANGES`] ranges and until they hold
/// `want` pages (what the walk can take now: gathering more would look the same VMAs up again
/// on the next turn); returns how many. Each range lies inside one VMA. One VMA lookup per
/// range, plus one for the first VMA past.
fn small_neighbours(
    locked: &Locked<'_>,
    covered: &Covered,
    addr: usize,
    run_end: usize,
    merge_exec: bool,
    want: usize,
    out: &mut [c_ulong; 2 * range_walk::MAX_RANGES],
) -> usize {
    let mut put = |i: usize, a: usize, b: usize| {
        if let Some(pair) = out.get_mut(2 * i..2 * i + 2) {
            for (slot, v) in pair.iter_mut().zip([a, b]) {
                *slot = v as c_ulong;
            }
        }
    };
    put(0, addr, run_end);
    let page = kernel::page::PAGE_SIZE;
    let mut pages = (run_end - addr) / page;
    let pmd_end = (addr | (PMD_SPAN - 1)).saturating_add(1);
    if run_end >= pmd_end || pages >= want {
        return 1;
    }
    let mut n = 1;
    let mut from = run_end;
    let after = MergeableRanges {
        locked,
        addr: run_end,
        merge_exec,
    };
    for (start, end) in after {
        if start >= pmd_end || n == range_walk::MAX_RANGES {
            break;
        }
        let end = end.min(pmd_end);
        let Some(a) = covered.next_uncovered(start.max(from), end) else {
            continue;
        };
        let b = covered.uncovered_until(a, end);
        put(n, a, b);
        n += 1;
        from = b;
        pages += (b - a) / page;
        if b < end || pages >= want {
            // More of this VMA is covered and then not: the next turn finds the rest.
            break;
        }
    }
    n
}

/// How a slot's turn ended.
enum SlotTurn {
    /// The pass over this mm is complete.
    Done,
    /// The round's budget is spent.
    Yield,
    /// The process is exiting.
    Gone,
}

/// Which pass boundaries a scan round crossed (for the scan-time advisor's clock).
#[derive(Clone, Copy, Default)]
pub(crate) struct RoundEnd {
    /// A pass started in this round.
    pub(crate) pass_started: bool,
    /// A pass ended in this round: `full_scans` moved.
    pub(crate) pass_ended: bool,
}

/// The scanner's state.
pub(crate) struct Engine {
    mms: MmTable,
    /// The mm being scanned; `None` once the pass has been over every mm.
    current: Option<Tag>,
    /// Whether the current pass has collected its mms.
    in_pass: bool,
    /// The keyed hash of an all-zero page.
    zero_hash: u64,
    /// The merge rules of the round in progress (or the last one).
    policy: MergePolicy,
    stable: StableTree,
    /// What the stable tree took at its last recount, as added to `metadata_bytes`.
    stable_bytes: usize,
    unstable: UnstableTree,
    /// The pages merged away in the current batch, to let go of together.
    releases: Releases,
}

impl Engine {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Called once, at module init, before any page is hashed.
        unsafe { ffi::rksm_hash_key_init() };
        // SAFETY: The shim hashes the kernel's zero page, which always exists.
        let zero_hash = unsafe { ffi::rksm_zero_page_hash() };
        Ok(Self {
            mms: MmTable::new(),
            current: None,
            in_pass: false,
            zero_hash,
            policy: MergePolicy::default(),
            stable: StableTree::new(),
            stable_bytes: 0,
            unstable: UnstableTree::new(),
            releases: Releases::new(),
        })
    }

    /// Scans up to `knobs.pages_to_scan` pages, continuing the current pass.
    pub(crate) fn scan_round(&mut self, knobs: &Snapshot) -> RoundEnd {
        let mut budget = knobs.pages_to_scan;
        let mut end = RoundEnd::default();
        self.policy = knobs.policy;
        while budget > 0 {
            if !self.in_pass {
                if self.start_pass().is_err() || self.mms.is_empty() {
                    return end;
                }
                end.pass_started = true;
            }
            let Some(tag) = self.current else {
                // As in KSM, a round ends where a full scan ends: sleep_millisecs lies between
                // two passes, and full_scans counts passes, not rounds.
                self.end_pass();
                end.pass_ended = true;
                return end;
            };
            match self.scan_slot(tag, &mut budget, knobs) {
                SlotTurn::Done => self.current = self.mms.next_after(Some(tag)),
                SlotTurn::Gone => {
                    // The records of an exiting mm go with its slot; its stable mappings go
                    // with its page tables, and the stable-tree refresh notices.
                    self.mms.remove(tag);
                    self.current = self.mms.next_after(Some(tag));
                }
                SlotTurn::Yield => return end,
            }
        }
        end
    }

    /// Starts a pass: adds newly opted-in mms, drops those that left, and drains the per-CPU
    /// LRU batches whose references would make every merge look pinned.
    fn start_pass(&mut self) -> Result {
        let mut found = KVVec::new();
        mm::collect(&mut found)?;
        // An mm that no longer opts in keeps its slot while it has merges to undo.
        self.mms
            .update(found, |s| mm::opted_in(&s.mm) || s.pass.has_merges())?;
        // SAFETY: Kthread context, no locks held.
        unsafe { ffi::rksm_lru_add_drain_all() };
        self.current = self.mms.next_after(None);
        self.in_pass = true;
        Ok(())
    }

    /// Every mm was scanned: a full scan is complete. The unstable tree starts afresh, as in
    /// KSM, and the stable tree drops pages nothing maps any more.
    fn end_pass(&mut self) {
        // The records keep counting in `pages_unshared` until their pages are visited again.
        self.unstable.clear();
        self.refresh_stable(false);
        self.in_pass = false;
        // Last: whoever sees full_scans move also sees the counters of the finished pass.
        stats::add(Stat::FullScans, 1);
    }

    /// Walks the next stretch of the mm tagged `tag` in batches and decides each page's fate.
    fn scan_slot(&mut self, tag: Tag, budget: &mut usize, knobs: &Snapshot) -> SlotTurn {
        let Ok(mut batch) = KVec::<Found>::with_capacity(BATCH, GFP_KERNEL) else {
            return SlotTurn::Yield;
        };
        loop {
            let merge_exec = self.policy.merge_exec;
            let Some(slot) = self.mms.get_mut(tag) else {
                return SlotTurn::Done;
            };
            let Some(user) = slot.mm.mmget_not_zero() else {
                return SlotTurn::Gone;
            };
            {
                let locked = Locked::new(&user);
                let pass = &mut slot.pass;
                // One lock hold fills a batch, across as many VMAs as it takes: a process of
                // one-page VMAs costs one lock cycle per batch, not one per VMA.
                loop {
                    // From the cursor on; once per pass, back from 0 for what was mapped below.
                    let ahead = MergeableRanges {
                        locked: &locked,
                        addr: pass.cursor,
                        merge_exec,
                    };
                    let mut next = next_to_scan(&pass.covered, ahead, pass.cursor);
                    if next.is_none() && !pass.wrapped && pass.cursor > 0 {
                        pass.wrapped = true;
                        let all = MergeableRanges {
                            locked: &locked,
                            addr: 0,
                            merge_exec,
                        };
                        next = next_to_scan(&pass.covered, all, 0);
                    }
                    let Some((addr, run_end)) = next else {
                        if !batch.is_empty() {
                            // Its pages belong to this pass: visit them before it ends.
                            break;
                        }
                        pass.finish(|r| unmerge::unmerge_if_unmergeable(&locked, r, merge_exec));
                        drop(locked);
                        slot.show_stats();
                        return SlotTurn::Done;
                    };
                    let mut walk = WalkStats::default();
                    // Small VMAs: the next ones in the same pmd go along, under one lock of
                    // their PTE table.
                    let mut ranges = [0 as c_ulong; 2 * range_walk::MAX_RANGES];
                    let n = small_neighbours(
                        &locked,
                        &pass.covered,
                        addr,
                        run_end,
                        merge_exec,
                        (*budget).min(BATCH.saturating_sub(batch.len())),
                        &mut ranges,
                    );
                    let mut take = |found| {
                        // Cannot fail: the walk stops once the batch is full.
                        let _ = batch.push_within_capacity(found);
                        batch.len() < BATCH
                    };
                    let stop = if n > 1 {
                        range_walk::walk_ranges(
                            &locked,
                            ranges.get(..2 * n).unwrap_or(&[]),
                            budget,
                            &mut walk,
                            &mut take,
                        )
                    } else {
                        range_walk::walk(&locked, addr, run_end, budget, &mut walk, &mut take)
                    };
                    if walk.thp_pages != 0 {
                        stats::add(Stat::ThpPagesSkipped, walk.thp_pages as i64);
                    }
                    // Everything from the cursor up to `addr` held nothing left to scan: cover
                    // it too, so the record stays one range in the usual case.
                    let from = if addr >= pass.cursor {
                        pass.cursor
                    } else {
                        addr
                    };
                    pass.covered.insert(from, stop);
                    pass.cursor = stop;
                    if batch.len() >= BATCH || *budget == 0 {
                        break;
                    }
                    // Many empty VMAs may pass under one lock hold.
                    // SAFETY: Process context; the mmap lock is a sleeping lock.
                    unsafe { ffi::rksm_cond_resched() };
                }
            }
            drop(user);
            for found in batch.drain_all() {
                self.visit(tag, found, knobs);
            }
            self.releases.flush();
            if *budget == 0 {
                return SlotTurn::Yield;
            }
        }
    }

    /// Decides what becomes of one page of the mm tagged `tag`.
    fn visit(&mut self, tag: Tag, found: Found, knobs: &Snapshot) {
        let addr = match &found {
            Found::Zero { addr }
            | Found::Stable { addr, .. }
            | Found::Anon { addr, .. }
            | Found::Large { addr } => *addr,
        };
        let Some(slot) = self.mms.get_mut(tag) else {
            return;
        };
        // `pages_unshared` counts records with IN_UNSTABLE. The page leaves the previous pass's
        // unstable tree now and may join this pass's: one update at the end, so a reader never
        // sees the page counted out and back in.
        let (prev, was_unshared) = slot.pass.take_prev(addr);
        let record = match found {
            Found::Zero { .. } => match prev {
                // Still the zero page we put there: keep counting it.
                Some(r) if r.zero() => Some(Record::new(r.addr(), r.hash, ZERO_MERGED)),
                _ => None,
            },
            Found::Stable { addr, .. } if knobs.policy.zero_pages_only => {
                // Merged before zero_pages_only was set: undone now (on failure, next pass).
                stats::add(Stat::PagesScanned, 1);
                self.unmerge_at(tag, addr);
                None
            }
            Found::Stable { addr, page } => {
                stats::add(Stat::PagesScanned, 1);
                if prev.is_none_or(|r| r.flags() & STABLE_MERGED == 0) {
                    // Not merged here by rksm: a fork copied it.
                    self.adopt(tag, addr, &page, knobs);
                }
                Some(Record::new(addr, 0, STABLE_MERGED))
            }
            Found::Anon { addr, page } => {
                let record = self.visit_anon(tag, addr, &page, prev, knobs);
                if record.merged() {
                    // Mapped here no more, so nothing in this batch looks it up again; our
                    // reference is likely its last.
                    self.releases.push(page);
                }
                Some(record)
            }
            Found::Large { addr } => self
                .page_at(tag, addr)
                .map(|page| self.visit_anon(tag, addr, &page, prev, knobs)),
        };
        // Without memory for the record the page only looks new again next pass (and its tree
        // entry, if any, has no record to count).
        let is_unshared = record.is_some_and(|record| {
            self.mms.get_mut(tag).is_some_and(|s| s.pass.push(record)) && record.unshared()
        });
        stats::add(
            Stat::PagesUnshared,
            i64::from(is_unshared) - i64::from(was_unshared),
        );
    }

    /// Hashes an anonymous page (unless smart scan skips it) and tries to merge it.
    fn visit_anon(
        &mut self,
        tag: Tag,
        addr: usize,
        page: &crate::page::PageRef,
        prev: Option<Record>,
        knobs: &Snapshot,
    ) -> Record {
        // Smart scan: a page that keeps failing to merge is skipped for a while.
        let mut age = prev
            .filter(|r| !r.merged())
            .map_or(Age::default(), |r| r.age());
        if knobs.smart_scan && age.visit() {
            stats::add(Stat::PagesSkipped, 1);
            return Record::new(
                addr,
                prev.map_or(0, |r| r.hash),
                Record::flags_with_age(0, age),
            );
        }
        stats::add(Stat::PagesScanned, 1);
        // First by the hash it had (see `merge_by_last_hash`).
        let by_last_hash = prev.map_or(merge::ByLastHash::NotTried, |r| {
            self.merge_by_last_hash(tag, addr, page, r, knobs)
        });
        if let (merge::ByLastHash::Merged, Some(r)) = (by_last_hash, prev) {
            return Record::new(addr, r.hash, STABLE_MERGED);
        }
        let hash = page.hash();
        let last = merge::Last { prev, by_last_hash };
        let flags = self.try_merge(tag, addr, page, hash, last, knobs);
        // A merged page starts over, should it be unmerged later.
        let flags = if flags & pass::MERGED != 0 {
            flags
        } else {
            Record::flags_with_age(flags, age)
        };
        Record::new(addr, hash, flags)
    }
}
