// SPDX-License-Identifier: GPL-2.0

//! The knobs of `/sys/kernel/mm/rksm` and the `run` state machine.
//!
//! [`Control`] owns every knob value under one mutex. `sysfs` only parses and presents; `rksmd`
//! (`scanner`) asks it what to do next and takes a [`Snapshot`] of the knobs for each round.
//! Nothing here calls back into either of them.
//!
//! A write of `run` is serialized as a whole, as KSM's `ksm_thread_mutex` serializes it: `run=0`
//! returns once the round in progress is over, and `run=2` once `rksmd` has undone every merge.
//! So `run` reads 2 only if everything was unmerged after the last `run=1` took effect. A change
//! of `merge_domains` asks for the same unmerge, and waits for it, without changing `run`.
//!
//! # Lock order
//!
//! 1. `run_write`: held across one whole write of `run`, including the wait for `rksmd`.
//!    Taken by sysfs writes only, never by `rksmd`. KSM's `run` file is read under it.
//! 2. `round`: held by `rksmd` across one scan round or one unmerge of everything; a write of
//!    `run=0` takes it to wait for the round in progress. The engine's locks nest inside it, in
//!    the order of `src/mm.rs`: mmap lock (read) -> stable folio lock -> candidate folio lock ->
//!    PTL. mmap locks are taken only inside a round.
//! 3. `state`: innermost, held for a few loads and stores only. Never held across a round, a
//!    wait for `rksmd`, an mmap lock or a read of KSM's `run`; the [`CondVar`] waits release it.
//!
//! `memfd_write` serializes writes of the two memfd knobs, across arming the memfd hooks (which
//! sleeps); it nests outside `state` and is independent of `run_write` and `round`.
//!
//! sysfs reads take `state` alone, so they never wait for a round.
//!
//! # The memfd policy
//!
//! `memfd_noexec` and `memfd_exec` are knobs like the others, but the hooks that apply them
//! (`src/memfd.rs`) run in any process, in atomic context, where no mutex may be taken. So
//! `Control` also publishes those two values in atomics it alone writes (under `state`), and
//! the hooks read them with [`memfd_noexec`] and [`memfd_exec`].

use kernel::prelude::*;
use kernel::sync::atomic::{Acquire, Atomic, Release};
use kernel::sync::{new_condvar, new_mutex, Arc, CondVar, CondVarTimeoutResult, Mutex, MutexGuard};
use kernel::time::{msecs_to_jiffies, Jiffies};

use crate::advisor::{Advisor, Limits, ADVISOR_NONE, ADVISOR_SCAN_TIME, DEFAULT_PAGES_TO_SCAN};
use crate::ffi;
use crate::knobs::{
    Kind, KnobId, Snapshot, KNOBS, MEMFD_EXEC_ANY, RUN_MERGE, RUN_STOP, RUN_UNMERGE,
};
use crate::memfd;
use crate::merge_policy;

const KNOB_COUNT: usize = KNOBS.len();

/// `memfd_noexec`, published for the hooks.
///
/// # Invariants
///
/// Written only by [`Control`], under its `state` lock, right after the knob's value there; so
/// while `state` is not held, it equals the knob (the default until the first write).
static MEMFD_NOEXEC: Atomic<u64> = Atomic::new(0);
/// `memfd_exec`, published for the hooks; the same invariant as [`MEMFD_NOEXEC`].
static MEMFD_EXEC: Atomic<u64> = Atomic::new(0);

/// The value of `memfd_noexec`, lock-free: the hooks call this in atomic context.
pub(crate) fn memfd_noexec() -> u64 {
    MEMFD_NOEXEC.load(Acquire)
}

/// The value of `memfd_exec` (a `knobs::MEMFD_EXEC_*` value), lock-free.
pub(crate) fn memfd_exec() -> u64 {
    MEMFD_EXEC.load(Acquire)
}

/// Publishes knob `id`'s new value to the hooks, if they read it.
fn publish(id: usize, value: u64) {
    if id == KnobId::MemfdNoexec as usize {
        MEMFD_NOEXEC.store(value, Release);
    } else if id == KnobId::MemfdExec as usize {
        MEMFD_EXEC.store(value, Release);
    }
}

