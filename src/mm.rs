// SPDX-License-Identifier: GPL-2.0

//! What rksm needs of address spaces beyond the kernel crate's [`kernel::mm`]: finding the
//! opted-in mms, the VMA after an address, what a PTE maps, and replacing one.
//!
//! The handles are the kernel crate's: `ARef<Mm>` keeps the `mm_struct` (mmgrab),
//! `ARef<MmWithUser>` the address space (mmget), [`MmapReadGuard`] the mmap lock, [`VmaRef`] a
//! VMA. [`Locked`] pairs a read guard with its mm so the shim can be handed the raw pointer.
//!
//! Lock order (rksm never takes these the other way round):
//! mmap_lock (read) -> folio lock of the stable page -> folio lock of the candidate -> PTL.
//! The last three are taken only inside `rksm_replace_pte` and `rksm_stable_make` in the
//! shim. rksm never holds two mmap locks at once. Outside any mmap lock, rksmd may take a
//! stable page's folio lock alone (a trylock) to change its reverse map; a reverse-map walk
//! of the core takes it before the anon_vma lock, and so does rksm when it drops an entry.

use core::ptr::NonNull;

use kernel::mm::virt::{flags, VmaRef};
use kernel::mm::{Mm, MmWithUser, MmapReadGuard};
use kernel::prelude::*;
use kernel::sync::aref::ARef;

use crate::ffi;
use crate::merge_policy;
use crate::page::PageRef;

/// A stable identity for an mm while a reference on it is held: the table key.
pub(crate) fn id(mm: &Mm) -> usize {
    mm.as_raw() as usize
}

/// An mm found in a process, with that process's real uid (in the initial user namespace).
pub(crate) struct Process {
    pub(crate) mm: ARef<Mm>,
    pub(crate) uid: u32,
}

/// Appends to `out` every mm that opted in to merging.
pub(crate) fn collect(out: &mut KVVec<Process>) -> Result {
    let mut found: KVVec<*mut ffi::Mm> = KVVec::with_capacity(64, GFP_KERNEL)?;
    let mut uids: KVVec<u32> = KVVec::with_capacity(64, GFP_KERNEL)?;
    loop {
        let cap = found
            .capacity()
            .min(uids.capacity())
            .min(c_int::MAX as usize);
        // SAFETY: The `found` and `uids` have room for `cap` entries each; kthread context, no
        // locks held.
        let n =
            unsafe { ffi::rksm_collect_mms(found.as_mut_ptr(), uids.as_mut_ptr(), cap as c_int) };
        let n = usize::try_from(n).unwrap_or(0);
        let stored = n.min(cap);
        // SAFETY: The shim wrote `stored` valid pointers and uids to the start of the buffers.
        unsafe {
            found.inc_len(stored);
            uids.inc_len(stored);
        }
        if n <= cap {
            break;
        }
        // More processes than room: drop these references and try again, bigger.
        for mm in found.drain_all() {
            // SAFETY: The shim took one `mmgrab` reference for each stored pointer.
            unsafe { ffi::rksm_mmdrop(mm) };
        }
        uids.clear();
        found.reserve(n + 16, GFP_KERNEL)?;
        uids.reserve(n + 16, GFP_KERNEL)?;
    }
    out.reserve(found.len(), GFP_KERNEL)?;
    for (ptr, uid) in found.drain_all().zip(uids.iter().copied()) {
        let Some(ptr) = NonNull::new(ptr.cast::<Mm>()) else {
            continue;
        };
        // SAFETY: The shim took one `mmgrab` reference for us, which the `ARef` now owns;
        // `Mm` is a transparent wrapper of `mm_struct`.
        let mm = unsafe { ARef::from_raw(ptr) };
        // Cannot fail: the capacity was reserved above.
        let _ = out.push_within_capacity(Process { mm, uid });
    }
    Ok(())
}

/// Whether the mm still opts in (MADV_MERGEABLE anywhere or PR_SET_MEMORY_MERGE).
pub(crate) fn opted_in(mm: &Mm) -> bool {
    // SAFETY: The reference keeps the mm_struct allocated; the flags are atomic bits.
    unsafe { ffi::rksm_mm_opted_in_now(mm.as_raw().cast()) }
}

/// The mmap lock of a pinned mm, held for read, with the mm it belongs to.
pub(crate) struct Locked<'a> {
    mm: &'a MmWithUser,
    _guard: MmapReadGuard<'a>,
}

impl<'a> Locked<'a> {
    /// Takes the mmap lock of `mm` for read.
    pub(crate) fn new(mm: &'a MmWithUser) -> Self {
        Self {
            mm,
            _guard: mm.mmap_read_lock(),
        }
    }

    pub(crate) fn raw_mm(&self) -> *mut ffi::Mm {
        self.mm.as_raw().cast()
    }

