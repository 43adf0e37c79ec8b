// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/mm/rksm`: knob storage and the show/store callbacks.
//!
//! The C shim owns the kobject plumbing; this file owns the table (from
//! [`crate::knobs`]) and what reading or writing a file means.

use core::fmt::Write;

use kernel::prelude::*;
use kernel::str::Formatter;
use kernel::sync::atomic::{Atomic, Relaxed};

use crate::ffi;
use crate::knobs::{self, KnobId, KNOBS};
use crate::scanner;
use crate::stats::{self, COUNTERS};

const KNOB_COUNT: usize = KNOBS.len();
/// Knobs first, then counters: a file's index says which it is.
const FILE_COUNT: usize = KNOB_COUNT + COUNTERS.len();

/// Current knob values, indexed by [`KnobId`].
static VALUES: [Atomic<u64>; KNOB_COUNT] = [const { Atomic::new(0) }; KNOB_COUNT];

/// Reads a knob.
pub(crate) fn knob(id: KnobId) -> u64 {
    // `VALUES` has one entry per `KnobId`: the lookup cannot fail, and never panics.
    VALUES.get(id as usize).map_or(0, |v| v.load(Relaxed))
}

/// The knob values for one scan round.
pub(crate) fn snapshot() -> knobs::Snapshot {
    knobs::Snapshot::from_values(&core::array::from_fn(|i| {
        VALUES.get(i).map_or(0, |v| v.load(Relaxed))
    }))
}

/// Sets `run` to 0 from inside rksm (KSM started, so rksm steps aside).
pub(crate) fn stop_running() {
    if let Some(run) = VALUES.get(KnobId::Run as usize) {
        run.store(knobs::RUN_STOP, Relaxed);
    }
}

/// The sysfs directory; removed on drop.
///
/// # Invariants
///
/// `rksm_sysfs_add` succeeded and `rksm_sysfs_remove` has not been called.
pub(crate) struct Registration(());

impl Registration {
    /// Resets every knob to its default and every counter to 0, and creates the directory.
    pub(crate) fn new() -> Result<Self> {
        for (value, spec) in VALUES.iter().zip(KNOBS.iter()) {
            value.store(spec.default, Relaxed);
        }
        stats::reset();
        let mut names = [core::ptr::null(); FILE_COUNT];
        let mut writable = [false; FILE_COUNT];
        let knob_names = KNOBS.iter().map(|k| k.name);
        let all_names = Iterator::chain(knob_names, COUNTERS.iter().map(|c| c.name));
        for (i, ((name, w), file)) in names
            .iter_mut()
            .zip(writable.iter_mut())
            .zip(all_names)
            .enumerate()
        {
            *name = file.as_char_ptr();
            *w = i < KNOB_COUNT;
        }
        // SAFETY: both arrays hold `FILE_COUNT` elements and the shim copies the pointers it
        // keeps; every name is a `'static` C string literal. Only one `Registration` exists
        // (module init creates it once), so the directory is not created twice.
        let err =
            unsafe { ffi::rksm_sysfs_add(names.as_ptr(), writable.as_ptr(), FILE_COUNT as c_uint) };
        if err != 0 {
            return Err(Error::from_errno(err));
        }
        // INVARIANT: the directory was just created.
        Ok(Self(()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the directory exists and is removed only here.
        unsafe { ffi::rksm_sysfs_remove() };
    }
}

fn show(idx: usize, out: &mut Formatter<'_>) -> Result {
    let r = match VALUES.get(idx) {
        Some(knob) => writeln!(out, "{}", knob.load(Relaxed)),
        None => {
            let counter = COUNTERS.get(idx - KNOB_COUNT).ok_or(EINVAL)?;
            writeln!(out, "{}", (counter.read)())
        }
    };
    r.map_err(|_| EINVAL)
}

fn store(idx: usize, input: &[u8]) -> Result {
    let (Some(spec), Some(knob)) = (KNOBS.get(idx), VALUES.get(idx)) else {
        return Err(EINVAL);
    };
    let value = knobs::parse(spec.kind, input).map_err(|_| EINVAL)?;
    if idx == KnobId::Run as usize {
        return scanner::set_run(knob, value);
    }
    knob.store(value, Relaxed);
    // Let a sleeping scanner pick up a new pace at once.
    scanner::kick();
    Ok(())
}

/// Called by the shim for a read of file `idx`.
#[no_mangle]
extern "C" fn rksm_attr_show(idx: c_uint, buf: *mut c_char) -> isize {
    // SAFETY: sysfs hands `show` a zeroed buffer of PAGE_SIZE bytes, ours until we return.
    let page =
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
    let mut out = Formatter::new(page);
    match show(idx as usize, &mut out) {
        Ok(()) => out.bytes_written() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Called by the shim for a write of `len` bytes to file `idx`.
#[no_mangle]
extern "C" fn rksm_attr_store(idx: c_uint, buf: *const c_char, len: usize) -> isize {
    // SAFETY: sysfs hands `store` the `len` bytes userspace wrote, valid until we return.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    match store(idx as usize, input) {
        Ok(()) => len as isize,
        Err(e) => e.to_errno() as isize,
    }
}
