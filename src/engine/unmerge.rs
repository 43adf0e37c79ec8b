// SPDX-License-Identifier: GPL-2.0

//! Undoing merges (`run=2`, memory that stopped being mergeable) and the stable tree's upkeep
//! at the end of each full scan.

use kernel::prelude::*;

use super::pass::Record;
use super::slots::Loc;
use super::{Engine, BATCH};
use crate::ffi;
use crate::mm::{self, Locked, VmaKind};
use crate::range_walk::{self, Found, WalkStats};
use crate::stable;
use crate::stats::{self, Stat};

/// Rounds of the `run=2` sweep before rksm gives up on a mapping it cannot break.
const SWEEPS: usize = 8;
/// Reverse-map records a stable page may carry beyond twice its mappings before they are
/// checked and the stale ones dropped.
const RMAP_SLACK: usize = 8;

/// Breaks the merge `r` records if its address is mapped but no longer mergeable
/// (`merge_exec`: executable VMAs still are).
pub(super) fn unmerge_if_unmergeable(locked: &Locked<'_>, r: &Record, merge_exec: bool) {
    let unmergeable = locked
        .vma_next(r.addr())
        .is_some_and(|v| v.start() <= r.addr() && mm::kind(v, merge_exec) != VmaKind::Mergeable);
    if !unmergeable {
        return;
    }
    let mapped = (r.zero() && locked.maps_zero_page(r.addr()))
        || (r.flags() & super::pass::STABLE_MERGED != 0 && locked.maps_stable_page(r.addr()));
    if mapped {
        // On failure the merge stays; the next pass tries again.
        let _ = locked.break_cow(r.addr());
    }
}

impl Engine {
    /// Whether `loc` maps one of rksm's stable pages now, or a swap entry that may bring one
    /// back (its mm lock is taken here).
    fn maps_stable(&self, loc: Loc) -> bool {
        let Some(user) = self.mms.get(loc.tag()).and_then(|s| s.mm.mmget_not_zero()) else {
            return false;
        };
        let mapped = Locked::new(&user).may_map_stable_page(loc.addr());
        mapped
    }

    /// Which of `rmap`'s records still map a stable page and are the last of their place (a
    /// re-merge at one place records it again); `None` without memory.
    fn live_records(&self, rmap: &[Loc]) -> Option<KVVec<bool>> {
        // Repeats by sorting (place, index) pairs: O(n log n), not a search per record.
        let mut order: KVVec<(Loc, usize)> = KVVec::with_capacity(rmap.len(), GFP_KERNEL).ok()?;
        for (i, &loc) in rmap.iter().enumerate() {
            let _ = order.push((loc, i), GFP_KERNEL);
        }
        order.sort_unstable();
        let mut keep = KVVec::from_elem(false, rmap.len(), GFP_KERNEL).ok()?;
        for (j, &(loc, i)) in order.iter().enumerate() {
            let last = order.get(j + 1).is_none_or(|&(next, _)| next != loc);
            if let Some(k) = keep.get_mut(i) {
                *k = last && self.maps_stable(loc);
            }
            // SAFETY: Process context, no spinlock held.
            unsafe { ffi::rksm_cond_resched() };
        }
        Some(keep)
    }