/// Everything the `state` mutex protects.
///
/// # Invariants
///
/// - `values[i]` is a value `knobs::parse` accepts for `KNOBS[i]`.
/// - `unmerge_served <= unmerge_asked`.
/// - `run` (in `values`) is 2 only if `rksmd` served an unmerge request made after `run` was
///   last 1, and `run` has not been 1 since.
/// - A knob marked in `unsupported` holds its default.
struct State {
    /// Knob values, indexed by [`KnobId`].
    values: [u64; KNOB_COUNT],
    /// Knobs whose hook could not be placed on this kernel (bit `1 << KnobId`): they refuse any
    /// value but their default with `EOPNOTSUPP`, rather than accept one and do nothing.
    unsupported: u32,
    /// A knob changed since `rksmd` last looked: it starts a round now, not after its sleep.
    kicked: bool,
    /// Unmerge requests made (one per `run=2` write) ...
    unmerge_asked: u64,
    /// ... and the newest one `rksmd` has served.
    unmerge_served: u64,
    /// The module is unloading: `rksmd` returns.
    stopping: bool,
    /// The scan-time advisor's memory of past full scans.
    advisor: Advisor,
}

impl State {
    fn get(&self, id: KnobId) -> u64 {
        // `values` has one entry per `KnobId`: the lookup cannot fail, and never panics.
        self.values.get(id as usize).copied().unwrap_or(0)
    }

    fn set_run(&mut self, value: u64) {
        self.set(KnobId::Run, value);
    }

    /// Sets knob `id` to `value`, brought into the knob's range (for values rksm computes).
    fn set(&mut self, id: KnobId, value: u64) {
        let value = match KNOBS.get(id as usize).map(|k| k.kind) {
            Some(Kind::Number { min, max }) => value.clamp(min, max),
            _ => value,
        };
        if let Some(knob) = self.values.get_mut(id as usize) {
            *knob = value;
        }
    }

    fn unmerge_pending(&self) -> bool {
        self.unmerge_asked != self.unmerge_served
    }
}

/// KSM's `run` file, open for [`KsmWatch::running`].
///
/// # Invariants
///
/// `rksm_ksm_watch_start` was called and `rksm_ksm_watch_stop` was not called since: only one
/// `KsmWatch` exists at a time (the one in the module's [`Control`]).
struct KsmWatch(());

impl KsmWatch {
    /// Opens KSM's `run` file. Called once per module load, from module init.
    fn new() -> Self {
        // SAFETY: Module init runs in process context, where KSM's sysfs file can be opened by
        // path (a kthread cannot). Only one `Control` is created per load, so the file is not
        // open already.
        unsafe { ffi::rksm_ksm_watch_start() };
        // INVARIANT: Just opened.
        Self(())
    }

    /// Whether KSM's `run` is 1.
    fn running(&self) -> bool {
        // SAFETY: The file is open (type invariant) until `drop`, which cannot run while `&self`
        // is borrowed. Callers are in process context (a sysfs write or `rksmd`).
        unsafe { ffi::rksm_ksm_run() == 1 }
    }
}

impl Drop for KsmWatch {
    fn drop(&mut self) {
        // SAFETY: Open by the type invariant; nothing can call `running` any more.
        unsafe { ffi::rksm_ksm_watch_stop() };
    }
}

/// What `rksmd` does next; see [`Control::next_work`].
pub(crate) enum Work {
    /// Unmerge everything through [`Control::serve_unmerge`] with this ticket.
    Unmerge(u64),
    /// Run a scan round, if [`Control::begin_round`] still agrees.
    Scan,
    /// Return from the thread.
    Stop,
}

/// A scan round in progress: `rksmd` holds the round lock until this is dropped.
///
/// # Invariants
///
/// `_round` guards `Control::round`; `snapshot` was taken after it was locked, while `run` was
/// 1 and no unmerge was pending.
pub(crate) struct Round<'a> {
    _round: MutexGuard<'a, ()>,
    snapshot: Snapshot,
}

impl Round<'_> {
    /// The knob values of this round.
    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// The knob values and the `run` state machine, shared by `sysfs` and `rksmd`.
