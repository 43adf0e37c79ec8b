// SPDX-License-Identifier: GPL-2.0

//! The merging engine: which mm to scan, what a scanned page becomes, and undoing merges.
//!
//! rksmd owns the [`Engine`]; nothing else touches it, so it needs no lock. A page's way:
//! [`Engine::scan_round`] -> [`range_walk::walk`] -> [`Engine`]'s decision -> a merge through
//! [`Vma::replace_page`].

use kernel::prelude::*;

use crate::ffi;
use crate::intervals::{next_to_scan, Covered};
use crate::knobs::KnobId;
use crate::mm::{MergeError, Mm, MmapReadGuard, Vma, VmaKind};
use crate::page::PageRef;
use crate::range_walk::{self, Found, WalkStats};
use crate::stats::{self, Stat};
use crate::sysfs::knob;

/// `Record::flags`: this address was merged into the zero page.
const ZERO_MERGED: u32 = 1;

/// What rksm remembers about one scanned page between passes.
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

/// Where the pass over one mm stands, and what earlier passes saw.
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

impl MmSlot {
    fn new(mm: Mm) -> Self {
        let pass = PassState {
            covered: Covered::new(),
            cursor: 0,
            prev: KVec::new(),
            next: KVec::new(),
        };
        Self { mm, pass }
    }
}

impl PassState {
    fn prev_record(&self, addr: usize) -> Option<&Record> {
        let i = self.prev.binary_search_by_key(&addr, |r| r.addr).ok()?;
        self.prev.get(i)
    }

    /// Zero-page merges among these records.
    fn zero_merges(records: &[Record]) -> i64 {
        records
            .iter()
            .filter(|r| r.flags & ZERO_MERGED != 0)
            .count() as i64
    }

    /// The pass over this mm is complete: this pass's records become the previous ones.
    ///
    /// Zero-page merges the pass did not meet again lie in memory that is no longer mergeable
    /// (MADV_UNMERGEABLE, PR_SET_MEMORY_MERGE 0) or is gone. The ones still mapped are broken,
    /// as KSM unmerges on MADV_UNMERGEABLE.
    fn finish_pass(&mut self, guard: &MmapReadGuard<'_>) {
        self.next.sort_unstable_by_key(|r| r.addr);
        for r in self.prev.iter().filter(|r| r.flags & ZERO_MERGED != 0) {
            if self.next.binary_search_by_key(&r.addr, |n| n.addr).is_ok() {
                continue;
            }
            let unmergeable = guard
                .vma_next(r.addr)
                .is_some_and(|v| v.start() <= r.addr && v.kind() != VmaKind::Mergeable);
            if unmergeable && guard.maps_zero_page(r.addr) {
                // A failure leaves an ordinary zero-page PTE: nothing leaks.
                let _ = guard.break_cow(r.addr);
            }
        }
        stats::add(
            Stat::Records,
            self.next.len() as i64 - self.prev.len() as i64,
        );
        stats::add(
            Stat::ZeroPages,
            Self::zero_merges(&self.next) - Self::zero_merges(&self.prev),
        );
        core::mem::swap(&mut self.prev, &mut self.next);
        self.next.clear();
        self.covered.clear();
        self.cursor = 0;
    }

