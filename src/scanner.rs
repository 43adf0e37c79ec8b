// SPDX-License-Identifier: GPL-2.0

//! The `rksmd` kthread: runs the scan rounds and the unmerges [`Control`] asks for, and steps
//! aside while KSM runs. The knobs and the `run` state machine live in [`crate::control`].

use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::time::{Instant, Monotonic};

use crate::control::{Control, Work};
use crate::engine::Engine;
use crate::ffi;

/// Rounds between two looks at KSM's `run` (reading it opens a sysfs file).
const KSM_CHECK_ROUNDS: u32 = 64;

/// What the thread owns.
struct Thread {
    engine: Engine,
    control: Arc<Control>,
}

/// The running `rksmd` thread and the engine it owns; stopped on drop.
///
/// # Invariants
///
/// `task` is a kthread started by `rksm_kthread_run` (which holds a reference on it) that has
/// not been stopped. `thread` comes from `KBox::into_raw`; the kthread uses it exclusively until
/// it is stopped.
pub(crate) struct Scanner {
    task: *mut ffi::Task,
    thread: *mut Thread,
    control: Arc<Control>,
}

// SAFETY: The `Scanner` holds a task pointer that any context may pass to `kthread_stop`, a pointer
// only dropped after the thread has returned, and an `Arc` of a `Sync` type.
unsafe impl Send for Scanner {}
// SAFETY: The `&Scanner` gives no access to the task or the thread's data.
unsafe impl Sync for Scanner {}

impl Scanner {
    /// Creates the engine and starts `rksmd` on it.
    pub(crate) fn start(control: Arc<Control>) -> Result<Self> {
        let thread = KBox::new(
            Thread {
                engine: Engine::new()?,
                control: control.clone(),
            },
            GFP_KERNEL,
        )?;
        let thread = KBox::into_raw(thread);
        let mut task = core::ptr::null_mut();
        // SAFETY: The `thread` stays valid until `drop` reclaims it after stopping the kthread;
        // `task` is a valid place for the result.
        let err = unsafe { ffi::rksm_kthread_run(rksmd, thread.cast(), &mut task) };
        if err != 0 {
            // SAFETY: No kthread got the pointer; it came from `KBox::into_raw` above.
            drop(unsafe { KBox::from_raw(thread) });
            return Err(Error::from_errno(err));
        }
        // INVARIANT: The kthread was just started and owns `thread` until stopped.
        Ok(Self {
            task,
            thread,
            control,
        })
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        // The flag, set under the state mutex, ends any wait of rksmd without a lost wake-up;
        // the kthread may return before `kthread_stop` (the shim holds a task reference).
        self.control.stop();
        // SAFETY: By the type invariant the kthread was started and is stopped only here.
        unsafe { ffi::rksm_kthread_stop(self.task) };
        // SAFETY: The kthread has returned, so nothing else uses `thread`; it came from
        // `KBox::into_raw` (type invariant).
        drop(unsafe { KBox::from_raw(self.thread) });
    }
}

fn should_stop() -> bool {
    // SAFETY: Only called from `rksmd`, which is a kthread.
    unsafe { ffi::rksm_kthread_should_stop() }
}

/// The kthread's body.
extern "C" fn rksmd(data: *mut c_void) -> c_int {
    // SAFETY: The `data` is the `Thread` that `Scanner::start` handed over; this kthread is its
    // only user until `Scanner::drop` has stopped it.
    let Thread { engine, control } = unsafe { &mut *data.cast::<Thread>() };
    // SAFETY: We are the kthread.
    unsafe { ffi::rksm_kthread_set_freezable() };
    let mut rounds: u32 = 0;
    let mut paced = false;
    // When the pass in progress started, for the scan-time advisor.
    let mut pass_start: Option<Instant<Monotonic>> = None;
    loop {
        match control.next_work(paced, should_stop) {
            Work::Stop => return 0,
            Work::Unmerge(ticket) => {
                control.serve_unmerge(ticket, || engine.unmerge_all());
                // run=2 forgets the pass in progress.
                pass_start = None;
                paced = false;
            }
            Work::Scan => {
                rounds = rounds.wrapping_add(1);
                if rounds % KSM_CHECK_ROUNDS == 0 && control.ksm_running() {
                    if control.step_aside() {
                        pr_warn!(
                            "KSM started (/sys/kernel/mm/ksm/run is 1): rksm stops scanning\n"
                        );
                    }
                } else if let Some(round) = control.begin_round() {
                    let started = Instant::now();
                    let end = engine.scan_round(round.snapshot());
                    drop(round);
                    if end.pass_started {
                        pass_start = Some(started);
                    }
                    if end.pass_ended {
                        let ms = pass_start.take().map_or(0, |t| t.elapsed().as_millis());
                        // SAFETY: We are the kthread; it reads its own CPU time.
                        let cpu_ns = unsafe { ffi::rksm_current_cpu_ns() };
                        control.pass_ended(u64::try_from(ms).unwrap_or(0), cpu_ns);
                    }
                }
                paced = true;
            }
        }
        // With sleep_millisecs at 0 nothing else yields between rounds.
        // SAFETY: Process context, no lock held.
        unsafe { ffi::rksm_cond_resched() };
    }
}
