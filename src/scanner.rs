// SPDX-License-Identifier: GPL-2.0

//! The `rksmd` kthread: paces scan rounds by `pages_to_scan` and
//! `sleep_millisecs`, and sleeps while `run` is not 1.

use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};

use crate::ffi;
use crate::knobs::{KnobId, RUN_MERGE, RUN_STOP, RUN_UNMERGE};
use crate::sysfs::knob;

/// Wakes `rksmd` so it re-reads the knobs now rather than after its sleep.
pub(crate) fn kick() {
    // SAFETY: the shim's wait queue is static; waking it is always allowed.
    unsafe { ffi::rksm_scanner_kick() };
}

/// Applies a write to `run`.
pub(crate) fn set_run(run: &Atomic<u64>, value: u64) -> Result {
    match value {
        RUN_STOP | RUN_MERGE => run.store(value, Relaxed),
        // Nothing is merged yet, so unmerging everything is done at once.
        RUN_UNMERGE => run.store(RUN_STOP, Relaxed),
        _ => return Err(EINVAL),
    }
    kick();
    Ok(())
}

/// The running `rksmd` thread; stopped on drop.
///
/// # Invariants
///
/// `task` is a kthread started by `rksm_kthread_run` that has not been stopped.
pub(crate) struct Scanner {
    task: *mut ffi::Task,
}

// SAFETY: `Scanner` only holds a task pointer that any context may pass to `kthread_stop`.
unsafe impl Send for Scanner {}
// SAFETY: `&Scanner` gives no access to the task.
unsafe impl Sync for Scanner {}

impl Scanner {
    /// Starts `rksmd`.
    pub(crate) fn start() -> Result<Self> {
        let mut task = core::ptr::null_mut();
        // SAFETY: `rksmd` takes no data; `task` is a valid place for the result.
        let err = unsafe { ffi::rksm_kthread_run(rksmd, core::ptr::null_mut(), &mut task) };
        if err != 0 {
            return Err(Error::from_errno(err));
        }
        // INVARIANT: the thread was just started.
        Ok(Self { task })
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the thread runs and is stopped only here.
        unsafe { ffi::rksm_kthread_stop(self.task) };
    }
}

fn should_stop() -> bool {
    // SAFETY: only called from `rksmd`, which is a kthread.
    unsafe { ffi::rksm_kthread_should_stop() }
}

/// The kthread's body.
extern "C" fn rksmd(_data: *mut c_void) -> c_int {
    // SAFETY: we are the kthread.
    unsafe { ffi::rksm_kthread_set_freezable() };
    while !should_stop() {
        let timeout = if knob(KnobId::Run) == RUN_MERGE {
            scan_round(knob(KnobId::PagesToScan));
            // u32::MAX means "no timeout" to the shim; a sleep that long is the same thing.
            u32::try_from(knob(KnobId::SleepMillisecs)).unwrap_or(u32::MAX)
        } else {
            u32::MAX
        };
        // SAFETY: we are the kthread, freezable since the start.
        unsafe { ffi::rksm_scanner_wait(timeout) };
    }
    0
}

/// Scans up to `budget` pages. The merging engine is not wired in yet.
fn scan_round(_budget: u64) {
    // SAFETY: process context, no locks held.
    unsafe { ffi::rksm_cond_resched() };
}
