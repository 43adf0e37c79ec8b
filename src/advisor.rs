// SPDX-License-Identifier: GPL-2.0

//! The scan-time advisor, as KSM's (`advisor_mode`, Linux 6.9+): at the end of each full scan
//! it sets `pages_to_scan` so that a full scan takes about `advisor_target_scan_time` seconds,
//! within a CPU budget. Kernel-free, so the host workspace tests it (`cargo test`).
//!
//! The arithmetic is KSM's (`scan_time_advisor()` in mm/ksm.c), in integers with the same
//! roundings, so the two engines pace alike, with one change: the CPU share of a scan is taken
//! over its real duration in milliseconds, where KSM divides by the duration rounded down to
//! whole seconds (at least 1). For a scan shorter than a second KSM's figure is too low by the
//! ratio: rksm scans a small workload in tens of milliseconds, KSM's formula then saw 1% CPU
//! where rksmd used 45%, and its 10% floor below raised `pages_to_scan` to
//! `advisor_max_pages_to_scan` and kept it there (measured: `make bench`'s advisor section). For
//! scans of whole seconds both give the same numbers (a property test checks it):
//!
//! - `factor` = target / last scan time (in percent);
//! - `change` = an EWMA (weight 30 %) of this scan time / the previous one (in percent);
//! - `pages` = pages_to_scan / factor * change;
//! - capped so that the next scan's CPU share stays between 10 % and `advisor_max_cpu`, as
//!   estimated from the last scan's, and at most `advisor_max_pages_to_scan`.
//!
//! Unlike KSM's, no division here can be by zero and no product can overflow: each is checked
//! or saturating, so absurd knob values give absurd but bounded results, never a panic.

/// `advisor_mode`: `pages_to_scan` is the user's.
pub(crate) const ADVISOR_NONE: u64 = 0;
/// `advisor_mode`: the scan-time advisor sets `pages_to_scan`.
pub(crate) const ADVISOR_SCAN_TIME: u64 = 1;
/// The words of `advisor_mode`, indexed by the `ADVISOR_*` values.
pub(crate) const ADVISOR_WORDS: &[&str] = &["none", "scan-time"];

/// `pages_to_scan` after `advisor_mode` goes back to `none` (KSM's `DEFAULT_PAGES_TO_SCAN`).
pub(crate) const DEFAULT_PAGES_TO_SCAN: u64 = 100;
/// Weight of the newest scan in the change EWMA, in percent (KSM's `EWMA_WEIGHT`).
const EWMA_WEIGHT: u64 = 30;
/// The CPU share, in percent, the advisor never paces below (KSM's `KSM_ADVISOR_MIN_CPU`).
const MIN_CPU: u64 = 10;

/// The advisor's knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `advisor_target_scan_time`: seconds a full scan should take (at least 1).
    pub(crate) target_scan_time: u64,
    /// `advisor_max_cpu`: the most CPU, in percent, rksmd should take.
    pub(crate) max_cpu: u64,
    /// `advisor_max_pages_to_scan`: the most pages per round.
    pub(crate) max_pages: u64,
}

/// What the advisor remembers between full scans (KSM's `struct advisor_ctx`, without the start
/// time, which the caller measures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Advisor {
    /// The last scan's duration in seconds; 0 before the first.
    scan_time: u64,
    /// The smoothed change of the scan time, in percent.
    change: u64,
    /// rksmd's CPU time, in ns, at the end of the last scan.
    cpu_ns: u64,
}

fn ewma(prev: u64, curr: u64) -> u64 {
    ((100 - EWMA_WEIGHT).saturating_mul(prev) + EWMA_WEIGHT.saturating_mul(curr)) / 100
}

/// `x` if it is not 0, else 1 (KSM's `x ? x : 1`).
fn at_least_1(x: u64) -> u64 {
    x.max(1)
}

