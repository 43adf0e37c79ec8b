// SPDX-License-Identifier: GPL-2.0

//! [`PageRef`]: a page rksm holds a reference on.

use core::ptr::NonNull;

use kernel::ffi::c_uint;

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

// SAFETY: A folio reference may be dropped from any process context.
unsafe impl Send for PageRef {}

impl PageRef {
    /// Takes ownership of a reference the shim took.
    ///
    /// # Safety
    ///
    /// `ptr` is a valid page whose folio carries one reference that the caller hands over.
    pub(crate) unsafe fn from_raw(ptr: NonNull<ffi::Page>) -> Self {
        // SAFETY: The page is valid and referenced, so it cannot be split now.
        let folio = unsafe { ffi::rksm_page_folio(ptr.as_ptr()) };
        // INVARIANT: the caller hands over one reference, on `folio`.
        Self { ptr, folio }
    }

    pub(crate) fn as_raw(&self) -> *mut ffi::Page {
        self.ptr.as_ptr()
    }

    /// Whether the page still belongs to the folio the reference is on.
    ///
    /// A merge of ours may split the THP the page is part of: the reference then stays with
    /// the first page's folio, and a later page of the THP is held by nothing of ours (the
    /// split even frees a zero-filled one). Such a page must not be read or handed to the
    /// shim again; the next pass finds it as a page of its own. While this holds, nobody can
    /// split the folio (our reference is an extra pin), so it goes on holding until our next
    /// merge call.
    pub(crate) fn pinned(&self) -> bool {
        // SAFETY: The pointer is a valid struct page (the memmap is never freed); only its folio
        // head is read.
        unsafe { ffi::rksm_page_folio(self.as_raw()) == self.folio }
    }

    /// xxh64 of the content, keyed by rksm's per-boot secret (0 for a page no longer pinned).
    pub(crate) fn hash(&self) -> u64 {
        if !self.pinned() {
            return 0;
        }
        // SAFETY: The page is valid while it belongs to the folio we hold (checked above).
        unsafe { ffi::rksm_page_hash(self.as_raw()) }
    }

    /// Whether every byte is zero (false for a page no longer pinned).
    pub(crate) fn is_zero(&self) -> bool {
        // SAFETY: The page is valid while it belongs to the folio we hold (checked first).
        self.pinned() && unsafe { ffi::rksm_page_is_zero(self.as_raw()) }
    }

    /// Whether both pages belong to one folio (a THP).
    pub(crate) fn same_folio(&self, other: &PageRef) -> bool {
        // SAFETY: Both pages are valid while their references are held (type invariant).
        unsafe { ffi::rksm_same_folio(self.as_raw(), other.as_raw()) }
    }

    /// How the bytes of this page compare with `other`'s right now (`memcmp`). A page no
    /// longer pinned is not read: `other` then sorts first (a missed merge, never a wrong one).
    pub(crate) fn cmp_content(&self, other: &PageRef) -> core::cmp::Ordering {
        if !self.pinned() || !other.pinned() {
            return core::cmp::Ordering::Greater;
        }
        // SAFETY: Both pages are valid while they belong to the folios we hold (checked above).
        let c = unsafe { ffi::rksm_pages_cmp(self.as_raw(), other.as_raw()) };
        c.cmp(&0)
    }

    /// Whether both pages hold the same bytes right now (false if either is no longer pinned).
    pub(crate) fn same_content(&self, other: &PageRef) -> bool {
        // SAFETY: Both pages are valid while they belong to the folios we hold (checked first).
        self.pinned()
            && other.pinned()
            && unsafe { ffi::rksm_pages_equal(self.as_raw(), other.as_raw()) }
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference on `folio`.
        unsafe { ffi::rksm_folio_put(self.folio) };
    }
}

/// How many references [`Releases`] gathers before it drops them: one `folio_batch`.
const RELEASE_BATCH: usize = 31;

/// References to drop together: pages rksm merged away, whose last reference is usually the
/// walk's. Dropped one by one, each freed page costs a memcg uncharge and a trip to the
/// per-CPU free lists of its own; `folios_put` does both once per batch.
///
/// Only pages that nothing will look up again belong here: a reference held on, on a page
/// that is to be merged, would make it look pinned.
///
/// # Invariants
///
/// `folios[..len]` each carry one reference owned by this object.
pub(crate) struct Releases {
    folios: [*mut ffi::Folio; RELEASE_BATCH],
    len: usize,
}

// SAFETY: Folio references may be dropped from any process context.
unsafe impl Send for Releases {}

impl Releases {
    pub(crate) fn new() -> Self {
        Self {
            folios: [core::ptr::null_mut(); RELEASE_BATCH],
            len: 0,
        }
    }

    /// Drops `page`'s reference with the next batch.
    pub(crate) fn push(&mut self, page: PageRef) {
        if self.len == RELEASE_BATCH {
            self.flush();
        }
        let page = core::mem::ManuallyDrop::new(page);
        if let Some(slot) = self.folios.get_mut(self.len) {
            // INVARIANT: the reference `page` owned moves here (`page` is not dropped).
            *slot = page.folio;
            self.len += 1;
        }
    }

    /// Drops every reference gathered so far.
    pub(crate) fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: The first `len` entries each carry a reference we own (type invariant),
        // handed over here; `len` is reset so none is dropped twice.
        unsafe { ffi::rksm_folios_put(self.folios.as_mut_ptr(), self.len as c_uint) };
        self.len = 0;
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        self.flush();
    }
}
