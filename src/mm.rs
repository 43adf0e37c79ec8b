// SPDX-License-Identifier: GPL-2.0

//! Safe handles on address spaces: [`Mm`] (the struct, kept by `mmgrab`), [`MmUser`] (the
//! address space, kept by `mmget`), [`MmapReadGuard`] and [`Vma`].
//!
//! Lock order (rksm never takes these the other way round):
//! mmap_lock (read) -> folio lock of the stable page -> folio lock of the candidate -> PTL.
//! The last three are taken only inside `rksm_replace_pte` in the shim.

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::prelude::*;

use crate::ffi;
use crate::page::PageRef;

/// An mm whose `struct mm_struct` stays allocated while this lives.
///
/// # Invariants
///
/// `ptr` points to an `mm_struct` on which this object owns one `mmgrab` reference.
pub(crate) struct Mm {
    ptr: NonNull<ffi::Mm>,
}

// SAFETY: an `mmgrab` reference may be dropped from any process context.
unsafe impl Send for Mm {}

impl Mm {
    /// Appends to `mms` every mm that opted in to merging, or with `all` every user mm, that
    /// is not in `mms` yet.
    pub(crate) fn collect(all: bool, mms: &mut KVec<Mm>) -> Result {
        let mut found: KVec<*mut ffi::Mm> = KVec::with_capacity(64, GFP_KERNEL)?;
        loop {
            let cap = found.capacity().min(c_int::MAX as usize);
            // SAFETY: `found` has room for `cap` pointers; kthread context, no locks held.
            let n = unsafe { ffi::rksm_collect_mms(found.as_mut_ptr(), cap as c_int, all) };
            let n = usize::try_from(n).unwrap_or(0);
            let stored = n.min(cap);
            // SAFETY: the shim wrote `stored` valid pointers to the start of the buffer.
            unsafe { found.inc_len(stored) };
            if n <= cap {
                break;
            }
            // More processes than room: drop these references and try again, bigger.
            for mm in found.drain_all() {
                // SAFETY: the shim took one `mmgrab` reference for each stored pointer.
                unsafe { ffi::rksm_mmdrop(mm) };
            }
            found.reserve(n + 16, GFP_KERNEL)?;
        }
        for ptr in found.drain_all() {
            let Some(ptr) = NonNull::new(ptr) else {
                continue;
            };
            // INVARIANT: the shim took one `mmgrab` reference for us.
            let mm = Mm { ptr };
            if !mms.iter().any(|m| m.id() == mm.id()) {
                mms.push(mm, GFP_KERNEL)?;
            }
        }
        Ok(())
    }

    /// A stable identity for this mm while it is held.
    pub(crate) fn id(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Whether the mm still opts in (MADV_MERGEABLE anywhere or PR_SET_MEMORY_MERGE).
    pub(crate) fn opted_in(&self) -> bool {
        // SAFETY: by the type invariant the mm_struct is allocated; the flags are atomic bits.
        unsafe { ffi::rksm_mm_opted_in_now(self.ptr.as_ptr()) }
    }

    /// Pins the address space, unless the process is exiting.
    pub(crate) fn user(&self) -> Option<MmUser<'_>> {
        // SAFETY: by the type invariant the mm_struct is allocated.
        if unsafe { ffi::rksm_mmget_not_zero(self.ptr.as_ptr()) } {
            // INVARIANT: we just took the `mmget` reference.
            Some(MmUser { mm: self })
        } else {
            None
        }
    }
}

impl Drop for Mm {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one `mmgrab` reference.
        unsafe { ffi::rksm_mmdrop(self.ptr.as_ptr()) };
    }
}

/// An address space that cannot be torn down while this lives.
///
/// # Invariants
///
/// This object owns one `mmget` reference on `mm`.
pub(crate) struct MmUser<'a> {
    mm: &'a Mm,
}

impl MmUser<'_> {
    /// Takes the mmap lock for read.
    pub(crate) fn read_lock(&self) -> MmapReadGuard<'_> {
        // SAFETY: the mm is pinned (type invariant); kthread context may sleep.
        unsafe { ffi::rksm_mmap_read_lock(self.mm.ptr.as_ptr()) };
        // INVARIANT: we just took the lock.
        MmapReadGuard { mm: self.mm }
    }
}

impl Drop for MmUser<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one `mmget` reference.
        unsafe { ffi::rksm_mmput(self.mm.ptr.as_ptr()) };
    }
}

/// The mmap lock of a pinned mm, held for read.
///
/// # Invariants
///
/// This object holds `mm`'s mmap lock for read, and `mm`'s address space is pinned.
pub(crate) struct MmapReadGuard<'a> {
    mm: &'a Mm,
}