impl Advisor {
    /// A full scan ended after `scan_ms` milliseconds, with rksmd's CPU time at `cpu_ns`
    /// (cumulative), while `pages_to_scan` was `pages`. Returns the new `pages_to_scan`.
    pub(crate) fn end_scan(&mut self, scan_ms: u64, cpu_ns: u64, pages: u64, lim: &Limits) -> u64 {
        let scan_time = at_least_1(scan_ms / 1000);
        let cpu_ms = cpu_ns.saturating_sub(self.cpu_ns) / 1_000_000;
        // Over the real duration: see the module's documentation.
        let cpu_percent = at_least_1(cpu_ms.saturating_mul(100) / at_least_1(scan_ms));
        let last_scan_time = if self.scan_time != 0 {
            self.scan_time
        } else {
            scan_time
        };
        // The scan time as a percentage of the target.
        let factor = at_least_1(lim.target_scan_time.saturating_mul(100) / scan_time);
        // The scan time as a percentage of the last one, smoothed.
        let change = ewma(
            self.change,
            at_least_1(scan_time.saturating_mul(100) / last_scan_time),
        );
        let mut new = pages.saturating_mul(100) / factor;
        new = new.saturating_mul(change) / 100;
        // Pages per percent of CPU, from the last scan.
        let per_page_cost = at_least_1(pages / cpu_percent);
        new = new.min(per_page_cost.saturating_mul(lim.max_cpu));
        new = new.max(per_page_cost.saturating_mul(MIN_CPU));
        new = new.min(lim.max_pages);
        *self = Self {
            scan_time,
            change,
            cpu_ns,
        };
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KSM_DEFAULTS: Limits = Limits {
        target_scan_time: 200,
        max_cpu: 70,
        max_pages: 30000,
    };

    /// KSM's `scan_time_advisor()`, transcribed as it reads (unsigned long arithmetic), for
    /// values where it neither divides by zero nor overflows.
    fn ksm(ctx: &mut (u64, u64, u64), scan_ms: u64, cpu_ns: u64, pages: u64, l: &Limits) -> u64 {
        let mut scan_time = scan_ms / 1000;
        scan_time = if scan_time != 0 { scan_time } else { 1 };
        let cpu_time_diff_ms = (cpu_ns - ctx.2) / 1000 / 1000;
        let mut cpu_percent = (cpu_time_diff_ms * 100) / (scan_time * 1000);
        cpu_percent = if cpu_percent != 0 { cpu_percent } else { 1 };
        let last_scan_time = if ctx.0 != 0 { ctx.0 } else { scan_time };
        let mut factor = l.target_scan_time * 100 / scan_time;
        factor = if factor != 0 { factor } else { 1 };
        let mut change = scan_time * 100 / last_scan_time;
        change = if change != 0 { change } else { 1 };
        change = ((100 - 30) * ctx.1 + 30 * change) / 100;
        let mut p = pages * 100 / factor;
        p = p * change / 100;
        let mut per_page_cost = pages / cpu_percent;
        per_page_cost = if per_page_cost != 0 { per_page_cost } else { 1 };
        p = p.min(per_page_cost * l.max_cpu);
        p = p.max(per_page_cost * 10);
        p = p.min(l.max_pages);
        *ctx = (scan_time, change, cpu_ns);
        p
    }

    #[test]
    fn first_scan_at_ksm_defaults() {
        let mut a = Advisor::default();
        // 10 s scan, 5 s CPU (50 %), 500 pages: factor 2000 %, change ewma(0, 100) = 30 %:
        // 500 * 100 / 2000 * 30 / 100 = 7, raised to the 10 % CPU floor: 500 / 50 * 10 = 100.
        assert_eq!(a.end_scan(10_000, 5_000_000_000, 500, &KSM_DEFAULTS), 100);
    }

    /// A small, cheap workload: scans of 40 ms at 45% CPU. KSM's formula sees 1% CPU and its
    /// 10% floor multiplies `pages_to_scan` until `advisor_max_pages_to_scan`; over the real
    /// duration the floor holds it near the 10% CPU it stands for.
    #[test]
    fn short_scans_are_not_mistaken_for_cheap_ones() {
        let lim = Limits {
            target_scan_time: 5,
            ..KSM_DEFAULTS
        };
        let (mut a, mut k) = (Advisor::default(), (0, 0, 0));
        let (mut pages, mut ksm_pages, mut cpu) = (1000, 1000, 0);
        for _ in 0..10 {
            cpu += 18_000_000; // 18 ms of CPU in a 40 ms scan: 45%
            pages = a.end_scan(40, cpu, pages, &lim);
            ksm_pages = ksm(&mut k, 40, cpu, ksm_pages, &lim);
        }
        assert_eq!(ksm_pages, lim.max_pages);
        assert!(pages < 1000, "{pages}");
    }

    #[test]
    fn speeds_up_a_slow_scan_within_the_cpu_cap() {
        let lim = Limits {
            target_scan_time: 10,
            ..KSM_DEFAULTS
        };
        let mut a = Advisor::default();
        let mut pages = 500;
        let mut cpu = 0;
        // A workload that takes 1000 / pages_to_scan * 100 s at 20 % CPU per 500 pages.
        for _ in 0..20 {
            let scan_ms = 100_000_000 / pages;
            cpu += scan_ms * 1_000_000 * (20 * pages / 500).min(100) / 100;
            pages = a.end_scan(scan_ms, cpu, pages, &lim);
            assert!(pages <= lim.max_pages);
        }
        // It went up from 500, but never past the 70 % CPU estimate (500 pages per 20 %).
        assert!(pages > 500, "{pages}");
        assert!(pages <= 500 * 70 / 20 + 25, "{pages}");
    }

    proptest! {
        /// The same numbers as KSM's code, scan after scan, for scans of whole seconds.
        #[test]
        fn matches_ksm(
            scans in prop::collection::vec((1u64..10_000, 0u64..10_000_000_000, 1u64..100_000), 1..20),
            target in 1u64..100_000,
            max_cpu in 0u64..200,
            max_pages in 0u64..1_000_000,
        ) {
            let lim = Limits { target_scan_time: target, max_cpu, max_pages };
            let (mut a, mut k) = (Advisor::default(), (0, 0, 0));
            let mut cpu = 0;
            for (scan_s, cpu_step, pages) in scans {
                let scan_ms = scan_s * 1000;
                cpu += cpu_step;
                prop_assert_eq!(a.end_scan(scan_ms, cpu, pages, &lim), ksm(&mut k, scan_ms, cpu, pages, &lim));
            }
        }

        /// Any input, however absurd: no panic, and never above `max_pages`.
        #[test]
        fn bounded(scan_ms: u64, cpu_ns: u64, pages: u64, target: u64, max_cpu: u64, max_pages: u64) {
            let lim = Limits { target_scan_time: target, max_cpu, max_pages };
            let mut a = Advisor::default();
            prop_assert!(a.end_scan(scan_ms, cpu_ns, pages, &lim) <= max_pages);
            prop_assert!(a.end_scan(scan_ms / 2, cpu_ns / 3, pages / 5, &lim) <= max_pages);
        }
    }
}
