// SPDX-License-Identifier: GPL-2.0

//! The pressure section: merged memory under memory pressure, each engine in turn, with zram
//! swap and a memory cgroup.
//!
//! [`DATA_PROCS`] processes hold the same [`DATA_MIB`] MiB each, all in one memory cgroup; the
//! engine merges them (to about [`DATA_MIB`] MiB). Then the cgroup's `memory.max` drops to
//! [`LIMIT_MIB`] and a hog of [`HOG_MIB`] MiB of its own data starts in it and keeps touching its
//! pages for [`HOG_S`] seconds: merged and hog memory together do not fit, so reclaim must swap
//! merged pages out (they are the cold ones) or the hog is killed. The section reports what was
//! swapped out (`pswpout`), what stayed merged, the hog's fate, OOM kills, and whether every
//! byte of every process came back intact (each process reads it all back, from swap, as it
//! exits). `pages_sharing` is shown before the hog, at its lowest while the hog ran, and when
//! the hog stopped.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{fill_page, num, reset, Engine, Opts, Region, Workers, PAGE};

const DATA_PROCS: usize = 4;
const DATA_MIB: usize = 64;
const HOG_MIB: usize = 128;
const LIMIT_MIB: usize = 160;
const HOG_S: f64 = 15.0;
const ZRAM_MIB: usize = 512;
const CG: &str = "/sys/fs/cgroup";
const CG_BENCH: &str = "/sys/fs/cgroup/rksm_bench";

/// One engine's run.
pub struct PressureRun {
    engine: Engine,
    /// Seconds to merge the data processes before the hog starts.
    merge_s: f64,
    sharing_before: i64,
    /// The lowest `pages_sharing` seen while the hog ran.
    sharing_min: i64,
    /// `pages_sharing` when the hog stopped.
    sharing_end: i64,
    pswpout: i64,
    pswpin: i64,
    hog: String,
    oom_kills: i64,
    intact: bool,
}

/// Pressure workers: `pressure-data` (the same pages in every process, opted in) and
/// `pressure-hog` (pages of its own, not opted in, touched over and over). Each fills its
/// memory, says "ready", then on its stdin closing checks every byte and exits 0, or 1 if any
/// page differs. `None` for another kind.
pub fn worker(kind: &str, pages: usize) -> Option<Result<(), String>> {
    let hog = match kind {
        "pressure-data" => false,
        "pressure-hog" => true,
        _ => return None,
    };
    Some(run_worker(hog, pages))
}

fn seed(hog: bool, i: usize) -> u64 {
    if hog {
        1 << 50 | i as u64
    } else {
        i as u64
    }
}

fn run_worker(hog: bool, pages: usize) -> Result<(), String> {
    let mut r = Region::new(pages * PAGE, false)?;
    for i in 0..pages {
        fill_page(r.page(i), seed(hog, i));
    }
    if !hog {
        r.opt_in()?;
    }
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    if hog {
        // Touch every page until told to stop: the hog's memory stays hot.
        // SAFETY: polling our own stdin.
        unsafe { libc::fcntl(0, libc::F_SETFL, libc::O_NONBLOCK) };
        let mut sum = 0u64;
        loop {
            for i in 0..pages {
                // SAFETY: reading our own page, volatile so that the loop is kept.
                sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(r.page(i).as_ptr()) } as u64);
            }
            match std::io::stdin().read(&mut [0u8; 1]) {
                Ok(0) => break,
                _ => sleep(Duration::from_millis(20)),
            }
        }
        std::hint::black_box(sum);
    } else {
        let _ = std::io::stdin().read(&mut [0u8; 1]);
    }
    let mut want = vec![0u8; PAGE];
    for i in 0..pages {
        fill_page(&mut want, seed(hog, i));
        if r.page(i) != want.as_slice() {
            std::process::exit(1);
        }
    }
    Ok(())
}

