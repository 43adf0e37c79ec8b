// SPDX-License-Identifier: GPL-2.0

//! The advisor section: each engine under KSM's scan-time advisor (`advisor_mode=scan-time`,
//! the same advisor knobs for both) on a workload that grows, at KSM's default sleep. It records
//! every full scan: when it ended, how long it took, and the `pages_to_scan` the advisor set
//! after it. A working advisor brings the scan time to its target, and back to it after the
//! workload grows.

use std::fmt::Write as _;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{num, reset, Engine, Opts, Workers, PAGE};

/// `advisor_target_scan_time`, in seconds (KSM's default is 200; a bench needs shorter).
const TARGET_S: u64 = 5;
/// The workload: `(workers, MiB each, seconds after the start)`, each step adding workers.
const STEPS: [(usize, usize, f64); 2] = [(2, 16, 0.0), (2, 256, 40.0)];
/// How long each engine runs.
const RUN_S: f64 = 110.0;

/// One engine's run: its full scans.
pub struct AdvisorRun {
    engine: Engine,
    /// (seconds at the end of the scan, its duration in seconds, pages_to_scan set after it).
    scans: Vec<(f64, f64, i64)>,
}

fn measure(o: &Opts, engine: Engine) -> Result<AdvisorRun, String> {
    reset(&o.engines)?;
    engine.write("advisor_mode", "none")?;
    engine.write("pages_to_scan", "100")?;
    engine.write("sleep_millisecs", "20")?;
    engine.write("smart_scan", "0")?;
    engine.write("advisor_target_scan_time", &TARGET_S.to_string())?;
    engine.write("advisor_max_cpu", "70")?;
    engine.write("advisor_min_pages_to_scan", "100")?;
    engine.write("advisor_max_pages_to_scan", "30000")?;
    engine.write("advisor_mode", "scan-time")?;
    let mut workers: Vec<Workers> = Vec::new();
    let mut next_step = 0;
    let start = Instant::now();
    let mut last_scans = engine.read("full_scans");
    let mut last_end = 0.0;
    let mut run = AdvisorRun { engine, scans: Vec::new() };
    let mut started = false;
    loop {
        let t = start.elapsed().as_secs_f64();
        if let Some(&(procs, mib, at)) = STEPS.get(next_step) {
            if t >= at {
                let args = [
                    "--pages".to_string(),
                    (mib * 1024 * 1024 / PAGE).to_string(),
                    "--dup".into(),
                    "0.5".into(),
                    "--vmas".into(),
                    "0".into(),
                ];
                workers.push(Workers::spawn("bulk", procs, &args)?);
                next_step += 1;
                if !started {
                    engine.write("run", "1")?;
                    last_scans = engine.read("full_scans");
                    last_end = start.elapsed().as_secs_f64();
                    started = true;
                }
            }
        }
        if t > RUN_S {
            break;
        }
        sleep(Duration::from_millis(100));
        let scans = engine.read("full_scans");
        if scans > last_scans {
            let now = start.elapsed().as_secs_f64();
            // One sample may see more than one scan end: split the time evenly.
            let n = (scans - last_scans) as f64;
            let pages = engine.read("pages_to_scan");
            for _ in 0..(scans - last_scans) {
                run.scans.push((now, (now - last_end) / n, pages));
            }
            last_scans = scans;
            last_end = now;
        }
    }
    for mut w in workers {
        w.stop();
    }
    engine.write("run", "0")?;
    engine.write("advisor_mode", "none")?;
    reset(&o.engines)?;
    Ok(run)
}

/// Runs the section for every selected engine.
pub fn run(o: &Opts) -> Result<Vec<AdvisorRun>, String> {
    let mut runs = Vec::new();
    for &e in &o.engines {
        let r = measure(o, e)?;
        eprintln!("done: advisor {}: {} full scans", e.name(), r.scans.len());
        runs.push(r);
    }
    Ok(runs)
}

/// The scan durations and advisor settings, side by side, and a summary per growth step.
pub fn report(runs: &[AdvisorRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nAdvisor section: advisor_mode=scan-time, target {TARGET_S} s, max_cpu 70, \
         min/max pages_to_scan 100/30000, sleep_millisecs 20; workload: {} x {} MiB, \
         then {} x {} MiB more at {} s",
        STEPS[0].0, STEPS[0].1, STEPS[1].0, STEPS[1].1, STEPS[1].2
    );
    for r in runs {
        let _ = writeln!(out, "{}: full scan end (s), duration (s), pages_to_scan after", r.engine.name());
        for (end, dur, pages) in &r.scans {
            let _ = writeln!(out, "  {end:7.1} {dur:7.2} {pages:7}");
        }
        // The mean duration of the last three scans before the growth and at the end.
        let before: Vec<f64> =
            r.scans.iter().filter(|s| s.0 < STEPS[1].2).map(|s| s.1).collect();
        let all: Vec<f64> = r.scans.iter().map(|s| s.1).collect();
        let tail = |v: &[f64]| {
            let k = v.len().min(3);
            if k == 0 {
                f64::NAN
            } else {
                v[v.len() - k..].iter().sum::<f64>() / k as f64
            }
        };
        let _ = writeln!(
            out,
            "{}: last 3 scans before growing {:.2} s, at the end {:.2} s (target {TARGET_S} s)",
            r.engine.name(),
            tail(&before),
            tail(&all)
        );
    }
    out
}

/// The runs as a JSON array (the `"advisor"` member of the results).
pub fn json(runs: &[AdvisorRun]) -> String {
    let mut out = String::from("  \"advisor\": [\n");
    for (i, r) in runs.iter().enumerate() {
        let scans: Vec<String> = r
            .scans
            .iter()
            .map(|(e, d, p)| format!("[{}, {}, {p}]", num(*e), num(*d)))
            .collect();
        let _ = writeln!(
            out,
            "    {{\"engine\": \"{}\", \"target_s\": {TARGET_S}, \"scans\": [{}]}}{}",
            r.engine.name(),
            scans.join(", "),
            if i + 1 < runs.len() { "," } else { "" }
        );
    }
    out.push_str("  ]\n");
    out
}