///
/// # Invariants
///
/// Only one `Control` exists at a time (module init creates it once), so `ksm` is the only
/// [`KsmWatch`]. `run` changes only under `run_write`, except that `rksmd` may set it from 1
/// to 0 ([`Control::step_aside`]).
#[pin_data]
pub(crate) struct Control {
    /// Serializes writes of `run` (see the lock order above).
    #[pin]
    run_write: Mutex<()>,
    /// Held by `rksmd` across a round or an unmerge of everything.
    #[pin]
    round: Mutex<()>,
    /// Serializes writes of `memfd_noexec` and `memfd_exec`, with the arming of the hooks.
    #[pin]
    memfd_write: Mutex<()>,
    #[pin]
    state: Mutex<State>,
    /// `rksmd` waits here: kicks, unmerge requests, module unload.
    #[pin]
    wake: CondVar,
    /// `run=2` writers wait here for `rksmd` to serve their request.
    #[pin]
    unmerged: CondVar,
    ksm: KsmWatch,
}

impl Control {
    /// Every knob at its default. Called once per module load, from module init.
    pub(crate) fn new() -> Result<Arc<Self>> {
        for (id, knob) in KNOBS.iter().enumerate() {
            publish(id, knob.default);
        }
        Arc::pin_init(
            pin_init!(Self {
                run_write <- new_mutex!((), "rksm_run_write"),
                round <- new_mutex!((), "rksm_round"),
                memfd_write <- new_mutex!((), "rksm_memfd_write"),
                state <- new_mutex!(
                    State {
                        values: KNOBS.map(|k| k.default),
                        unsupported: 0,
                        kicked: false,
                        unmerge_asked: 0,
                        unmerge_served: 0,
                        stopping: false,
                        advisor: Advisor::default(),
                    },
                    "rksm_state"
                ),
                wake <- new_condvar!("rksm_wake"),
                unmerged <- new_condvar!("rksm_unmerged"),
                ksm: KsmWatch::new(),
            }),
            GFP_KERNEL,
        )
    }

    /// The value of knob `idx` (a [`KnobId`]) and what it holds, or `None` past the last knob.
    pub(crate) fn knob(&self, idx: usize) -> Option<(u64, Kind)> {
        let value = self.state.lock().values.get(idx).copied()?;
        Some((value, KNOBS.get(idx)?.kind))
    }

    /// Marks knob `id` as one whose hook could not be placed: from now on it refuses any value
    /// but its default with `EOPNOTSUPP`. Called from module init, before sysfs exists.
    pub(crate) fn set_unsupported(&self, id: KnobId) {
        let mut state = self.state.lock();
        // INVARIANT: No write has happened yet (sysfs does not exist): the knob holds its
        // default.
        state.unsupported |= 1 << (id as u32);
    }

    /// Sets knob `idx` (a [`KnobId`]) to `value`, as `knobs::parse` read it; a value out of
    /// the knob's range is `EINVAL` and changes nothing, and so is `EOPNOTSUPP` for a value
    /// other than the default of a knob whose hook could not be placed.
    pub(crate) fn store(&self, idx: usize, value: u64) -> Result {
        let spec = KNOBS.get(idx).ok_or(EINVAL)?;
        if !spec.kind.accepts(value) {
            return Err(EINVAL);
        }
        if idx == KnobId::Run as usize {
            return self.set_run(value);
        }
        let memfd = idx == KnobId::MemfdNoexec as usize || idx == KnobId::MemfdExec as usize;
        let _memfd_writer = memfd.then(|| self.memfd_write.lock());
        let mut state = self.state.lock();
        let unsupported = u32::try_from(idx)
            .ok()
            .and_then(|i| 1u32.checked_shl(i))
            .is_some_and(|bit| state.unsupported & bit != 0);
        if unsupported && value != spec.default {
            return Err(EOPNOTSUPP);
        }
        // As in KSM, pages_to_scan is the advisor's while one is active.
        if idx == KnobId::PagesToScan as usize && state.get(KnobId::AdvisorMode) != ADVISOR_NONE {
            return Err(EINVAL);
        }
        let knob = state.values.get_mut(idx).ok_or(EINVAL)?;
        let old = *knob;
        // INVARIANT: `value` is in the knob's range, checked above, and is the default if the
        // knob is unsupported.
        *knob = value;
        // INVARIANT: Published under `state`, right after the knob changed.
        publish(idx, value);
        if memfd {
            // Nothing for rksmd. The run hooks are armed while `memfd_exec` is not `any`; the
            // new value is already published, so by the time the write returns it is enforced.
            // `memfd_write` keeps another write from arming in between.
            drop(state);
            if idx != KnobId::MemfdExec as usize {
                return Ok(());
            }
            if let Err(e) = memfd::arm_run_hooks(value != MEMFD_EXEC_ANY) {
                // The probes stay as they were: so does the knob.
                let mut state = self.state.lock();
                if let Some(knob) = state.values.get_mut(idx) {
                    // INVARIANT: `old` was the knob's value, and is published with it.
                    *knob = old;
                    publish(idx, old);
                }
                return Err(e);
            }
            return Ok(());
        }
        if idx == KnobId::AdvisorMode as usize && old != value {
            // KSM's set_advisor_defaults(): the advisor starts from its minimum and a clean
            // slate; without it, pages_to_scan goes back to its default.
            let pages = if value == ADVISOR_NONE {
                DEFAULT_PAGES_TO_SCAN
            } else {
                state.advisor = Advisor::default();
                state.get(KnobId::AdvisorMinPagesToScan)
            };
            state.set(KnobId::PagesToScan, pages);
        }
        // Let a sleeping rksmd pick up a new pace at once.
        state.kicked = true;
        if idx == KnobId::MergeDomains as usize && merge_policy::domains_change_unmerges(old, value)
        {
            // Every merge is undone before the write returns, as run=2 undoes them (see
            // `domains_change_unmerges` for why all of them); `run` stays as it is, and no
            // round starts before that, so merging resumes under the new domains.
            return self.unmerge_and_wait(state);
        }
        drop(state);
        self.wake.notify_all();
        Ok(())
    }

