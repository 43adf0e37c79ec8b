// SPDX-License-Identifier: GPL-2.0

//! Per-page records and the accounting of a pass over one mm.
//!
//! A [`Record`] is what rksm remembers about one scanned page between two passes: 16 bytes
//! (address and flags in one word, the content hash in the other), kept in address order. The functions here work on slices, so the kernel keeps the records in
//! a `KVVec` (no kmalloc ceiling) and the host tests use a `Vec`. This file needs no kernel: the
//! host workspace tests it against a naive model (`cargo test`).

use crate::smart_scan::Age;

/// `Record::flags`: this address was merged into the zero page.
pub(crate) const ZERO_MERGED: u32 = 1;
/// `Record::flags`: this address maps a stable page.
pub(crate) const STABLE_MERGED: u32 = 2;
/// `Record::flags`: the page was put in the unstable tree at this visit. It counts in
/// `pages_unshared` until its next visit, as KSM's rmap_items do.
pub(crate) const IN_UNSTABLE: u32 = 4;
/// The flags that mean "rksm merged this address".
pub(crate) const MERGED: u32 = ZERO_MERGED | STABLE_MERGED;
/// Where a record's flags keep a page's smart-scan [`Age`] (bits 4-11 age, 12-19 skips).
const AGE_SHIFT: u32 = 4;
/// How many low bits of [`Record`]'s first word hold its flags.
const FLAG_BITS: u32 = 20;
const FLAG_MASK: u64 = (1 << FLAG_BITS) - 1;
/// A record keeps the address's page number (4 KiB pages, or more): user addresses lie below
/// 2^57 on every 64-bit architecture (5-level paging), so it fits in the 44 bits left.
const ADDR_SHIFT: u32 = 12;

/// What rksm remembers about one scanned page.
///
/// # Invariants
///
/// `key` holds the page's address, shifted right by `ADDR_SHIFT`, above `FLAG_BITS` bits of
/// flags; records therefore sort by `key` as by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    key: u64,
    /// The keyed content hash at the last visit: the volatility check (as in KSM), and the key
    /// the page is looked up by first at its next visit.
    pub(crate) hash: u64,
}

impl Record {
    /// The record of the page-aligned user address `addr`, with `flags` (`ZERO_MERGED`,
    /// `STABLE_MERGED`, `IN_UNSTABLE`, and the smart-scan age: see [`Record::flags_with_age`]).
    pub(crate) fn new(addr: usize, hash: u64, flags: u32) -> Self {
        Self {
            key: (addr as u64 >> ADDR_SHIFT) << FLAG_BITS | (u64::from(flags) & FLAG_MASK),
            hash,
        }
    }

    /// The page's user address.
    pub(crate) fn addr(&self) -> usize {
        ((self.key >> FLAG_BITS) << ADDR_SHIFT) as usize
    }

    pub(crate) fn flags(&self) -> u32 {
        (self.key & FLAG_MASK) as u32
    }

    pub(crate) fn set_flags(&mut self, flags: u32) {
        self.key = (self.key & !FLAG_MASK) | (u64::from(flags) & FLAG_MASK);
    }

    /// The smart-scan state kept in the flags.
    pub(crate) fn age(&self) -> Age {
        Age {
            age: (self.flags() >> AGE_SHIFT) as u8,
            skips: (self.flags() >> (AGE_SHIFT + 8)) as u8,
        }
    }

    /// The flags `flags` (low 4 bits) with the smart-scan state `age`.
    pub(crate) fn flags_with_age(flags: u32, age: Age) -> u32 {
        (flags & 0xf) | u32::from(age.age) << AGE_SHIFT | u32::from(age.skips) << (AGE_SHIFT + 8)
    }

    /// Whether rksm merged this address.
    pub(crate) fn merged(&self) -> bool {
        self.flags() & MERGED != 0
    }

    /// Whether the page counts in `pages_unshared`.
    pub(crate) fn unshared(&self) -> bool {
        self.flags() & IN_UNSTABLE != 0
    }