    /// Forgets every record, keeping the counters right.
    fn forget(&mut self) {
        stats::add(Stat::Records, -(self.prev.len() as i64));
        stats::add(Stat::ZeroPages, -Self::zero_merges(&self.prev));
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

/// How a slot's turn ended.
enum SlotTurn {
    /// The pass over this mm is complete.
    Done,
    /// The round's budget is spent, or a writer waits for the mmap lock.
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
}

impl Engine {
    pub(crate) fn new() -> Self {
        // SAFETY: the shim hashes the kernel's zero page, which always exists.
        let zero_hash = unsafe { ffi::rksm_zero_page_hash() };
        Self {
            slots: KVec::new(),
            current: 0,
            in_pass: false,
            zero_hash,
        }
    }

    /// Scans up to `budget` pages, continuing the current pass.
    pub(crate) fn scan_round(&mut self, budget: usize) {
        let mut budget = budget;
        while budget > 0 {
            if !self.in_pass {
                if self.start_pass().is_err() || self.slots.is_empty() {
                    return;
                }
            }
            if self.current >= self.slots.len() {
                // Every mm was scanned: a full scan is complete.
                stats::add(Stat::FullScans, 1);
                self.in_pass = false;
                continue;
            }
            match self.scan_slot(self.current, &mut budget) {
                SlotTurn::Done => self.current += 1,
                SlotTurn::Gone => {
                    // Records of an exiting mm are dropped with its slot.
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
        Mm::collect_opted_in(&mut found)?;
        // An mm that no longer opts in keeps its slot while it has merges to undo.
        self.slots
            .retain(|s| s.mm.opted_in() || PassState::zero_merges(&s.pass.prev) > 0);
        for mm in found.drain_all() {
            if !self.slots.iter().any(|s| s.mm.id() == mm.id()) {
                self.slots.push(MmSlot::new(mm), GFP_KERNEL)?;
            }
        }
        // SAFETY: kthread context, no locks held.
        unsafe { ffi::rksm_lru_add_drain_all() };
        self.current = 0;
        self.in_pass = true;
        Ok(())
    }

    fn scan_slot(&mut self, idx: usize, budget: &mut usize) -> SlotTurn {
        let zero_hash = self.zero_hash;
        let Some(MmSlot { mm, pass: slot }) = self.slots.get_mut(idx) else {
            return SlotTurn::Done;
        };
        let Some(user) = mm.user() else {
            return SlotTurn::Gone;
        };
        let guard = user.read_lock();
        let use_zero_pages = knob(KnobId::UseZeroPages) != 0;
        slot.covered.retain_mapped(MergeableRanges {
            guard: &guard,
            addr: 0,
        });
        loop {
            let mapped = MergeableRanges {
                guard: &guard,
                addr: 0,
            };
            let Some((addr, run_end)) = next_to_scan(&slot.covered, mapped, slot.cursor) else {
                slot.finish_pass(&guard);
                return SlotTurn::Done;
            };
            let Some(vma) = guard.vma_next(addr) else {
                return SlotTurn::Done;
            };
            let mut walk = WalkStats::default();
            let stop = range_walk::walk(
                &guard,
                addr,
                run_end,
                budget,
                core::ptr::null_mut(),
                &mut walk,
                |found| visit(slot, &vma, found, use_zero_pages, zero_hash),
            );
            stats::add(Stat::ThpPagesSkipped, walk.thp_pages as i64);
            slot.covered.insert(addr, stop);
            slot.cursor = stop;
            if *budget == 0 || guard.contended() {
                return SlotTurn::Yield;
            }
        }
    }

    /// `run=2`: breaks every merge, forgets every record and resets `full_scans`.
    pub(crate) fn unmerge_all(&mut self) {
        for MmSlot { mm, pass } in self.slots.iter_mut() {
            if let Some(user) = mm.user() {
                let guard = user.read_lock();
                for r in Iterator::chain(pass.prev.iter(), pass.next.iter()) {
                    if r.flags & ZERO_MERGED != 0 && guard.maps_zero_page(r.addr) {
                        // A failure leaves an ordinary zero-page PTE: nothing to leak.
                        let _ = guard.break_cow(r.addr);
                    }
                    // SAFETY: process context, no spinlock held.
                    unsafe { ffi::rksm_cond_resched() };
                }
            }
            pass.forget();
        }
        self.slots.clear();
        self.current = 0;
        self.in_pass = false;
        stats::set(Stat::FullScans, 0);
    }
}

/// Decides what becomes of one page the walker found.
fn visit(slot: &mut PassState, vma: &Vma<'_>, found: Found, use_zero_pages: bool, zero_hash: u64) {
    let record = match found {
        Found::Zero { addr } => match slot.prev_record(addr) {
            // Still the zero page we put there: keep counting it.
            Some(r) if r.flags & ZERO_MERGED != 0 => *r,
            _ => return,
        },
        Found::Stable { addr, page: _ } => {
            stats::add(Stat::PagesScanned, 1);
            Record {
                addr,
                hash: 0,
                flags: 0,
            }
        }
        Found::Anon {
            addr,
            page,
            large: _,
        } => {
            stats::add(Stat::PagesScanned, 1);
            let hash = page.hash();
            let mut flags = 0;
            if use_zero_pages && hash == zero_hash && page.is_zero() {
                if merge(vma, addr, &page, None) {
                    flags = ZERO_MERGED;
                }
            }
            Record {
                addr,
                hash: hash as u32,
                flags,
            }
        }
    };
    // Without memory for the record the page only looks new again next pass.
    let _ = slot.next.push(record, GFP_KERNEL);
}

/// Merges `page` at `addr` into `into` (None: the zero page) and counts a failure's reason.
fn merge(vma: &Vma<'_>, addr: usize, page: &PageRef, into: Option<&PageRef>) -> bool {
    let reason = match vma.replace_page(addr, page, into) {
        Ok(()) => return true,
        Err(MergeError::Pinned) => Stat::MergeFailPinned,
        Err(MergeError::Changed) => Stat::MergeFailChanged,
        Err(MergeError::Contended) => Stat::MergeFailContended,
        Err(MergeError::Gone | MergeError::Large) => return false,
    };
    stats::add(reason, 1);
    false
}
