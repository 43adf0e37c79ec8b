// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C shim in `rust-bindings/shim.c`.
//!
//! Only `src/` wrappers call these; each wrapper states why its call is sound.

use kernel::prelude::*;

/// `struct task_struct`, opaque: the shim does every field access.
#[repr(C)]
pub(crate) struct Task {
    _opaque: [u8; 0],
}

extern "C" {
    /// Creates `/sys/kernel/mm/rksm` with `n` files.
    ///
    /// # Safety
    ///
    /// `names` and `writable` point to `n` elements; every name is a NUL-terminated string that
    /// stays valid until [`rksm_sysfs_remove`]. Must not be called again before that.
    pub(crate) fn rksm_sysfs_add(
        names: *const *const c_char,
        writable: *const bool,
        n: c_uint,
    ) -> c_int;

    /// Removes the directory created by [`rksm_sysfs_add`], waiting for running callbacks.
    ///
    /// # Safety
    ///
    /// [`rksm_sysfs_add`] succeeded and this was not called since.
    pub(crate) fn rksm_sysfs_remove();

    /// Starts kthread `rksmd` running `f(data)`; stores the task in `*task`.
    ///
    /// # Safety
    ///
    /// `data` stays valid until the thread function returns; `task` is valid for writes.
    pub(crate) fn rksm_kthread_run(
        f: unsafe extern "C" fn(*mut c_void) -> c_int,
        data: *mut c_void,
        task: *mut *mut Task,
    ) -> c_int;

    /// Stops the kthread and waits for its function to return.
    ///
    /// # Safety
    ///
    /// `task` came from [`rksm_kthread_run`] and was not stopped before.
    pub(crate) fn rksm_kthread_stop(task: *mut Task);

    /// Whether `kthread_stop` was called on the current kthread.
    pub(crate) fn rksm_kthread_should_stop() -> bool;

    /// Makes the current kthread freezable.
    pub(crate) fn rksm_kthread_set_freezable();

    /// Sleeps until kicked, stopped, or `msecs` elapse (`u32::MAX`: no timeout).
    pub(crate) fn rksm_scanner_wait(msecs: c_uint);

    /// Wakes the scanner from [`rksm_scanner_wait`].
    pub(crate) fn rksm_scanner_kick();

    /// `cond_resched()`.
    pub(crate) fn rksm_cond_resched();
}
