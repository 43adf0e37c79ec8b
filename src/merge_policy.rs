// SPDX-License-Identifier: GPL-2.0

//! Who may share a page with whom: the rules of `merge_domains`, `merge_exec` and
//! `zero_pages_only`. Kernel-free, so the host workspace tests it (`cargo test`).
//!
//! # Domains
//!
//! Every mm rksm scans belongs to one domain, fixed when rksm first meets the mm: nobody
//! (`none`, KSM's behaviour), the real uid of its process then (`uid`), or the mm itself
//! (`process`, a serial number never reused). A page's key in the stable and the unstable
//! tree is its content hash combined with its domain by [`tree_key`]. Two pages of different
//! domains and equal content therefore always have different keys, so a lookup never even
//! compares a page with another domain's: one tenant can neither share a page with another
//! nor time whether the other holds it. (The combination is a bijection in the domain, which is
//! what makes "always" exact and not merely likely.)

/// `merge_domains`: KSM's behaviour, every page may merge with every other.
pub(crate) const DOMAINS_NONE: u64 = 0;
/// `merge_domains`: pages merge only within the real uid of their processes.
pub(crate) const DOMAINS_UID: u64 = 1;
/// `merge_domains`: pages merge only within one process (one mm).
pub(crate) const DOMAINS_PROCESS: u64 = 2;
/// The words of `merge_domains`, indexed by the `DOMAINS_*` values.
pub(crate) const DOMAINS_WORDS: &[&str] = &["none", "uid", "process"];

/// What rksm knows of an mm that the domain of each mode is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The real uid (as the kernel sees it, in the initial user namespace) of the process
    /// rksm first met the mm in.
    pub(crate) uid: u32,
    /// A number no other mm got before, nor will get after, in this module load.
    pub(crate) serial: u64,
}

/// Domain values of the three modes never meet (each change of mode empties the trees first),
/// but they are kept apart anyway: the mode sits in the top bits.
const UID_TAG: u64 = 1 << 62;
const PROCESS_TAG: u64 = 2 << 62;
const SERIAL_MASK: u64 = (1 << 62) - 1;

/// The domain of an mm owned by `owner` under `merge_domains` = `mode`.
pub(crate) fn domain(mode: u64, owner: Owner) -> u64 {
    match mode {
        DOMAINS_UID => UID_TAG | u64::from(owner.uid),
        DOMAINS_PROCESS => PROCESS_TAG | (owner.serial & SERIAL_MASK),
        // `none`, and any value no write can store: one domain for all.
        _ => 0,
    }
}

/// The key of a page with content hash `hash` in domain `domain`, in both trees.
///
/// For a fixed hash this is a bijection of the domain (`mix` is one, and so is the xor), so
/// equal contents (equal hashes) of two domains never share a key. Domain 0 keeps the hash as
/// it is.
pub(crate) fn tree_key(hash: u64, domain: u64) -> u64 {
    hash ^ mix(domain)
}

/// The finalizer of MurmurHash3 (public domain, Austin Appleby): a bijection of `u64`
/// (xor-shifts and multiplications by odd constants are invertible) that spreads the domain's
/// bits over the whole key. `mix(0) == 0`.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// Whether changing `merge_domains` from `old` to `new` undoes every merge (as `run=2` does)
/// before merging resumes: any change does.
///
/// A step to finer domains (`none` < `uid` < `process`; one process has one uid) forbids merges
/// that exist, and rksm does not record which merges crossed which boundary. A step to coarser
/// domains forbids nothing, but the stable pages made under the old domains sit under keys no
/// lookup makes any more: their groups would never join (two uids' copies of one page would stay
/// two for as long as they live). Starting over gives one copy per new domain.
pub(crate) fn domains_change_unmerges(old: u64, new: u64) -> bool {
    old != new
}

