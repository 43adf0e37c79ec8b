// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/mm/rksm`: the show/store callbacks.
//!
//! The C shim owns the kobject plumbing and [`Control`] owns the knob values; this file only
//! parses what is written (with [`crate::knobs`]) and prints what is read.

use core::fmt::Write;

use kernel::prelude::*;
use kernel::str::Formatter;
use kernel::sync::Arc;

use crate::control::Control;
use crate::ffi;
use crate::knobs::{self, KNOBS};
use crate::stats::{self, COUNTERS};

const KNOB_COUNT: usize = KNOBS.len();
/// Knobs first, then counters: a file's index says which it is.
const FILE_COUNT: usize = KNOB_COUNT + COUNTERS.len();

/// The sysfs directory; removed on drop.
///
/// # Invariants
///
/// `rksm_sysfs_add` succeeded with `Arc::as_ptr(&self._control)` as its context, and
/// `rksm_sysfs_remove` has not been called.
pub(crate) struct Registration {
    /// Kept alive for the callbacks, which reach it through the shim's context pointer.
    _control: Arc<Control>,
}

impl Registration {
    /// Resets every counter to 0 and creates the directory, whose files present `control`.
    pub(crate) fn new(control: Arc<Control>) -> Result<Self> {
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
        let ctx = Arc::as_ptr(&control).cast::<c_void>();
        // SAFETY: Both arrays hold `FILE_COUNT` elements and the shim copies the pointers it
        // keeps; every name is a `'static` C string literal. `ctx` points to the `Control` the
        // returned `Registration` keeps alive until `drop` has removed the directory. Only one
        // `Registration` exists (module init creates it once), so the directory is not created
        // twice.
        let err = unsafe {
            ffi::rksm_sysfs_add(names.as_ptr(), writable.as_ptr(), FILE_COUNT as c_uint, ctx)
        };
        if err != 0 {
            return Err(Error::from_errno(err));
        }
        // INVARIANT: The directory was just created, with `control` as its context.
        Ok(Self { _control: control })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the directory exists and is removed only here. The
        // removal waits for running callbacks, so none uses the `Control` once it is dropped.
        unsafe { ffi::rksm_sysfs_remove() };
    }
}

fn show(control: &Control, idx: usize, out: &mut Formatter<'_>) -> Result {
    let r = match control.knob(idx) {
        Some((value, kind)) => knobs::show(kind, value, out),
        None => {
            let counter = idx
                .checked_sub(KNOB_COUNT)
                .and_then(|i| COUNTERS.get(i))
                .ok_or(EINVAL)?;
            writeln!(out, "{}", (counter.read)())
        }
    };
    r.map_err(|_| EINVAL)
}

fn store(control: &Control, idx: usize, input: &[u8]) -> Result {
    let spec = KNOBS.get(idx).ok_or(EINVAL)?;
    // A bad value never reaches `control`: the knob keeps its old value.
    let value = knobs::parse(spec.kind, input).map_err(|_| EINVAL)?;
    control.store(idx, value)
}

/// Called by the shim for a read of file `idx`.
///
/// # Safety
///
/// `ctx` is the context [`Registration::new`] passed to `rksm_sysfs_add`, and the directory
/// exists; `buf` is sysfs's zeroed `show` buffer of `PAGE_SIZE` bytes.
#[no_mangle]
unsafe extern "C" fn rksm_attr_show(ctx: *const c_void, idx: c_uint, buf: *mut c_char) -> isize {
    // SAFETY: The `Registration` that owns the directory keeps the `Control` alive, and it
    // removes the directory (waiting for this call) before it lets go of it.
    let control = unsafe { &*ctx.cast::<Control>() };
    // SAFETY: Sysfs hands `show` a zeroed buffer of PAGE_SIZE bytes, ours until we return.
    let page =
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
    let mut out = Formatter::new(page);
    match show(control, idx as usize, &mut out) {
        Ok(()) => out.bytes_written() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Called by the shim for a write of `len` bytes to file `idx`.
///
/// # Safety
///
/// `ctx` is the context [`Registration::new`] passed to `rksm_sysfs_add`, and the directory
/// exists; `buf` holds `len` readable bytes.
#[no_mangle]
unsafe extern "C" fn rksm_attr_store(
    ctx: *const c_void,
    idx: c_uint,
    buf: *const c_char,
    len: usize,
) -> isize {
    // SAFETY: As in `rksm_attr_show`: the directory's owner keeps the `Control` alive.
    let control = unsafe { &*ctx.cast::<Control>() };
    // SAFETY: Sysfs hands `store` the `len` bytes userspace wrote, valid until we return.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    match store(control, idx as usize, input) {
        Ok(()) => len as isize,
        Err(e) => e.to_errno() as isize,
    }
}