impl MmapReadGuard<'_> {
    pub(crate) fn raw_mm(&self) -> *mut ffi::Mm {
        self.mm.ptr.as_ptr()
    }

    /// The first VMA that ends above `addr`.
    pub(crate) fn vma_next(&self, addr: usize) -> Option<Vma<'_>> {
        // SAFETY: the mmap lock is held (type invariant).
        let ptr = unsafe { ffi::rksm_vma_next(self.raw_mm(), addr as c_ulong) };
        // INVARIANT: `find_vma` returns a VMA of this mm, valid while the lock is held.
        NonNull::new(ptr).map(|ptr| Vma {
            ptr,
            _guard: PhantomData,
        })
    }

    /// Whether `addr` maps the shared zero page now.
    pub(crate) fn maps_zero_page(&self, addr: usize) -> bool {
        // SAFETY: the mmap lock is held (type invariant); a NULL file is never compared.
        let kind =
            unsafe { ffi::rksm_pte_kind(self.raw_mm(), addr as c_ulong, core::ptr::null_mut()) };
        kind == ffi::HIT_ZERO as c_int
    }

    /// The anonymous page mapped at `addr` now, with a reference.
    pub(crate) fn anon_page_at(&self, addr: usize) -> Option<PageRef> {
        // SAFETY: the mmap lock is held (type invariant).
        let page = unsafe { ffi::rksm_anon_page_at(self.raw_mm(), addr as c_ulong) };
        // SAFETY: the shim took a folio reference for us.
        NonNull::new(page).map(|p| unsafe { PageRef::from_raw(p) })
    }

    /// Whether `addr` maps a page of `stable_file` now.
    pub(crate) fn maps_stable_page(&self, addr: usize, stable_file: *mut ffi::File) -> bool {
        // SAFETY: the mmap lock is held (type invariant); `stable_file` is only compared.
        let kind = unsafe { ffi::rksm_pte_kind(self.raw_mm(), addr as c_ulong, stable_file) };
        kind == ffi::HIT_STABLE as c_int
    }

    /// Breaks a merge at `addr` with a forced write fault.
    pub(crate) fn break_cow(&self, addr: usize) -> Result {
        // SAFETY: the mmap lock is held (type invariant) and the mm is pinned.
        let err = unsafe { ffi::rksm_break_cow(self.raw_mm(), addr as c_ulong) };
        if err < 0 {
            return Err(Error::from_errno(err));
        }
        Ok(())
    }
}

impl Drop for MmapReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold the lock.
        unsafe { ffi::rksm_mmap_read_unlock(self.raw_mm()) };
    }
}

/// What rksm may do with a VMA.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum VmaKind {
    /// Opted in: scan and merge.
    Mergeable,
    /// Private anonymous but not opted in (any merges left here must be undone).
    Anon,
    /// Anything else.
    Other,
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
}

/// A VMA of an mm whose mmap lock is held.
///
/// # Invariants
///
/// `ptr` is a VMA of the guard's mm, valid for `'g` because the guard holds the mmap lock.
pub(crate) struct Vma<'g> {
    ptr: NonNull<ffi::Vma>,
    _guard: PhantomData<&'g MmapReadGuard<'g>>,
}

impl Vma<'_> {
    /// First address.
    pub(crate) fn start(&self) -> usize {
        // SAFETY: the VMA is valid (type invariant).
        unsafe { ffi::rksm_vma_start(self.ptr.as_ptr()) as usize }
    }

    /// One past the last address.
    pub(crate) fn end(&self) -> usize {
        // SAFETY: the VMA is valid (type invariant).
        unsafe { ffi::rksm_vma_end(self.ptr.as_ptr()) as usize }
    }

    /// Whether rksm may merge here.
    pub(crate) fn kind(&self) -> VmaKind {
        // SAFETY: the VMA is valid (type invariant).
        match unsafe { ffi::rksm_vma_kind(self.ptr.as_ptr()) } {
            ffi::VMA_MERGEABLE => VmaKind::Mergeable,
            ffi::VMA_ANON => VmaKind::Anon,
            _ => VmaKind::Other,
        }
    }

    /// Replaces the mapping of `old` at `addr` by a read-only mapping of `new`, or of the zero
    /// page, if the contents are equal and `old` is not pinned. `Ok(true)` if a large folio was
    /// split to do so.
    pub(crate) fn replace_page(
        &self,
        addr: usize,
        old: &PageRef,
        new: Option<&PageRef>,
    ) -> core::result::Result<bool, MergeError> {
        if addr < self.start() || addr >= self.end() {
            return Err(MergeError::Gone);
        }
        let new = new.map_or(core::ptr::null_mut(), |p| p.as_raw());
        let mut split = false;
        // SAFETY: the mmap lock is held (type invariant), `addr` lies in the VMA, and the
        // `PageRef`s hold references on both pages; `split` is a local.
        match unsafe {
            ffi::rksm_replace_pte(
                self.ptr.as_ptr(),
                addr as c_ulong,
                old.as_raw(),
                new,
                &mut split,
            )
        } {
            0 => Ok(split),
            ffi::MERGE_PINNED => Err(MergeError::Pinned),
            ffi::MERGE_CHANGED => Err(MergeError::Changed),
            ffi::MERGE_CONTENDED => Err(MergeError::Contended),
            ffi::MERGE_LARGE => Err(MergeError::Large),
            _ => Err(MergeError::Gone),
        }
    }
}
