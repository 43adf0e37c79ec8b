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
use crate::stable::StableFile;
use crate::stats::{self, Stat};

/// Rounds of the `run=2` sweep before rksm gives up on a mapping it cannot break.
const SWEEPS: usize = 8;
/// Reverse-map records a stable page may carry beyond twice its mappings before they are
/// checked and the stale ones dropped.
const RMAP_SLACK: usize = 8;

/// Breaks the merge `r` records if its address is mapped but no longer mergeable
/// (`merge_exec`: executable VMAs still are).
pub(super) fn unmerge_if_unmergeable(
    locked: &Locked<'_>,
    r: &Record,
    file: &StableFile,
    merge_exec: bool,
) {
    let unmergeable = locked
        .vma_next(r.addr)
        .is_some_and(|v| v.start() <= r.addr && mm::kind(v, merge_exec) != VmaKind::Mergeable);
    if !unmergeable {
        return;
    }
    let mapped = (r.zero() && locked.maps_zero_page(r.addr))
        || (r.flags & super::pass::STABLE_MERGED != 0
            && locked.maps_stable_page(r.addr, file.raw()));
    if mapped {
        // On failure the merge stays; the next pass tries again.
        let _ = locked.break_cow(r.addr);
    }
}

impl Engine {
    /// Whether `loc` maps a page of rksm's file now (any mm lock is taken here).
    fn maps_stable(&self, loc: Loc) -> bool {
        let Some(user) = self.mms.get(loc.tag()).and_then(|s| s.mm.mmget_not_zero()) else {
            return false;
        };
        let mapped = Locked::new(&user).maps_stable_page(loc.addr(), self.file.raw());
        mapped
    }

