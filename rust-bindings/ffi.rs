// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C glue in `rust-bindings/*.c` (one file per concern; see `shim.h`).
//!
//! Only `src/` wrappers call these; each wrapper states why its call is sound.

use kernel::prelude::*;

macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[repr(C)]
        pub(crate) struct $name {
            _opaque: [u8; 0],
        }
    )*};
}

opaque! {
    /// `struct task_struct`, opaque: the shim does every field access.
    Task;
    /// `struct mm_struct`.
    Mm;
    /// `struct vm_area_struct`.
    Vma;
    /// `struct page`.
    Page;
    /// `pgd_t`.
    Pgd;
    /// `p4d_t`.
    P4d;
    /// `pud_t`.
    Pud;
    /// `pmd_t`.
    Pmd;
    /// `struct folio`.
    Folio;
}

// Keep in sync with rust-bindings/shim.h.
/// [`rksm_vma_kind`]: VM_MERGEABLE private anonymous memory with an anon_vma.
pub(crate) const VMA_MERGEABLE: c_int = 1;
/// [`rksm_vma_kind`]: private anonymous, not mergeable.
pub(crate) const VMA_ANON: c_int = 2;
/// [`rksm_pmd_kind`]: a PTE table.
pub(crate) const PMD_TABLE: c_int = 1;
/// [`rksm_pmd_kind`]: a THP.
pub(crate) const PMD_HUGE: c_int = 2;
/// [`Hit::kind`]: a page of a large anonymous folio.
pub(crate) const HIT_ANON_LARGE: c_uint = 2;
/// [`Hit::kind`]: a page of rksm's stable file.
pub(crate) const HIT_STABLE: c_uint = 3;
/// [`Hit::kind`]: the shared zero page (no reference taken).
pub(crate) const HIT_ZERO: c_uint = 4;
/// [`rksm_pte_kind`]: a swap or migration entry, which may fault a stable page back in.
pub(crate) const HIT_SWAP: c_uint = 5;
/// [`rksm_replace_pte`]: someone else holds a reference.
pub(crate) const MERGE_PINNED: c_int = 2;
/// [`rksm_replace_pte`]: the content changed.
pub(crate) const MERGE_CHANGED: c_int = 3;
/// [`rksm_replace_pte`]: a folio lock was taken.
pub(crate) const MERGE_CONTENDED: c_int = 4;
/// [`rksm_replace_pte`]: a large folio could not be split.
pub(crate) const MERGE_LARGE: c_int = 5;
/// [`rksm_replace_pte`]: the stable page's reverse map has no room for the new mapping.
pub(crate) const MERGE_NO_ROOM: c_int = 6;
/// [`rksm_stable_make`]: a fork shares the page with other processes.
pub(crate) const MERGE_SHARED: c_int = 7;

/// `struct ksm_provider_rmap` (include/linux/ksm.h, qemu/patches/0004): one mapping of a
/// stable page, as KSM's rmap_item records it. The C glue fills it and holds the `anon_vma`
/// reference; stable_pages.c asserts the layout.
#[repr(C)]
pub(crate) struct ProviderRmap {
    mm: *mut Mm,
    anon_vma: *mut c_void,
    address: c_ulong,
    index: c_ulong,
}

/// `struct ksm_provider_node`: what a stable page's `folio->mapping` points to. The core reads
/// it under the folio lock (reverse-map walks) and moves `kpfn` on migration.
#[repr(C)]
pub(crate) struct ProviderNode {
    pub(crate) kpfn: c_ulong,
    pub(crate) nr: c_uint,
    pub(crate) rmap: *mut ProviderRmap,
}

/// [`rksm_memfd_hooks_register`]: the `memfd_alloc_file` hook (`memfd_noexec`) is in place.
pub(crate) const MEMFD_HOOK_CREATE: c_uint = 1;
/// [`rksm_memfd_hooks_register`]: the three `security_*` hooks (`memfd_exec`) are in place.
pub(crate) const MEMFD_HOOK_RUN: c_uint = 2;
/// A memfd hook saw an execution of a memfd.
pub(crate) const MEMFD_EXEC: c_int = 0;
/// A memfd hook saw a `memfd_create` of an executable memfd.
pub(crate) const MEMFD_CREATE: c_int = 3;