    /// Whether the address was merged into the zero page.
    pub(crate) fn zero(&self) -> bool {
        self.flags() & ZERO_MERGED != 0
    }
}

/// How the global counters move when records come and go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deltas {
    /// `pages_tracked`.
    pub(crate) records: i64,
    /// `ksm_zero_pages`.
    pub(crate) zero_pages: i64,
    /// `pages_unshared`.
    pub(crate) unshared: i64,
}

fn count(records: &[Record], f: impl Fn(&Record) -> bool) -> i64 {
    records.iter().filter(|r| f(r)).count() as i64
}

/// The index of the record of `addr` in `sorted` (sorted by address), if any.
pub(crate) fn find(sorted: &[Record], addr: usize) -> Option<usize> {
    sorted.binary_search_by_key(&addr, |r| r.addr()).ok()
}

/// The page at `addr` left the unstable tree: clears IN_UNSTABLE on its record in `sorted`, and
/// if it `merged` with the page that found it, records the merge (as a merge would have, had
/// it been visited now). `None` if there is no such record, else whether the flag was set.
pub(crate) fn leave_unstable(sorted: &mut [Record], addr: usize, merged: bool) -> Option<bool> {
    let r = find(sorted, addr).and_then(|i| sorted.get_mut(i))?;
    let was = r.unshared();
    r.set_flags(if merged {
        STABLE_MERGED
    } else {
        r.flags() & !IN_UNSTABLE
    });
    Some(was)
}

/// Whether `records` is sorted by strictly increasing address.
#[cfg(test)]
pub(crate) fn is_sorted(records: &[Record]) -> bool {
    records.windows(2).all(|w| w[0].addr() < w[1].addr())
}

/// A pass over one mm is complete: `next` (this pass's records, sorted by address) replaces
/// `prev` (the previous pass's, sorted). Hands every record of `prev` that has flags but was
/// not met again to `gone` (its merge may need undoing), and returns how the counters move.
///
/// One merge walk over both: linear in the records.
pub(crate) fn finish(prev: &[Record], next: &[Record], mut gone: impl FnMut(&Record)) -> Deltas {
    let mut unshared = 0;
    let mut n = next.iter().peekable();
    for r in prev {
        while n.next_if(|x| x.addr() < r.addr()).is_some() {}
        if n.peek().is_some_and(|x| x.addr() == r.addr()) {
            continue;
        }
        if r.unshared() {
            unshared -= 1;
        }
        if r.flags() != 0 {
            gone(r);
        }
    }
    Deltas {
        records: next.len() as i64 - prev.len() as i64,
        zero_pages: count(next, Record::zero) - count(prev, Record::zero),
        unshared,
    }
}

