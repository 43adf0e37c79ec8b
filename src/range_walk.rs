// SPDX-License-Identifier: GPL-2.0

//! rksm's page-table walker: from a start address to an end inside one VMA, it yields the
//! present pages and skips an empty pgd, p4d, pud or pmd with one check each, so a pass costs
//! in proportion to what is populated, not to the size of the VMA.

use core::ptr::NonNull;

use kernel::prelude::*;

use crate::ffi;
use crate::mm::Locked;
use crate::page::PageRef;

/// A present page the walker found.
pub(crate) enum Found {
    /// A small anonymous page, merge candidate.
    Anon { addr: usize, page: PageRef },
    /// A page of a large anonymous folio (a THP, PMD- or PTE-mapped), handed over without a
    /// reference: merging one page splits the folio, which a reference on each of its pages
    /// held by the batch would prevent. The engine looks the page up again when it visits it.
    Large { addr: usize },
    /// One of rksm's stable pages: already merged.
    Stable { addr: usize, page: PageRef },
    /// The shared zero page.
    Zero { addr: usize },
}

/// How many PTEs one shim call may report; bounds the stack used for hits.
const BATCH: usize = 32;

/// What one walk saw besides the pages it handed out.
#[derive(Default)]
pub(crate) struct WalkStats {
    /// Pages inside PMD-mapped THPs, which the walker does not descend into.
    pub(crate) thp_pages: usize,
}

/// Walks `[start, end)` (inside one VMA of `guard`'s mm) and hands each present page to `f`,
/// until `budget` anonymous or stable pages were found or `f` returns false. Returns where to
/// continue: `end` when the range is done.
pub(crate) fn walk(
    guard: &Locked<'_>,
    start: usize,
    end: usize,
    budget: &mut usize,
    stats: &mut WalkStats,
    mut f: impl FnMut(Found) -> bool,
) -> usize {
    let mm = guard.raw_mm();
    let end_c = end as c_ulong;
    let mut addr = start as c_ulong;
    while addr < end_c && *budget > 0 {
        // The mmap lock held by `guard` keeps the page tables down to the pmd allocated; the
        // shim reads entries without changing them.
        // SAFETY: The `mm` is pinned and its mmap lock is held by `guard`.
        let pgd = unsafe { ffi::rksm_pgd(mm, addr) };
        if pgd.is_null() {
            // SAFETY: Pure arithmetic.
            addr = unsafe { ffi::rksm_pgd_end(addr, end_c) };
            continue;
        }
        // SAFETY: As above; `pgd` is a present entry for `addr`.
        let p4d = unsafe { ffi::rksm_p4d(pgd, addr) };
        if p4d.is_null() {
            // SAFETY: Pure arithmetic.
            addr = unsafe { ffi::rksm_p4d_end(addr, end_c) };
            continue;
        }
        // SAFETY: As above; `p4d` is a present entry for `addr`.
        let pud = unsafe { ffi::rksm_pud(p4d, addr) };
        if pud.is_null() {
            // SAFETY: Pure arithmetic.
            addr = unsafe { ffi::rksm_pud_end(addr, end_c) };
            continue;
        }
        // SAFETY: Pure arithmetic.
        let pud_end = unsafe { ffi::rksm_pud_end(addr, end_c) };
        // One pud covers up to 512 pmds: walk them here rather than descending again.
        while addr < pud_end && *budget > 0 {
            // SAFETY: The `pud` is a present table entry covering `[addr, pud_end)`; the mmap lock
            // is held.
            addr = unsafe { ffi::rksm_pmd_skip_empty(pud, addr, pud_end) };
            if addr >= pud_end {
                break;
            }
            // SAFETY: Pure arithmetic.
            let next = unsafe { ffi::rksm_pmd_end(addr, pud_end) };
            // SAFETY: The `pud` is a present table entry covering `addr`.
            let pmd = unsafe { ffi::rksm_pmd(pud, addr) };
            // SAFETY: The `pmd` points into a table kept by the mmap lock.
            let (stop, more) = match unsafe { ffi::rksm_pmd_kind(pmd) } {
                ffi::PMD_TABLE => scan_table(guard, pmd, &[addr, next], addr, budget, &mut f),
                ffi::PMD_HUGE => scan_huge(guard, pmd, addr, next, budget, stats, &mut f),
                _ => (next, true),
            };
            addr = stop;
            if !more {
                return (addr as usize).min(end);
            }
        }
        // Once per populated pud (and per batch of PTEs in `scan_table`): TCG guests are slow
        // enough to trip the soft-lockup detector otherwise.
        // SAFETY: Process context, no spinlock held.
        unsafe { ffi::rksm_cond_resched() };
    }
    (addr as usize).min(end)
}

/// Hands out the pages of the anonymous THP `pmd` maps as [`Found::Large`], up to the budget.
fn scan_huge(
    guard: &Locked<'_>,
    pmd: *mut ffi::Pmd,
    mut addr: c_ulong,
    end: c_ulong,
    budget: &mut usize,
    stats: &mut WalkStats,
    f: &mut impl FnMut(Found) -> bool,
) -> (c_ulong, bool) {
    let mut hit = ffi::Hit {
        addr: 0,
        page: core::ptr::null_mut(),
        kind: 0,
    };
    // One look per THP that it is still an anonymous one (not the huge zero page).
    // SAFETY: The mmap lock is held; `pmd` came from `rksm_pmd` under it; `hit` is writable.
    let n = unsafe { ffi::rksm_scan_huge_pmd(guard.raw_mm(), pmd, addr, &mut hit) };
    let Some(ptr) = NonNull::new(hit.page).filter(|_| n == 1) else {
        // Split, collapsed or the huge zero page meanwhile: pass over it.
        stats.thp_pages += (end - addr) / kernel::page::PAGE_SIZE;
        return (end, true);
    };
    // SAFETY: The shim took a folio reference for the hit; dropping it gives it back.
    drop(unsafe { PageRef::from_raw(ptr) });
    while addr < end && *budget > 0 {
        *budget -= 1;
        let page = addr;
        addr += kernel::page::PAGE_SIZE as c_ulong;
        if !f(Found::Large { addr: page }) {
            return (addr, false);
        }
    }
    (addr, true)
}