fn write(path: &str, val: &str) -> Result<(), String> {
    fs::write(path, val).map_err(|e| format!("{path} <- {val}: {e}"))
}

fn vmstat(name: &str) -> i64 {
    fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(-1)
}

fn oom_kills() -> i64 {
    fs::read_to_string(format!("{CG_BENCH}/memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// A swap area on zram0, as mkswap writes it (version 1, no bad pages).
fn zram_swapon() -> Result<(), String> {
    let bytes = ZRAM_MIB << 20;
    write("/sys/block/zram0/disksize", &bytes.to_string())?;
    let mut hdr = vec![0u8; PAGE];
    hdr[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    hdr[1028..1032].copy_from_slice(&((bytes / PAGE - 1) as u32).to_le_bytes());
    hdr[PAGE - 10..].copy_from_slice(b"SWAPSPACE2");
    fs::OpenOptions::new()
        .write(true)
        .open("/dev/zram0")
        .and_then(|mut f| f.write_all(&hdr).and_then(|()| f.sync_all()))
        .map_err(|e| format!("/dev/zram0: {e}"))?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::swapon(c"/dev/zram0".as_ptr(), 0) } != 0 {
        return Err(format!("swapon /dev/zram0: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn zram_swapoff() {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::swapoff(c"/dev/zram0".as_ptr()) };
    let _ = fs::write("/sys/block/zram0/reset", "1");
}

/// This process (and the workers it starts) into a memory cgroup of its own.
fn cgroup_enter() -> Result<(), String> {
    if fs::metadata(format!("{CG}/cgroup.procs")).is_err() {
        let ok = Command::new("mount")
            .args(["-t", "cgroup2", "none", CG])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("cannot mount cgroup2 at {CG}"));
        }
    }
    write(&format!("{CG}/cgroup.subtree_control"), "+memory")?;
    if let Err(e) = fs::create_dir(CG_BENCH) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(format!("{CG_BENCH}: {e}"));
        }
    }
    write(&format!("{CG_BENCH}/cgroup.procs"), "0")
}

fn cgroup_leave() {
    let _ = fs::write(format!("{CG}/cgroup.procs"), "0");
    let _ = fs::remove_dir(CG_BENCH);
}

fn measure(o: &Opts, engine: Engine) -> Result<PressureRun, String> {
    reset(&o.engines)?;
    engine.write("pages_to_scan", "20000")?;
    engine.write("sleep_millisecs", "0")?;
    engine.write("smart_scan", "0")?;
    engine.write("use_zero_pages", "0")?;
    engine.write("max_page_sharing", "256")?;
    write(&format!("{CG_BENCH}/memory.max"), "max")?;
    let pages = DATA_MIB * 1024 * 1024 / PAGE;
    let args = ["--pages".to_string(), pages.to_string()];
    let mut data = Workers::spawn("pressure-data", DATA_PROCS, &args)?;
    let start = Instant::now();
    engine.write("run", "1")?;
    let want = ((DATA_PROCS - 1) * pages) as i64;
    while engine.read("pages_sharing") < want * 99 / 100 && start.elapsed().as_secs_f64() < 120.0 {
        sleep(Duration::from_millis(100));
    }
    let merge_s = start.elapsed().as_secs_f64();
    let sharing_before = engine.read("pages_sharing");
    let (out0, in0, ooms0) = (vmstat("pswpout"), vmstat("pswpin"), oom_kills());

    write(&format!("{CG_BENCH}/memory.max"), &format!("{}", LIMIT_MIB << 20))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let hog_pages = HOG_MIB * 1024 * 1024 / PAGE;
    let mut hog = Command::new(exe)
        .args(["worker", "--kind", "pressure-hog", "--index", "0", "--pages"])
        .arg(hog_pages.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("hog: {e}"))?;
    let mut line = String::new();
    if let Some(out) = hog.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let t0 = Instant::now();
    let mut sharing_min = engine.read("pages_sharing");
    while t0.elapsed().as_secs_f64() < HOG_S {
        sleep(Duration::from_millis(200));
        sharing_min = sharing_min.min(engine.read("pages_sharing"));
        if hog.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    let sharing_end = engine.read("pages_sharing");
    drop(hog.stdin.take());
    let status = hog.wait().map_err(|e| format!("hog: {e}"))?;
    let hog_fate = match (line.trim() == "ready", status.code(), status.signal()) {
        (_, _, Some(9)) => "oom-killed".to_string(),
        (true, Some(0), _) => "survived".to_string(),
        (true, Some(1), _) => "corrupted".to_string(),
        (_, code, sig) => format!("failed ({code:?}, signal {sig:?})"),
    };
    write(&format!("{CG_BENCH}/memory.max"), "max")?;
    let (pswpout, ooms) = (vmstat("pswpout") - out0, oom_kills() - ooms0);
    // Every data process checks its bytes (swapping them back in) as it exits.
    for c in data.children.iter_mut() {
        drop(c.stdin.take());
    }
    let mut intact = hog_fate != "corrupted";
    for mut c in data.children.drain(..) {
        intact &= c.wait().is_ok_and(|s| s.success());
    }
    let pswpin = vmstat("pswpin") - in0;
    engine.write("run", "0")?;
    reset(&o.engines)?;
    Ok(PressureRun {
        engine,
        merge_s,
        sharing_before,
        sharing_min,
        sharing_end,
        pswpout,
        pswpin,
        hog: hog_fate,
        oom_kills: ooms,
        intact,
    })
}

/// Runs the section for every selected engine.
pub fn run(o: &Opts) -> Result<Vec<PressureRun>, String> {
    zram_swapon()?;
    let result = cgroup_enter().and_then(|()| {
        let mut runs = Vec::new();
        for &e in &o.engines {
            let r = measure(o, e)?;
            eprintln!("done: pressure {}: hog {}, pswpout {}", e.name(), r.hog, r.pswpout);
            runs.push(r);
        }
        Ok(runs)
    });
    cgroup_leave();
    zram_swapoff();
    result
}

pub fn report(runs: &[PressureRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nPressure section: {DATA_PROCS} x {DATA_MIB} MiB of the same data, merged, in a memory \
         cgroup; then memory.max {LIMIT_MIB} MiB and a hog of {HOG_MIB} MiB touching its pages for \
         {HOG_S} s; zram swap {ZRAM_MIB} MiB"
    );
    let _ = writeln!(
        out,
        "{:<5} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:<11} {:>5} {:>6}",
        "eng", "merge s", "sharing", "min hog", "hog end", "pswpout", "pswpin", "hog", "ooms", "intact"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<5} {:>8.2} {:>9} {:>9} {:>9} {:>8} {:>8} {:<11} {:>5} {:>6}",
            r.engine.name(),
            r.merge_s,
            r.sharing_before,
            r.sharing_min,
            r.sharing_end,
            r.pswpout,
            r.pswpin,
            r.hog,
            r.oom_kills,
            if r.intact { "yes" } else { "NO" }
        );
    }
    out
}

/// The runs as a JSON array (the `"pressure"` member of the results).
pub fn json(runs: &[PressureRun]) -> String {
    let mut out = String::from("  \"pressure\": [\n");
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"engine\": \"{}\", \"merge_s\": {}, \"sharing_before\": {}, \"sharing_min\": {}, \
             \"sharing_end\": {}, \"pswpout\": {}, \"pswpin\": {}, \"hog\": \"{}\", \
             \"oom_kills\": {}, \"intact\": {}}}{}",
            r.engine.name(),
            num(r.merge_s),
            r.sharing_before,
            r.sharing_min,
            r.sharing_end,
            r.pswpout,
            r.pswpin,
            r.hog,
            r.oom_kills,
            r.intact,
            if i + 1 < runs.len() { "," } else { "" }
        );
    }
    out.push_str("  ]\n");
    out
}