    /// Recounts the stable tree from the mapcounts (forks, COW, munmap, exit, swap and
    /// migration change them without telling rksm), lets go of stable pages nothing maps
    /// (`force`: even those a swap entry may fault back in), and prunes reverse maps: records
    /// of mms that left at once, stale and repeated ones when they outnumber the mappings.
    pub(super) fn refresh_stable(&mut self, force: bool) {
        // Pass 1: reverse maps. Checking a record takes its mm's lock, so it is done outside
        // the tree walk below, and only where records outnumber twice the mappings: each check
        // is paid for by a merge that added a record since the last one.
        let mut stale: KVVec<(u64, usize)> = KVVec::new();
        for (hash, bucket) in self.stable.buckets_with_hash() {
            for (i, node) in bucket.iter().enumerate() {
                let mapped = node.page.mapcount().unwrap_or(0) as usize;
                if node.page.entries() > 2 * mapped + RMAP_SLACK {
                    let _ = stale.push((hash, i), GFP_KERNEL);
                }
            }
        }
        for &(hash, index) in stale.iter() {
            let slot = super::stable_tree::Slot { hash, index };
            let Some(node) = self.stable.get(slot) else {
                continue;
            };
            let Some(keep) = self.live_records(node.rmap.as_slice()) else {
                continue;
            };
            if let Some(node) = self.stable.get_mut(slot) {
                if node.rmap.len() == node.page.entries() && node.page.prune(|i| keep[i]) {
                    let mut i = 0;
                    node.rmap.retain(|_| {
                        i += 1;
                        keep[i - 1]
                    });
                }
            }
        }
        let mms = &self.mms;
        self.stable.retain(
            |node| {
                let Some(mapped) = node.page.mapcount() else {
                    // Gone: freed, or swapped out and dropped. Nothing points to the node.
                    return !node.page.try_detach(force);
                };
                if mapped == 0 && node.page.try_detach(force) {
                    return false;
                }
                // Records of exited processes are no use to anyone: O(log P) each.
                if node.rmap.len() == node.page.entries()
                    && node.rmap.iter().any(|l| mms.get(l.tag()).is_none())
                {
                    let rmap = &node.rmap;
                    if node
                        .page
                        .prune(|i| rmap.get(i).is_some_and(|l| mms.get(l.tag()).is_some()))
                    {
                        node.rmap.retain(|l| mms.get(l.tag()).is_some());
                    }
                }
                true
            },
            // Dropping a node detached above frees it.
            drop,
        );
        // A stable page counts as shared while something maps it (one left in the swap cache
        // after its last mapping was swapped out does not): then its mappings past the first
        // count as sharing, so neither figure can go negative.
        let (mut shared, mut sharing, mut chains, mut dups) = (0i64, 0i64, 0i64, 0i64);
        for bucket in self.stable.buckets() {
            for n in bucket.iter() {
                if let Some(mapped @ 1..) = n.page.mapcount() {
                    shared += 1;
                    sharing += i64::from(mapped) - 1;
                }
            }
            // Copies of one content are neighbours in a bucket (sorted by content).
            let mut run = 1;
            for (i, node) in bucket.iter().enumerate() {
                let same_as_next = bucket.get(i + 1).is_some_and(|n| {
                    node.page
                        .page()
                        .and_then(|p| n.page.cmp_content(&p))
                        .is_some_and(|o| o == core::cmp::Ordering::Equal)
                });
                if same_as_next {
                    run += 1;
                    continue;
                }
                if run > 1 {
                    chains += 1;
                    dups += run;
                }
                run = 1;
            }
        }
        let bytes = self.stable.bytes();
        stats::add(Stat::MetadataBytes, bytes as i64 - self.stable_bytes as i64);
        self.stable_bytes = bytes;
        stats::set(Stat::PagesShared, shared);
        stats::set(Stat::PagesSharing, sharing);
        stats::set(Stat::StableNodeChains, chains);
        stats::set(Stat::StableNodeDups, dups);
    }

