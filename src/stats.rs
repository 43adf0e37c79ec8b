// SPDX-License-Identifier: GPL-2.0

//! The read-only files of `/sys/kernel/mm/rksm`: KSM's counters, same names and meaning, plus
//! rksm's own (THP, merge failures by reason, and the memfd hooks' counts).
//!
//! The counters are atomics: the memfd hooks add to them in atomic context.

use kernel::sync::atomic::{Atomic, Relaxed};

/// A counter the engine updates.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Stat {
    /// Pages the scanner looked at (cumulative).
    PagesScanned,
    /// Stable pages in use.
    PagesShared,
    /// Mappings of stable pages beyond the first: pages saved.
    PagesSharing,
    /// Pages in the unstable tree.
    PagesUnshared,
    /// Pages skipped by smart scan (cumulative).
    PagesSkipped,
    /// Completed passes over every opted-in mm.
    FullScans,
    /// Hashes with more than one stable page of identical content.
    StableNodeChains,
    /// Stable pages that live in such chains.
    StableNodeDups,
    /// Zero-page merges whose PTE still mapped the zero page when last checked.
    ZeroPages,
    /// Per-page records the scanner keeps (for `pages_volatile` and `general_profit`).
    Records,
    /// Pages inside PMD-mapped THPs the walker stepped over (cumulative).
    ThpPagesSkipped,
    /// THPs split so one of their pages could merge (cumulative).
    ThpSplit,
    /// Merges refused because the page was pinned (cumulative).
    MergeFailPinned,
    /// Merges refused because the content changed under us (cumulative).
    MergeFailChanged,
    /// Merges refused because a folio lock was contended (cumulative).
    MergeFailContended,
    /// Bytes of memory the engine's metadata takes: records, tree entries and nodes, as
    /// allocated (capacity, not length).
    MetadataBytes,
    /// memfds `memfd_create` went on to create executable (cumulative; `src/memfd.rs`).
    MemfdCreatedExec,
    /// memfds `memfd_create` went on to create noexec-sealed (cumulative).
    MemfdCreatedNoexec,
    /// `memfd_create` calls rksm refused: `MFD_EXEC` under `memfd_noexec=2` (cumulative).
    MemfdCreateRefused,
    /// Executions of a memfd rksm refused (cumulative).
    MemfdExecRefused,
    /// `PROT_EXEC` mappings of a memfd rksm refused, by `mmap` or `mprotect` (cumulative).
    MemfdMmapExecRefused,
}

const STAT_COUNT: usize = Stat::MemfdMmapExecRefused as usize + 1;

static STATS: [Atomic<i64>; STAT_COUNT] = [const { Atomic::new(0) }; STAT_COUNT];

/// Adds `n` (may be negative) to a counter.
pub(crate) fn add(stat: Stat, n: i64) {
    if n == 0 {
        // Most pages move no counter but `pages_scanned`: no atomic for them.
        return;
    }
    // `STATS` has one entry per `Stat`: the lookup cannot fail, and never panics.
    if let Some(s) = STATS.get(stat as usize) {
        s.fetch_add(n, Relaxed);
    }
}

/// Sets a counter.
pub(crate) fn set(stat: Stat, v: i64) {
    if let Some(s) = STATS.get(stat as usize) {
        s.store(v, Relaxed);
    }
}

/// Reads a counter.
pub(crate) fn get(stat: Stat) -> i64 {
    STATS.get(stat as usize).map_or(0, |s| s.load(Relaxed))
}

/// Resets every counter (module load).
pub(crate) fn reset() {
    for s in &STATS {
        s.store(0, Relaxed);
    }
}

/// A sysfs counter file.
pub(crate) struct CounterFile {
    /// File name under `/sys/kernel/mm/rksm`.
    pub(crate) name: &'static kernel::prelude::CStr,
    /// Its current value.
    pub(crate) read: fn() -> i64,
}

fn shared() -> i64 {
    get(Stat::PagesShared)
}

fn sharing() -> i64 {
    get(Stat::PagesSharing)
}

/// KSM's definition: tracked pages that are neither shared, sharing nor unshared.
fn volatile() -> i64 {
    (get(Stat::Records) - shared() - sharing() - get(Stat::PagesUnshared)).max(0)
}

/// KSM's definition: bytes saved minus bytes of metadata (what rksm allocated for it).
fn general_profit() -> i64 {
    let page = kernel::page::PAGE_SIZE as i64;
    (sharing() + get(Stat::ZeroPages)) * page - get(Stat::MetadataBytes)
}

macro_rules! counter {
    ($name:literal, $stat:ident) => {
        CounterFile {
            name: $name,
            read: || get(Stat::$stat),
        }
    };
}

/// Every counter file, in the order they are created.
pub(crate) const COUNTERS: [CounterFile; 23] = [
    counter!(c"pages_scanned", PagesScanned),
    counter!(c"pages_shared", PagesShared),
    counter!(c"pages_sharing", PagesSharing),
    counter!(c"pages_unshared", PagesUnshared),
    CounterFile {
        name: c"pages_volatile",
        read: volatile,
    },
    counter!(c"pages_skipped", PagesSkipped),
    counter!(c"full_scans", FullScans),
    counter!(c"stable_node_chains", StableNodeChains),
    counter!(c"stable_node_dups", StableNodeDups),
    CounterFile {
        name: c"general_profit",
        read: general_profit,
    },
    counter!(c"ksm_zero_pages", ZeroPages),
    counter!(c"thp_pages_skipped", ThpPagesSkipped),
    counter!(c"thp_split", ThpSplit),
    counter!(c"merge_fail_pinned", MergeFailPinned),
    counter!(c"merge_fail_changed", MergeFailChanged),
    counter!(c"merge_fail_contended", MergeFailContended),
    counter!(c"pages_tracked", Records),
    counter!(c"metadata_bytes", MetadataBytes),
    counter!(c"memfd_created_exec", MemfdCreatedExec),
    counter!(c"memfd_created_noexec", MemfdCreatedNoexec),
    counter!(c"memfd_create_refused", MemfdCreateRefused),
    counter!(c"memfd_exec_refused", MemfdExecRefused),
    counter!(c"memfd_mmap_exec_refused", MemfdMmapExecRefused),
];
