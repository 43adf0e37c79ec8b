// SPDX-License-Identifier: GPL-2.0

//! The writable files of `/sys/kernel/mm/rksm`: names, defaults, limits, and
//! the one parser every write goes through.
//!
//! Names, defaults and meanings follow `/sys/kernel/mm/ksm`, so tools written
//! for KSM work by changing the directory. This file needs no kernel: the host
//! workspace unit-tests it (`cargo test`).

use core::ffi::CStr;
use core::fmt::{self, Write};

use crate::advisor::{ADVISOR_NONE, ADVISOR_WORDS};
use crate::merge_policy::{MergePolicy, DOMAINS_NONE, DOMAINS_WORDS};

/// What a knob accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A decimal number in `min..=max`, as `kstrtoul` reads it.
    Number {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A boolean, as `kstrtobool` reads it (`1/0`, `y/n`, `on/off`); stored as 1 or 0.
    Bool,
    /// One word of a list, as KSM's `advisor_mode` takes it; stored as the word's index. It
    /// reads back as every word, the active one in brackets: `[any] sealed none`.
    Choice(&'static [&'static str]),
}

impl Kind {
    /// Whether a knob of this kind may hold `value` (what [`parse`] can return for it).
    pub(crate) fn accepts(self, value: u64) -> bool {
        match self {
            Kind::Number { min, max } => (min..=max).contains(&value),
            Kind::Bool => value <= 1,
            Kind::Choice(words) => usize::try_from(value).is_ok_and(|i| i < words.len()),
        }
    }
}

/// One writable sysfs file.
#[derive(Debug)]
pub(crate) struct Knob {
    /// File name under `/sys/kernel/mm/rksm`.
    pub(crate) name: &'static CStr,
    /// Value at module load.
    pub(crate) default: u64,
    /// What a write may set.
    pub(crate) kind: Kind,
}

/// Index of each knob in [`KNOBS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
#[allow(dead_code)] // The engine reads the rest; the skeleton only `run` and the pacing.
pub(crate) enum KnobId {
    /// 0 stops scanning, 1 scans, 2 unmerges everything and stops.
    Run,
    /// Pages scanned per round.
    PagesToScan,
    /// Sleep between rounds.
    SleepMillisecs,
    /// Most mappings of one stable page before a second copy is made.
    MaxPageSharing,
    /// Merge zero-filled pages into the shared zero page.
    UseZeroPages,
    /// Skip pages that failed to merge, for a growing number of passes.
    SmartScan,
    /// How often stale stable-node chains are pruned.
    StableNodeChainsPruneMillisecs,
    /// Merge pages across NUMA nodes (only 1 makes a difference without NUMA).
    MergeAcrossNodes,
    /// The system-wide floor under `vm.memfd_noexec` (0, 1 or 2): see `src/memfd.rs`.
    MemfdNoexec,
    /// When a memfd's content may run: [`MEMFD_EXEC_WORDS`].
    MemfdExec,
    /// Merge pages of executable mappings too.
    MergeExec,
    /// Who may share a page with whom: [`DOMAINS_WORDS`].
    MergeDomains,
    /// Merge zero-filled pages only, into the zero page.
    ZeroPagesOnly,
    /// Who sets `pages_to_scan`: [`ADVISOR_WORDS`].
    AdvisorMode,
    /// Seconds a full scan should take under the scan-time advisor.
    AdvisorTargetScanTime,
    /// The advisor's CPU cap, in percent.
    AdvisorMaxCpu,
    /// `pages_to_scan` when the scan-time advisor takes over.
    AdvisorMinPagesToScan,
    /// The most `pages_to_scan` the advisor sets.
    AdvisorMaxPagesToScan,
}

/// `run` values.
pub(crate) const RUN_STOP: u64 = 0;
/// `run`: scan and merge.
pub(crate) const RUN_MERGE: u64 = 1;
/// `run`: break every merge, then stop.
pub(crate) const RUN_UNMERGE: u64 = 2;