    /// Recounts the stable tree from the mapcounts (forks, COW, munmap and exit change them
    /// without telling rksm), frees stable pages nothing maps, and prunes reverse maps:
    /// records of mms that left at once, stale ones when they outnumber the mappings.
    pub(super) fn refresh_stable(&mut self) {
        // Pass 1: reverse maps. Checking a record takes its mm's lock, so it is done outside
        // the tree walk below, and only where records outnumber twice the mappings: each check
        // is paid for by a merge that added a record since the last one.
        let mut stale: KVVec<(u64, usize)> = KVVec::new();
        for (hash, bucket) in self.stable.buckets_with_hash() {
            for (i, node) in bucket.iter().enumerate() {
                if node.rmap.len() > 2 * node.page.mapcount() as usize + RMAP_SLACK {
                    let _ = stale.push((hash, i), GFP_KERNEL);
                }
            }
        }
        for &(hash, index) in stale.iter() {
            let slot = super::stable_tree::Slot { hash, index };
            let Some(node) = self.stable.get(slot) else {
                continue;
            };
            let mut keep: KVVec<Loc> = KVVec::new();
            for &loc in node.rmap.iter() {
                if self.maps_stable(loc) {
                    let _ = keep.push(loc, GFP_KERNEL);
                }
                // SAFETY: Process context, no spinlock held.
                unsafe { ffi::rksm_cond_resched() };
            }
            if let Some(node) = self.stable.get_mut(slot) {
                node.rmap = keep;
            }
        }
        let file = &mut self.file;
        let mms = &self.mms;
        self.stable.retain(
            |node| {
                // Records of exited processes are no use to anyone: O(log P) each.
                node.rmap.retain(|l| mms.get(l.tag()).is_some());
                node.page.mapcount() > 0
            },
            |node| {
                if let Err(page) = file.free(node.page) {
                    // Cannot happen: only rksm maps a stable page that nothing maps, and it
                    // is busy here. Should it happen, leaking the page is the safe answer
                    // (the module stays pinned); truncating a mapped page is not.
                    core::mem::forget(page);
                }
            },
        );
        let (mut mappings, mut chains, mut dups) = (0i64, 0i64, 0i64);
        for bucket in self.stable.buckets() {
            mappings += bucket
                .iter()
                .map(|n| i64::from(n.page.mapcount()))
                .sum::<i64>();
            // Copies of one content are neighbours in a bucket (sorted by content).
            let mut run = 1;
            for (i, node) in bucket.iter().enumerate() {
                let same_as_next = bucket.get(i + 1).is_some_and(|n| {
                    n.page.page().cmp_content(node.page.page()) == core::cmp::Ordering::Equal
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
        let shared = self.stable.len() as i64;
        stats::set(Stat::PagesShared, shared);
        stats::set(Stat::PagesSharing, mappings - shared);
        stats::set(Stat::StableNodeChains, chains);
        stats::set(Stat::StableNodeDups, dups);
    }

    /// `run=2`: breaks every merge, frees every stable page, forgets every record and resets
    /// `full_scans`.
    ///
    /// rksm's records are not every mapping: a fork copies mappings of stable pages that rksm
    /// never saw. So the mapcounts are the ground truth, and every anonymous VMA of every mm is
    /// swept for PTEs into rksm's file until no stable page is mapped.
    pub(crate) fn unmerge_all(&mut self) {
        // Zero-page merges: from the records (a clean zero-page PTE carries no mark).
        for slot in self.mms.values_mut() {
            if let Some(user) = slot.mm.mmget_not_zero() {
                let locked = Locked::new(&user);
                for r in slot.pass.records() {
                    if r.zero() && locked.maps_zero_page(r.addr) {
                        // A failure leaves an ordinary zero-page PTE: nothing leaks.
                        let _ = locked.break_cow(r.addr);
                    }
                    // SAFETY: Process context, no spinlock held.
                    unsafe { ffi::rksm_cond_resched() };
                }
            }
            slot.pass.forget();
        }
        // The merges rksm recorded first: cheap, one lookup each.
        for node in self.stable.buckets().flat_map(|b| b.iter()) {
            for &loc in node.rmap.iter() {
                let Some(user) = self.mms.get(loc.tag()).and_then(|s| s.mm.mmget_not_zero()) else {
                    continue;
                };
                let locked = Locked::new(&user);
                if locked.maps_stable_page(loc.addr(), self.file.raw()) {
                    let _ = locked.break_cow(loc.addr());
                }
            }
        }
        // Then whatever forks copied, or mremap moved: sweep until nothing maps a stable page.
        for _ in 0..SWEEPS {
            if self.stable_mapped() == 0 {
                break;
            }
            self.sweep_stable_mappings();
        }
        self.refresh_stable();
        let left = self.file.live();
        if left != 0 {
            pr_warn!("run=2: {left} stable pages are still mapped; they stay merged\n");
        }
        self.mms.clear();
        self.unstable.clear();
        self.current = None;
        self.in_pass = false;
        stats::set(Stat::FullScans, 0);
    }

    fn stable_mapped(&self) -> u64 {
        self.stable
            .buckets()
            .flat_map(|b| b.iter())
            .map(|n| u64::from(n.page.mapcount()))
            .sum()
    }

    /// Breaks every PTE into rksm's file, in every user mm.
    fn sweep_stable_mappings(&mut self) {
        let mut mms = KVVec::new();
        if mm::collect(true, &mut mms).is_err() {
            return;
        }
        let file = self.file.raw();
        for m in mms.iter() {
            let Some(user) = m.mm.mmget_not_zero() else {
                continue;
            };
            let locked = Locked::new(&user);
            let mut addr = 0;
            while let Some(vma) = locked.vma_next(addr) {
                addr = vma.end();
                // Executable or not, anonymous memory may hold merges: swept either way.
                if mm::kind(vma, true) == VmaKind::Other {
                    continue;
                }
                let (mut start, end) = (vma.start(), vma.end());
                while start < end {
                    let mut budget = usize::MAX;
                    let mut walk = WalkStats::default();
                    let mut hits: KVec<usize> = KVec::new();
                    start =
                        range_walk::walk(&locked, start, end, &mut budget, file, &mut walk, |f| {
                            if let Found::Stable { addr } = f {
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
