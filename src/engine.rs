// SPDX-License-Identifier: GPL-2.0

//! The merging engine: which mm to scan next, what a scanned page becomes, and undoing merges.
//!
//! rksmd owns the [`Engine`]; nothing else touches it, so it needs no lock of its own. A page's
//! way: [`Engine::scan_round`] -> [`range_walk::walk`] (under the mmap lock) -> [`Engine::visit`]
//! (no lock: it may need another mm's) -> a merge through [`Vma::replace_page`].
//!
//! Locks: an mmap lock is held only around one walk batch or one merge, never two at once
//! (two mmap locks would be a lock-order problem lockdep rightly reports).

use kernel::prelude::*;

use crate::ffi;
use crate::intervals::{next_to_scan, Covered};
use crate::knobs::Snapshot;
use crate::mm::{MergeError, Mm, MmapReadGuard, VmaKind};
use crate::page::PageRef;
use crate::range_walk::{self, Found, WalkStats};
use crate::smart_scan::Age;
use crate::stable::{StableFile, StablePage};
use crate::stats::{self, Stat};
use crate::tree::HashTree;

/// `Record::flags`: this address was merged into the zero page.
const ZERO_MERGED: u32 = 1;
/// `Record::flags`: this address maps a stable page.
const STABLE_MERGED: u32 = 2;
/// `Record::flags`: the page was put in the unstable tree at this visit. It counts in
/// `pages_unshared` until its next visit, as KSM's rmap_items do.
const IN_UNSTABLE: u32 = 4;
/// The flags that mean "rksm merged this address".
const MERGED: u32 = ZERO_MERGED | STABLE_MERGED;
/// Where `Record::flags` keeps a page's smart-scan [`Age`] (bits 8-15 age, 16-23 skips).
const AGE_SHIFT: u32 = 8;

fn age_of(flags: u32) -> Age {
    Age {
        age: (flags >> AGE_SHIFT) as u8,
        skips: (flags >> (AGE_SHIFT + 8)) as u8,
    }
}

fn with_age(flags: u32, age: Age) -> u32 {
    (flags & 0xff) | u32::from(age.age) << AGE_SHIFT | u32::from(age.skips) << (AGE_SHIFT + 8)
}

/// Pages one walk batch may hand over before the mmap lock is dropped to process them.
const BATCH: usize = 64;

/// What rksm remembers about one scanned page between passes (16 bytes, where KSM keeps a
/// 64-byte rmap_item).
#[derive(Clone, Copy)]
struct Record {
    addr: usize,
    /// Low 32 bits of the content hash at the last visit (volatility check, as KSM).
    hash: u32,
    flags: u32,
}

/// One opted-in mm and where its pass stands.
struct MmSlot {
    mm: Mm,
    pass: PassState,
}

/// Where the pass over one mm stands, and what the previous pass saw.
struct PassState {
    /// What the current pass has scanned.
    covered: Covered,
    /// Where the current pass continues.
    cursor: usize,
    /// Records of the previous pass, sorted by address.
    prev: KVec<Record>,
    /// Records of this pass, in scan order.
    next: KVec<Record>,
}

impl PassState {
    fn new() -> Self {
        Self {
            covered: Covered::new(),
            cursor: 0,
            prev: KVec::new(),
            next: KVec::new(),
        }
    }

    fn prev_record(&self, addr: usize) -> Option<&Record> {
        let i = self.prev.binary_search_by_key(&addr, |r| r.addr).ok()?;
        self.prev.get(i)
    }

    fn count(records: &[Record], flag: u32) -> i64 {
        records.iter().filter(|r| r.flags & flag != 0).count() as i64
    }

    /// Whether any merge of this mm is on record.
    fn has_merges(&self) -> bool {
        let merged = |r: &Record| r.flags & MERGED != 0;
        self.prev.iter().any(merged) || self.next.iter().any(merged)
    }