const U32_MAX: u64 = u32::MAX as u64;

/// `memfd_exec`: a memfd may always run.
pub(crate) const MEMFD_EXEC_ANY: u64 = 0;
/// `memfd_exec`: only while it is sealed against writes.
pub(crate) const MEMFD_EXEC_SEALED: u64 = 1;
/// `memfd_exec`: never.
pub(crate) const MEMFD_EXEC_NONE: u64 = 2;
/// The words of `memfd_exec`, indexed by the `MEMFD_EXEC_*` values.
pub(crate) const MEMFD_EXEC_WORDS: &[&str] = &["any", "sealed", "none"];

/// Every knob, indexed by [`KnobId`].
pub(crate) const KNOBS: [Knob; 18] = [
    Knob {
        name: c"run",
        default: RUN_STOP,
        kind: Kind::Number { min: 0, max: 2 },
    },
    Knob {
        name: c"pages_to_scan",
        default: 100,
        kind: Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    },
    Knob {
        name: c"sleep_millisecs",
        default: 20,
        kind: Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    },
    Knob {
        name: c"max_page_sharing",
        default: 256,
        kind: Kind::Number {
            min: 2,
            max: i32::MAX as u64,
        },
    },
    Knob {
        name: c"use_zero_pages",
        default: 0,
        kind: Kind::Bool,
    },
    Knob {
        name: c"smart_scan",
        default: 1,
        kind: Kind::Bool,
    },
    Knob {
        name: c"stable_node_chains_prune_millisecs",
        default: 2000,
        kind: Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    },
    Knob {
        name: c"merge_across_nodes",
        default: 1,
        kind: Kind::Number { min: 0, max: 1 },
    },
    Knob {
        name: c"memfd_noexec",
        default: 0,
        kind: Kind::Number { min: 0, max: 2 },
    },
    Knob {
        name: c"memfd_exec",
        default: MEMFD_EXEC_ANY,
        kind: Kind::Choice(MEMFD_EXEC_WORDS),
    },
    Knob {
        name: c"merge_exec",
        default: 0,
        kind: Kind::Bool,
    },
    Knob {
        name: c"merge_domains",
        default: DOMAINS_NONE,
        kind: Kind::Choice(DOMAINS_WORDS),
    },
    Knob {
        name: c"zero_pages_only",
        default: 0,
        kind: Kind::Bool,
    },
    Knob {
        name: c"advisor_mode",
        default: ADVISOR_NONE,
        kind: Kind::Choice(ADVISOR_WORDS),
    },
    Knob {
        name: c"advisor_target_scan_time",
        default: 200,
        kind: Kind::Number {
            min: 1,
            max: u64::MAX,
        },
    },
    Knob {
        name: c"advisor_max_cpu",
        default: 70,
        kind: Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    },
    Knob {
        name: c"advisor_min_pages_to_scan",
        default: 500,
        kind: Kind::Number {
            min: 0,
            max: u64::MAX,
        },
    },
    Knob {
        name: c"advisor_max_pages_to_scan",
        default: 30000,
        kind: Kind::Number {
            min: 0,
            max: u64::MAX,
        },
    },
];

/// The knob values one scan round works with, read once at its start, so a round never sees
/// half of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Pages to scan this round.
    pub(crate) pages_to_scan: usize,
    /// Most mappings of one stable page.
    pub(crate) max_page_sharing: u32,
    /// Merge zero-filled pages into the shared zero page.
    pub(crate) use_zero_pages: bool,
    /// Skip pages that keep failing to merge.
    pub(crate) smart_scan: bool,
    /// Who may share a page with whom.
    pub(crate) policy: MergePolicy,
}