/// Whether rksm may merge pages of a VMA: executable ones only with `merge_exec` = 1.
pub(crate) fn may_merge_vma(vm_exec: bool, merge_exec: bool) -> bool {
    !vm_exec || merge_exec
}

/// The merge rules of one scan round, read from the knobs once at its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct MergePolicy {
    /// `merge_domains`: a `DOMAINS_*` value.
    pub(crate) domains: u64,
    /// `merge_exec`: pages of executable mappings may merge.
    pub(crate) merge_exec: bool,
    /// `zero_pages_only`: only zero-filled pages merge, into the zero page.
    pub(crate) zero_pages_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The inverse of `mix`, which proves it a bijection.
    fn unmix(mut x: u64) -> u64 {
        // Inverse of x ^= x >> 33 (33 >= 64/2: one step undoes it).
        x ^= x >> 33;
        x = x.wrapping_mul(inverse(0xc4ce_b9fe_1a85_ec53));
        x ^= x >> 33;
        x = x.wrapping_mul(inverse(0xff51_afd7_ed55_8ccd));
        x ^= x >> 33;
        x
    }

    /// The multiplicative inverse of an odd `a` modulo 2^64 (Newton's iteration).
    fn inverse(a: u64) -> u64 {
        let mut x = a;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        }
        x
    }

    #[test]
    fn mix_keeps_zero() {
        assert_eq!(mix(0), 0);
        assert_eq!(
            tree_key(0x1234, domain(DOMAINS_NONE, Owner { uid: 7, serial: 9 })),
            0x1234
        );
    }

    #[test]
    fn modes() {
        let a = Owner {
            uid: 1000,
            serial: 1,
        };
        let b = Owner {
            uid: 1000,
            serial: 2,
        };
        let c = Owner {
            uid: 1001,
            serial: 3,
        };
        assert_eq!(domain(DOMAINS_NONE, a), domain(DOMAINS_NONE, c));
        assert_eq!(domain(DOMAINS_UID, a), domain(DOMAINS_UID, b));
        assert_ne!(domain(DOMAINS_UID, a), domain(DOMAINS_UID, c));
        assert_ne!(domain(DOMAINS_PROCESS, a), domain(DOMAINS_PROCESS, b));
        // uid 0 is a domain of its own, not "none".
        assert_ne!(domain(DOMAINS_UID, Owner { uid: 0, serial: 0 }), 0);
        assert!(domains_change_unmerges(DOMAINS_NONE, DOMAINS_UID));
        assert!(domains_change_unmerges(DOMAINS_PROCESS, DOMAINS_NONE));
        assert!(!domains_change_unmerges(DOMAINS_UID, DOMAINS_UID));
        assert!(may_merge_vma(false, false));
        assert!(!may_merge_vma(true, false));
        assert!(may_merge_vma(true, true));
    }

    proptest! {
        #[test]
        fn mix_is_a_bijection(x: u64) {
            prop_assert_eq!(unmix(mix(x)), x);
        }

        /// Equal content in two different domains never shares a key; in one domain it always
        /// does.
        #[test]
        fn domains_never_share_keys(hash: u64, d1: u64, d2: u64) {
            prop_assert_eq!(tree_key(hash, d1) == tree_key(hash, d2), d1 == d2);
        }

        /// Domains of different owners differ exactly when the mode tells them apart.
        #[test]
        fn domain_per_mode(u1: u32, u2: u32, s1 in 0u64..(1 << 62), s2 in 0u64..(1 << 62)) {
            let (a, b) = (Owner { uid: u1, serial: s1 }, Owner { uid: u2, serial: s2 });
            prop_assert_eq!(domain(DOMAINS_NONE, a), domain(DOMAINS_NONE, b));
            prop_assert_eq!(domain(DOMAINS_UID, a) == domain(DOMAINS_UID, b), u1 == u2);
            prop_assert_eq!(domain(DOMAINS_PROCESS, a) == domain(DOMAINS_PROCESS, b), s1 == s2);
        }
    }
}