    /// The pass over this mm is complete: this pass's records become the previous ones.
    ///
    /// Merges the pass did not meet again lie in memory that is no longer mergeable
    /// (MADV_UNMERGEABLE, PR_SET_MEMORY_MERGE 0) or is gone. The ones still mapped are broken,
    /// as KSM unmerges on MADV_UNMERGEABLE.
    fn finish(&mut self, guard: &MmapReadGuard<'_>, file: &StableFile) {
        self.next.sort_unstable_by_key(|r| r.addr);
        for r in self.prev.iter().filter(|r| r.flags != 0) {
            if self.next.binary_search_by_key(&r.addr, |n| n.addr).is_ok() {
                continue;
            }
            if r.flags & IN_UNSTABLE != 0 {
                stats::add(Stat::PagesUnshared, -1);
            }
            if r.flags & MERGED != 0 {
                unmerge_if_unmergeable(guard, r, file);
            }
        }
        stats::add(
            Stat::Records,
            self.next.len() as i64 - self.prev.len() as i64,
        );
        let zero = Self::count(&self.next, ZERO_MERGED) - Self::count(&self.prev, ZERO_MERGED);
        stats::add(Stat::ZeroPages, zero);
        core::mem::swap(&mut self.prev, &mut self.next);
        self.next.clear();
        self.covered.clear();
        self.cursor = 0;
    }

    /// Forgets every record, keeping the counters right.
    fn forget(&mut self) {
        let unshared = Self::count(&self.prev, IN_UNSTABLE) + Self::count(&self.next, IN_UNSTABLE);
        stats::add(Stat::PagesUnshared, -unshared);
        stats::add(Stat::Records, -(self.prev.len() as i64));
        stats::add(Stat::ZeroPages, -Self::count(&self.prev, ZERO_MERGED));
        self.prev.clear();
        self.next.clear();
        self.covered.clear();
        self.cursor = 0;
    }
}

impl Drop for PassState {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Breaks the merge `r` records if its address is mapped but no longer mergeable.
fn unmerge_if_unmergeable(guard: &MmapReadGuard<'_>, r: &Record, file: &StableFile) {
    let unmergeable = guard
        .vma_next(r.addr)
        .is_some_and(|v| v.start() <= r.addr && v.kind() != VmaKind::Mergeable);
    let mapped = (r.flags & ZERO_MERGED != 0 && guard.maps_zero_page(r.addr))
        || (r.flags & STABLE_MERGED != 0 && guard.maps_stable_page(r.addr, file.raw()));
    if unmergeable && mapped {
        // On failure the merge stays; the next pass tries again.
        let _ = guard.break_cow(r.addr);
    }
}

/// The mergeable VMAs of a locked mm as `(start, end)` ranges, in address order.
#[derive(Clone)]
struct MergeableRanges<'a> {
    guard: &'a MmapReadGuard<'a>,
    addr: usize,
}

impl Iterator for MergeableRanges<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            let vma = self.guard.vma_next(self.addr)?;
            self.addr = vma.end();
            if vma.kind() == VmaKind::Mergeable {
                return Some((vma.start(), vma.end()));
            }
        }
    }
}

/// A stable page in the stable tree.
struct StableNode {
    page: StablePage,
    /// The merges rksm made into it. They go stale (COW, munmap, mremap) and miss what forks
    /// copied, so they are re-checked before use, and the mapcount stays the ground truth.
    rmap: KVec<Mapping>,
}

/// One mapping of a stable page: an mm (by [`Mm::id`]) and an address.
#[derive(Clone, Copy)]
struct Mapping {
    mm: usize,
    addr: usize,
}

/// A page waiting in the unstable tree for a twin, found again by mm and address.
struct UnstableEntry {
    mm: usize,
    addr: usize,
    /// Where its record went in that mm's `PassState::next`.
    record: usize,
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

/// The scanner's state.
pub(crate) struct Engine {
    slots: KVec<MmSlot>,
    /// The slot being scanned; `slots.len()` when the pass is over.
    current: usize,
    /// Whether the current pass has collected its mms.
    in_pass: bool,
    /// xxh64 of an all-zero page.
    zero_hash: u64,
    stable: HashTree<StableNode>,
    unstable: HashTree<UnstableEntry>,
    /// The knobs of the current round.
    knobs: Snapshot,
    // Declared last: dropped after the stable nodes that live in it.
    file: StableFile,
}

impl Engine {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the shim hashes the kernel's zero page, which always exists.
        let zero_hash = unsafe { ffi::rksm_zero_page_hash() };
        Ok(Self {
            slots: KVec::new(),
            current: 0,
            in_pass: false,
            zero_hash,
            stable: HashTree::new(),
            unstable: HashTree::new(),
            knobs: Snapshot::default(),
            file: StableFile::new()?,
        })
    }

