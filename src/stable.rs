// SPDX-License-Identifier: GPL-2.0

//! Stable pages: the read-only pages merged mappings share.
//!
//! A stable page is a KSM folio of rksm's (qemu/patches/0004): the first page of a merged pair,
//! write-protected in place, whose `folio->mapping` points to a [`ffi::ProviderNode`] that this
//! file owns. The node lists every mapping rksm made (mm, anon_vma, address), as KSM's
//! rmap_items do, so the core's reverse-map walks find them all, forked children included:
//! reclaim swaps a stable page out, compaction and migration move it, memory-failure finds its
//! users, and MADV_UNMERGEABLE, the prctl and mremap break its mappings, as for KSM's.
//!
//! rksm holds no reference on a stable page. Like KSM's `ksm_get_folio`, it finds the folio by
//! pfn and checks that its mapping still points to the node; a page that was freed (its last
//! mapping gone, or swapped out and dropped) is then seen as gone. Zero-filled pages map the
//! shared zero page instead and need no stable page.
//!
//! Rules this file keeps: while a folio points to a node, the node and its reverse map stay
//! where they are and change only under that folio's lock, which every walk takes first; a
//! node is freed only once no folio points to it; the module stays loaded while any stable
//! page exists.

use core::cmp::Ordering;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use kernel::mm::virt::VmaRef;
use kernel::prelude::*;

use crate::ffi;
use crate::mm::{self, MergeError};
use crate::page::PageRef;

/// Stable pages that exist; while not zero, the module holds a reference on itself.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many stable pages exist.
pub(crate) fn live() -> usize {
    LIVE.load(AtomicOrdering::Relaxed)
}

/// Stable pages let go of while still mapped (out of memory for the tree): nothing tracks
/// their mappings any more, only a sweep of the page tables finds them.
static LEAKED: AtomicUsize = AtomicUsize::new(0);

/// Whether a stable page was ever let go of while mapped.
pub(crate) fn any_leaked() -> bool {
    LEAKED.load(AtomicOrdering::Relaxed) != 0
}

/// A stable page's folio, found and locked by [`StablePage::lock`]: the lock that lets rksm
/// change the node.
struct FolioLock(core::ptr::NonNull<ffi::Page>);

impl Drop for FolioLock {
    fn drop(&mut self) {
        // SAFETY: The page was locked and referenced by `rksm_stable_get` (see `lock`).
        unsafe { ffi::rksm_stable_put(self.0.as_ptr(), true) };
    }
}

/// One stable page.
///
/// # Invariants
///
/// `node.rmap` points to `rmap`'s buffer and `node.nr` equals `rmap.len()` whenever rksm does
/// not hold the folio lock; every entry in `rmap` holds an anon_vma reference. Unless
/// `detached`, a folio may point to `node`, which is then never freed. This object counts in
/// [`LIVE`].
pub(crate) struct StablePage {
    node: ManuallyDrop<KBox<ffi::ProviderNode>>,
    rmap: KVVec<ffi::ProviderRmap>,
    detached: bool,
}

// SAFETY: Only rksmd uses a stable page; the core reads the node under the folio lock.
unsafe impl Send for StablePage {}

impl StablePage {
    /// A node for a page that is to become stable, with room for a pair's two mappings.
    pub(crate) fn new() -> Result<Self> {
        let rmap = KVVec::with_capacity(2, GFP_KERNEL)?;
        let node = KBox::new(
            ffi::ProviderNode {
                kpfn: 0,
                nr: 0,
                rmap: core::ptr::null_mut(),
            },
            GFP_KERNEL,
        )?;
        if LIVE.fetch_add(1, AtomicOrdering::Relaxed) == 0 {
            // SAFETY: We are module code, running.
            if !unsafe { ffi::rksm_module_get() } {
                LIVE.fetch_sub(1, AtomicOrdering::Relaxed);
                return Err(EBUSY);
            }
        }
        let mut page = Self {
            node: ManuallyDrop::new(node),
            rmap,
            detached: true,
        };
        page.sync();
        Ok(page)
    }

    /// Points the node at the reverse map as it is now.
    fn sync(&mut self) {
        self.node.rmap = self.rmap.as_mut_ptr();
        self.node.nr = self.rmap.len() as c_uint;
    }

    fn node_ptr(&mut self) -> *mut ffi::ProviderNode {
        &mut **self.node
    }

    /// The folio with a reference (and locked if `lock`): `Err(true)` if it is gone,
    /// `Err(false)` if it is locked by someone else.
    fn get(&self, lock: bool) -> core::result::Result<core::ptr::NonNull<ffi::Page>, bool> {
        let mut stale = false;
        let node = core::ptr::from_ref::<ffi::ProviderNode>(&self.node).cast_mut();
        // SAFETY: The node is valid (we own it); the shim only reads it; `stale` is a local.
        let page = unsafe { ffi::rksm_stable_get(node, lock, &mut stale) };
        core::ptr::NonNull::new(page).ok_or(stale)
    }

