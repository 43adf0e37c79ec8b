// SPDX-License-Identifier: GPL-2.0

//! The scale section: what a page costs each engine as a workload grows, and under attack.
//!
//! Each dimension is a sweep. Every point runs rksm, then KSM, with identical knobs (full speed:
//! `pages_to_scan` 20000, `sleep_millisecs` 0; `smart_scan` from `--smart-scan`, default 0 so
//! every page is looked at on every pass; `max_page_sharing` 256) and `run=2` in between.
//!
//! - **qemu:** 2 QEMU-shaped processes: ~400 VMAs that are not mergeable (small anonymous
//!   mappings with alternating protections, private file mappings, thread-stack-like regions
//!   with a guard page) around one THP-backed (MADV_HUGEPAGE) mergeable "guest RAM" region of
//!   SIZE MiB: runs of zero pages (`use_zero_pages` 1), pages the two guests share, unique pages.
//! - **vmas:** 2 processes of 16384 pages (75% shared), split into SIZE mergeable VMAs each
//!   (a one-page gap after each keeps them apart).
//! - **procs:** SIZE processes of 16 pages each, 12 of them the same in every process.
//! - **size:** 2 processes of SIZE MiB each, 75% of the pages shared.
//! - **crafted:** 2 processes of SIZE pages each, half of them shared, all distinct within a
//!   process, all with one xxh64 (seed 0), the key of rksm's trees (hash flooding). The control,
//!   **crafted-random**, has the same layout and random pages.
//! - **memory:** SIZE unique pages in 2 processes: the MemFree drop once the engine has scanned
//!   them 3 times or more, per tracked page.
//!
//! The main metric is scanner CPU (utime + stime of rksmd or ksmd) per scanned page
//! (`pages_scanned`), measured from full scan A to full scan B (both engines hash every page in
//! pass 0 and merge in pass 1, so from full scan 2 on is the steady state) and over at least one
//! second of CPU. A and B are 2 and 5, or 2 and 3 for the big workloads (see [`limits`];
//! `--window A:B` sets them for all). A run that does not get there within its timeout (see
//! [`limits`], or `--scale-timeout`) is measured from the window's start (or from the start) to
//! the timeout, and marked `*`. Also recorded: the time and scanner CPU to converge (99% of the
//! final pages saved), and the pages saved against the workload's expectation.
//!
//! In qemu, merging splits the THPs, and the kernel maps the zero-filled subpages of a split THP
//! to the shared zero page itself (since Linux 6.12): those pages are saved, but by neither
//! engine, so only the shared pages are expected in `pages_sharing`.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{fill_page, num, reset, thread_ticks, xxh64, Engine, Opts, Region, Workers, PAGE};

/// The scale workloads, in the order they run: the long ones last, so that a spent budget
/// (`--budget`) costs the fewest points.
pub const DIMENSIONS: [&str; 6] = ["crafted", "procs", "vmas", "memory", "qemu", "size"];

/// Options of the scale section.
pub struct ScaleOpts {
    /// Replaces the sweep of every selected dimension (no name) or of the one named.
    pub sizes: Option<Vec<(Option<String>, u64)>>,
    /// Seconds one run may scan (default: per dimension, [`limits`]).
    pub timeout: Option<f64>,
    /// Seconds the whole section may take; points that would start later are skipped (a point
    /// that starts runs for both engines).
    pub budget: f64,
    /// Full scans between which CPU per scanned page is measured (default: per dimension).
    pub window: Option<(i64, i64)>,
    pub smart_scan: u32,
}

impl Default for ScaleOpts {
    fn default() -> Self {
        Self { sizes: None, timeout: None, budget: 2000.0, window: None, smart_scan: 0 }
    }
}

/// The measuring window (full scans A to B) and the timeout (s) of each dimension. Small
/// workloads are measured over full scans 2 to 5. The big ones (qemu, size, memory: up to 2 M
/// pages, some 70 s a full scan for KSM under TCG) over full scan 2 to 3 only, which is still
/// over 100000 pages. The timeouts leave KSM room for its largest point; vmas and crafted,
/// where rksm is expected to be quadratic, are cut short sooner.
fn limits(dimension: &str) -> ((i64, i64), f64) {
    match dimension {
        "qemu" => ((2, 3), 240.0),
        "size" => ((2, 3), 360.0),
        "memory" => ((2, 3), 300.0),
        "vmas" => ((2, 5), 20.0),
        "crafted" => ((2, 5), 60.0),
        _ => ((2, 5), 120.0),
    }
}

const PAGES_TO_SCAN: u32 = 20000;
const SLEEP_MILLISECS: u32 = 0;
const MAX_PAGE_SHARING: i64 = 256;
/// The window covers at least this much scanner CPU (USER_HZ ticks), so that tiny workloads,
/// whose full scans take a few ms, are not measured in single 10 ms ticks.
const MIN_WINDOW_TICKS: u64 = 100;
/// Pages per process in vmas; pages per process and shared pages in procs.
const VMAS_PAGES: usize = 16384;
const PROCS_PAGES: usize = 16;
const PROCS_SHARED: f64 = 0.75;