impl Snapshot {
    /// The snapshot of a full set of knob values, indexed by [`KnobId`].
    pub(crate) fn from_values(values: &[u64; KNOBS.len()]) -> Self {
        let get = |id: KnobId| values.get(id as usize).copied().unwrap_or(0);
        Self {
            pages_to_scan: usize::try_from(get(KnobId::PagesToScan)).unwrap_or(usize::MAX),
            max_page_sharing: u32::try_from(get(KnobId::MaxPageSharing)).unwrap_or(u32::MAX),
            use_zero_pages: get(KnobId::UseZeroPages) != 0,
            smart_scan: get(KnobId::SmartScan) != 0,
            policy: MergePolicy {
                domains: get(KnobId::MergeDomains),
                merge_exec: get(KnobId::MergeExec) != 0,
                zero_pages_only: get(KnobId::ZeroPagesOnly) != 0,
            },
        }
    }
}

impl Default for Snapshot {
    /// The knobs at their load-time defaults.
    fn default() -> Self {
        Self::from_values(&KNOBS.map(|k| k.default))
    }
}

/// A write that is not a valid value; the knob keeps its old value (`-EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

/// Parses what userspace wrote to a knob of `kind`.
///
/// Accepts one optional trailing newline, as `echo` adds. Rejects empty input, signs other than a
/// leading `+`, overflow, values out of range, and anything trailing. A [`Kind::Choice`] takes
/// exactly one of its words (not its index, not the bracketed read-back).
pub(crate) fn parse(kind: Kind, input: &[u8]) -> Result<u64, Invalid> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    match kind {
        Kind::Bool => parse_bool(input),
        Kind::Choice(words) => words
            .iter()
            .position(|w| w.as_bytes() == input)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or(Invalid),
        Kind::Number { min, max } => {
            let value = parse_decimal(input)?;
            if value < min || value > max {
                return Err(Invalid);
            }
            Ok(value)
        }
    }
}

/// Writes what a read of a knob of `kind` holding `value` returns, newline included: the number,
/// or for a [`Kind::Choice`] every word with the active one in brackets (`[any] sealed none`).
pub(crate) fn show(kind: Kind, value: u64, out: &mut impl Write) -> fmt::Result {
    match kind {
        Kind::Number { .. } | Kind::Bool => writeln!(out, "{value}"),
        Kind::Choice(words) => {
            for (i, word) in words.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                if u64::try_from(i).is_ok_and(|i| i == value) {
                    write!(out, "{sep}[{word}]")?;
                } else {
                    write!(out, "{sep}{word}")?;
                }
            }
            writeln!(out)
        }
    }
}

fn parse_decimal(input: &[u8]) -> Result<u64, Invalid> {
    let digits = input.strip_prefix(b"+").unwrap_or(input);
    if digits.is_empty() {
        return Err(Invalid);
    }
    let mut value: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(Invalid);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or(Invalid)?;
    }
    Ok(value)
}