    fn lock(&self) -> core::result::Result<FolioLock, bool> {
        self.get(true).map(FolioLock)
    }

    /// The page, with a reference, unless it is gone (or busy a moment).
    pub(crate) fn page(&self) -> Option<PageRef> {
        // SAFETY: The folio reference `rksm_stable_get` took is handed to the `PageRef`.
        self.get(false)
            .ok()
            .map(|p| unsafe { PageRef::from_raw(p) })
    }

    /// How many PTEs map it now (the ground truth: forks add mappings rksm never sees), or
    /// `None` if it is gone.
    pub(crate) fn mapcount(&self) -> Option<u32> {
        self.page().map(|page| Self::mapcount_of(&page))
    }

    /// How many PTEs map `own`, this page as [`StablePage::page`] found it.
    pub(crate) fn mapcount_of(own: &PageRef) -> u32 {
        // SAFETY: The `PageRef` holds a reference on the page.
        let n = unsafe { ffi::rksm_stable_mapcount(own.as_raw()) };
        u32::try_from(n).unwrap_or(0)
    }

    /// How this page's bytes compare with `page`'s (`None` if it is gone).
    pub(crate) fn cmp_content(&self, page: &PageRef) -> Option<Ordering> {
        self.page().map(|own| own.cmp_content(page))
    }

    /// Whether `page` is this stable page.
    pub(crate) fn is(&self, page: &PageRef) -> bool {
        let node = core::ptr::from_ref::<ffi::ProviderNode>(&self.node);
        // SAFETY: We own the node; `page` holds a reference.
        unsafe { ffi::rksm_stable_is(node, page.as_raw()) }
    }

    /// Reverse-map entries rksm made.
    pub(crate) fn entries(&self) -> usize {
        self.rmap.len()
    }

    /// What the node and its reverse map take.
    pub(crate) fn bytes(&self) -> usize {
        // kmalloc-32 for the node.
        32 + self.rmap.capacity() * core::mem::size_of::<ffi::ProviderRmap>()
    }

    /// Makes `page`, mapped at `addr` of `vma`, this stable page, in place. `Ok(true)` if a
    /// large folio was split. The borrow of `vma` shows the mmap lock held.
    pub(crate) fn make(
        &mut self,
        vma: &VmaRef,
        addr: usize,
        page: &PageRef,
    ) -> core::result::Result<bool, MergeError> {
        if !self.detached || self.rmap.capacity() == 0 || !vma_holds(vma, addr) || !page.pinned() {
            return Err(MergeError::Gone);
        }
        self.sync();
        let mut split = false;
        let node = self.node_ptr();
        // SAFETY: The mmap lock is held (the VMA is borrowed from a `Locked`) and `addr` lies in
        // the VMA; `page` holds a reference; no folio points to the node yet and its reverse
        // map has room for one entry (checked above); the node stays at its address (a KBox)
        // until `try_detach`.
        let rc = unsafe {
            ffi::rksm_stable_make(
                vma.as_ptr().cast(),
                addr as c_ulong,
                page.as_raw(),
                node,
                &mut split,
            )
        };
        if rc == 0 {
            self.detached = false;
            self.follow();
        }
        mm::merge_result(rc, split)
    }

    /// Replaces `old`, mapped at `addr` of `vma`, by a mapping of this page (`own`, found by
    /// [`StablePage::page`]), if the contents are equal and `old` is not pinned.
    pub(crate) fn merge(
        &mut self,
        vma: &VmaRef,
        addr: usize,
        old: &PageRef,
        own: &PageRef,
    ) -> core::result::Result<bool, MergeError> {
        if self.detached || !vma_holds(vma, addr) || !old.pinned() || !own.pinned() {
            return Err(MergeError::Gone);
        }
        let room = c_uint::try_from(self.rmap.capacity()).unwrap_or(c_uint::MAX);
        let mut split = false;
        let node = self.node_ptr();
        // SAFETY: The mmap lock is held and `addr` lies in the VMA; both pages hold references,
        // and `own` was found for this node; `room` is the capacity of the buffer the node
        // points to (type invariant); `split` is a local.
        let rc = unsafe {
            ffi::rksm_replace_pte(
                vma.as_ptr().cast(),
                addr as c_ulong,
                old.as_raw(),
                own.as_raw(),
                node,
                room,
                &mut split,
            )
        };
        self.follow();
        mm::merge_result(rc, split)
    }

