// SPDX-License-Identifier: GPL-2.0

//! The `rksmd` kthread: paces scan rounds by `pages_to_scan` and `sleep_millisecs`, sleeps
//! while `run` is not 1, serves `run=2`, and steps aside while KSM runs.

use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};

use crate::engine::Engine;
use crate::ffi;
use crate::knobs::{KnobId, RUN_MERGE, RUN_STOP, RUN_UNMERGE};
use crate::sysfs::knob;

/// Rounds between two looks at KSM's `run` (reading it opens a sysfs file).
const KSM_CHECK_ROUNDS: u32 = 64;

/// Wakes `rksmd` so it re-reads the knobs now rather than after its sleep.
pub(crate) fn kick() {
    // SAFETY: the shim's wait queue is static; waking it is always allowed.
    unsafe { ffi::rksm_scanner_kick() };
}

fn ksm_running() -> bool {
    // SAFETY: process context; the shim only reads a sysfs file.
    unsafe { ffi::rksm_ksm_run() == 1 }
}

/// Applies a write to `run`.
pub(crate) fn set_run(run: &Atomic<u64>, value: u64) -> Result {
    match value {
        RUN_MERGE => {
            // Two engines merging the same pages would undo each other's work.
            if ksm_running() {
                pr_warn!("KSM is running (/sys/kernel/mm/ksm/run is 1): stop it first\n");
                return Err(EBUSY);
            }
            run.store(value, Relaxed);
            kick();
        }
        RUN_STOP => {
            run.store(value, Relaxed);
            // As with KSM, the write returns once the round in progress is over.
            // SAFETY: process context; the mutex is only ever held around one round.
            unsafe {
                ffi::rksm_round_begin();
                ffi::rksm_round_end();
            }
        }
        RUN_UNMERGE => {
            // Stop merging first, then wait until rksmd has undone every merge, as a write
            // of 2 to KSM's run returns only when everything is unmerged.
            run.store(RUN_STOP, Relaxed);
            // SAFETY: process context (a sysfs write); rksmd runs while sysfs exists.
            let err = unsafe { ffi::rksm_unmerge_request_wait() };
            if err != 0 {
                return Err(Error::from_errno(err));
            }
            run.store(value, Relaxed);
        }
        _ => return Err(EINVAL),
    }
    Ok(())
}

/// The running `rksmd` thread and the engine it owns; stopped on drop.
///
/// # Invariants
///
/// `task` is a kthread started by `rksm_kthread_run` that has not been stopped. `engine` comes
/// from `KBox::into_raw`; the thread uses it exclusively until it is stopped.
pub(crate) struct Scanner {
    task: *mut ffi::Task,
    engine: *mut Engine,
}

// SAFETY: `Scanner` only holds a task pointer that any context may pass to `kthread_stop`.
unsafe impl Send for Scanner {}
// SAFETY: `&Scanner` gives no access to the task.
unsafe impl Sync for Scanner {}

impl Scanner {
    /// Creates the engine and starts `rksmd` on it.
    pub(crate) fn start() -> Result<Self> {
        // SAFETY: module init runs in process context, where KSM's sysfs file can be opened by
        // path (a kthread cannot); it stays open until `drop`.
        unsafe { ffi::rksm_ksm_watch_start() };
        let engine = match Engine::new().and_then(|e| Ok(KBox::new(e, GFP_KERNEL)?)) {
            Ok(engine) => KBox::into_raw(engine),
            Err(e) => {
                // SAFETY: started just above.
                unsafe { ffi::rksm_ksm_watch_stop() };
                return Err(e);
            }
        };
        let mut task = core::ptr::null_mut();
        // SAFETY: `engine` stays valid until `drop` reclaims it after stopping the thread;
        // `task` is a valid place for the result.
        let err = unsafe { ffi::rksm_kthread_run(rksmd, engine.cast(), &mut task) };
        if err != 0 {
            // SAFETY: no thread got the pointer; it came from `KBox::into_raw` above.
            drop(unsafe { KBox::from_raw(engine) });
            // SAFETY: started above; no thread reads through it.
            unsafe { ffi::rksm_ksm_watch_stop() };
            return Err(Error::from_errno(err));
        }
        // INVARIANT: the thread was just started and owns `engine` until stopped.
        Ok(Self { task, engine })
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the thread runs and is stopped only here.
        unsafe { ffi::rksm_kthread_stop(self.task) };
        // SAFETY: the thread has returned, so nothing else uses the engine; it came from
        // `KBox::into_raw` (type invariant).
        drop(unsafe { KBox::from_raw(self.engine) });
        // SAFETY: started in `start`; the thread that read through it has returned, and the
        // sysfs files (the other reader) are gone: `Rksm` drops them first.
        unsafe { ffi::rksm_ksm_watch_stop() };
    }
}

fn should_stop() -> bool {
    // SAFETY: only called from `rksmd`, which is a kthread.
    unsafe { ffi::rksm_kthread_should_stop() }
}

/// The kthread's body.
extern "C" fn rksmd(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the engine `Scanner::start` handed over; this thread is its only user
    // until `Scanner::drop` stops it.
    let engine = unsafe { &mut *data.cast::<Engine>() };
    // SAFETY: we are the kthread.
    unsafe { ffi::rksm_kthread_set_freezable() };
    let mut rounds: u32 = 0;
    while !should_stop() {
        // SAFETY: reads two atomics.
        let ticket = unsafe { ffi::rksm_unmerge_pending() };
        if ticket != 0 {
            engine.unmerge_all();
            // SAFETY: every request up to `ticket` was served just now.
            unsafe { ffi::rksm_unmerge_complete(ticket) };
        }
        let timeout = if knob(KnobId::Run) == RUN_MERGE {
            rounds = rounds.wrapping_add(1);
            if rounds % KSM_CHECK_ROUNDS == 0 && ksm_running() {
                pr_warn!("KSM started (/sys/kernel/mm/ksm/run is 1): rksm stops scanning\n");
                crate::sysfs::stop_running();
            } else {
                let knobs = crate::sysfs::snapshot();
                // SAFETY: kthread context; released right after the round.
                unsafe { ffi::rksm_round_begin() };
                // run may have been set to 0 while we waited for the mutex.
                if knob(KnobId::Run) == RUN_MERGE {
                    engine.scan_round(&knobs);
                }
                // SAFETY: taken just above.
                unsafe { ffi::rksm_round_end() };
            }
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