    /// The first VMA that ends above `addr`.
    pub(crate) fn vma_next(&self, addr: usize) -> Option<&VmaRef> {
        // SAFETY: The mmap lock is held (`_guard`).
        let ptr = unsafe { ffi::rksm_vma_next(self.raw_mm(), addr as c_ulong) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: The pointer is a VMA of this mm that `find_vma` returned, valid while the
        // lock is held, which the borrow of `self` guarantees.
        Some(unsafe { VmaRef::from_raw(ptr.cast()) })
    }

    /// The VMA that holds `addr`, if it is mergeable (`merge_exec`: executable ones too).
    pub(crate) fn mergeable_vma(&self, addr: usize, merge_exec: bool) -> Option<&VmaRef> {
        self.vma_next(addr)
            .filter(|v| v.start() <= addr && kind(v, merge_exec) == VmaKind::Mergeable)
    }

    /// Whether `addr` maps the shared zero page now.
    pub(crate) fn maps_zero_page(&self, addr: usize) -> bool {
        // SAFETY: The mmap lock is held.
        let kind = unsafe { ffi::rksm_pte_kind(self.raw_mm(), addr as c_ulong) };
        kind == ffi::HIT_ZERO as c_int
    }

    /// The anonymous page mapped at `addr` now, with a reference.
    pub(crate) fn anon_page_at(&self, addr: usize) -> Option<PageRef> {
        // SAFETY: The mmap lock is held.
        let page = unsafe { ffi::rksm_anon_page_at(self.raw_mm(), addr as c_ulong) };
        // SAFETY: The shim took a folio reference for us.
        NonNull::new(page).map(|p| unsafe { PageRef::from_raw(p) })
    }

    /// Whether `addr` maps one of rksm's stable pages now.
    pub(crate) fn maps_stable_page(&self, addr: usize) -> bool {
        // SAFETY: The mmap lock is held.
        let kind = unsafe { ffi::rksm_pte_kind(self.raw_mm(), addr as c_ulong) };
        kind == ffi::HIT_STABLE as c_int
    }

    /// Whether `addr` maps one of rksm's stable pages now or may fault one back in (a swap or
    /// migration entry): what decides whether a reverse-map record is still of use.
    pub(crate) fn may_map_stable_page(&self, addr: usize) -> bool {
        // SAFETY: The mmap lock is held.
        let kind = unsafe { ffi::rksm_pte_kind(self.raw_mm(), addr as c_ulong) };
        kind == ffi::HIT_STABLE as c_int || kind == ffi::HIT_SWAP as c_int
    }

    /// Breaks a merge at `addr` with an unsharing fault, as KSM's `break_ksm` does.
    pub(crate) fn break_cow(&self, addr: usize) -> Result {
        // SAFETY: The mmap lock is held and the mm is pinned (`MmWithUser`).
        let err = unsafe { ffi::rksm_break_cow(self.raw_mm(), addr as c_ulong) };
        if err < 0 {
            return Err(Error::from_errno(err));
        }
        Ok(())
    }
}

/// What rksm may do with a VMA.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum VmaKind {
    /// Opted in: scan and merge.
    Mergeable,
    /// Private anonymous but not opted in, or executable without `merge_exec`: any merges
    /// left here must be undone.
    Anon,
    /// Anything else.
    Other,
}

/// Whether rksm may merge in `vma`: an executable VMA is mergeable only with `merge_exec`
/// (else it counts as [`VmaKind::Anon`], whose merges are undone).
pub(crate) fn kind(vma: &VmaRef, merge_exec: bool) -> VmaKind {
    // SAFETY: The VMA is valid while the borrow lasts (the mmap lock is held).
    match unsafe { ffi::rksm_vma_kind(vma.as_ptr().cast()) } {
        ffi::VMA_MERGEABLE
            if merge_policy::may_merge_vma(vma.flags() & flags::EXEC != 0, merge_exec) =>
        {
            VmaKind::Mergeable
        }
        ffi::VMA_MERGEABLE | ffi::VMA_ANON => VmaKind::Anon,
        _ => VmaKind::Other,
    }
}

/// Why a merge did not happen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergeError {
    /// The PTE maps something else now.
    Gone,
    /// Someone holds an extra reference (GUP pin, I/O).
    Pinned,
    /// The content differs.
    Changed,
    /// A folio lock was held by someone else.
    Contended,
    /// A large folio could not be split.
    Large,
    /// The stable page's reverse map had no room; grown, it may be tried again.
    NoRoom,
    /// The page is mapped elsewhere too (a fork shares it): it cannot become a stable page.
    Shared,
}

/// Replaces the mapping of `old` at `addr` of `vma` by a read-only mapping of the zero page,
/// if `old` is all zero and not pinned. `Ok(true)` if a large folio was split to do so. The
/// mmap lock of `vma`'s mm must be held, as the borrow shows. (Merges into stable pages:
/// [`crate::stable::StablePage`].)
pub(crate) fn zero_page(
    vma: &VmaRef,
    addr: usize,
    old: &PageRef,
) -> core::result::Result<bool, MergeError> {
    if addr < vma.start() || addr >= vma.end() || !old.pinned() {
        return Err(MergeError::Gone);
    }
    let mut split = false;
    // SAFETY: The mmap lock is held (the VMA is borrowed from a `Locked`), `addr` lies in the
    // VMA, and the `PageRef` holds a reference on `old` (pinned, checked above); with no new
    // page there is no node; `split` is a local.
    let rc = unsafe {
        ffi::rksm_replace_pte(
            vma.as_ptr().cast(),
            addr as c_ulong,
            old.as_raw(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            0,
            &mut split,
        )
    };
    merge_result(rc, split)
}

/// A shim merge's result code as a `Result`; `Ok(split)` on success.
pub(crate) fn merge_result(rc: c_int, split: bool) -> core::result::Result<bool, MergeError> {
    match rc {
        0 => Ok(split),
        ffi::MERGE_PINNED => Err(MergeError::Pinned),
        ffi::MERGE_CHANGED => Err(MergeError::Changed),
        ffi::MERGE_CONTENDED => Err(MergeError::Contended),
        ffi::MERGE_LARGE => Err(MergeError::Large),
        ffi::MERGE_NO_ROOM => Err(MergeError::NoRoom),
        ffi::MERGE_SHARED => Err(MergeError::Shared),
        _ => Err(MergeError::Gone),
    }
}