fn parse_bool(input: &[u8]) -> Result<u64, Invalid> {
    match input {
        b"1" | b"y" | b"Y" | b"on" | b"On" | b"ON" => Ok(1),
        b"0" | b"n" | b"N" | b"off" | b"Off" | b"OFF" => Ok(0),
        _ => Err(Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(min: u64, max: u64) -> Kind {
        Kind::Number { min, max }
    }

    #[test]
    fn accepts_plain_and_newline_terminated_numbers() {
        assert_eq!(parse(num(0, 2), b"1"), Ok(1));
        assert_eq!(parse(num(0, 2), b"2\n"), Ok(2));
        assert_eq!(parse(num(0, 100), b"+7\n"), Ok(7));
        assert_eq!(
            parse(num(0, u64::MAX), b"18446744073709551615"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn rejects_junk_sign_overflow_and_range() {
        for bad in [
            &b""[..],
            b"\n",
            b"-1",
            b"1x",
            b"1\n\n",
            b" 1",
            b"1 ",
            b"0x1",
            b"+",
            b"++1",
            b"18446744073709551616",
            b"3",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse(num(0, 2), bad), Err(Invalid), "{:?}", bad);
        }
        assert_eq!(parse(num(2, 10), b"1"), Err(Invalid));
    }

    #[test]
    fn bools_follow_kstrtobool() {
        assert_eq!(parse(Kind::Bool, b"y\n"), Ok(1));
        assert_eq!(parse(Kind::Bool, b"off"), Ok(0));
        assert_eq!(parse(Kind::Bool, b"2"), Err(Invalid));
        assert_eq!(parse(Kind::Bool, b"yes"), Err(Invalid));
    }

    #[test]
    fn snapshot_reads_each_knob() {
        let mut values = KNOBS.map(|k| k.default);
        values[KnobId::PagesToScan as usize] = 7;
        values[KnobId::MaxPageSharing as usize] = u64::MAX;
        values[KnobId::UseZeroPages as usize] = 1;
        let s = Snapshot::from_values(&values);
        assert_eq!(s.pages_to_scan, 7);
        assert_eq!(s.max_page_sharing, u32::MAX);
        assert!(s.use_zero_pages);
        assert!(s.smart_scan);
    }

    #[test]
    fn accepts_what_parse_returns() {
        assert!(num(2, 10).accepts(2));
        assert!(num(2, 10).accepts(10));
        assert!(!num(2, 10).accepts(1));
        assert!(!num(2, 10).accepts(11));
        assert!(Kind::Bool.accepts(1));
        assert!(!Kind::Bool.accepts(2));
        for knob in &KNOBS {
            assert!(knob.kind.accepts(knob.default), "{:?}", knob.name);
        }
    }

    const WORDS: Kind = Kind::Choice(&["any", "sealed", "none"]);

    fn shown(kind: Kind, value: u64) -> String {
        let mut s = String::new();
        show(kind, value, &mut s).unwrap();
        s
    }

    #[test]
    fn choices_take_exactly_one_word() {
        assert_eq!(parse(WORDS, b"any"), Ok(0));
        assert_eq!(parse(WORDS, b"sealed\n"), Ok(1));
        assert_eq!(parse(WORDS, b"none"), Ok(2));
        for bad in [
            &b""[..],
            b"\n",
            b"0",
            b"1",
            b"Any",
            b"ANY",
            b"[any]",
            b"any sealed",
            b" any",
            b"any ",
            b"any\n\n",
            b"sealedx",
            b"seal",
            b"nonee",
        ] {
            assert_eq!(parse(WORDS, bad), Err(Invalid), "{:?}", bad);
        }
    }

    #[test]
    fn choices_read_back_like_advisor_mode() {
        assert_eq!(shown(WORDS, 0), "[any] sealed none\n");
        assert_eq!(shown(WORDS, 1), "any [sealed] none\n");
        assert_eq!(shown(WORDS, 2), "any sealed [none]\n");
        assert_eq!(shown(num(0, 2), 2), "2\n");
        assert_eq!(shown(Kind::Bool, 1), "1\n");
        // What a read shows, a write of the bracketed word takes back.
        for v in 0..3 {
            let text = shown(WORDS, v);
            let word = text.split('[').nth(1).unwrap().split(']').next().unwrap();
            assert_eq!(parse(WORDS, word.as_bytes()), Ok(v));
        }
    }

    #[test]
    fn choices_accept_only_their_indices() {
        assert!(WORDS.accepts(0));
        assert!(WORDS.accepts(2));
        assert!(!WORDS.accepts(3));
        assert!(!WORDS.accepts(u64::MAX));
    }

    #[test]
    fn memfd_knobs() {
        let noexec = &KNOBS[KnobId::MemfdNoexec as usize];
        assert_eq!(noexec.name, c"memfd_noexec");
        assert_eq!(noexec.default, 0);
        assert_eq!(parse(noexec.kind, b"2\n"), Ok(2));
        assert_eq!(parse(noexec.kind, b"3"), Err(Invalid));
        let exec = &KNOBS[KnobId::MemfdExec as usize];
        assert_eq!(exec.name, c"memfd_exec");
        assert_eq!(exec.default, MEMFD_EXEC_ANY);
        assert_eq!(shown(exec.kind, exec.default), "[any] sealed none\n");
        assert_eq!(parse(exec.kind, b"sealed"), Ok(MEMFD_EXEC_SEALED));
        assert_eq!(parse(exec.kind, b"none"), Ok(MEMFD_EXEC_NONE));
    }

    #[test]
    fn default_snapshot_has_the_defaults() {
        let s = Snapshot::default();
        assert_eq!(s.pages_to_scan, 100);
        assert_eq!(s.max_page_sharing, 256);
        assert!(!s.use_zero_pages);
        assert!(s.smart_scan);
        assert_eq!(s.policy, MergePolicy::default());
    }

    #[test]
    fn advisor_knobs_have_ksm_defaults() {
        let k = |id: KnobId| &KNOBS[id as usize];
        assert_eq!(k(KnobId::AdvisorMode).name, c"advisor_mode");
        assert_eq!(shown(k(KnobId::AdvisorMode).kind, 0), "[none] scan-time\n");
        assert_eq!(
            parse(k(KnobId::AdvisorMode).kind, b"scan-time\n"),
            Ok(crate::advisor::ADVISOR_SCAN_TIME)
        );
        assert_eq!(k(KnobId::AdvisorTargetScanTime).default, 200);
        assert_eq!(
            parse(k(KnobId::AdvisorTargetScanTime).kind, b"0"),
            Err(Invalid)
        );
        assert_eq!(k(KnobId::AdvisorMaxCpu).default, 70);
        assert_eq!(k(KnobId::AdvisorMinPagesToScan).default, 500);
        assert_eq!(k(KnobId::AdvisorMaxPagesToScan).default, 30000);
        assert_eq!(
            k(KnobId::AdvisorMaxPagesToScan).name,
            c"advisor_max_pages_to_scan"
        );
    }

    #[test]
    fn merge_policy_knobs() {
        let domains = &KNOBS[KnobId::MergeDomains as usize];
        assert_eq!(domains.name, c"merge_domains");
        assert_eq!(shown(domains.kind, domains.default), "[none] uid process\n");
        assert_eq!(
            parse(domains.kind, b"uid\n"),
            Ok(crate::merge_policy::DOMAINS_UID)
        );
        assert_eq!(parse(domains.kind, b"cgroup"), Err(Invalid));
        assert_eq!(parse(domains.kind, b"1"), Err(Invalid));
        let exec = &KNOBS[KnobId::MergeExec as usize];
        assert_eq!((exec.name, exec.default), (c"merge_exec", 0));
        assert_eq!(parse(exec.kind, b"2"), Err(Invalid));
        let zero = &KNOBS[KnobId::ZeroPagesOnly as usize];
        assert_eq!((zero.name, zero.default), (c"zero_pages_only", 0));
        let mut values = KNOBS.map(|k| k.default);
        values[KnobId::MergeDomains as usize] = crate::merge_policy::DOMAINS_PROCESS;
        values[KnobId::MergeExec as usize] = 1;
        values[KnobId::ZeroPagesOnly as usize] = 1;
        let policy = Snapshot::from_values(&values).policy;
        assert_eq!(policy.domains, crate::merge_policy::DOMAINS_PROCESS);
        assert!(policy.merge_exec && policy.zero_pages_only);
    }

    #[test]
    fn table_matches_ids_and_defaults_are_valid() {
        assert_eq!(KNOBS[KnobId::Run as usize].name, c"run");
        assert_eq!(
            KNOBS[KnobId::MergeAcrossNodes as usize].name,
            c"merge_across_nodes"
        );
        assert_eq!(KNOBS[KnobId::SleepMillisecs as usize].default, 20);
        for knob in &KNOBS {
            let text = shown(knob.kind, knob.default);
            let text = match knob.kind {
                Kind::Choice(words) => format!("{}\n", words[knob.default as usize]),
                _ => text,
            };
            assert_eq!(
                parse(knob.kind, text.as_bytes()),
                Ok(knob.default),
                "{:?}",
                knob.name
            );
        }
    }
}
