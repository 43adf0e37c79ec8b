// SPDX-License-Identifier: GPL-2.0

//! [`PageRef`]: a page rksm holds a reference on.

use core::ptr::NonNull;

use crate::ffi;

/// A page with a folio reference owned by this object, so it cannot be freed while we hash,
/// compare or merge it.
///
/// # Invariants
///
/// `folio` has one reference owned by this object, and was `ptr`'s folio when it was taken.
/// `ptr` is valid while `folio` is; merging `ptr` may split `folio`, after which `ptr` belongs
/// to another folio, but the reference stays on `folio`.
pub(crate) struct PageRef {
    ptr: NonNull<ffi::Page>,
    folio: *mut ffi::Folio,
}

// SAFETY: a folio reference may be dropped from any process context.
unsafe impl Send for PageRef {}

impl PageRef {
    /// Takes ownership of a reference the shim took.
    ///
    /// # Safety
    ///
    /// `ptr` is a valid page whose folio carries one reference that the caller hands over.
    pub(crate) unsafe fn from_raw(ptr: NonNull<ffi::Page>) -> Self {
        // SAFETY: the page is valid and referenced, so it cannot be split now.
        let folio = unsafe { ffi::rksm_page_folio(ptr.as_ptr()) };
        // INVARIANT: the caller hands over one reference, on `folio`.
        Self { ptr, folio }
    }

    pub(crate) fn as_raw(&self) -> *mut ffi::Page {
        self.ptr.as_ptr()
    }

    /// xxh64 of the content, keyed by rksm's per-boot secret.
    pub(crate) fn hash(&self) -> u64 {
        // SAFETY: the page is valid while we hold the reference (type invariant).
        unsafe { ffi::rksm_page_hash(self.as_raw()) }
    }

    /// Whether every byte is zero.
    pub(crate) fn is_zero(&self) -> bool {
        // SAFETY: the page is valid while we hold the reference (type invariant).
        unsafe { ffi::rksm_page_is_zero(self.as_raw()) }
    }

    /// Whether both pages belong to one folio (a THP).
    pub(crate) fn same_folio(&self, other: &PageRef) -> bool {
        // SAFETY: both pages are valid while their references are held (type invariant).
        unsafe { ffi::rksm_same_folio(self.as_raw(), other.as_raw()) }
    }

    /// How the bytes of this page compare with `other`'s right now (`memcmp`).
    pub(crate) fn cmp_content(&self, other: &PageRef) -> core::cmp::Ordering {
        // SAFETY: Both pages are valid while their references are held (type invariant).
        let c = unsafe { ffi::rksm_pages_cmp(self.as_raw(), other.as_raw()) };
        c.cmp(&0)
    }

    /// Whether both pages hold the same bytes right now.
    pub(crate) fn same_content(&self, other: &PageRef) -> bool {
        // SAFETY: both pages are valid while their references are held (type invariant).
        unsafe { ffi::rksm_pages_equal(self.as_raw(), other.as_raw()) }
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one reference on `folio`.
        unsafe { ffi::rksm_folio_put(self.folio) };
    }
}
