// SPDX-License-Identifier: GPL-2.0

//! rksm-bench: measures rksm and in-kernel KSM one after the other, with identical settings,
//! on the same workloads, inside the test VM. `scripts/bench.sh` runs it and plots the result.
//!
//! Usage: rksm-bench [--section classic,scale,advisor,pressure] [--workload W1,W2,...] [--speed full,default]
//!                   [--engine rksm,ksm] [--procs K] [--mib M] [--dup D] [--churn C]
//!                   [--files F1:F2:...] [--timeout S] [--repeat N] [--smoke]
//!                   [--sizes [DIM:]N,...] [--scale-timeout S] [--window A:B] [--budget S]
//!                   [--smart-scan 0|1]
//!        rksm-bench worker ...   (internal: one workload process)
//!
//! Sections (default: both):
//!   classic   dup, zeros, churn, sparse, vm-image: pages saved over time, at full and default
//!             speed (--speed, --procs, --mib, --dup, --churn, --timeout apply).
//!   scale     qemu, vmas, procs, size, crafted, memory: cost against size, at full speed
//!             (see scale.rs). --sizes replaces the sweep of every selected scale workload
//!             (N) or of one (DIM:N, e.g. --sizes vmas:1024,procs:16);
//!             --scale-timeout bounds each run, --budget the whole section (later points are
//!             skipped once it is spent); --window A:B measures CPU per scanned page between
//!             full scans A and B; --smart-scan sets smart_scan for the section (default 0).
//!   advisor   both engines under KSM's scan-time advisor on a growing workload (advisor.rs).
//!   pressure  merged memory under a memory cgroup limit with zram swap and a hog: what is
//!             swapped out, the hog's fate, every byte checked (pressure.rs).
//! --workload takes names of every section (`advisor` and `pressure` for those sections).
//!
//! Prints a table with rksm/KSM ratios, then the results as JSON between `@@JSON-BEGIN@@` and
//! `@@JSON-END@@` lines, which the host harness saves.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

mod advisor;
mod pressure;
mod scale;
mod xxh64;

const PAGE: usize = 4096;

/// The workloads of the classic section.
const CLASSIC: [&str; 5] = ["dup", "zeros", "churn", "sparse", "vm-image"];