/// One measured (or skipped) point of a sweep, for one engine.
pub struct ScaleRun {
    dimension: &'static str,
    workload: &'static str,
    size: u64,
    unit: &'static str,
    engine: Engine,
    procs: usize,
    pages_per_process: usize,
    /// What went wrong, or why the point was skipped.
    error: Option<String>,
    /// What the workers said when ready (VMAs, THP, colliding pages).
    info: String,
    setup_s: f64,
    wall_s: f64,
    cpu_s: f64,
    converge_s: f64,
    converge_cpu_s: f64,
    scanned: i64,
    full_scans: i64,
    window: (i64, i64),
    window_cpu_s: f64,
    window_scanned: i64,
    /// The window was cut short by the timeout.
    partial: bool,
    saved: i64,
    sharing: i64,
    shared: i64,
    zero_pages: i64,
    expected: Option<i64>,
    profit: i64,
    tracked: i64,
    memfree_drop: Option<i64>,
    slab_drop: Option<i64>,
    /// The largest MemFree drop seen while the engine ran (sampled every 100 ms): the peak,
    /// mid-pass records and tree entries included.
    peak_drop: Option<i64>,
    /// rksm only: the largest `metadata_bytes` seen while it ran.
    peak_metadata: Option<i64>,
    /// (seconds, pages saved, scanner CPU seconds).
    series: Vec<(f64, i64, f64)>,
}

impl ScaleRun {
    fn cpu_per_page_us(&self) -> f64 {
        if self.window_scanned > 0 {
            self.window_cpu_s * 1e6 / self.window_scanned as f64
        } else {
            f64::NAN
        }
    }

    fn bytes_per_page(&self) -> f64 {
        per_page(self.memfree_drop, self.size)
    }

    fn peak_bytes_per_page(&self) -> f64 {
        per_page(self.peak_drop, self.size)
    }

    fn peak_metadata_per_page(&self) -> f64 {
        per_page(self.peak_metadata, self.size)
    }
}

/// One point of a sweep: the workload the workers build and what it should save.
struct Point {
    dimension: &'static str,
    workload: &'static str,
    size: u64,
    unit: &'static str,
    kind: &'static str,
    procs: usize,
    pages: usize,
    dup: f64,
    vmas: usize,
    zero_pages: bool,
    expected: Option<i64>,
    memory: bool,
}

/// The default sweep of each dimension.
fn default_sizes(dimension: &str) -> Vec<u64> {
    match dimension {
        "qemu" => vec![64, 256],
        "vmas" => vec![1024, 2048, 4096, 8192, 16384],
        "procs" => vec![16, 64, 256, 1024],
        "size" => vec![128, 512, 2048],
        "crafted" => vec![256, 1024, 4096],
        "memory" => vec![262144],
        _ => vec![],
    }
}

/// Pages saved when `procs` processes map the same page, with KSM's `max_page_sharing`: each
/// stable copy has up to that many mappings, and every mapping but one per copy is saved.
fn saved_per_content(procs: usize) -> i64 {
    let procs = procs as i64;
    procs - (procs + MAX_PAGE_SHARING - 1) / MAX_PAGE_SHARING
}

/// The points of one dimension (crafted gives two per size: crafted and its random control).
fn points(dimension: &'static str, sizes: &[u64]) -> Vec<Point> {
    let mut out = Vec::new();
    for &size in sizes {
        let base = Point {
            dimension,
            workload: dimension,
            size,
            unit: "",
            kind: "dup",
            procs: 2,
            pages: 0,
            dup: 0.75,
            vmas: 0,
            zero_pages: false,
            expected: None,
            memory: false,
        };
        match dimension {
            "qemu" => {
                let pages = size as usize * 256;
                let (_, dup, _) = qemu_counts(pages);
                out.push(Point {
                    unit: "MiB guest RAM per process",
                    kind: "qemu",
                    pages,
                    zero_pages: true,
                    expected: Some(dup as i64),
                    ..base
                });
            }
            "vmas" => {
                let vmas = size as usize;
                let pages = (VMAS_PAGES / vmas).max(1) * vmas;
                out.push(Point {
                    unit: "mergeable VMAs per process",
                    kind: "vmas",
                    pages,
                    vmas,
                    expected: Some((pages as f64 * 0.75) as i64),
                    ..base
                });
            }
            "procs" => {
                let procs = size as usize;
                let shared = (PROCS_PAGES as f64 * PROCS_SHARED) as i64;
                out.push(Point {
                    unit: "processes",
                    kind: "procs",
                    // One process forks the others (see `forker`).
                    procs: 1,
                    vmas: procs,
                    pages: PROCS_PAGES,
                    dup: PROCS_SHARED,
                    expected: Some(shared * saved_per_content(procs)),
                    ..base
                });
            }
            "size" => {
                let pages = size as usize * 256;
                out.push(Point {
                    unit: "MiB per process",
                    kind: "bulk",
                    pages,
                    expected: Some((pages as f64 * 0.75) as i64),
                    ..base
                });
            }
            "crafted" => {
                let pages = size as usize;
                for (workload, kind) in
                    [("crafted", "crafted"), ("crafted-random", "crafted-random")]
                {
                    out.push(Point {
                        workload,
                        unit: "pages per process",
                        kind,
                        pages,
                        dup: 0.5,
                        expected: Some((pages as f64 * 0.5) as i64),
                        ..base
                    });
                }
            }
            "memory" => {
                let pages = (size as usize).div_ceil(2);
                out.push(Point {
                    unit: "unique pages",
                    kind: "bulk",
                    pages,
                    dup: 0.0,
                    expected: Some(0),
                    memory: true,
                    ..base
                });
            }
            _ => {}
        }
    }
    out
}