    /// Records that `addr` of `vma` maps this page, a mapping rksm did not make (a fork copied
    /// it), as KSM's stable_tree_append does when its scan meets one: the core's walks then
    /// find it even once the mapping it was copied from is gone. False if that is not possible
    /// now (the folio is busy or gone, or no memory). The borrow of `vma` shows the mmap lock
    /// held.
    pub(crate) fn adopt(&mut self, vma: &VmaRef, addr: usize) -> bool {
        if self.detached || !vma_holds(vma, addr) {
            return false;
        }
        let Ok(lock) = self.lock() else {
            return false;
        };
        let len = self.rmap.len();
        let room = self.grow_locked();
        if room {
            // SAFETY: The entry at `len` is within the capacity and not yet initialized; the
            // mmap lock is held and `addr` lies in `vma`, which is anonymous (it is mergeable).
            unsafe {
                ffi::rksm_rmap_fill(
                    self.rmap.as_mut_ptr().add(len),
                    vma.as_ptr().cast(),
                    addr as c_ulong,
                );
                self.rmap.inc_len(1);
            }
        }
        self.sync();
        drop(lock);
        room
    }

    /// Takes the entries the shim appended into `rmap`'s length.
    fn follow(&mut self) {
        let nr = self.node.nr as usize;
        let len = self.rmap.len();
        if nr > len && nr <= self.rmap.capacity() {
            // SAFETY: The shim initialized the entries from `len` to `nr`, within the capacity.
            unsafe { self.rmap.inc_len(nr - len) };
        }
    }

    /// Whether the reverse map has room for one more mapping; if not, grows it under the folio
    /// lock (no walk can be reading the old buffer then). False if that is not possible now.
    pub(crate) fn make_room(&mut self) -> bool {
        if self.rmap.len() < self.rmap.capacity() {
            return true;
        }
        let Ok(_lock) = self.lock() else {
            return false;
        };
        let grown = self.grow_locked();
        self.sync();
        grown
    }

    /// Room for one more entry, doubling the reverse map if it is full. Only under the folio
    /// lock, when no walk reads the buffer, so that it may move; the caller syncs the node.
    fn grow_locked(&mut self) -> bool {
        let len = self.rmap.len();
        len < self.rmap.capacity() || self.rmap.reserve(len.max(2), GFP_KERNEL).is_ok()
    }

    /// Drops the entries for which `keep(index)` is false (called once per entry, in order),
    /// under the folio lock. False, doing nothing, if the lock is not free now.
    pub(crate) fn prune(&mut self, mut keep: impl FnMut(usize) -> bool) -> bool {
        let lock = if self.detached {
            None
        } else {
            match self.lock() {
                Ok(lock) => Some(lock),
                Err(true) => None,
                Err(false) => return false,
            }
        };
        let mut i = 0;
        self.rmap.retain(|r| {
            let k = keep(i);
            i += 1;
            if !k {
                // SAFETY: The entry holds a reference (type invariant) and no walk can reach it
                // once we let go of the folio lock (or the folio is gone).
                unsafe { ffi::rksm_rmap_put(r) };
            }
            k
        });
        self.sync();
        drop(lock);
        true
    }

    /// Lets the page go if nothing maps it and (unless `force`) no swap entry may bring it
    /// back; true once no folio points to the node, so that it can be freed.
    pub(crate) fn try_detach(&mut self, force: bool) -> bool {
        if self.detached {
            return true;
        }
        self.detached = match self.lock() {
            // SAFETY: The page was found and locked by `lock`.
            Ok(lock) => unsafe { ffi::rksm_stable_detach(lock.0.as_ptr(), force) },
            Err(gone) => gone,
        };
        self.detached
    }
}

/// Whether `addr` lies in `vma`.
fn vma_holds(vma: &VmaRef, addr: usize) -> bool {
    vma.start() <= addr && addr < vma.end()
}

impl Drop for StablePage {
    fn drop(&mut self) {
        if self.try_detach(true) {
            for r in self.rmap.iter_mut() {
                // SAFETY: The entry holds a reference (type invariant); no folio points to the
                // node, so no walk reaches it.
                unsafe { ffi::rksm_rmap_put(r) };
            }
            // SAFETY: No folio points to the node any more and it is dropped only here.
            unsafe { ManuallyDrop::drop(&mut self.node) };
        } else {
            // Still mapped: the core may walk the node for as long as the page lives. Leaking
            // node and reverse map is the safe answer (the core reads data, no module code).
            pr_warn!("a stable page is still mapped; its node stays allocated\n");
            LEAKED.fetch_add(1, AtomicOrdering::Relaxed);
            core::mem::forget(core::mem::take(&mut self.rmap));
        }
        if LIVE.fetch_sub(1, AtomicOrdering::Relaxed) == 1 {
            // SAFETY: Balances the reference `new` took for the first stable page.
            unsafe { ffi::rksm_module_put() };
        }
    }
}