    /// Scans up to `knobs.pages_to_scan` pages, continuing the current pass.
    pub(crate) fn scan_round(&mut self, knobs: &Snapshot) {
        self.knobs = *knobs;
        let mut budget = knobs.pages_to_scan;
        while budget > 0 {
            if !self.in_pass && (self.start_pass().is_err() || self.slots.is_empty()) {
                return;
            }
            if self.current >= self.slots.len() {
                // As in KSM, a round ends where a full scan ends: sleep_millisecs lies between
                // two passes, and full_scans counts passes, not rounds.
                self.end_pass();
                return;
            }
            match self.scan_slot(self.current, &mut budget) {
                SlotTurn::Done => self.current += 1,
                SlotTurn::Gone => {
                    // The records of an exiting mm go with its slot; its stable mappings go
                    // with its page tables, and the stable-tree refresh notices.
                    let _ = self.slots.remove(self.current);
                }
                SlotTurn::Yield => return,
            }
        }
    }

    /// Starts a pass: adds newly opted-in mms, drops those that left, and drains the per-CPU
    /// LRU batches whose references would make every merge look pinned.
    fn start_pass(&mut self) -> Result {
        let mut found = KVec::new();
        Mm::collect(false, &mut found)?;
        // An mm that no longer opts in keeps its slot while it has merges to undo.
        self.slots
            .retain(|s| s.mm.opted_in() || s.pass.has_merges());
        for mm in found.drain_all() {
            if !self.slots.iter().any(|s| s.mm.id() == mm.id()) {
                self.slots.push(
                    MmSlot {
                        mm,
                        pass: PassState::new(),
                    },
                    GFP_KERNEL,
                )?;
            }
        }
        // SAFETY: kthread context, no locks held.
        unsafe { ffi::rksm_lru_add_drain_all() };
        self.current = 0;
        self.in_pass = true;
        Ok(())
    }

    /// Every mm was scanned: a full scan is complete. The unstable tree starts afresh, as in
    /// KSM, and the stable tree drops pages nothing maps any more.
    fn end_pass(&mut self) {
        // The records keep counting in `pages_unshared` until their pages are visited again.
        self.unstable.clear();
        self.refresh_stable();
        self.in_pass = false;
        // Last: whoever sees full_scans move also sees the counters of the finished pass.
        stats::add(Stat::FullScans, 1);
    }