    /// Asks `rksmd` to undo every merge and waits until it has. `run` is not changed.
    fn unmerge_and_wait(&self, mut state: MutexGuard<'_, State>) -> Result {
        // 2^64 requests cannot happen; should they, the write fails, no panic.
        let ticket = state.unmerge_asked.checked_add(1).ok_or(EOVERFLOW)?;
        state.unmerge_asked = ticket;
        self.wake.notify_all();
        while state.unmerge_served < ticket {
            if state.stopping {
                return Err(ENODEV);
            }
            if self.unmerged.wait_interruptible(&mut state) {
                // rksmd still serves the request.
                return Err(ERESTARTSYS);
            }
        }
        Ok(())
    }

    /// Whether KSM's `run` is 1. Process context, no lock of ours held.
    pub(crate) fn ksm_running(&self) -> bool {
        self.ksm.running()
    }

    /// Applies a write of `run`, whole: no other write of `run` interleaves.
    fn set_run(&self, value: u64) -> Result {
        let _writer = self.run_write.lock();
        match value {
            RUN_MERGE => {
                // Two engines merging the same pages would undo each other's work.
                if self.ksm.running() {
                    pr_warn!("KSM is running (/sys/kernel/mm/ksm/run is 1): stop it first\n");
                    return Err(EBUSY);
                }
                let mut state = self.state.lock();
                state.set_run(RUN_MERGE);
                state.kicked = true;
                drop(state);
                self.wake.notify_all();
            }
            RUN_STOP => {
                self.state.lock().set_run(RUN_STOP);
                // As with KSM, the write returns once the round in progress is over.
                drop(self.round.lock());
            }
            RUN_UNMERGE => {
                // Stop merging first, then wait until rksmd has undone every merge, as a write
                // of 2 to KSM's run returns only when everything is unmerged.
                let mut state = self.state.lock();
                state.set_run(RUN_STOP);
                // If interrupted, run stays 0, as KSM leaves it when its unmerge fails. rksmd
                // still serves the request; a later run=2 asks again.
                self.unmerge_and_wait(state)?;
                self.state.lock().set_run(RUN_UNMERGE);
            }
            _ => return Err(EINVAL),
        }
        Ok(())
    }