/// `struct rksm_hit`: one present PTE found by [`rksm_scan_ptes`].
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Hit {
    /// Its user address.
    pub(crate) addr: c_ulong,
    /// The page, with a folio reference unless `kind` is [`HIT_ZERO`].
    pub(crate) page: *mut Page,
    /// One of the `HIT_*` constants.
    pub(crate) kind: c_uint,
}

extern "C" {
    /// Creates `/sys/kernel/mm/rksm` with `n` files, whose callbacks (`rksm_attr_show` and
    /// `rksm_attr_store` in `src/sysfs.rs`) get `ctx`.
    ///
    /// # Safety
    ///
    /// `names` and `writable` point to `n` elements; every name is a NUL-terminated string that
    /// stays valid until [`rksm_sysfs_remove`], and so is what `ctx` points to. Must not be
    /// called again before that.
    pub(crate) fn rksm_sysfs_add(
        names: *const *const c_char,
        writable: *const bool,
        n: c_uint,
        ctx: *const c_void,
    ) -> c_int;

    /// Removes the directory created by [`rksm_sysfs_add`], waiting for running callbacks.
    ///
    /// # Safety
    ///
    /// [`rksm_sysfs_add`] succeeded and this was not called since.
    pub(crate) fn rksm_sysfs_remove();

    /// Starts kthread `rksmd` running `f(data)`; stores the task in `*task`, with a reference
    /// that [`rksm_kthread_stop`] drops (so `f` may return before it).
    ///
    /// # Safety
    ///
    /// `data` stays valid until the thread function returns; `task` is valid for writes.
    pub(crate) fn rksm_kthread_run(
        f: unsafe extern "C" fn(*mut c_void) -> c_int,
        data: *mut c_void,
        task: *mut *mut Task,
    ) -> c_int;

    /// Stops the kthread, waits for its function to return, and drops the task reference
    /// (`kthread_stop_put`).
    ///
    /// # Safety
    ///
    /// `task` came from [`rksm_kthread_run`] and was not stopped before.
    pub(crate) fn rksm_kthread_stop(task: *mut Task);

    /// Whether `kthread_stop` was called on the current kthread.
    ///
    /// # Safety
    ///
    /// The caller is a kthread.
    pub(crate) fn rksm_kthread_should_stop() -> bool;

    /// Makes the current kthread freezable.
    ///
    /// # Safety
    ///
    /// The caller is a kthread.
    pub(crate) fn rksm_kthread_set_freezable();

    /// `try_to_freeze()`: freezes the current task here if the freezer asked.
    ///
    /// # Safety
    ///
    /// Process context, and the caller holds no lock (freezing with a lock held can deadlock).
    pub(crate) fn rksm_try_to_freeze();

    /// `cond_resched()`.
    ///
    /// # Safety
    ///
    /// Process context, no spinlock held.
    pub(crate) fn rksm_cond_resched();

    /// The calling task's CPU time in ns (as of its last tick or context switch).
    ///
    /// # Safety
    ///
    /// Process context.
    pub(crate) fn rksm_current_cpu_ns() -> u64;

    /// Stores up to `max` opted-in mms in `out`, each with
    /// an `mmgrab` reference, and the real uid of the process each was found in at the same
    /// index of `uids`; returns how many there are.
    ///
    /// # Safety
    ///
    /// `out` and `uids` are valid for `max` writes. Process context, no spinlocks held.
    pub(crate) fn rksm_collect_mms(out: *mut *mut Mm, uids: *mut c_uint, max: c_int) -> c_int;
    /// Adds `merging` and `items` (either may be negative) to `mm`'s `ksm_merging_pages` and
    /// `ksm_rmap_items`, the counters of `/proc/<pid>/ksm_stat`.
    ///
    /// # Safety
    ///
    /// `mm` is a live `mm_struct` (an mm_count reference is held). Only `rksmd` calls this.
    pub(crate) fn rksm_mm_ksm_stat_add(mm: *mut Mm, merging: c_long, items: c_long);
    /// Whether `mm` is opted in (MMF_VM_MERGEABLE or MMF_VM_MERGE_ANY).
    pub(crate) fn rksm_mm_opted_in_now(mm: *mut Mm) -> bool;
    /// Drops an `mmgrab` reference.
    pub(crate) fn rksm_mmdrop(mm: *mut Mm);

    /// `find_vma`: the first VMA ending above `addr`. The mmap lock is held.
    pub(crate) fn rksm_vma_next(mm: *mut Mm, addr: c_ulong) -> *mut Vma;
    /// `VMA_MERGEABLE`, `VMA_ANON` or 0.
    pub(crate) fn rksm_vma_kind(vma: *mut Vma) -> c_int;

    /// The pgd entry for `addr`, or NULL if empty or bad. The mmap lock is held.
    pub(crate) fn rksm_pgd(mm: *mut Mm, addr: c_ulong) -> *mut Pgd;
    /// The p4d entry for `addr`, or NULL if empty or bad.
    pub(crate) fn rksm_p4d(pgd: *mut Pgd, addr: c_ulong) -> *mut P4d;
    /// The pud entry for `addr`, or NULL if empty, bad or huge.
    pub(crate) fn rksm_pud(p4d: *mut P4d, addr: c_ulong) -> *mut Pud;
    /// The pmd entry for `addr`.
    pub(crate) fn rksm_pmd(pud: *mut Pud, addr: c_ulong) -> *mut Pmd;
    /// `PMD_TABLE`, `PMD_HUGE` or 0 (nothing to scan).
    pub(crate) fn rksm_pmd_kind(pmd: *mut Pmd) -> c_int;
    /// The first address in `[addr, end)` (inside one pud) whose pmd is populated, or `end`.
    ///
    /// # Safety
    ///
    /// The mmap lock of the mm is held; `pud` is a present table entry covering the range.
    pub(crate) fn rksm_pmd_skip_empty(pud: *mut Pud, addr: c_ulong, end: c_ulong) -> c_ulong;
    /// `pgd_addr_end`.
    pub(crate) fn rksm_pgd_end(addr: c_ulong, end: c_ulong) -> c_ulong;
    /// `p4d_addr_end`.
    pub(crate) fn rksm_p4d_end(addr: c_ulong, end: c_ulong) -> c_ulong;
    /// `pud_addr_end`.
    pub(crate) fn rksm_pud_end(addr: c_ulong, end: c_ulong) -> c_ulong;
    /// `pmd_addr_end`.
    pub(crate) fn rksm_pmd_end(addr: c_ulong, end: c_ulong) -> c_ulong;
    /// Collects up to `max` present pages of one PTE table, in the `nranges` ranges
    /// `[ranges[2i], ranges[2i + 1])` from `addr` on.
    ///
    /// # Safety
    ///
    /// The mmap lock of `mm` is held; `pmd` came from [`rksm_pmd`] under it; `ranges` holds
    /// `2 * nranges` addresses of ranges in address order, each inside one VMA and all within
    /// this pmd; `hits` is valid for `max` writes and `next` for one.
    pub(crate) fn rksm_scan_ptes(
        mm: *mut Mm,
        pmd: *mut Pmd,
        ranges: *const c_ulong,
        nranges: c_int,
        addr: c_ulong,
        hits: *mut Hit,
        max: c_int,
        next: *mut c_ulong,
    ) -> c_int;

    /// xxh64 of the page's content, seeded with rksm's per-boot secret.
    pub(crate) fn rksm_page_hash(page: *mut Page) -> u64;
    /// Draws the per-boot secret that seeds [`rksm_page_hash`].
    ///
    /// # Safety
    ///
    /// Called once, from module init, before any page is hashed.
    pub(crate) fn rksm_hash_key_init();
    /// Whether the page is all zero.
    pub(crate) fn rksm_page_is_zero(page: *mut Page) -> bool;
    /// Whether two pages have the same content.
    pub(crate) fn rksm_pages_equal(a: *mut Page, b: *mut Page) -> bool;
    /// `memcmp` of two pages' contents: negative, zero or positive.
    ///
    /// # Safety
    ///
    /// Both pages are valid and referenced for the duration of the call.
    pub(crate) fn rksm_pages_cmp(a: *mut Page, b: *mut Page) -> c_int;
    /// The folio the page belongs to (stable while a reference is held).
    pub(crate) fn rksm_page_folio(page: *mut Page) -> *mut Folio;
    /// Drops a folio reference taken by the shim.
    pub(crate) fn rksm_folio_put(folio: *mut Folio);
    /// Drops one folio reference each on `folios[0..nr]`, as one batch (`folios_put`).
    ///
    /// # Safety
    ///
    /// `folios` points to `nr` folios, each with a reference the caller hands over.
    pub(crate) fn rksm_folios_put(folios: *mut *mut Folio, nr: c_uint);
    /// `lru_add_drain_all`.
    pub(crate) fn rksm_lru_add_drain_all();

    /// Replaces the PTE at `addr` mapping `old` by a read-only one of `new` (NULL: the zero
    /// page) if the contents match and `old` is not pinned; 0 or a `MERGE_*` reason. A merge
    /// into `new` appends its reverse-map entry to `node`, under `new`'s folio lock. `*split`
    /// tells whether a large folio was split on the way.
    ///
    /// # Safety
    ///
    /// The mmap lock of `vma`'s mm is held for read; `vma` contains `addr`; the caller holds a
    /// reference on `old` and, if not NULL, on `new`, which [`rksm_stable_get`] found for
    /// `node`; `node.rmap` has room for `room` entries; `split` is valid for a write.
    pub(crate) fn rksm_replace_pte(
        vma: *mut Vma,
        addr: c_ulong,
        old: *mut Page,
        new: *mut Page,
        node: *mut ProviderNode,
        room: c_uint,
        split: *mut bool,
    ) -> c_int;
    /// Makes `page` at `addr` the stable page of `node` in place (write-protected, a KSM folio
    /// whose first reverse-map entry is this mapping); 0 or a `MERGE_*` reason.
    ///
    /// # Safety
    ///
    /// As for [`rksm_replace_pte`]; `node` is no folio's yet (`nr` 0) and its `rmap` has room
    /// for one entry; it stays at its address until [`rksm_stable_detach`] lets it go.
    pub(crate) fn rksm_stable_make(
        vma: *mut Vma,
        addr: c_ulong,
        page: *mut Page,
        node: *mut ProviderNode,
        split: *mut bool,
    ) -> c_int;
    /// What `addr` maps now: `HIT_ZERO`, `HIT_STABLE`, `HIT_SWAP` or 0.
    pub(crate) fn rksm_pte_kind(mm: *mut Mm, addr: c_ulong) -> c_int;
    /// Gives `addr` a private anonymous page again (an unsharing fault).
    pub(crate) fn rksm_break_cow(mm: *mut Mm, addr: c_ulong) -> c_int;
    /// xxh64 of an all-zero page.
    pub(crate) fn rksm_zero_page_hash() -> u64;
    /// KSM's `run` value (0 if unreadable).
    ///
    /// # Safety
    ///
    /// Process context; called between [`rksm_ksm_watch_start`] and [`rksm_ksm_watch_stop`].
    pub(crate) fn rksm_ksm_run() -> c_int;
    /// The page at `addr` of the THP `pmd` maps, as one hit with a reference; 0 or 1.
    ///
    /// # Safety
    ///
    /// The mmap lock of `mm` is held; `pmd` came from [`rksm_pmd`] under it; `hit` is valid for
    /// a write.
    pub(crate) fn rksm_scan_huge_pmd(
        mm: *mut Mm,
        pmd: *mut Pmd,
        addr: c_ulong,
        hit: *mut Hit,
    ) -> c_int;
    /// The anonymous page mapped at `addr`, with a reference, or NULL. The mmap lock is held.
    pub(crate) fn rksm_anon_page_at(mm: *mut Mm, addr: c_ulong) -> *mut Page;
    /// Drops the `anon_vma` reference of a reverse-map entry.
    ///
    /// # Safety
    ///
    /// `r` was filled by the C glue, its reference not dropped yet, and no folio's walk can
    /// reach it any more (removed under the folio lock, or the node is let go). May sleep.
    pub(crate) fn rksm_rmap_put(r: *mut ProviderRmap);
    /// The stable page of `node` with a reference (locked too if `lock`; a trylock), or NULL:
    /// busy (`*stale` false) or gone (`*stale` true).
    ///
    /// # Safety
    ///
    /// `node` is valid; `stale` is valid for a write.
    pub(crate) fn rksm_stable_get(
        node: *mut ProviderNode,
        lock: bool,
        stale: *mut bool,
    ) -> *mut Page;
    /// Undoes [`rksm_stable_get`].
    ///
    /// # Safety
    ///
    /// `page` came from [`rksm_stable_get`] with the same `locked`, and is put once.
    pub(crate) fn rksm_stable_put(page: *mut Page, locked: bool);
    /// Lets the stable page go if nothing maps it (nor, unless `force`, may fault it back from
    /// swap); then no folio points to its node any more.
    ///
    /// # Safety
    ///
    /// `page` came from [`rksm_stable_get`] with `lock` true and is still locked.
    pub(crate) fn rksm_stable_detach(page: *mut Page, force: bool) -> bool;
    /// Fills `r` for the mapping at `addr` of `vma` (mm, anon_vma with a reference, address
    /// and index), as the merges do for theirs.
    ///
    /// # Safety
    ///
    /// `r` is valid for a write; the mmap lock of `vma`'s mm is held, `vma` has an anon_vma
    /// and `addr` lies in it.
    pub(crate) fn rksm_rmap_fill(r: *mut ProviderRmap, vma: *mut Vma, addr: c_ulong);
    /// Whether `page`'s folio is the stable page of `node` now.
    ///
    /// # Safety
    ///
    /// `node` is valid for reads; `page` holds a folio reference.
    pub(crate) fn rksm_stable_is(node: *const ProviderNode, page: *mut Page) -> bool;
    /// `folio_mapcount` of a stable page.
    ///
    /// # Safety
    ///
    /// `page` holds a reference.
    pub(crate) fn rksm_stable_mapcount(page: *mut Page) -> c_int;
    /// `try_module_get(THIS_MODULE)`.
    pub(crate) fn rksm_module_get() -> bool;
    /// `module_put(THIS_MODULE)`.
    pub(crate) fn rksm_module_put();
    /// Whether both pages belong to one folio.
    pub(crate) fn rksm_same_folio(a: *mut Page, b: *mut Page) -> bool;
    /// Opens KSM's `run` file for [`rksm_ksm_run`].
    ///
    /// # Safety
    ///
    /// Process context that can resolve paths (module init, not a kthread); the file is not
    /// open already.
    pub(crate) fn rksm_ksm_watch_start();
    /// Closes it.
    ///
    /// # Safety
    ///
    /// [`rksm_ksm_watch_start`] was called; nothing calls [`rksm_ksm_run`] any more.
    pub(crate) fn rksm_ksm_watch_stop();

    /// Places the memfd hooks' kprobes; returns which are in place (`MEMFD_HOOK_*` bits) and
    /// logs each one that cannot be placed, and why. From then on the probes call
    /// `rksm_memfd_on_create` and `rksm_memfd_on_run` (`src/memfd.rs`).
    ///
    /// # Safety
    ///
    /// Process context. Not called again before [`rksm_memfd_hooks_unregister`].
    pub(crate) fn rksm_memfd_hooks_register() -> c_uint;
    /// Removes every kprobe [`rksm_memfd_hooks_register`] placed, and waits until no handler
    /// runs any more.
    ///
    /// # Safety
    ///
    /// Process context; [`rksm_memfd_hooks_register`] was called and this was not called since.
    pub(crate) fn rksm_memfd_hooks_unregister();
    /// Arms (`on`) or disarms the three run probes (`MEMFD_HOOK_RUN`), which are placed
    /// disarmed; 0 or a negative errno, and then they are left as they were. Does nothing if
    /// they are not placed.
    ///
    /// # Safety
    ///
    /// Process context (it sleeps). Calls are serialized, and none runs concurrently with
    /// [`rksm_memfd_hooks_register`] or [`rksm_memfd_hooks_unregister`].
    pub(crate) fn rksm_memfd_hooks_arm(on: bool) -> c_int;
    /// Logs one rate-limited line about a refusal (`what`: an `RKSM_MEMFD_*` value of
    /// `shim.h`) under the policy value `policy`, with the current task's pid and comm.
    ///
    /// # Safety
    ///
    /// None beyond a valid `what`: any context may call it, atomic and int3 context too.
    pub(crate) fn rksm_memfd_log_refusal(what: c_int, policy: c_uint);
}
