// SPDX-License-Identifier: GPL-2.0

//! Stable pages: the read-only copies merged pages map. Each is a page of rksm's own shmem
//! file (a merged page cannot be a KSM folio; see docs/design.md). Zero-filled pages map the
//! shared zero page instead and need no stable page.
//!
//! Lifetime rules this file keeps: a page of the file is truncated only when nothing maps it,
//! and the module stays loaded (holds a reference on itself) while any stable page exists.

use core::ptr::NonNull;

use kernel::prelude::*;

use crate::ffi;
use crate::page::PageRef;

/// One stable page.
///
/// # Invariants
///
/// `page` is page `index` of the [`StableFile`] that made it, and `page` holds a reference.
pub(crate) struct StablePage {
    page: PageRef,
    index: u64,
}

impl StablePage {
    /// The page itself.
    pub(crate) fn page(&self) -> &PageRef {
        &self.page
    }

    /// How many PTEs map it now: the ground truth, since forks add mappings rksm never sees.
    pub(crate) fn mapcount(&self) -> u32 {
        // SAFETY: the page is valid while we hold its reference (type invariant).
        let n = unsafe { ffi::rksm_page_mapcount(self.page.as_raw()) };
        u32::try_from(n).unwrap_or(0)
    }
}

/// rksm's shmem file, the home of every stable page.
///
/// # Invariants
///
/// `file` is a file from `rksm_stable_file_create` that we own a reference on. `live` counts
/// its pages handed out as [`StablePage`]s; while it is not zero, the module holds a reference
/// on itself.
pub(crate) struct StableFile {
    file: NonNull<ffi::File>,
    free_indices: KVec<u64>,
    next_index: u64,
    live: usize,
}

// SAFETY: the file is only used by rksmd, and a file reference may be dropped anywhere.
unsafe impl Send for StableFile {}

impl StableFile {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: process context.
        let file = NonNull::new(unsafe { ffi::rksm_stable_file_create() }).ok_or(ENOMEM)?;
        Ok(Self {
            file,
            free_indices: KVec::new(),
            next_index: 0,
            live: 0,
        })
    }

    /// The file, to tell its pages apart from others in the page tables.
    pub(crate) fn raw(&self) -> *mut ffi::File {
        self.file.as_ptr()
    }

    /// How many stable pages exist.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// A new stable page holding a copy of `src`.
    pub(crate) fn alloc(&mut self, src: &PageRef) -> Result<StablePage> {
        if self.live == 0 {
            // SAFETY: we are module code, running.
            if !unsafe { ffi::rksm_module_get() } {
                return Err(EBUSY);
            }
        }
        let index = self.free_indices.pop().unwrap_or(self.next_index);
        // SAFETY: the file is ours (type invariant); `src` holds a reference.
        let page =
            unsafe { ffi::rksm_stable_page_alloc(self.raw(), index as c_ulong, src.as_raw()) };
        let Some(page) = NonNull::new(page) else {
            self.release_index(index);
            return Err(ENOMEM);
        };
        if index == self.next_index {
            self.next_index += 1;
        }
        self.live += 1;
        // SAFETY: the shim handed us the page's reference.
        let page = unsafe { PageRef::from_raw(page) };
        // INVARIANT: `page` is page `index` of this file.
        Ok(StablePage { page, index })
    }

    /// Frees `page` if nothing maps it; otherwise hands it back.
    pub(crate) fn free(&mut self, page: StablePage) -> core::result::Result<(), StablePage> {
        let raw = page.page.as_raw();
        // SAFETY: `raw` is page `page.index` of our file with a reference we own; on success the
        // shim consumed that reference, so it must not be dropped again.
        if !unsafe { ffi::rksm_stable_page_free(self.raw(), page.index as c_ulong, raw) } {
            return Err(page);
        }
        let index = page.index;
        core::mem::forget(page);
        self.live -= 1;
        self.release_index(index);
        Ok(())
    }

    /// Makes `index` reusable; if this was the last stable page, lets the module go.
    fn release_index(&mut self, index: u64) {
        // Without memory for the free list the index is simply never reused.
        let _ = self.free_indices.push(index, GFP_KERNEL);
        if self.live == 0 {
            self.free_indices.clear();
            self.next_index = 0;
            // SAFETY: balances the reference `alloc` took when the first page was made.
            unsafe { ffi::rksm_module_put() };
        }
    }
}

impl Drop for StableFile {
    fn drop(&mut self) {
        if self.live != 0 {
            // Unreachable while the module holds a reference on itself for these pages. Should
            // it happen anyway, leaking the file is safe; truncating mapped pages is not.
            pr_err!(
                "{} stable pages still exist; keeping their file\n",
                self.live
            );
            return;
        }
        // SAFETY: we own the reference (type invariant) and no page of the file is mapped.
        unsafe { ffi::rksm_stable_file_put(self.raw()) };
    }
}