/// One merging engine, by its sysfs directory and scanner thread.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Rksm,
    Ksm,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Rksm => "rksm",
            Engine::Ksm => "ksm",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Engine::Rksm => "/sys/kernel/mm/rksm",
            Engine::Ksm => "/sys/kernel/mm/ksm",
        }
    }

    fn thread(self) -> &'static str {
        match self {
            Engine::Rksm => "rksmd",
            Engine::Ksm => "ksmd",
        }
    }

    fn read(self, file: &str) -> i64 {
        fs::read_to_string(format!("{}/{}", self.dir(), file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    fn write(self, file: &str, value: &str) -> Result<(), String> {
        fs::write(format!("{}/{}", self.dir(), file), value)
            .map_err(|e| format!("{}/{} <- {}: {}", self.dir(), file, value, e))
    }
}

/// Scan speed settings, identical for both engines.
#[derive(Clone, Copy)]
struct Speed {
    name: &'static str,
    pages_to_scan: u32,
    sleep_millisecs: u32,
}

const FULL: Speed = Speed { name: "full", pages_to_scan: 20000, sleep_millisecs: 0 };
const DEFAULT: Speed = Speed { name: "default", pages_to_scan: 100, sleep_millisecs: 20 };

struct Opts {
    workloads: Vec<String>,
    /// Workloads of the scale section (`scale::DIMENSIONS`).
    scale: Vec<String>,
    speeds: Vec<Speed>,
    engines: Vec<Engine>,
    procs: usize,
    mib: usize,
    dup: f64,
    churn: f64,
    files: Vec<String>,
    timeout: f64,
    /// Runs per engine of each classic workload at full speed; the median is reported.
    repeat: usize,
    scale_opts: scale::ScaleOpts,
    /// Run the advisor section.
    advisor: bool,
    /// Run the pressure section.
    pressure: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        workloads: CLASSIC.map(String::from).to_vec(),
        scale: scale::DIMENSIONS.map(String::from).to_vec(),
        speeds: vec![FULL, DEFAULT],
        engines: vec![Engine::Rksm, Engine::Ksm],
        procs: 4,
        mib: 64,
        dup: 0.75,
        churn: 0.1,
        files: Vec::new(),
        timeout: 300.0,
        repeat: 5,
        scale_opts: scale::ScaleOpts::default(),
        advisor: true,
        pressure: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--workload" => {
                let all: Vec<String> = val()?.split(',').map(String::from).collect();
                for w in &all {
                    if !CLASSIC.contains(&w.as_str())
                        && !scale::DIMENSIONS.contains(&w.as_str())
                        && w != "advisor"
                        && w != "pressure"
                    {
                        return Err(format!("unknown workload {w}"));
                    }
                }
                o.advisor = all.iter().any(|w| w == "advisor");
                o.pressure = all.iter().any(|w| w == "pressure");
                o.workloads = all.iter().filter(|w| CLASSIC.contains(&w.as_str())).cloned().collect();
                o.scale = all.into_iter().filter(|w| scale::DIMENSIONS.contains(&w.as_str())).collect();
            }
            "--section" => {
                let sections: Vec<String> = val()?.split(',').map(String::from).collect();
                for sec in &sections {
                    if !["classic", "scale", "advisor", "pressure"].contains(&sec.as_str()) {
                        return Err(format!("unknown section {sec}"));
                    }
                }
                o.advisor = sections.iter().any(|x| x == "advisor");
                o.pressure = sections.iter().any(|x| x == "pressure");
                if !sections.iter().any(|x| x == "classic") {
                    o.workloads.clear();
                }
                if !sections.iter().any(|x| x == "scale") {
                    o.scale.clear();
                }
            }
            "--sizes" => {
                // N applies to every selected scale workload, DIM:N to that one only.
                let mut sizes = Vec::new();
                for v in val()?.split(',') {
                    let (dim, n) = match v.split_once(':') {
                        Some((d, n)) => (Some(d.to_string()), n),
                        None => (None, v),
                    };
                    if dim.as_deref().is_some_and(|d| !scale::DIMENSIONS.contains(&d)) {
                        return Err(format!("--sizes: unknown workload in {v}"));
                    }
                    sizes.push((dim, n.parse().map_err(|e| format!("--sizes {v}: {e}"))?));
                }
                o.scale_opts.sizes = Some(sizes);
            }
            "--scale-timeout" => {
                o.scale_opts.timeout =
                    Some(val()?.parse().map_err(|e| format!("--scale-timeout: {e}"))?)
            }
            "--budget" => o.scale_opts.budget = val()?.parse().map_err(|e| format!("--budget: {e}"))?,
            "--smart-scan" => {
                o.scale_opts.smart_scan = val()?.parse().map_err(|e| format!("--smart-scan: {e}"))?
            }
            "--window" => {
                let v = val()?;
                let (a, b) = v.split_once(':').ok_or("--window needs A:B")?;
                let a: i64 = a.parse().map_err(|e| format!("--window: {e}"))?;
                let b: i64 = b.parse().map_err(|e| format!("--window: {e}"))?;
                if b <= a || a < 0 {
                    return Err("--window needs 0 <= A < B".into());
                }
                o.scale_opts.window = Some((a, b));
            }
            "--speed" => {
                o.speeds = val()?
                    .split(',')
                    .map(|s| match s {
                        "full" => Ok(FULL),
                        "default" => Ok(DEFAULT),
                        _ => Err(format!("unknown speed {s}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--engine" => {
                o.engines = val()?
                    .split(',')
                    .map(|s| match s {
                        "rksm" => Ok(Engine::Rksm),
                        "ksm" => Ok(Engine::Ksm),
                        _ => Err(format!("unknown engine {s}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--procs" => o.procs = val()?.parse().map_err(|e| format!("--procs: {e}"))?,
            "--mib" => o.mib = val()?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--dup" => o.dup = val()?.parse().map_err(|e| format!("--dup: {e}"))?,
            "--churn" => o.churn = val()?.parse().map_err(|e| format!("--churn: {e}"))?,
            "--files" => o.files = val()?.split(':').map(String::from).collect(),
            "--timeout" => o.timeout = val()?.parse().map_err(|e| format!("--timeout: {e}"))?,
            "--repeat" => {
                o.repeat = val()?.parse().map_err(|e| format!("--repeat: {e}"))?;
                if o.repeat == 0 {
                    return Err("--repeat needs at least 1".into());
                }
            }
            "--smoke" => {
                o.workloads = vec!["dup".into()];
                o.scale.clear();
                o.advisor = false;
                o.pressure = false;
                o.speeds = vec![FULL];
                o.procs = 2;
                o.mib = 2;
                o.timeout = 10.0;
                o.repeat = 1;
            }
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

/// xorshift64*: deterministic page contents without a dependency.
fn fill_page(page: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in page.chunks_exact_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
}

/// Anonymous memory opted in to merging.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize, noreserve: bool) -> Result<Self, String> {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | if noreserve { libc::MAP_NORESERVE } else { 0 };
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap {len}: {}", std::io::Error::last_os_error()));
        }
        // No THP: both engines would split them; the comparison is about merging.
        // SAFETY: the range is the mapping just made.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        Ok(Region { ptr: ptr.cast(), len })
    }

    fn page(&mut self, i: usize) -> &mut [u8] {
        // SAFETY: `i * PAGE` is inside the mapping, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * PAGE), PAGE) }
    }

    fn opt_in(&self) -> Result<(), String> {
        // SAFETY: the range is our mapping.
        if unsafe { libc::madvise(self.ptr.cast(), self.len, libc::MADV_MERGEABLE) } != 0 {
            return Err(format!("MADV_MERGEABLE: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// A workload process: fills its memory, opts in, says "ready" (plus facts about itself), then
/// waits (or churns) until its stdin closes.
fn worker(args: &[String]) -> Result<(), String> {
    let get = |k: &str| -> Result<String, String> {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
            .ok_or(format!("worker needs {k}"))
    };
    let num = |k: &str, default: f64| -> Result<f64, String> {
        match get(k) {
            Ok(v) => v.parse().map_err(|e| format!("{k}: {e}")),
            Err(_) => Ok(default),
        }
    };
    let kind = get("--kind")?;
    let index: u64 = get("--index")?.parse().map_err(|e| format!("{e}"))?;
    let pages: usize = get("--pages")?.parse().map_err(|e| format!("{e}"))?;
    let dup = num("--dup", 0.75)?;
    let churn = num("--churn", 0.0)?;
    let files = get("--files").unwrap_or_default();
    let mut churning = 0;
    if let Some(r) = pressure::worker(&kind, pages) {
        return r;
    }
    // Scale workloads keep their own mappings (several VMAs); they never churn.
    if let Some(keep) = scale::worker(&kind, index, pages, dup, num("--vmas", 0.0)? as usize)? {
        println!("ready {keep}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        return Ok(());
    }
    let region = match kind.as_str() {
        "dup" | "churn" => {
            let mut r = Region::new(pages * PAGE, false)?;
            let shared = (pages as f64 * dup) as usize;
            for i in 0..pages {
                let seed = if i < shared { i as u64 } else { (index + 1) << 40 | i as u64 };
                fill_page(r.page(i), seed);
            }
            if kind == "churn" {
                churning = (shared as f64 * churn) as usize;
            }
            r
        }
        "zeros" => {
            // A freshly booted guest: mostly zero-filled pages, some data.
            let mut r = Region::new(pages * PAGE, false)?;
            for i in 0..pages {
                let p = r.page(i);
                if i % 8 == 0 {
                    fill_page(p, (index + 1) << 40 | i as u64);
                } else {
                    p.fill(1);
                    p.fill(0);
                }
            }
            r
        }
        "sparse" => {
            // 1 TiB, one page per GiB: the range-walk pathology.
            let len = 1usize << 40;
            let mut r = Region::new(len, true)?;
            for g in 0..(len >> 30) {
                fill_page(r.page((g << 30) / PAGE), (index + 1) << 40 | g as u64);
            }
            r
        }
        "vm-image" => {
            let mut data = Vec::new();
            for f in files.split(':').filter(|f| !f.is_empty()) {
                let mut bytes = Vec::new();
                fs::File::open(f)
                    .and_then(|mut h| h.read_to_end(&mut bytes))
                    .map_err(|e| format!("{f}: {e}"))?;
                bytes.resize(bytes.len().div_ceil(PAGE) * PAGE, 0);
                data.extend_from_slice(&bytes);
            }
            let n = data.len() / PAGE;
            let mut r = Region::new(n.max(1) * PAGE, false)?;
            for i in 0..n {
                r.page(i).copy_from_slice(&data[i * PAGE..(i + 1) * PAGE]);
            }
            r
        }
        _ => return Err(format!("unknown workload {kind}")),
    };
    let mut region = region;
    region.opt_in()?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    if churning == 0 {
        // Wait for the parent to close our stdin.
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        return Ok(());
    }
    // Churn: rewrite the first `churning` shared pages, round after round, until told to stop.
    // SAFETY: polling our own stdin.
    unsafe { libc::fcntl(0, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut round = 1u64;
    loop {
        for i in 0..churning {
            fill_page(region.page(i), round << 48 | i as u64);
        }
        round += 1;
        match std::io::stdin().read(&mut [0u8; 1]) {
            Ok(0) => return Ok(()),
            _ => sleep(Duration::from_millis(50)),
        }
    }
}

/// The pid of the named kernel thread, remembered between calls: `/proc` holds a thousand
/// processes in the procs workload, too many to search every 100 ms.
fn thread_pid(comm: &str) -> Option<String> {
    use std::sync::Mutex;
    static CACHE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().ok()?;
    let has_comm =
        |pid: &str| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm);
    if let Some((_, pid)) = cache.iter().find(|(c, _)| c == comm) {
        if has_comm(pid) {
            return Some(pid.clone());
        }
    }
    cache.retain(|(c, _)| c != comm);
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.bytes().all(|b| b.is_ascii_digit()) && has_comm(&name) {
            cache.push((comm.to_string(), name.clone()));
            return Some(name);
        }
    }
    None
}

/// USER_HZ ticks the named kernel thread has used, or 0.
fn thread_ticks(comm: &str) -> u64 {
    let Some(pid) = thread_pid(comm) else { return 0 };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

/// Seconds of CPU the named kernel thread has used: `/proc/<pid>/schedstat`'s run time in ns
/// (CONFIG_SCHED_INFO), else its USER_HZ ticks. A classic run at full speed converges in a few
/// hundred ms, where 10 ms ticks would be too coarse.
fn thread_cpu_s(comm: &str) -> f64 {
    let Some(pid) = thread_pid(comm) else { return 0.0 };
    let ns = fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()));
    match ns {
        Some(ns) => ns as f64 / 1e9,
        None => thread_ticks(comm) as f64 / 100.0,
    }
}

/// How often a classic run samples pages saved and the scanner's CPU.
const SAMPLE: Duration = Duration::from_millis(10);

/// One measured run.
struct Run {
    workload: String,
    speed: &'static str,
    engine: Engine,
    converge_s: f64,
    /// Scanner CPU until convergence: what the merging cost.
    converge_cpu_s: f64,
    /// Scanner CPU until the run stopped (convergence plus the scans that confirmed it).
    cpu_s: f64,
    scanned: i64,
    full_scans: i64,
    sharing: i64,
    zero_pages: i64,
    profit: i64,
    /// (seconds, pages saved, scanner CPU seconds) every [`SAMPLE`].
    series: Vec<(f64, i64, f64)>,
    /// (time to converge, CPU per merged page) of every repetition, in run order; this run is
    /// the median by time to converge.
    reps: Vec<(f64, f64)>,
}

impl Run {
    fn saved_pages(&self) -> i64 {
        self.sharing + self.zero_pages
    }

    fn cpu_per_merged_ms(&self) -> f64 {
        if self.saved_pages() > 0 {
            self.converge_cpu_s * 1e3 / self.saved_pages() as f64
        } else {
            f64::NAN
        }
    }

    fn cpu_per_scan_ms(&self) -> f64 {
        if self.full_scans > 0 {
            self.cpu_s * 1e3 / self.full_scans as f64
        } else {
            f64::NAN
        }
    }
}

fn reset(engines: &[Engine]) -> Result<(), String> {
    for e in engines {
        e.write("run", "2")?;
        e.write("run", "0")?;
    }
    Ok(())
}

/// Running workload processes; they exit when their stdin closes (here, or on drop).
struct Workers {
    children: Vec<Child>,
    /// What each said after "ready".
    info: Vec<String>,
}

impl Workers {
    /// Starts `procs` workers of `kind` with `args`, all at once (the guest has two CPUs to
    /// fill their memory with), and waits until each is ready.
    fn spawn(kind: &str, procs: usize, args: &[String]) -> Result<Self, String> {
        let exe = env::current_exe().map_err(|e| e.to_string())?;
        let mut w = Workers { children: Vec::new(), info: Vec::new() };
        let mut outs = Vec::new();
        for i in 0..procs {
            let mut c = Command::new(&exe)
                .args(["worker", "--kind", kind, "--index", &i.to_string()])
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("worker {i} of {kind}: {e}"))?;
            outs.push(c.stdout.take().ok_or("no worker stdout")?);
            w.children.push(c);
        }
        for (i, out) in outs.into_iter().enumerate() {
            let mut line = String::new();
            BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
            let Some(info) = line.trim().strip_prefix("ready") else {
                return Err(format!("worker {i} of {kind} failed"));
            };
            w.info.push(info.trim().to_string());
        }
        Ok(w)
    }

    fn stop(&mut self) {
        for c in self.children.iter_mut() {
            drop(c.stdin.take());
        }
        for mut c in self.children.drain(..) {
            let _ = c.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_workers(o: &Opts, workload: &str) -> Result<Workers, String> {
    let (procs, kind) = match workload {
        "vm-image" => (2, "vm-image"),
        "sparse" => (1, "sparse"),
        w => (o.procs, w),
    };
    let args = [
        "--pages".to_string(),
        (o.mib * 1024 * 1024 / PAGE).to_string(),
        "--dup".into(),
        o.dup.to_string(),
        "--churn".into(),
        o.churn.to_string(),
        "--files".into(),
        o.files.join(":"),
    ];
    Workers::spawn(kind, procs, &args)
}

fn measure(o: &Opts, workload: &str, speed: Speed, engine: Engine) -> Result<Run, String> {
    reset(&o.engines)?;
    for e in &o.engines {
        e.write("pages_to_scan", &speed.pages_to_scan.to_string())?;
        e.write("sleep_millisecs", &speed.sleep_millisecs.to_string())?;
        e.write("smart_scan", "1")?;
        e.write("use_zero_pages", if workload == "zeros" { "1" } else { "0" })?;
        e.write("max_page_sharing", "256")?;
    }
    let mut workers = spawn_workers(o, workload)?;
    let (scanned0, scans0, cpu0) =
        (engine.read("pages_scanned"), engine.read("full_scans"), thread_cpu_s(engine.thread()));
    let start = Instant::now();
    engine.write("run", "1")?;
    let mut series = Vec::new();
    let mut stable_since: Option<(i64, i64)> = None;
    // Converged: pages_sharing unchanged over 3 full scans (sparse: 20 full scans, since
    // nothing merges there and the pass cost is what is measured).
    let needed = if workload == "sparse" { 20 } else { 3 };
    loop {
        sleep(SAMPLE);
        let t = start.elapsed().as_secs_f64();
        let sharing = engine.read("pages_sharing") + engine.read("ksm_zero_pages");
        let scans = engine.read("full_scans") - scans0;
        let cpu = thread_cpu_s(engine.thread()) - cpu0;
        series.push((t, sharing, cpu));
        match stable_since {
            Some((s, since)) if s == sharing => {
                if scans - since >= needed {
                    break;
                }
            }
            _ => stable_since = Some((sharing, scans)),
        }
        if t > o.timeout {
            eprintln!("{workload}/{}/{}: no convergence in {}s", speed.name, engine.name(), o.timeout);
            break;
        }
    }
    let cpu_s = thread_cpu_s(engine.thread()) - cpu0;
    let run = {
        let sharing = engine.read("pages_sharing");
        let zero_pages = engine.read("ksm_zero_pages").max(0);
        let final_saved = sharing + zero_pages;
        let converged = series.iter().find(|(_, s, _)| (*s as f64) >= 0.99 * final_saved as f64);
        Run {
            workload: workload.to_string(),
            speed: speed.name,
            engine,
            converge_s: converged.map_or(f64::NAN, |p| p.0),
            converge_cpu_s: converged.map_or(f64::NAN, |p| p.2),
            cpu_s,
            scanned: engine.read("pages_scanned") - scanned0,
            full_scans: engine.read("full_scans") - scans0,
            sharing,
            zero_pages,
            profit: engine.read("general_profit"),
            series,
            reps: Vec::new(),
        }
    };
    engine.write("run", "0")?;
    workers.stop();
    reset(&o.engines)?;
    Ok(run)
}

/// The median over repetitions of rksm's figure `f` over KSM's in the same turn (the two ran
/// one after the other, so the host's noise hits both alike); `None` without repetitions.
fn turns_ratio(r: &Run, k: &Run, f: impl Fn(&(f64, f64)) -> f64) -> Option<String> {
    if r.reps.len() < 2 || r.reps.len() != k.reps.len() {
        return None;
    }
    let mut q: Vec<f64> = r.reps.iter().zip(&k.reps).map(|(a, b)| f(a) / f(b)).collect();
    if q.iter().any(|v| !v.is_finite()) {
        return None;
    }
    q.sort_by(f64::total_cmp);
    q.get(q.len() / 2).map(|m| format!("{m:.2}"))
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn report(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<8} {:<5} {:>9} {:>9} {:>8} {:>9} {:>7} {:>9} {:>10} {:>10} {:>12}",
        "workload",
        "speed",
        "eng",
        "converge",
        "conv cpu",
        "cpu s",
        "scanned",
        "scans",
        "saved",
        "cpu/merge",
        "cpu/scan",
        "profit"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<9} {:<8} {:<5} {:>8.3}s {:>8.3}s {:>8.3} {:>9} {:>7} {:>9} {:>8.3}ms {:>8.2}ms {:>12}",
            r.workload,
            r.speed,
            r.engine.name(),
            r.converge_s,
            r.converge_cpu_s,
            r.cpu_s,
            r.scanned,
            r.full_scans,
            r.saved_pages(),
            r.cpu_per_merged_ms(),
            r.cpu_per_scan_ms(),
            r.profit
        );
    }
    let _ = writeln!(
        out,
        "(sampled every 10 ms; full speed: each engine's median run of {} by time to converge, \
         the engines taking turns; the ratios below are then the medians of the turns' ratios)",
        runs.iter().map(|r| r.reps.len()).max().unwrap_or(1)
    );
    let _ = writeln!(out, "\nrksm/KSM ratios (below 1 means rksm is better, saved: equal is best)");
    let _ = writeln!(out, "{:<9} {:<8} {:>9} {:>10} {:>9} {:>7}", "workload", "speed", "converge", "cpu/merge", "cpu/scan", "saved");
    for r in runs.iter().filter(|r| r.engine == Engine::Rksm) {
        let Some(k) = runs
            .iter()
            .find(|k| k.engine == Engine::Ksm && k.workload == r.workload && k.speed == r.speed)
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<9} {:<8} {:>9} {:>10} {:>9} {:>7}",
            r.workload,
            r.speed,
            turns_ratio(r, k, |p| p.0).unwrap_or_else(|| ratio(r.converge_s, k.converge_s)),
            turns_ratio(r, k, |p| p.1)
                .unwrap_or_else(|| ratio(r.cpu_per_merged_ms(), k.cpu_per_merged_ms())),
            ratio(r.cpu_per_scan_ms(), k.cpu_per_scan_ms()),
            ratio(r.saved_pages() as f64, k.saved_pages() as f64)
        );
    }
    out
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "null".into()
    }
}

fn json(
    runs: &[Run],
    scale: &[scale::ScaleRun],
    advisor: &[advisor::AdvisorRun],
    pressure: &[pressure::PressureRun],
) -> String {
    let mut out = String::from("{\n  \"runs\": [\n");
    for (i, r) in runs.iter().enumerate() {
        let series: Vec<String> =
            r.series.iter().map(|(t, s, c)| format!("[{t:.3},{s},{c:.4}]")).collect();
        let _ = write!(
            out,
            "    {{\"workload\": \"{}\", \"speed\": \"{}\", \"engine\": \"{}\", \"converge_s\": {}, \
             \"converge_cpu_s\": {}, \"cpu_s\": {}, \"pages_scanned\": {}, \"full_scans\": {}, \"pages_sharing\": {}, \
             \"ksm_zero_pages\": {}, \"general_profit\": {}, \"cpu_per_merged_page_ms\": {}, \
             \"cpu_per_full_scan_ms\": {}, \"reps\": [{}], \"series\": [{}]}}{}\n",
            r.workload,
            r.speed,
            r.engine.name(),
            num(r.converge_s),
            num(r.converge_cpu_s),
            num(r.cpu_s),
            r.scanned,
            r.full_scans,
            r.sharing,
            r.zero_pages,
            r.profit,
            num(r.cpu_per_merged_ms()),
            num(r.cpu_per_scan_ms()),
            r.reps.iter().map(|&(c, m)| format!("[{},{}]", num(c), num(m))).collect::<Vec<_>>().join(","),
            series.join(","),
            if i + 1 < runs.len() { "," } else { "" }
        );
    }
    out.push_str("  ],\n  \"scale\": [\n");
    out.push_str(&scale::json(scale));
    out.push_str("  ],\n");
    out.push_str(&advisor::json(advisor));
    out.push_str(",\n");
    out.push_str(&pressure::json(pressure));
    out.push_str("}\n");
    out
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("worker") {
        worker(&args[1..])
    } else {
        parse_opts(&args).and_then(|o| {
            // A thousand workers, each holding a pipe open in this process.
            let lim = libc::rlimit { rlim_cur: 16384, rlim_max: 16384 };
            // SAFETY: a plain setrlimit call with a valid struct.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
            let mut runs = Vec::new();
            for w in &o.workloads {
                for s in &o.speeds {
                    // A full-speed run converges in well under a second, where the host's noise
                    // shows: the engines take turns, and each one's median run is reported.
                    let reps = if s.name == FULL.name { o.repeat } else { 1 };
                    let mut tries: Vec<Vec<Run>> = o.engines.iter().map(|_| Vec::new()).collect();
                    for _ in 0..reps {
                        for (e, t) in o.engines.iter().zip(tries.iter_mut()) {
                            let run = measure(&o, w, *s, *e)?;
                            eprintln!("done: {w} {} {} saved {}", s.name, e.name(), run.saved_pages());
                            t.push(run);
                        }
                    }
                    for mut t in tries {
                        let reps: Vec<(f64, f64)> =
                            t.iter().map(|r| (r.converge_s, r.cpu_per_merged_ms())).collect();
                        t.sort_by(|a, b| a.converge_s.total_cmp(&b.converge_s));
                        let mid = t.len() / 2;
                        if let Some(mut run) = t.into_iter().nth(mid) {
                            run.reps = reps;
                            runs.push(run);
                        }
                    }
                }
            }
            if !runs.is_empty() {
                print!("{}", report(&runs));
            }
            let scale_runs = scale::run(&o)?;
            if !scale_runs.is_empty() {
                print!("{}", scale::report(&scale_runs));
            }
            let advisor_runs = if o.advisor { advisor::run(&o)? } else { Vec::new() };
            if !advisor_runs.is_empty() {
                print!("{}", advisor::report(&advisor_runs));
            }
            let pressure_runs = if o.pressure { pressure::run(&o)? } else { Vec::new() };
            if !pressure_runs.is_empty() {
                print!("{}", pressure::report(&pressure_runs));
            }
            println!(
                "@@JSON-BEGIN@@\n{}@@JSON-END@@",
                json(&runs, &scale_runs, &advisor_runs, &pressure_runs)
            );
            Ok(())
        })
    };
    if let Err(e) = result {
        eprintln!("rksm-bench: {e}");
        std::process::exit(1);
    }
}