    /// `rksmd` waits here until it has something to do.
    ///
    /// `paced`: a round just ended, so the next one waits `sleep_millisecs` unless a knob
    /// changes first. While `run` is not 1, `rksmd` sleeps with no timeout, where the freezer
    /// can freeze it. `should_stop` is `kthread_should_stop`: `kthread_stop` wakes the task, and
    /// every wait here re-checks it.
    pub(crate) fn next_work(&self, paced: bool, should_stop: impl Fn() -> bool) -> Work {
        let mut state = self.state.lock();
        // The rest of the sleep between two rounds, once it has started.
        let mut left: Option<Jiffies> = None;
        loop {
            if state.stopping || should_stop() {
                return Work::Stop;
            }
            if state.unmerge_pending() {
                return Work::Unmerge(state.unmerge_asked);
            }
            let kicked = core::mem::take(&mut state.kicked);
            if state.get(KnobId::Run) != RUN_MERGE {
                // Woken by a knob write, an unmerge request or the unload; the loop looks again.
                let _ = self.wake.wait_interruptible_freezable(&mut state);
                left = None;
                continue;
            }
            if kicked || !paced {
                return Work::Scan;
            }
            let jiffies = *left.get_or_insert_with(|| {
                let msecs = u32::try_from(state.get(KnobId::SleepMillisecs)).unwrap_or(u32::MAX);
                msecs_to_jiffies(msecs)
            });
            if jiffies == 0 {
                return Work::Scan;
            }
            left = Some(
                match self.wake.wait_interruptible_timeout(&mut state, jiffies) {
                    CondVarTimeoutResult::Timeout => 0,
                    CondVarTimeoutResult::Woken { jiffies }
                    | CondVarTimeoutResult::Signal { jiffies } => jiffies,
                },
            );
            // The freezer wakes a kthread that sleeps without TASK_FREEZABLE and expects it to
            // freeze itself; that must happen with no lock held.
            drop(state);
            // SAFETY: Process context (rksmd), no lock held.
            unsafe { ffi::rksm_try_to_freeze() };
            state = self.state.lock();
        }
    }

    /// Starts a scan round: takes the round lock and the knobs of the round, unless `run` is no
    /// longer 1 or an unmerge came in meanwhile (then `None`).
    pub(crate) fn begin_round(&self) -> Option<Round<'_>> {
        let round = self.round.lock();
        let state = self.state.lock();
        if state.get(KnobId::Run) != RUN_MERGE || state.unmerge_pending() {
            return None;
        }
        let snapshot = Snapshot::from_values(&state.values);
        drop(state);
        // INVARIANT: `round` is locked, and `run` was 1 with no unmerge pending just now.
        Some(Round {
            _round: round,
            snapshot,
        })
    }

    /// Runs `unmerge_all` under the round lock, then tells the `run=2` writers that every
    /// request up to `ticket` (from [`Work::Unmerge`]) is served.
    pub(crate) fn serve_unmerge(&self, ticket: u64, unmerge_all: impl FnOnce()) {
        let round = self.round.lock();
        unmerge_all();
        let mut state = self.state.lock();
        // INVARIANT: `ticket` came from `unmerge_asked`, which never decreases.
        state.unmerge_served = state.unmerge_served.max(ticket);
        drop(state);
        drop(round);
        self.unmerged.notify_all();
    }

    /// A full scan ended after `scan_ms` milliseconds, with `rksmd`'s CPU time at `cpu_ns`
    /// (cumulative): under the scan-time advisor, `pages_to_scan` gets its next value.
    pub(crate) fn pass_ended(&self, scan_ms: u64, cpu_ns: u64) {
        let mut state = self.state.lock();
        if state.get(KnobId::AdvisorMode) != ADVISOR_SCAN_TIME {
            return;
        }
        let limits = Limits {
            target_scan_time: state.get(KnobId::AdvisorTargetScanTime),
            max_cpu: state.get(KnobId::AdvisorMaxCpu),
            max_pages: state.get(KnobId::AdvisorMaxPagesToScan),
        };
        let pages = state.get(KnobId::PagesToScan);
        let pages = state.advisor.end_scan(scan_ms, cpu_ns, pages, &limits);
        state.set(KnobId::PagesToScan, pages);
    }

    /// Sets `run` to 0 if it is 1, because KSM started; returns whether it was 1.
    pub(crate) fn step_aside(&self) -> bool {
        let mut state = self.state.lock();
        if state.get(KnobId::Run) != RUN_MERGE {
            return false;
        }
        state.set_run(RUN_STOP);
        true
    }

    /// Tells `rksmd` to return (module unload), and wakes everyone who waits for it.
    pub(crate) fn stop(&self) {
        self.state.lock().stopping = true;
        self.wake.notify_all();
        self.unmerged.notify_all();
    }
}
