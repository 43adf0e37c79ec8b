// SPDX-License-Identifier: GPL-2.0

//! What `memfd_noexec` and `memfd_exec` decide, with no kernel in sight: the hooks in
//! `src/memfd.rs` gather the facts (flags, seals) and apply the verdicts. The host workspace
//! unit-tests this file (`cargo test`).
//!
//! `memfd_noexec` follows `check_sysctl_memfd_noexec()` in 7.3's `mm/memfd.c`, as a floor under
//! each pid namespace's `vm.memfd_noexec`: the kernel has already applied the caller's
//! namespace value when the hook runs, so only the floor is left to apply.

use crate::knobs::{MEMFD_EXEC_ANY, MEMFD_EXEC_NONE, MEMFD_EXEC_SEALED};

/// `MFD_NOEXEC_SEAL` (include/uapi/linux/memfd.h): not executable, and sealed so it stays so.
pub(crate) const MFD_NOEXEC_SEAL: u32 = 0x0008;
/// `MFD_EXEC`: executable.
pub(crate) const MFD_EXEC: u32 = 0x0010;

/// What a `memfd_create` call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Create {
    /// It goes on with these flags (what `memfd_alloc_file` is called with).
    Proceed(u32),
    /// It fails with `EACCES`, before any file or fd exists.
    Refuse,
}

/// The verdict for one `memfd_create` call under the floor `noexec` (0, 1 or 2).
///
/// `user_flags` are the flags the caller passed; `flags` are those after the kernel's own
/// checks (its namespace value applied: with neither flag given, it added `MFD_EXEC` or
/// `MFD_NOEXEC_SEAL`). As in 7.3 at the same value:
///
/// - at 1 or 2, a call with neither `MFD_EXEC` nor `MFD_NOEXEC_SEAL` gets `MFD_NOEXEC_SEAL`;
/// - at 2, a call that would still create an executable memfd (explicit `MFD_EXEC`) is refused.
pub(crate) fn create(noexec: u64, user_flags: u32, flags: u32) -> Create {
    let mut flags = flags;
    if noexec >= 1 && user_flags & (MFD_EXEC | MFD_NOEXEC_SEAL) == 0 {
        flags = (flags & !MFD_EXEC) | MFD_NOEXEC_SEAL;
    }
    if noexec >= 2 && !is_noexec(flags) {
        return Create::Refuse;
    }
    Create::Proceed(flags)
}

/// Whether `memfd_alloc_file` makes a noexec-sealed memfd from `flags` (otherwise, an
/// executable one: without `MFD_NOEXEC_SEAL` it keeps its x bits).
pub(crate) fn is_noexec(flags: u32) -> bool {
    flags & MFD_NOEXEC_SEAL != 0
}