    /// Recounts the stable tree from the mapcounts (forks, COW, munmap and exit change them
    /// without telling rksm) and frees stable pages nothing maps.
    fn refresh_stable(&mut self) {
        let file = &mut self.file;
        let slots = &self.slots;
        self.stable.retain(
            |node| {
                // Records of exited processes are no use to anyone.
                node.rmap
                    .retain(|m| slots.iter().any(|s| s.mm.id() == m.mm));
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
            if bucket.len() > 1 {
                chains += 1;
                dups += bucket.len() as i64;
            }
        }
        let shared = self.stable.len() as i64;
        stats::set(Stat::PagesShared, shared);
        stats::set(Stat::PagesSharing, mappings - shared);
        stats::set(Stat::StableNodeChains, chains);
        stats::set(Stat::StableNodeDups, dups);
    }

    /// Walks the next stretch of slot `idx` in batches and decides each page's fate.
    fn scan_slot(&mut self, idx: usize, budget: &mut usize) -> SlotTurn {
        let mut batch: KVec<Found> = KVec::new();
        loop {
            let Some(MmSlot { mm, pass }) = self.slots.get_mut(idx) else {
                return SlotTurn::Done;
            };
            let Some(user) = mm.user() else {
                return SlotTurn::Gone;
            };
            let mm_id = mm.id();
            {
                let guard = user.read_lock();
                // Forget what was covered but is unmapped now.
                pass.covered.retain_mapped(MergeableRanges {
                    guard: &guard,
                    addr: 0,
                });
                let mapped = MergeableRanges {
                    guard: &guard,
                    addr: 0,
                };
                let Some((addr, run_end)) = next_to_scan(&pass.covered, mapped, pass.cursor) else {
                    pass.finish(&guard, &self.file);
                    return SlotTurn::Done;
                };
                if batch.reserve(BATCH, GFP_KERNEL).is_err() {
                    return SlotTurn::Yield;
                }
                let mut walk = WalkStats::default();
                let stop = range_walk::walk(
                    &guard,
                    addr,
                    run_end,
                    budget,
                    self.file.raw(),
                    &mut walk,
                    |found| {
                        // A large folio must be split to merge, which fails while this batch
                        // holds other references to it: it ends the batch.
                        let large = matches!(found, Found::Anon { large: true, .. });
                        let _ = batch.push_within_capacity(found);
                        !large && batch.len() < BATCH
                    },
                );
                stats::add(Stat::ThpPagesSkipped, walk.thp_pages as i64);
                pass.covered.insert(addr, stop);
                pass.cursor = stop;
            }
            drop(user);
            for found in batch.drain_all() {
                self.visit(idx, mm_id, found);
            }
            if *budget == 0 {
                return SlotTurn::Yield;
            }
        }
    }

    /// Decides what becomes of one page of slot `idx`.
    fn visit(&mut self, idx: usize, mm_id: usize, found: Found) {
        let addr = match &found {
            Found::Zero { addr } | Found::Stable { addr } | Found::Anon { addr, .. } => *addr,
        };
        // `pages_unshared` counts records with IN_UNSTABLE. The page leaves the previous pass's
        // unstable tree now and may join this pass's: one update at the end, so a reader never
        // sees the page counted out and back in.
        let was_unshared = self.take_prev_unstable(idx, addr);
        let record = match found {
            Found::Zero { addr } => match self.prev_record(idx, addr) {
                // Still the zero page we put there: keep counting it.
                Some(r) if r.flags & ZERO_MERGED != 0 => Record {
                    flags: ZERO_MERGED,
                    ..r
                },
                _ => return,
            },
            Found::Stable { addr } => {
                stats::add(Stat::PagesScanned, 1);
                Record {
                    addr,
                    hash: 0,
                    flags: STABLE_MERGED,
                }
            }
            Found::Anon { addr, page, .. } => {
                let prev = self.prev_record(idx, addr);
                // Smart scan: a page that keeps failing to merge is skipped for a while.
                let mut age = prev
                    .filter(|r| r.flags & MERGED == 0)
                    .map_or(Age::default(), |r| age_of(r.flags));
                if self.knobs.smart_scan && age.visit() {
                    stats::add(Stat::PagesSkipped, 1);
                    let hash = prev.map_or(0, |r| r.hash);
                    Record {
                        addr,
                        hash,
                        flags: with_age(0, age),
                    }
                } else {
                    stats::add(Stat::PagesScanned, 1);
                    let hash = page.hash();
                    let flags = self.try_merge(idx, mm_id, addr, &page, hash);
                    // A merged page starts over, should it be unmerged later.
                    let flags = if flags & MERGED != 0 {
                        flags
                    } else {
                        with_age(flags, age)
                    };
                    Record {
                        addr,
                        hash: hash as u32,
                        flags,
                    }
                }
            }
        };
        // Without memory for the record the page only looks new again next pass (and its tree
        // entry, if any, has no record to count).
        let pushed = self
            .slots
            .get_mut(idx)
            .is_some_and(|s| s.pass.next.push(record, GFP_KERNEL).is_ok());
        let is_unshared = pushed && record.flags & IN_UNSTABLE != 0;
        stats::add(
            Stat::PagesUnshared,
            i64::from(is_unshared) - i64::from(was_unshared),
        );
    }

    fn prev_record(&self, idx: usize, addr: usize) -> Option<Record> {
        self.slots.get(idx)?.pass.prev_record(addr).copied()
    }

    /// The merge decision for an anonymous page, in KSM's order: the zero page, the stable
    /// tree, then (if its content held still since the last pass) the unstable tree. Returns
    /// the record flags.
    fn try_merge(
        &mut self,
        idx: usize,
        mm_id: usize,
        addr: usize,
        page: &PageRef,
        hash: u64,
    ) -> u32 {
        if self.knobs.use_zero_pages && hash == self.zero_hash && page.is_zero() {
            return if self.merge_at(mm_id, addr, page, None) {
                ZERO_MERGED
            } else {
                0
            };
        }
        if self.merge_into_stable(mm_id, addr, page, hash) {
            return STABLE_MERGED;
        }
        let unchanged = self
            .prev_record(idx, addr)
            .is_some_and(|r| r.hash == hash as u32);
        if !unchanged {
            // New or volatile: wait a pass, so pages rewritten all the time are never merged.
            return 0;
        }
        // A page of a THP goes the same way: the merge splits the THP only once a twin exists,
        // as in KSM.
        if self.merge_with_unstable(mm_id, addr, page, hash) {
            return STABLE_MERGED;
        }
        // `visit` pushes this page's record next, at this index.
        let record = self.slots.get(idx).map_or(0, |s| s.pass.next.len());
        if self
            .unstable
            .insert(
                hash,
                UnstableEntry {
                    mm: mm_id,
                    addr,
                    record,
                },
            )
            .is_ok()
        {
            return IN_UNSTABLE;
        }
        0
    }

    /// Merges into a stable page of the same content that has room (`max_page_sharing`).
    fn merge_into_stable(&mut self, mm_id: usize, addr: usize, page: &PageRef, hash: u64) -> bool {
        let max = self.knobs.max_page_sharing;
        let target = self
            .stable
            .bucket(hash)
            .iter()
            .position(|node| node.page.mapcount() < max && node.page.page().same_content(page));
        let Some(i) = target else {
            return false;
        };
        let merged = self
            .stable
            .bucket(hash)
            .get(i)
            .is_some_and(|node| self.merge_at(mm_id, addr, page, Some(node.page.page())));
        if merged {
            stats::add(Stat::PagesSharing, 1);
            if let Some(node) = self.stable.bucket_mut(hash).get_mut(i) {
                // Without memory the record is missing; run=2's sweep still finds the page.
                let _ = node.rmap.push(Mapping { mm: mm_id, addr }, GFP_KERNEL);
            }
        }
        merged
    }

    /// Looks for a twin in the unstable tree; if one is found, both become mappings of a new
    /// stable page.
    fn merge_with_unstable(
        &mut self,
        mm_id: usize,
        addr: usize,
        page: &PageRef,
        hash: u64,
    ) -> bool {
        let mut i = 0;
        while let Some(entry) = self.unstable.bucket(hash).get(i) {
            let (other_mm, other_addr) = (entry.mm, entry.addr);
            if other_mm == mm_id && other_addr == addr {
                i += 1;
                continue;
            }
            let other = self.page_at(other_mm, other_addr);
            if other.as_ref().is_some_and(|o| !o.same_content(page)) {
                i += 1;
                continue;
            }
            // Merging, or gone (unmapped, not mergeable any more): out of the tree either way.
            if let Some(entry) = self.unstable.remove(hash, i) {
                self.leave_unstable(&entry);
            }
            if let Some(other) = other {
                return self.merge_pair(mm_id, addr, page, other_mm, other_addr, other, hash);
            }
        }
        false
    }

    /// `entry` left the unstable tree: its record no longer counts in `pages_unshared`.
    fn leave_unstable(&mut self, entry: &UnstableEntry) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.mm.id() == entry.mm) else {
            return;
        };
        let pass = &mut slot.pass;
        // In `next` while that mm's pass runs; in the sorted `prev` once it finished.
        let record = match pass.next.get_mut(entry.record) {
            Some(r) if r.addr == entry.addr => Some(r),
            _ => match pass.prev.binary_search_by_key(&entry.addr, |r| r.addr) {
                Ok(i) => pass.prev.get_mut(i),
                Err(_) => None,
            },
        };
        if let Some(r) = record.filter(|r| r.flags & IN_UNSTABLE != 0) {
            r.flags &= !IN_UNSTABLE;
            stats::add(Stat::PagesUnshared, -1);
        }
    }

    /// Clears IN_UNSTABLE on the previous pass's record of `addr`; whether it was set.
    fn take_prev_unstable(&mut self, idx: usize, addr: usize) -> bool {
        let Some(slot) = self.slots.get_mut(idx) else {
            return false;
        };
        let prev = &mut slot.pass.prev;
        let Ok(i) = prev.binary_search_by_key(&addr, |r| r.addr) else {
            return false;
        };
        match prev.get_mut(i) {
            Some(r) if r.flags & IN_UNSTABLE != 0 => {
                r.flags &= !IN_UNSTABLE;
                true
            }
            _ => false,
        }
    }

    /// Makes a new stable page from `page`'s content and maps it in place of both pages. If
    /// the second merge fails, the first is undone, as KSM's try_to_merge_two_pages does.
    #[allow(clippy::too_many_arguments)]
    fn merge_pair(
        &mut self,
        mm_id: usize,
        addr: usize,
        page: &PageRef,
        other_mm: usize,
        other_addr: usize,
        other: PageRef,
        hash: u64,
    ) -> bool {
        let Ok(stable) = self.file.alloc(page) else {
            return false;
        };
        // Twins inside one THP: merging the first splits it, which needs our reference on it
        // to be the only extra one. Let the second go, and find it again after the split.
        let other = if page.same_folio(&other) {
            drop(other);
            None
        } else {
            Some(other)
        };
        let merged = self.merge_at(mm_id, addr, page, Some(stable.page()))
            && (other
                .or_else(|| self.page_at(other_mm, other_addr))
                .is_some_and(|other| {
                    self.merge_at(other_mm, other_addr, &other, Some(stable.page()))
                })
                || {
                    self.unmerge_at(mm_id, addr);
                    false
                });
        let rmap = [
            Mapping { mm: mm_id, addr },
            Mapping {
                mm: other_mm,
                addr: other_addr,
            },
        ];
        if !merged || stable.mapcount() == 0 {
            if let Err(stable) = self.file.free(stable) {
                // Still mapped (the undo failed): keep it as a stable page after all.
                let _ = self.insert_stable(hash, stable, &rmap[..1]);
            }
            return merged;
        }
        let _ = self.insert_stable(hash, stable, &rmap);
        true
    }

    fn insert_stable(&mut self, hash: u64, page: StablePage, mappings: &[Mapping]) -> Result {
        let mut rmap = KVec::new();
        // Without memory the records are missing; run=2's sweep still finds the page.
        let _ = rmap.extend_from_slice(mappings, GFP_KERNEL);
        let mappings = i64::from(page.mapcount());
        match self.stable.insert(hash, StableNode { page, rmap }) {
            Ok(()) => {
                stats::add(Stat::PagesShared, 1);
                stats::add(Stat::PagesSharing, mappings - 1);
                Ok(())
            }
            Err(e) => {
                // Out of memory for the tree node: the page stays mapped, known only through
                // its file. run=2 still finds and breaks its mappings.
                pr_warn!("no memory to track a stable page\n");
                Err(e)
            }
        }
    }

    fn slot_mm(&self, mm_id: usize) -> Option<&Mm> {
        self.slots.iter().map(|s| &s.mm).find(|m| m.id() == mm_id)
    }

    /// The anonymous page at `addr` of the mm `mm_id`, with a reference.
    fn page_at(&self, mm_id: usize, addr: usize) -> Option<PageRef> {
        let user = self.slot_mm(mm_id)?.user()?;
        let guard = user.read_lock();
        let vma = guard.vma_next(addr)?;
        if vma.start() > addr || vma.kind() != VmaKind::Mergeable {
            return None;
        }
        guard.anon_page_at(addr)
    }

    /// Replaces `page` at `addr` of mm `mm_id` by `into` (None: the zero page). Counts why
    /// not, if not.
    fn merge_at(&self, mm_id: usize, addr: usize, page: &PageRef, into: Option<&PageRef>) -> bool {
        let Some(user) = self.slot_mm(mm_id).and_then(|m| m.user()) else {
            return false;
        };
        let guard = user.read_lock();
        let Some(vma) = guard.vma_next(addr) else {
            return false;
        };
        if vma.kind() != VmaKind::Mergeable {
            return false;
        }
        let reason = match vma.replace_page(addr, page, into) {
            Ok(split) => {
                if split {
                    stats::add(Stat::ThpSplit, 1);
                }
                return true;
            }
            Err(MergeError::Pinned) => Stat::MergeFailPinned,
            Err(MergeError::Changed) => Stat::MergeFailChanged,
            Err(MergeError::Contended) => Stat::MergeFailContended,
            Err(MergeError::Gone | MergeError::Large) => return false,
        };
        stats::add(reason, 1);
        false
    }

    /// Breaks the merge at `addr` of mm `mm_id`.
    fn unmerge_at(&self, mm_id: usize, addr: usize) {
        if let Some(user) = self.slot_mm(mm_id).and_then(|m| m.user()) {
            let guard = user.read_lock();
            let _ = guard.break_cow(addr);
        }
    }

    /// `run=2`: breaks every merge, frees every stable page, forgets every record and resets
    /// `full_scans`.
    ///
    /// rksm's records are not every mapping: a fork copies mappings of stable pages that rksm
    /// never saw. So the mapcounts are the ground truth, and every anonymous VMA of every mm is
    /// swept for PTEs into rksm's file until no stable page is mapped.
    pub(crate) fn unmerge_all(&mut self) {
        // Zero-page merges: from the records (a clean zero-page PTE carries no mark).
        for MmSlot { mm, pass } in self.slots.iter_mut() {
            if let Some(user) = mm.user() {
                let guard = user.read_lock();
                for r in Iterator::chain(pass.prev.iter(), pass.next.iter()) {
                    if r.flags & ZERO_MERGED != 0 && guard.maps_zero_page(r.addr) {
                        // A failure leaves an ordinary zero-page PTE: nothing leaks.
                        let _ = guard.break_cow(r.addr);
                    }
                    // SAFETY: process context, no spinlock held.
                    unsafe { ffi::rksm_cond_resched() };
                }
            }
            pass.forget();
        }
        // The merges rksm recorded first: cheap, one lookup each.
        let file = self.file.raw();
        for node in self.stable.buckets().flat_map(|b| b.iter()) {
            for m in node.rmap.iter() {
                let Some(user) = self.slot_mm(m.mm).and_then(|mm| mm.user()) else {
                    continue;
                };
                let guard = user.read_lock();
                if guard.maps_stable_page(m.addr, file) {
                    let _ = guard.break_cow(m.addr);
                }
            }
        }
        // Then whatever forks copied, or mremap moved: sweep until nothing maps a stable page.
        for _ in 0..8 {
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
        self.slots.clear();
        self.unstable.clear();
        self.current = 0;
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
        let mut mms = KVec::new();
        if Mm::collect(true, &mut mms).is_err() {
            return;
        }
        let file = self.file.raw();
        for mm in mms.iter() {
            let Some(user) = mm.user() else {
                continue;
            };
            let guard = user.read_lock();
            let mut addr = 0;
            while let Some(vma) = guard.vma_next(addr) {
                addr = vma.end();
                if vma.kind() == VmaKind::Other {
                    continue;
                }
                let mut start = vma.start();
                while start < vma.end() {
                    let mut budget = usize::MAX;
                    let mut walk = WalkStats::default();
                    let mut hits: KVec<usize> = KVec::new();
                    start = range_walk::walk(
                        &guard,
                        start,
                        vma.end(),
                        &mut budget,
                        file,
                        &mut walk,
                        |f| {
                            if let Found::Stable { addr } = f {
                                let _ = hits.push(addr, GFP_KERNEL);
                            }
                            hits.len() < BATCH
                        },
                    );
                    for a in hits.iter() {
                        let _ = guard.break_cow(*a);
                    }
                }
            }
        }
    }
}