/// Runs the selected dimensions, both engines per point, within the budget.
pub fn run(o: &Opts) -> Result<Vec<ScaleRun>, String> {
    let so = &o.scale_opts;
    let start = Instant::now();
    let mut runs = Vec::new();
    if o.scale.is_empty() {
        return Ok(runs);
    }
    for dim in DIMENSIONS.iter().filter(|d| o.scale.iter().any(|s| s == *d)) {
        let sizes = match &so.sizes {
            Some(list) => list
                .iter()
                .filter(|(d, _)| d.as_deref().is_none_or(|d| d == *dim))
                .map(|(_, n)| *n)
                .collect(),
            None => default_sizes(dim),
        };
        for p in points(dim, &sizes) {
            // A point that starts runs for every engine: half a comparison is no use.
            let spent = start.elapsed().as_secs_f64() > so.budget;
            for &e in &o.engines {
                let r = if spent {
                    Err(format!("skipped: the section's budget of {}s is spent", so.budget))
                } else {
                    measure(o, &p, e)
                };
                let r = r.unwrap_or_else(|err| {
                    eprintln!("scale: {} {} {}: {err}", p.workload, p.size, e.name());
                    // Whatever failed, leave both engines stopped and empty for the next point.
                    let _ = reset(&o.engines);
                    failed(&p, e, err)
                });
                eprintln!(
                    "done: scale {} {} {}: {:.2} us/page{}, saved {} of {}, {:.0}s",
                    p.workload,
                    p.size,
                    e.name(),
                    r.cpu_per_page_us(),
                    if r.partial { " (timeout)" } else { "" },
                    r.saved,
                    r.expected.map_or("-".into(), |x| x.to_string()),
                    start.elapsed().as_secs_f64()
                );
                runs.push(r);
            }
        }
    }
    eprintln!("done: scale section in {:.0}s", start.elapsed().as_secs_f64());
    Ok(runs)
}

fn failed(p: &Point, engine: Engine, error: String) -> ScaleRun {
    ScaleRun {
        dimension: p.dimension,
        workload: p.workload,
        size: p.size,
        unit: p.unit,
        engine,
        procs: p.procs,
        pages_per_process: p.pages,
        error: Some(error),
        info: String::new(),
        setup_s: f64::NAN,
        wall_s: f64::NAN,
        cpu_s: f64::NAN,
        converge_s: f64::NAN,
        converge_cpu_s: f64::NAN,
        scanned: 0,
        full_scans: 0,
        window: (0, 0),
        window_cpu_s: f64::NAN,
        window_scanned: 0,
        partial: false,
        saved: 0,
        sharing: 0,
        shared: 0,
        zero_pages: 0,
        expected: p.expected,
        profit: 0,
        tracked: -1,
        memfree_drop: None,
        slab_drop: None,
        peak_drop: None,
        peak_metadata: None,
        series: Vec::new(),
    }
}

/// A /proc/meminfo field in bytes.
fn meminfo(field: &str) -> Option<i64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free memory: MemFree plus the pages on the per-cpu free lists (`count:` in /proc/zoneinfo),
/// which MemFree does not count and which come and go by megabytes.
fn free_bytes() -> Option<i64> {
    let zoneinfo = fs::read_to_string("/proc/zoneinfo").ok()?;
    let pcp: i64 = zoneinfo
        .lines()
        .filter_map(|l| l.trim().strip_prefix("count:"))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .sum();
    Some(meminfo("MemFree")? + pcp * PAGE as i64)
}

/// Counter snapshot of the engine being measured.
#[derive(Clone, Copy)]
struct Snap {
    t: f64,
    scans: i64,
    scanned: i64,
    ticks: u64,
}