/// Whether a memfd's content may run (be executed, or mapped with `PROT_EXEC`) under
/// `memfd_exec` = `policy`. `write_sealed`: nobody can change the content any more.
///
/// A value other than the three words (none can be stored) refuses, as `none` does.
pub(crate) fn may_run(policy: u64, write_sealed: bool) -> bool {
    match policy {
        MEMFD_EXEC_ANY => true,
        MEMFD_EXEC_SEALED => write_sealed,
        MEMFD_EXEC_NONE => false,
        // No write can store another value; should one appear, refuse.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MFD_CLOEXEC: u32 = 0x0001;
    const MFD_ALLOW_SEALING: u32 = 0x0002;

    /// The flags 7.3's `sanitize_flags()` passes on at namespace value `ns`, or `None` for its
    /// own refusals (both flags: EINVAL; MFD_EXEC at 2: EACCES).
    fn kernel(ns: u64, user: u32) -> Option<u32> {
        if user & MFD_EXEC != 0 && user & MFD_NOEXEC_SEAL != 0 {
            return None;
        }
        let mut flags = user;
        if flags & (MFD_EXEC | MFD_NOEXEC_SEAL) == 0 {
            flags |= if ns >= 1 { MFD_NOEXEC_SEAL } else { MFD_EXEC };
        }
        if flags & MFD_NOEXEC_SEAL == 0 && ns >= 2 {
            return None;
        }
        Some(flags)
    }

    /// Every flag combination the issue lists, with and without sealing and CLOEXEC.
    fn combinations() -> impl Iterator<Item = u32> {
        let exec = [0, MFD_EXEC, MFD_NOEXEC_SEAL, MFD_EXEC | MFD_NOEXEC_SEAL];
        let extra = [
            0,
            MFD_ALLOW_SEALING,
            MFD_CLOEXEC,
            MFD_ALLOW_SEALING | MFD_CLOEXEC,
        ];
        exec.into_iter()
            .flat_map(move |e| extra.into_iter().map(move |x| e | x))
    }

    /// The floor behaves as the kernel's own value max(floor, ns) does, for every call.
    #[test]
    fn floor_is_max_of_floor_and_namespace() {
        for floor in 0..=2 {
            for ns in 0..=2 {
                for user in combinations() {
                    let got = kernel(ns, user).map(|flags| create(floor, user, flags));
                    let want = kernel(floor.max(ns), user);
                    match (got, want) {
                        // Refused by the kernel before the hook runs.
                        (None, None) => assert!(ns >= floor || user & MFD_NOEXEC_SEAL != 0),
                        (Some(Create::Refuse), None) => {}
                        (Some(Create::Proceed(f)), Some(w)) => {
                            assert_eq!(f, w, "floor {floor} ns {ns} user {user:#x}")
                        }
                        (got, want) => {
                            panic!("floor {floor} ns {ns} user {user:#x}: {got:?} vs {want:?}")
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn at_0_nothing_changes() {
        for user in combinations() {
            if let Some(flags) = kernel(0, user) {
                assert_eq!(create(0, user, flags), Create::Proceed(flags));
            }
        }
    }

    #[test]
    fn at_1_legacy_calls_get_noexec_seal_and_explicit_exec_stays() {
        let legacy = MFD_ALLOW_SEALING;
        let got = create(1, legacy, legacy | MFD_EXEC);
        assert_eq!(got, Create::Proceed(legacy | MFD_NOEXEC_SEAL));
        let exec = MFD_EXEC | MFD_CLOEXEC;
        assert_eq!(create(1, exec, exec), Create::Proceed(exec));
        assert!(!is_noexec(exec));
        assert!(is_noexec(MFD_NOEXEC_SEAL));
    }

    #[test]
    fn at_2_explicit_exec_is_refused() {
        assert_eq!(create(2, MFD_EXEC, MFD_EXEC), Create::Refuse);
        assert_eq!(
            create(
                2,
                MFD_EXEC | MFD_ALLOW_SEALING,
                MFD_EXEC | MFD_ALLOW_SEALING
            ),
            Create::Refuse
        );
        assert_eq!(create(2, 0, MFD_EXEC), Create::Proceed(MFD_NOEXEC_SEAL));
        assert_eq!(
            create(2, MFD_NOEXEC_SEAL, MFD_NOEXEC_SEAL),
            Create::Proceed(MFD_NOEXEC_SEAL)
        );
        // Without CONFIG_SYSCTL the kernel passes neither flag on; the floor still applies.
        assert_eq!(create(2, 0, 0), Create::Proceed(MFD_NOEXEC_SEAL));
        assert_eq!(create(0, 0, 0), Create::Proceed(0));
    }

    #[test]
    fn run_policy() {
        assert!(may_run(MEMFD_EXEC_ANY, false));
        assert!(may_run(MEMFD_EXEC_ANY, true));
        assert!(!may_run(MEMFD_EXEC_SEALED, false));
        assert!(may_run(MEMFD_EXEC_SEALED, true));
        assert!(!may_run(MEMFD_EXEC_NONE, false));
        assert!(!may_run(MEMFD_EXEC_NONE, true));
        assert!(!may_run(3, true));
    }
}
