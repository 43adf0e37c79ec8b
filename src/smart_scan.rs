// SPDX-License-Identifier: GPL-2.0

//! Smart scan: pages that keep failing to merge are skipped for 1, 2, 4 and then 8 passes,
//! as KSM does, so unique memory stops costing a hash every pass.
//!
//! This file needs no kernel: the host workspace unit-tests it (`cargo test`).

/// How many passes a page gets before skipping starts: the phases of merging (first sight,
/// quiet pass, unstable tree) need them.
const GRACE: u8 = 3;

/// Skips granted when the skips of a page run out, by its age.
fn skips_for(age: u8) -> u8 {
    match age {
        0..=3 => 1,
        4..=5 => 2,
        6..=8 => 4,
        _ => 8,
    }
}

/// The smart-scan state of one not-yet-merged page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Age {
    /// Passes this page was visited without merging, saturating.
    pub(crate) age: u8,
    /// Visits left to skip.
    pub(crate) skips: u8,
}

impl Age {
    /// Called at each visit: whether to skip the page this time. Updates the state.
    pub(crate) fn visit(&mut self) -> bool {
        let age = self.age;
        self.age = self.age.saturating_add(1);
        if age < GRACE {
            return false;
        }
        if self.skips == 0 {
            self.skips = skips_for(age);
            return false;
        }
        self.skips -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(visits: usize) -> Vec<bool> {
        let mut a = Age::default();
        (0..visits).map(|_| a.visit()).collect()
    }

    #[test]
    fn follows_ksm_backoff() {
        // KSM: ages 0-2 scanned; at 3 one skip is granted, at 5 two, at 8 four, then eight.
        let p = pattern(40);
        let scanned: Vec<usize> = p
            .iter()
            .enumerate()
            .filter(|(_, s)| !**s)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(&scanned[..7], &[0, 1, 2, 3, 5, 8, 13]);
        // From then on, one visit in nine.
        assert_eq!(scanned[7] - scanned[6], 9);
        assert_eq!(scanned[8] - scanned[7], 9);
    }

    #[test]
    fn age_saturates() {
        let mut a = Age {
            age: u8::MAX,
            skips: 0,
        };
        assert!(!a.visit());
        assert_eq!(a.age, u8::MAX);
        assert_eq!(a.skips, 8);
        assert!(a.visit());
    }
}