/// Every record of an mm is dropped (exit, `run=2`): how the counters move.
pub(crate) fn forget(prev: &[Record], next: &[Record]) -> Deltas {
    Deltas {
        records: -(prev.len() as i64),
        zero_pages: -count(prev, Record::zero),
        unshared: -(count(prev, Record::unshared) + count(next, Record::unshared)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn rec(addr: usize, flags: u32) -> Record {
        Record::new(addr, 0, flags)
    }

    fn records() -> impl Strategy<Value = Vec<Record>> {
        proptest::collection::btree_map(0usize..64, 0u32..8, 0..40)
            .prop_map(|m| m.into_iter().map(|(a, f)| rec(a * 4096, f)).collect())
    }

    proptest! {
        #[test]
        fn finish_matches_a_naive_model(prev in records(), next in records()) {
            let mut gone = Vec::new();
            let d = finish(&prev, &next, |r| gone.push(*r));
            let seen: BTreeMap<usize, ()> = next.iter().map(|r| (r.addr(), ())).collect();
            let lost: Vec<Record> =
                prev.iter().filter(|r| !seen.contains_key(&r.addr())).copied().collect();
            let want_gone: Vec<Record> = lost.iter().filter(|r| r.flags() != 0).copied().collect();
            prop_assert_eq!(gone, want_gone);
            prop_assert_eq!(d.records, next.len() as i64 - prev.len() as i64);
            prop_assert_eq!(
                d.unshared,
                -(lost.iter().filter(|r| r.flags() & IN_UNSTABLE != 0).count() as i64)
            );
            let zeros = |v: &[Record]| v.iter().filter(|r| r.flags() & ZERO_MERGED != 0).count() as i64;
            prop_assert_eq!(d.zero_pages, zeros(&next) - zeros(&prev));
        }

        #[test]
        fn finish_then_forget_returns_counters_to_zero(prev in records(), next in records()) {
            // `prev` alone is accounted to start with.
            let f = finish(&prev, &next, |_| {});
            let g = forget(&next, &[]);
            prop_assert_eq!(prev.len() as i64 + f.records + g.records, 0);
            prop_assert_eq!(count(&prev, Record::zero) + f.zero_pages + g.zero_pages, 0);
        }

        #[test]
        fn find_finds_every_record(v in records()) {
            prop_assert!(is_sorted(&v));
            for (i, r) in v.iter().enumerate() {
                prop_assert_eq!(find(&v, r.addr()), Some(i));
                prop_assert_eq!(find(&v, r.addr() + 1), None);
            }
        }
    }

    #[test]
    fn leaving_the_unstable_tree_clears_the_flag_once() {
        let mut v = vec![rec(0, IN_UNSTABLE | STABLE_MERGED), rec(4096, 0)];
        assert_eq!(leave_unstable(&mut v, 0, false), Some(true));
        assert_eq!(v[0].flags(), STABLE_MERGED);
        assert_eq!(leave_unstable(&mut v, 0, false), Some(false));
        assert_eq!(leave_unstable(&mut v, 4096, false), Some(false));
        assert_eq!(leave_unstable(&mut v, 8192, false), None);
    }

    #[test]
    fn a_twin_that_merged_is_recorded_as_merged() {
        let aged = Record::flags_with_age(IN_UNSTABLE, Age { age: 3, skips: 1 });
        let mut v = vec![rec(0, aged)];
        assert_eq!(leave_unstable(&mut v, 0, true), Some(true));
        assert_eq!(v[0].flags(), STABLE_MERGED);
        assert!(v[0].merged() && !v[0].unshared());
    }

    #[test]
    fn age_round_trips_through_the_flags() {
        let age = Age { age: 200, skips: 7 };
        let r = rec(0, Record::flags_with_age(IN_UNSTABLE, age));
        assert_eq!(r.age(), age);
        assert!(r.unshared() && !r.merged() && !r.zero());
        assert_eq!(core::mem::size_of::<Record>(), 16);
    }

    proptest! {
        #[test]
        fn a_record_keeps_its_address_hash_and_flags(
            page in 0u64..(1 << 44),
            hash in any::<u64>(),
            flags in 0u32..8,
            age in any::<u8>(),
            skips in any::<u8>(),
        ) {
            let addr = (page << 12) as usize;
            let flags = Record::flags_with_age(flags, Age { age, skips });
            let mut r = Record::new(addr, hash, flags);
            prop_assert_eq!((r.addr(), r.hash, r.flags()), (addr, hash, flags));
            prop_assert_eq!(r.age(), Age { age, skips });
            r.set_flags(IN_UNSTABLE);
            prop_assert_eq!((r.addr(), r.hash, r.flags()), (addr, hash, IN_UNSTABLE));
        }

        #[test]
        fn records_sort_by_address(a in 0u64..(1 << 44), b in 0u64..(1 << 44), fa in 0u32..(1 << 20), fb in 0u32..(1 << 20)) {
            let (ra, rb) = (Record::new((a << 12) as usize, 0, fa), Record::new((b << 12) as usize, 0, fb));
            prop_assert_eq!(ra.addr() < rb.addr(), ra.key < rb.key);
        }
    }
}