fn measure(o: &Opts, p: &Point, engine: Engine) -> Result<ScaleRun, String> {
    let so = &o.scale_opts;
    reset(&o.engines)?;
    for e in &o.engines {
        e.write("pages_to_scan", &PAGES_TO_SCAN.to_string())?;
        e.write("sleep_millisecs", &SLEEP_MILLISECS.to_string())?;
        e.write("smart_scan", &so.smart_scan.to_string())?;
        e.write("use_zero_pages", if p.zero_pages { "1" } else { "0" })?;
        e.write("max_page_sharing", &MAX_PAGE_SHARING.to_string())?;
    }
    let t_setup = Instant::now();
    let args = [
        "--pages".to_string(),
        p.pages.to_string(),
        "--dup".into(),
        p.dup.to_string(),
        "--vmas".into(),
        p.vmas.to_string(),
    ];
    let mut workers = Workers::spawn(p.kind, p.procs, &args)?;
    let setup_s = t_setup.elapsed().as_secs_f64();
    let mut info: Vec<String> = workers.info.clone();
    info.dedup();
    let (free0, slab0) = if p.memory {
        // Let the workers' exits and page-cache settle, then take the baseline.
        sleep(Duration::from_millis(500));
        (free_bytes(), meminfo("Slab"))
    } else {
        (None, None)
    };
    let snap = |t: f64| Snap {
        t,
        scans: engine.read("full_scans"),
        scanned: engine.read("pages_scanned"),
        ticks: thread_ticks(engine.thread()),
    };
    let base = snap(0.0);
    let start = Instant::now();
    engine.write("run", "1")?;
    let (window, timeout) = limits(p.dimension);
    let (ws, we) = so.window.unwrap_or(window);
    let timeout = so.timeout.unwrap_or(timeout);
    let mut series = Vec::new();
    let mut win_start: Option<Snap> = if ws == 0 { Some(base) } else { None };
    let mut last;
    let mut complete = false;
    let (mut min_free, mut peak_metadata): (Option<i64>, Option<i64>) = (None, None);
    loop {
        sleep(Duration::from_millis(100));
        let t = start.elapsed().as_secs_f64();
        if p.memory {
            if let Some(fr) = free_bytes() {
                min_free = Some(min_free.map_or(fr, |m| m.min(fr)));
            }
            if engine == Engine::Rksm {
                let m = engine.read("metadata_bytes");
                peak_metadata = Some(peak_metadata.map_or(m, |p| p.max(m)));
            }
        }
        let saved = engine.read("pages_sharing") + engine.read("ksm_zero_pages").max(0);
        let s = snap(t);
        last = s;
        series.push((t, saved, (s.ticks - base.ticks) as f64 / 100.0));
        if win_start.is_none() && s.scans - base.scans >= ws {
            win_start = Some(s);
        }
        if let Some(w) = win_start {
            if s.scans - w.scans >= we - ws && s.ticks - w.ticks >= MIN_WINDOW_TICKS {
                complete = true;
                break;
            }
        }
        if t > timeout {
            break;
        }
    }
    // The final counters, read while the engine still runs.
    let w = win_start.unwrap_or(base);
    let sharing = engine.read("pages_sharing");
    let zero_pages = engine.read("ksm_zero_pages").max(0);
    let shared = engine.read("pages_shared");
    let profit = engine.read("general_profit");
    let saved = sharing + zero_pages;
    let converged = if saved > 0 {
        series.iter().find(|(_, s, _)| (*s as f64) >= 0.99 * saved as f64)
    } else {
        None
    };
    let tracked = match engine {
        Engine::Rksm => engine.read("pages_tracked"),
        // KSM has one rmap_item per page it tracks, whatever its state.
        Engine::Ksm => ["pages_shared", "pages_sharing", "pages_unshared", "pages_volatile"]
            .iter()
            .map(|f| engine.read(f).max(0))
            .sum(),
    };
    let (free1, slab1) = if p.memory {
        engine.write("run", "0")?;
        sleep(Duration::from_millis(500));
        (free_bytes(), meminfo("Slab"))
    } else {
        (None, None)
    };
    // Workers first: writing run=0 waits for the scan round in progress, which, for an engine
    // slow enough to have hit the timeout, can take far longer than the run did. Without its
    // processes the round ends at its next batch.
    workers.stop();
    engine.write("run", "0")?;
    let run = ScaleRun {
        dimension: p.dimension,
        workload: p.workload,
        size: p.size,
        unit: p.unit,
        engine,
        procs: if p.kind == "procs" { p.vmas } else { p.procs },
        pages_per_process: p.pages,
        error: None,
        info: info.join("; "),
        setup_s,
        wall_s: last.t,
        cpu_s: (last.ticks - base.ticks) as f64 / 100.0,
        converge_s: converged.map_or(f64::NAN, |c| c.0),
        converge_cpu_s: converged.map_or(f64::NAN, |c| c.2),
        scanned: last.scanned - base.scanned,
        full_scans: last.scans - base.scans,
        window: (w.scans - base.scans, last.scans - base.scans),
        window_cpu_s: (last.ticks - w.ticks) as f64 / 100.0,
        window_scanned: last.scanned - w.scanned,
        partial: !complete,
        saved,
        sharing,
        shared,
        zero_pages,
        expected: p.expected,
        profit,
        tracked,
        memfree_drop: free0.zip(free1).map(|(a, b)| a - b),
        slab_drop: slab0.zip(slab1).map(|(a, b)| b - a),
        peak_drop: free0.zip(min_free).map(|(a, b)| a - b),
        peak_metadata,
        series,
    };
    reset(&o.engines)?;
    Ok(run)
}

// ---- workers -----------------------------------------------------------------------------------

/// Page categories of the qemu workload's guest RAM, in runs of 16 pages (64 KiB): the same in
/// both processes, so the shared pages line up.
#[derive(Clone, Copy, PartialEq)]
enum Guest {
    Zero,
    Shared,
    Unique,
}

fn guest_page(i: usize) -> Guest {
    // splitmix64 of the run number.
    let mut z = ((i / 16) as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    match (z ^ (z >> 31)) % 4 {
        0 => Guest::Zero,
        3 => Guest::Unique,
        _ => Guest::Shared,
    }
}

/// Zero, shared and unique pages among the first `pages` of guest RAM.
fn qemu_counts(pages: usize) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for i in 0..pages {
        match guest_page(i) {
            Guest::Zero => c.0 += 1,
            Guest::Shared => c.1 += 1,
            Guest::Unique => c.2 += 1,
        }
    }
    c
}