/// The most ranges [`walk_ranges`] takes at once.
pub(crate) const MAX_RANGES: usize = 32;

/// Walks several ranges that all lie within one pmd's span (2 MiB), each inside one VMA, in
/// address order, as `ranges` (`[start0, end0, start1, end1, ...]`): one descent and one lock of
/// the PTE table per batch for all of them, where [`walk`] would take one per range. For
/// processes of many small VMAs. Returns where it stopped: the end of the last range when all
/// are done.
pub(crate) fn walk_ranges(
    guard: &Locked<'_>,
    ranges: &[c_ulong],
    budget: &mut usize,
    stats: &mut WalkStats,
    mut f: impl FnMut(Found) -> bool,
) -> usize {
    let (Some(&first), Some(&last)) = (ranges.first(), ranges.last()) else {
        return 0;
    };
    let mm = guard.raw_mm();
    // SAFETY: The `mm` is pinned and its mmap lock is held by `guard`; below, each entry passed on
    // is a present one for `first`.
    let pgd = unsafe { ffi::rksm_pgd(mm, first) };
    let p4d = if pgd.is_null() {
        core::ptr::null_mut()
    } else {
        // SAFETY: As above.
        unsafe { ffi::rksm_p4d(pgd, first) }
    };
    let pud = if p4d.is_null() {
        core::ptr::null_mut()
    } else {
        // SAFETY: As above.
        unsafe { ffi::rksm_pud(p4d, first) }
    };
    if pud.is_null() {
        // Nothing is mapped anywhere in this pmd's span.
        return last;
    }
    // SAFETY: As above.
    let pmd = unsafe { ffi::rksm_pmd(pud, first) };
    // SAFETY: The `pmd` points into a table kept by the mmap lock.
    match unsafe { ffi::rksm_pmd_kind(pmd) } {
        ffi::PMD_TABLE => scan_table(guard, pmd, ranges, first, budget, &mut f).0,
        ffi::PMD_HUGE => {
            // A THP spans the pmd, so it lies in one VMA: the ranges one at a time.
            for pair in ranges.chunks_exact(2) {
                let &[start, end] = pair else {
                    continue;
                };
                let stop = walk(guard, start, end, budget, stats, &mut f);
                if stop < end {
                    return stop;
                }
            }
            last
        }
        _ => last,
    }
}

/// Scans the `ranges` (flat `[start, end]` pairs, in one PTE table) from `addr` on, in
/// batches; returns where it stopped and whether `f` wants more.
fn scan_table(
    guard: &Locked<'_>,
    pmd: *mut ffi::Pmd,
    ranges: &[c_ulong],
    mut addr: c_ulong,
    budget: &mut usize,
    f: &mut impl FnMut(Found) -> bool,
) -> (c_ulong, bool) {
    let Some(&end) = ranges.last() else {
        return (addr, true);
    };
    let nranges = c_int::try_from(ranges.len() / 2).unwrap_or(0);
    let mut hits = [ffi::Hit {
        addr: 0,
        page: core::ptr::null_mut(),
        kind: 0,
    }; BATCH];
    while addr < end && *budget > 0 {
        let max = (*budget).min(BATCH) as c_int;
        let mut next: c_ulong = end;
        // SAFETY: The mmap lock is held; `pmd` came from `rksm_pmd` under it; the caller gives
        // `ranges` in address order, each in one VMA and all within this pmd; `hits` has room
        // for `max <= BATCH` entries.
        let n = unsafe {
            ffi::rksm_scan_ptes(
                guard.raw_mm(),
                pmd,
                ranges.as_ptr(),
                nranges,
                addr,
                hits.as_mut_ptr(),
                max,
                &mut next,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(BATCH);
        let mut more = true;
        for hit in hits.iter().take(n) {
            let page = NonNull::new(hit.page).map(|ptr| {
                // SAFETY: The shim took a folio reference for every hit with a page.
                unsafe { PageRef::from_raw(ptr) }
            });
            if !more {
                // `f` had enough: drop the rest of the batch (`page` goes out of scope here)
                // and resume at the first page it did not take.
                next = next.min(hit.addr);
                continue;
            }
            let addr = hit.addr;
            let found = match (page, hit.kind) {
                (None, _) => Found::Zero { addr },
                (Some(page), ffi::HIT_STABLE) => Found::Stable { addr, page },
                (Some(_), ffi::HIT_ANON_LARGE) => Found::Large { addr },
                (Some(page), _) => Found::Anon { addr, page },
            };
            if !matches!(found, Found::Zero { .. }) {
                *budget = budget.saturating_sub(1);
            }
            more = f(found);
        }
        addr = next;
        // SAFETY: Process context, no spinlock held (the shim dropped the PTL).
        unsafe { ffi::rksm_cond_resched() };
        if !more {
            return (addr, false);
        }
    }
    (addr, true)
}
