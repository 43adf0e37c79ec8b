// SPDX-License-Identifier: GPL-2.0

//! The memfd hooks: `memfd_noexec` (what `memfd_create` may create) and `memfd_exec` (when a
//! memfd's content may run). docs/admin-guide.md gives the threat model.
//!
//! There is no `memfd_create` LSM hook, and a module cannot become an LSM, so the hooks are
//! kprobes placed at the first instruction of four out-of-line functions
//! (`rust-bindings/memfd_hooks.c`):
//!
//! - `memfd_alloc_file(name, flags)`, which `memfd_create` calls with the flags the kernel's
//!   own checks (`sanitize_flags`) let through, before any file or fd exists. The handler reads
//!   the caller's original flags from its syscall registers, and either rewrites the `flags`
//!   argument (a legacy call gets `MFD_NOEXEC_SEAL`) or makes the function return
//!   `ERR_PTR(-EACCES)` without running, so the syscall fails with no fd installed.
//! - `security_bprm_check(bprm)`, `security_mmap_file(file, prot, flags)` and
//!   `security_file_mprotect(vma, reqprot, prot)` (real functions with `CONFIG_SECURITY`). For
//!   a memfd that may not run, the handler makes the function return `-EACCES` without running.
//!
//! Making a function return at once is how the kernel's own error injection (`fail_function`)
//! uses kprobes; a kprobe, unlike a kretprobe, needs no per-call instance that could run out,
//! so no call ever goes past a hook unchecked.
//!
//! The `memfd_create` hook is always armed (its counters count at the defaults too). The three
//! run hooks sit on every exec, mmap and mprotect, so they are placed disarmed and armed only
//! while `memfd_exec` is not `any` ([`arm_run_hooks`], called by [`Control`]): at the defaults
//! they cost nothing.
//!
//! The handlers run in any task, in the kprobe's int3 context: no sleeping and no lock. The C
//! side gathers the facts (flags, is it a memfd, is it write-sealed); this file decides, with
//! the kernel-free rules of [`crate::memfd_policy`], reading the knobs from
//! [`crate::control`]'s atomics, and counts in [`crate::stats`].

use kernel::prelude::*;

use crate::control::{self, Control};
use crate::ffi;
use crate::knobs::KnobId;
use crate::memfd_policy::{self, Create};
use crate::stats::{self, Stat};

/// The placed kprobes; removed on drop.
///
/// # Invariants
///
/// If `registered`, `rksm_memfd_hooks_register` was called and `rksm_memfd_hooks_unregister`
/// was not. Only one `Hooks` exists at a time (module init creates it once).
pub(crate) struct Hooks {
    registered: bool,
}

impl Hooks {
    /// Places the hooks, unless `place` is false (the `memfd_hooks` module parameter). A hook
    /// that cannot be placed on this kernel is logged (by the C side) and its knob is told to
    /// refuse every value but its default: it must not accept a policy it cannot apply.
    pub(crate) fn register(control: &Control, place: bool) -> Self {
        let placed = if place {
            // SAFETY: Module init, process context; only one `Hooks` is created per load.
            unsafe { ffi::rksm_memfd_hooks_register() }
        } else {
            pr_info!("memfd hooks left out (memfd_hooks=0)\n");
            0
        };
        if placed & ffi::MEMFD_HOOK_CREATE == 0 {
            pr_warn!("memfd_noexec refuses values other than 0: its hook is not in place\n");
            control.set_unsupported(KnobId::MemfdNoexec);
        }
        if placed & ffi::MEMFD_HOOK_RUN == 0 {
            pr_warn!("memfd_exec refuses values other than any: its hooks are not in place\n");
            control.set_unsupported(KnobId::MemfdExec);
        }
        // INVARIANT: Registered just now if `place`.
        Self { registered: place }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        if self.registered {
            // SAFETY: Registered (type invariant) and unregistered only here. Module unload
            // is process context.
            unsafe { ffi::rksm_memfd_hooks_unregister() };
        }
    }
}

/// Arms (`on`) or disarms the run hooks (exec, mmap, mprotect), which sit on hot paths and are
/// armed only while `memfd_exec` is not `any`. Does nothing if they are not placed.
///
/// Called by [`Control`] only, which serializes the calls; process context.
pub(crate) fn arm_run_hooks(on: bool) -> Result {
    // SAFETY: Process context (a sysfs write). `Control` serializes the calls, and they happen
    // only while sysfs exists: after `Hooks::register`, before `Hooks` is dropped.
    let err = unsafe { ffi::rksm_memfd_hooks_arm(on) };
    if err != 0 {
        return Err(Error::from_errno(err));
    }
    Ok(())
}

/// Logs a refusal, rate-limited, with the task's pid and comm.
fn log_refusal(what: c_int, policy: u64) {
    // The knobs hold 0..=2: the conversion cannot fail.
    let policy = c_uint::try_from(policy).unwrap_or(c_uint::MAX);
    // SAFETY: The C side logs with `pr_warn_ratelimited`, which any context may call.
    unsafe { ffi::rksm_memfd_log_refusal(what, policy) };
}

/// Called by the `memfd_alloc_file` hook for a `memfd_create` call: the flags the caller passed
/// and those the kernel's checks let through. Returns the flags `memfd_alloc_file` is to run
/// with, or `-EACCES` for a call `memfd_noexec` refuses.
///
/// Runs in the caller's task, in atomic context: no lock, no sleep.
#[no_mangle]
extern "C" fn rksm_memfd_on_create(user_flags: c_uint, flags: c_uint) -> c_long {
    let noexec = control::memfd_noexec();
    match memfd_policy::create(noexec, user_flags, flags) {
        Create::Proceed(flags) => {
            let stat = if memfd_policy::is_noexec(flags) {
                Stat::MemfdCreatedNoexec
            } else {
                Stat::MemfdCreatedExec
            };
            stats::add(stat, 1);
            // `c_long` has 64 bits where the hooks exist (x86-64): any flags fit. Were they not
            // to, refusing is the safe way out.
            c_long::try_from(flags).unwrap_or(EACCES.to_errno() as c_long)
        }
        Create::Refuse => {
            stats::add(Stat::MemfdCreateRefused, 1);
            log_refusal(ffi::MEMFD_CREATE, noexec);
            EACCES.to_errno() as c_long
        }
    }
}

/// Called by the exec, mmap and mprotect hooks when a memfd is about to run (`what`:
/// `RKSM_MEMFD_EXEC`, `_MMAP` or `_MPROTECT` of `rust-bindings/shim.h`). `write_sealed`: nobody can change its
/// content any more. Returns 0 to let it run, or `-EACCES`.
///
/// Runs in the caller's task, in atomic context: no lock, no sleep.
#[no_mangle]
extern "C" fn rksm_memfd_on_run(what: c_int, write_sealed: bool) -> c_int {
    let policy = control::memfd_exec();
    if memfd_policy::may_run(policy, write_sealed) {
        return 0;
    }
    let stat = if what == ffi::MEMFD_EXEC {
        Stat::MemfdExecRefused
    } else {
        Stat::MemfdMmapExecRefused
    };
    stats::add(stat, 1);
    log_refusal(what, policy);
    EACCES.to_errno()
}