    /// `run=2`: breaks every merge, frees every stable page, forgets every record and resets
    /// `full_scans`.
    ///
    /// rksm's records are not every mapping: a fork copies mappings of stable pages that rksm
    /// may not have seen yet. Merges live only in mergeable VMAs (MADV_UNMERGEABLE, the prctl
    /// and mremap break them at once, through the kernel's break_ksm), so, as KSM does, every
    /// mergeable VMA of every opted-in mm is then swept once, over its populated ranges only,
    /// and again while the mapcounts say a stable page is still mapped (a fork raced the sweep).
    pub(crate) fn unmerge_all(&mut self) {
        // Zero-page merges: from the records (a clean zero-page PTE carries no mark).
        for slot in self.mms.values_mut() {
            if let Some(user) = slot.mm.mmget_not_zero() {
                let locked = Locked::new(&user);
                for r in slot.pass.records() {
                    if r.zero() && locked.maps_zero_page(r.addr()) {
                        // A failure leaves an ordinary zero-page PTE: nothing leaks.
                        let _ = locked.break_cow(r.addr());
                    }
                    // SAFETY: Process context, no spinlock held.
                    unsafe { ffi::rksm_cond_resched() };
                }
            }
            slot.pass.forget();
        }
        // The merges rksm recorded first, sorted by mm and address: one lock hold per batch
        // of an mm's records, not one per record. Without memory for the sorted copy, one at
        // a time.
        let mut locs: KVVec<Loc> = KVVec::new();
        let total = self
            .stable
            .buckets()
            .flat_map(|b| b.iter())
            .map(|n| n.rmap.len())
            .sum();
        if locs.reserve(total, GFP_KERNEL).is_ok() {
            for node in self.stable.buckets().flat_map(|b| b.iter()) {
                for &loc in node.rmap.iter() {
                    let _ = locs.push_within_capacity(loc);
                }
            }
            locs.sort_unstable();
            self.break_recorded(&locs);
        } else {
            for node in self.stable.buckets().flat_map(|b| b.iter()) {
                for &loc in node.rmap.iter() {
                    self.break_recorded(core::slice::from_ref(&loc));
                }
            }
        }
        drop(locs);
        // Then whatever forks copied: sweep until nothing maps a stable page. The mapcounts
        // count those copies too, so with none left (and no page let go of while mapped) there
        // is nothing to sweep for: a sweep looks at every page of every mergeable VMA.
        for _ in 0..SWEEPS {
            if self.stable_mapped() == 0 && !stable::any_leaked() {
                break;
            }
            self.sweep_stable_mappings();
        }
        self.refresh_stable(true);
        let left = stable::live();
        if left != 0 {
            pr_warn!("run=2: {left} stable pages are still mapped; they stay merged\n");
        }
        self.mms.clear();
        self.unstable.clear();
        self.current = None;
        self.in_pass = false;
        stats::set(Stat::FullScans, 0);
    }

    /// Breaks the merges at `locs` (sorted by mm, then address) that still map a stable page:
    /// each mm's lock is held for up to [`BATCH`] of them at a time.
    fn break_recorded(&self, locs: &[Loc]) {
        for run in locs.chunk_by(|a, b| a.tag() == b.tag()) {
            let Some(user) = run
                .first()
                .and_then(|l| self.mms.get(l.tag()))
                .and_then(|s| s.mm.mmget_not_zero())
            else {
                continue;
            };
            for batch in run.chunks(BATCH) {
                let locked = Locked::new(&user);
                for loc in batch {
                    if locked.maps_stable_page(loc.addr()) {
                        let _ = locked.break_cow(loc.addr());
                    }
                }
                drop(locked);
                // SAFETY: Process context, no spinlock held.
                unsafe { ffi::rksm_cond_resched() };
            }
        }
    }

    fn stable_mapped(&self) -> u64 {
        self.stable
            .buckets()
            .flat_map(|b| b.iter())
            .map(|n| u64::from(n.page.mapcount().unwrap_or(0)))
            .sum()
    }

    /// Breaks every PTE that maps a stable page, in every mergeable VMA of every opted-in mm.
    fn sweep_stable_mappings(&mut self) {
        let mut mms = KVVec::new();
        if mm::collect(&mut mms).is_err() {
            return;
        }
        for m in mms.iter() {
            let Some(user) = m.mm.mmget_not_zero() else {
                continue;
            };
            let locked = Locked::new(&user);
            let mut addr = 0;
            while let Some(vma) = locked.vma_next(addr) {
                addr = vma.end();
                // Executable or not (merge_exec may have changed), mergeable VMAs hold merges.
                if mm::kind(vma, true) != VmaKind::Mergeable {
                    continue;
                }
                let (mut start, end) = (vma.start(), vma.end());
                while start < end {
                    let mut budget = usize::MAX;
                    let mut walk = WalkStats::default();
                    let mut hits: KVec<usize> = KVec::new();
                    start = range_walk::walk(&locked, start, end, &mut budget, &mut walk, |f| {
                        if let Found::Stable { addr, .. } = f {
                            let _ = hits.push(addr, GFP_KERNEL);
                        }
                        hits.len() < BATCH
                    });
                    for a in hits.iter() {
                        let _ = locked.break_cow(*a);
                    }
                }
            }
        }
    }
}