fn mmap(len: usize, prot: i32, flags: i32, fd: i32, off: usize) -> Result<*mut u8, String> {
    // SAFETY: a fresh mapping at an address of the kernel's choosing.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off as libc::off_t) };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap {len}: {}", std::io::Error::last_os_error()));
    }
    Ok(p.cast())
}

fn sys(rc: i32, what: &str) -> Result<(), String> {
    if rc != 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// Number of VMAs of this process.
fn vma_count() -> usize {
    fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn page_at<'a>(base: *mut u8, i: usize) -> &'a mut [u8] {
    // SAFETY: callers pass pages inside their own live, writable mappings.
    unsafe { std::slice::from_raw_parts_mut(base.add(i * PAGE), PAGE) }
}

/// The seed of page `i` of worker `index`: shared pages are the same in every worker.
fn seed(i: usize, shared: usize, index: u64) -> u64 {
    if i < shared {
        1 << 52 | i as u64
    } else {
        (index + 1) << 40 | i as u64
    }
}

/// Builds the memory of a scale worker of `kind`, or returns None for kinds it does not know.
/// The mappings stay until the process exits. Returns what to say after "ready".
pub fn worker(
    kind: &str,
    index: u64,
    pages: usize,
    dup: f64,
    vmas: usize,
) -> Result<Option<String>, String> {
    let shared = (pages as f64 * dup) as usize;
    match kind {
        "procs" => forker(vmas, pages, shared),
        "vmas" => {
            let vmas = vmas.max(1);
            let chunk = (pages / vmas).max(1);
            let stride = (chunk + 1) * PAGE;
            let base = mmap(vmas * stride, RW, ANON, -1, 0)?;
            // SAFETY: our mapping.
            unsafe { libc::madvise(base.cast(), vmas * stride, libc::MADV_NOHUGEPAGE) };
            for v in 0..vmas {
                // SAFETY: inside the mapping.
                let start = unsafe { base.add(v * stride) };
                for j in 0..chunk {
                    fill_page(page_at(start, j), seed(v * chunk + j, shared, index));
                }
                // SAFETY: the last page of this chunk's stride: the gap that splits the VMA.
                sys(unsafe { libc::munmap(start.add(chunk * PAGE).cast(), PAGE) }, "munmap")?;
                // SAFETY: our mapping.
                let rc = unsafe { libc::madvise(start.cast(), chunk * PAGE, libc::MADV_MERGEABLE) };
                sys(rc, "MADV_MERGEABLE")?;
            }
            Ok(Some(format!("vmas={}", vma_count())))
        }
        "crafted" | "crafted-random" => {
            let mut r = Region::new(pages * PAGE, false)?;
            let crafted = kind == "crafted";
            let want = xxh64::crafted_hash();
            let mut colliding = 0;
            for i in 0..pages {
                let p = r.page(i);
                if crafted {
                    xxh64::crafted_page(p, seed(i, shared, index));
                } else {
                    fill_page(p, seed(i, shared, index));
                }
                colliding += usize::from(xxh64::xxh64(p, 0) == want);
            }
            r.opt_in()?;
            Ok(Some(format!("colliding={colliding}")))
        }
        "bulk" => {
            // Gigabytes: a full xorshift fill takes minutes under TCG. Eight words per page,
            // the first at offset 0, make pages as distinct as random ones (memcmp stops at the
            // first bytes) and cost the engines the same (xxh64 and checksums read the whole
            // page).
            let mut r = Region::new(pages * PAGE, false)?;
            for i in 0..pages {
                let p = r.page(i);
                let mut x = seed(i, shared, index).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for k in 0..8 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    p[k * 512..k * 512 + 8].copy_from_slice(&x.to_le_bytes());
                }
            }
            r.opt_in()?;
            Ok(Some(String::new()))
        }
        "qemu" => qemu_worker(index, pages).map(Some),
        _ => Ok(None),
    }
}

/// The procs workload: `count` processes forked from this one (a fork is much cheaper than an
/// exec under TCG), each with `pages` pages, the first `shared` the same in all. Ready once they
/// all are; they exit when this process's stdin closes.
fn forker(count: usize, pages: usize, shared: usize) -> Result<Option<String>, String> {
    let pipe = || -> Result<[i32; 2], String> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors.
        sys(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe")?;
        Ok(fds)
    };
    let [ready_r, ready_w] = pipe()?;
    let [quit_r, quit_w] = pipe()?;
    let mut pids = Vec::new();
    for i in 0..count {
        // SAFETY: this process is single-threaded; the child only maps, writes and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY (whole block): the child's own descriptors and fresh mappings; it leaves
            // with _exit, running nothing of the parent's.
            unsafe {
                libc::close(ready_r);
                libc::close(quit_w);
                let ok = Region::new(pages * PAGE, false).and_then(|mut r| {
                    for j in 0..pages {
                        fill_page(r.page(j), seed(j, shared, i as u64));
                    }
                    r.opt_in()
                });
                if ok.is_ok() {
                    libc::write(ready_w, b"r".as_ptr().cast(), 1);
                }
                libc::close(ready_w);
                // Until the parent closes its end.
                let mut b = 0u8;
                libc::read(quit_r, (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        pids.push(pid);
    }
    // SAFETY: closing our copies of the children's ends.
    unsafe {
        libc::close(ready_w);
        libc::close(quit_r);
    }
    let mut ready = 0;
    let mut b = [0u8; 64];
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(ready_r, b.as_mut_ptr().cast(), b.len()) };
        if n <= 0 {
            break;
        }
        ready += n as usize;
    }
    let stop = || {
        // SAFETY: our end of the pipe, then our own children.
        unsafe {
            libc::close(quit_w);
            for &pid in &pids {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    };
    if ready != count {
        stop();
        return Err(format!("{ready} of {count} processes ready"));
    }
    println!("ready procs={count}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    // Children first: the parent's wait for this process must cover them.
    stop();
    std::process::exit(0);
}

/// A QEMU-shaped process: guest RAM (THP, mergeable) among a few hundred other VMAs.
fn qemu_worker(index: u64, pages: usize) -> Result<String, String> {
    const HUGE: usize = 2 << 20;
    // Guest RAM, 2 MiB aligned so that it can be backed by THPs.
    let len = (pages * PAGE).div_ceil(HUGE) * HUGE;
    let raw = mmap(len + HUGE, RW, ANON, -1, 0)?;
    let ram = ((raw as usize).div_ceil(HUGE) * HUGE) as *mut u8;
    let head = ram as usize - raw as usize;
    // SAFETY: the unaligned head and tail of our own mapping.
    unsafe {
        if head > 0 {
            sys(libc::munmap(raw.cast(), head), "munmap")?;
        }
        sys(libc::munmap(ram.add(len).cast(), HUGE - head), "munmap")?;
        sys(libc::madvise(ram.cast(), len, libc::MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    }
    for i in 0..pages {
        let p = page_at(ram, i);
        match guest_page(i) {
            // The write faults the THP in; the page stays zero.
            Guest::Zero => p[0] = 0,
            Guest::Shared => fill_page(p, 1 << 52 | i as u64),
            Guest::Unique => fill_page(p, (index + 1) << 40 | i as u64),
        }
    }
    // SAFETY: our mapping.
    sys(unsafe { libc::madvise(ram.cast(), len, libc::MADV_MERGEABLE) }, "MADV_MERGEABLE")?;

    // QEMU's own heap and allocations: 300 small anonymous mappings of 1 to 4 pages, with
    // protections alternating RW, R, none so that none merges with its neighbour.
    let sizes: Vec<usize> = (0..300).map(|k| 1 + k % 4).collect();
    let total: usize = sizes.iter().sum();
    let small = mmap(total * PAGE, RW, ANON, -1, 0)?;
    let mut at = 0;
    for (k, &n) in sizes.iter().enumerate() {
        for j in 0..n {
            fill_page(page_at(small, at + j), 1 << 60 | (index << 32) | (at + j) as u64);
        }
        let prot = [RW, libc::PROT_READ, libc::PROT_NONE][k % 3];
        if prot != RW {
            // SAFETY: a sub-range of our mapping.
            let rc = unsafe { libc::mprotect(small.add(at * PAGE).cast(), n * PAGE, prot) };
            sys(rc, "mprotect")?;
        }
        at += n;
    }
    // Shared libraries and ROMs: private read-only file mappings, offsets apart so that none
    // merges with another.
    let exe = fs::File::open("/proc/self/exe").map_err(|e| format!("/proc/self/exe: {e}"))?;
    let file_pages = exe.metadata().map_err(|e| e.to_string())?.len() as usize / PAGE;
    use std::os::fd::AsRawFd;
    if file_pages > 8 {
        for k in 0..64 {
            let off = (k * 3) % (file_pages - 4) * PAGE;
            let prot = if k % 2 == 0 { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_EXEC };
            let m = mmap(2 * PAGE, prot, libc::MAP_PRIVATE, exe.as_raw_fd(), off)?;
            for j in 0..2 {
                // SAFETY: reading our readable mapping.
                unsafe { std::ptr::read_volatile(m.add(j * PAGE)) };
            }
        }
    }
    // Thread stacks: 16 x 8 MiB, a guard page at the bottom, the top 8 pages used.
    const STACK: usize = 8 << 20;
    for _ in 0..16 {
        let s = mmap(STACK, RW, ANON | libc::MAP_NORESERVE | libc::MAP_STACK, -1, 0)?;
        // SAFETY: the bottom page of our mapping.
        sys(unsafe { libc::mprotect(s.cast(), PAGE, libc::PROT_NONE) }, "mprotect")?;
        for j in 1..=8 {
            page_at(s, STACK / PAGE - j).fill(j as u8);
        }
    }
    let thp = fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .unwrap_or_else(|| "?".into());
    Ok(format!("vmas={} thp_kib={thp}", vma_count()))
}

// ---- output ------------------------------------------------------------------------------------

fn f(v: f64, prec: usize) -> String {
    if v.is_finite() {
        format!("{v:.prec$}")
    } else {
        "-".into()
    }
}

fn find<'a>(runs: &'a [ScaleRun], w: &str, size: u64, e: Engine) -> Option<&'a ScaleRun> {
    runs.iter().find(|r| r.workload == w && r.size == size && r.engine == e)
}

fn cell_cpu(r: Option<&ScaleRun>) -> String {
    match r {
        Some(r) if r.error.is_some() => {
            if r.error.as_deref().unwrap_or("").starts_with("skipped") {
                "skipped".into()
            } else {
                "failed".into()
            }
        }
        Some(r) => format!("{}{}", f(r.cpu_per_page_us(), 2), if r.partial { "*" } else { "" }),
        None => "-".into(),
    }
}

fn ratio(a: Option<&ScaleRun>, b: Option<&ScaleRun>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.error.is_none() && b.error.is_none() => {
            let (x, y) = (a.cpu_per_page_us(), b.cpu_per_page_us());
            if x.is_finite() && y.is_finite() && y > 0.0 {
                format!("{:.2}", x / y)
            } else {
                "-".into()
            }
        }
        _ => "-".into(),
    }
}

fn saved_cell(r: Option<&ScaleRun>) -> String {
    match r {
        Some(r) if r.error.is_none() => {
            let mark = if r.expected.is_some_and(|x| x != r.saved) { "!" } else { "" };
            format!("{}{mark}", r.saved)
        }
        _ => "-".into(),
    }
}

fn conv_cell(r: Option<&ScaleRun>, cpu: bool) -> String {
    match r {
        Some(r) if r.error.is_none() => f(if cpu { r.converge_cpu_s } else { r.converge_s }, 2),
        _ => "-".into(),
    }
}

/// The tables: one per dimension, CPU per scanned page against size for both engines.
pub fn report(runs: &[ScaleRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nScale section: scanner CPU per scanned page (us; steady state: from full scan 2 over \
         3 full scans, 1 for qemu, size, memory),\nrksm/KSM ratio (below 1: rksm is cheaper), \
         time and scanner CPU to converge (s, to 99% of the final pages saved),\npages saved \
         (! = not the expected count). * = the run hit its timeout; its CPU per page is over \
         what it scanned by then."
    );
    let mut dims: Vec<&str> = Vec::new();
    for r in runs {
        if !dims.contains(&r.dimension) {
            dims.push(r.dimension);
        }
    }
    for dim in dims {
        let of_dim: Vec<&ScaleRun> = runs.iter().filter(|r| r.dimension == dim).collect();
        let unit = of_dim.first().map_or("", |r| r.unit);
        let _ = writeln!(out, "\n{dim} (size: {unit})");
        let _ = writeln!(
            out,
            "{:<15} {:>7} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "workload",
            "size",
            "rksm us",
            "ksm us",
            "ratio",
            "rksm conv",
            "ksm conv",
            "rksm cpu",
            "ksm cpu",
            "rksm save",
            "ksm save",
            "expected"
        );
        let mut keys: Vec<(&str, u64)> = Vec::new();
        for r in &of_dim {
            if !keys.contains(&(r.workload, r.size)) {
                keys.push((r.workload, r.size));
            }
        }
        for (w, size) in &keys {
            let rk = find(runs, w, *size, Engine::Rksm);
            let ks = find(runs, w, *size, Engine::Ksm);
            let expected = rk.or(ks).and_then(|r| r.expected).map_or("-".into(), |x| x.to_string());
            let _ = writeln!(
                out,
                "{:<15} {:>7} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                w,
                size,
                cell_cpu(rk),
                cell_cpu(ks),
                ratio(rk, ks),
                conv_cell(rk, false),
                conv_cell(ks, false),
                conv_cell(rk, true),
                conv_cell(ks, true),
                saved_cell(rk),
                saved_cell(ks),
                expected
            );
        }
        if dim == "crafted" {
            let _ =
                writeln!(out, "crafted/random CPU per scanned page (1: no effect of the attack)");
            let _ = writeln!(out, "{:<15} {:>7} {:>10} {:>10}", "", "size", "rksm", "ksm");
            let mut sizes: Vec<u64> = of_dim.iter().map(|r| r.size).collect();
            sizes.dedup();
            for size in sizes {
                let _ = writeln!(
                    out,
                    "{:<15} {:>7} {:>10} {:>10}",
                    "",
                    size,
                    ratio(
                        find(runs, "crafted", size, Engine::Rksm),
                        find(runs, "crafted-random", size, Engine::Rksm)
                    ),
                    ratio(
                        find(runs, "crafted", size, Engine::Ksm),
                        find(runs, "crafted-random", size, Engine::Ksm)
                    ),
                );
            }
        }
        if dim == "memory" {
            let _ = writeln!(
                out,
                "memory per tracked page (MemFree drop after >= 3 full scans / pages; peak: the \
                 largest drop seen while it ran, sampled every 100 ms, mid-pass included)"
            );
            let _ = writeln!(
                out,
                "{:<6} {:>8} {:>14} {:>11} {:>14} {:>9} {:>11} {:>14}",
                "engine",
                "pages",
                "MemFree drop",
                "bytes/page",
                "Slab growth",
                "tracked",
                "peak B/page",
                "peak metadata"
            );
            for r in &of_dim {
                let kib = |v: Option<i64>| v.map_or("-".into(), |b| format!("{} KiB", b / 1024));
                let _ = writeln!(
                    out,
                    "{:<6} {:>8} {:>14} {:>11} {:>14} {:>9} {:>11} {:>14}",
                    r.engine.name(),
                    r.size,
                    kib(r.memfree_drop),
                    f(r.bytes_per_page(), 1),
                    kib(r.slab_drop),
                    r.tracked,
                    f(r.peak_bytes_per_page(), 1),
                    if r.peak_metadata.is_some() {
                        format!("{} B/page", f(r.peak_metadata_per_page(), 1))
                    } else {
                        "-".into()
                    }
                );
            }
        }
    }
    for r in runs.iter().filter(|r| !r.info.is_empty()) {
        if r.engine == Engine::Rksm {
            let _ = writeln!(out, "workers of {} {}: {}", r.workload, r.size, r.info);
        }
    }
    out
}

/// `bytes` per page of `pages`, or NaN.
fn per_page(bytes: Option<i64>, pages: u64) -> f64 {
    match bytes {
        Some(b) if pages > 0 => b as f64 / pages as f64,
        _ => f64::NAN,
    }
}

fn jstr(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn opt(v: Option<i64>) -> String {
    v.map_or("null".into(), |x| x.to_string())
}

/// The scale runs as JSON array elements (the caller writes the brackets).
pub fn json(runs: &[ScaleRun]) -> String {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        // At most ~300 points of the series.
        let step = r.series.len().div_ceil(300).max(1);
        let series: Vec<String> =
            r.series.iter().step_by(step).map(|(t, s, c)| format!("[{t:.3},{s},{c:.2}]")).collect();
        let _ = write!(
            out,
            "    {{\"dimension\": {}, \"workload\": {}, \"size\": {}, \"unit\": {}, \"engine\": \"{}\", \
             \"procs\": {}, \"pages_per_process\": {}, \"error\": {}, \"workers\": {}, \
             \"setup_s\": {}, \"wall_s\": {}, \"cpu_s\": {}, \"converge_s\": {}, \"converge_cpu_s\": {}, \
             \"pages_scanned\": {}, \"full_scans\": {}, \"window_from_scan\": {}, \"window_to_scan\": {}, \
             \"window_cpu_s\": {}, \"window_pages_scanned\": {}, \"cpu_per_scanned_page_us\": {}, \
             \"partial\": {}, \"pages_saved\": {}, \"pages_sharing\": {}, \"pages_shared\": {}, \
             \"ksm_zero_pages\": {}, \"expected_saved\": {}, \"general_profit\": {}, \"pages_tracked\": {}, \
             \"memfree_drop_bytes\": {}, \"slab_growth_bytes\": {}, \"bytes_per_tracked_page\": {}, \
             \"peak_memfree_drop_bytes\": {}, \"peak_metadata_bytes\": {}, \
             \"series\": [{}]}}{}\n",
            jstr(r.dimension),
            jstr(r.workload),
            r.size,
            jstr(r.unit),
            r.engine.name(),
            r.procs,
            r.pages_per_process,
            r.error.as_deref().map_or("null".into(), jstr),
            jstr(&r.info),
            num(r.setup_s),
            num(r.wall_s),
            num(r.cpu_s),
            num(r.converge_s),
            num(r.converge_cpu_s),
            r.scanned,
            r.full_scans,
            r.window.0,
            r.window.1,
            num(r.window_cpu_s),
            r.window_scanned,
            num(r.cpu_per_page_us()),
            r.partial,
            r.saved,
            r.sharing,
            r.shared,
            r.zero_pages,
            opt(r.expected),
            r.profit,
            r.tracked,
            opt(r.memfree_drop),
            opt(r.slab_drop),
            num(r.bytes_per_page()),
            opt(r.peak_drop),
            opt(r.peak_metadata),
            series.join(","),
            if i + 1 < runs.len() { "," } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_have_their_points() {
        for d in DIMENSIONS {
            let n = default_sizes(d).len();
            assert!(n > 0, "{d}");
            let per = if d == "crafted" { 2 } else { 1 };
            assert_eq!(points(d, &default_sizes(d)).len(), n * per, "{d}");
        }
    }

    #[test]
    fn expected_savings() {
        // Two processes: one saved page per shared page.
        assert_eq!(saved_per_content(2), 1);
        // 256 mappings fit one stable page; 1024 need 4.
        assert_eq!(saved_per_content(256), 255);
        assert_eq!(saved_per_content(1024), 1020);
        let p = points("crafted", &[1024]);
        assert_eq!(p[0].expected, Some(512));
        let (z, s, u) = qemu_counts(65536);
        assert_eq!(z + s + u, 65536);
        // Runs of 16 pages, about 1/4 zero, 1/2 shared, 1/4 unique.
        assert!(z > 12000 && z < 20000 && s > 28000 && u > 12000, "{z} {s} {u}");
    }

    #[test]
    fn json_of_a_failed_run_is_valid_enough() {
        let p = &points("vmas", &[1024])[0];
        let r = failed(p, Engine::Ksm, "skipped: \"budget\"".into());
        let j = json(&[r]);
        assert!(j.contains("\"error\": \"skipped: \\\"budget\\\"\""));
        assert!(j.contains("\"cpu_per_scanned_page_us\": null"));
    }
}
