#!/usr/bin/env python3
"""Draw the bench results.

Classic section: pages saved over time for rksm and KSM, one PNG per workload
(<workload>.png). Scale section: scanner CPU per scanned page against size, both
engines, log x axis, one PNG per dimension (scale-<dimension>.png), with the
CPU to converge beside it where pages merge; the memory dimension is a bar
chart of bytes per tracked page. Advisor section: each full scan's duration and
the pages_to_scan the advisor set after it, over time, both engines
(advisor.png).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"rksm": "tab:blue", "ksm": "tab:orange"}


def plot_classic(runs, outdir):
    keys = sorted({(r["workload"], r["speed"]) for r in runs})
    for workload in sorted({k[0] for k in keys}):
        speeds = [s for w, s in keys if w == workload]
        fig, axes = plt.subplots(1, len(speeds), figsize=(6 * len(speeds), 4), squeeze=False)
        for ax, speed in zip(axes[0], speeds):
            for r in runs:
                if r["workload"] == workload and r["speed"] == speed:
                    t = [p[0] for p in r["series"]]
                    s = [p[1] for p in r["series"]]
                    ax.plot(t, s, label=f'{r["engine"]} (cpu {r["cpu_s"]:.2f} s)')
            ax.set_title(f"{workload}, {speed} speed")
            ax.set_xlabel("seconds (TCG guest)")
            ax.set_ylabel("pages saved (pages_sharing + ksm_zero_pages)")
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(f"{outdir}/{workload}.png", dpi=80)
        plt.close(fig)


def series_of(runs, workload, engine, key):
    """(sizes, values, partial flags) of the measured points of one line."""
    pts = sorted(
        (r["size"], r[key], r["partial"])
        for r in runs
        if r["workload"] == workload and r["engine"] == engine and r["error"] is None and r[key] is not None and r[key] > 0
    )
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def plot_lines(ax, runs, key, ylabel):
    workloads = sorted({r["workload"] for r in runs})
    for workload in workloads:
        for engine in ("rksm", "ksm"):
            x, y, partial = series_of(runs, workload, engine, key)
            if not x:
                continue
            style = "--" if workload.endswith("-random") else "-"
            label = engine if len(workloads) == 1 else f"{engine}, {workload}"
            ax.plot(x, y, style, marker="o", color=COLORS[engine], label=label)
            # Runs that hit their timeout: hollow red rings.
            px = [a for a, p in zip(x, partial) if p]
            py = [b for b, p in zip(y, partial) if p]
            if px:
                ax.scatter(px, py, s=120, facecolors="none", edgecolors="red", zorder=3)
        if key == "converge_cpu_s":
            # Runs that never converged: their whole CPU, a lower bound, as a red x.
            for engine in ("rksm", "ksm"):
                nx = [r["size"] for r in runs if r["workload"] == workload and r["engine"] == engine
                      and r["error"] is None and r["converge_cpu_s"] is None and r["cpu_s"]
                      and r["pages_saved"] < (r["expected_saved"] or 0)]
                ny = [r["cpu_s"] for r in runs if r["workload"] == workload and r["engine"] == engine
                      and r["error"] is None and r["converge_cpu_s"] is None and r["cpu_s"]
                      and r["pages_saved"] < (r["expected_saved"] or 0)]
                if nx:
                    ax.scatter(nx, ny, marker="x", s=80, color=COLORS[engine], zorder=3,
                               label=f"{engine}: not converged (CPU so far)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_scale(runs, outdir):
    for dim in sorted({r["dimension"] for r in runs}):
        rs = [r for r in runs if r["dimension"] == dim]
        unit = rs[0]["unit"]
        if dim == "memory":
            fig, ax = plt.subplots(figsize=(5, 4))
            ok = [r for r in rs if r["bytes_per_tracked_page"] is not None]
            labels = [f'{r["engine"]}\n{r["size"]} pages' for r in ok]
            ax.bar(labels, [r["bytes_per_tracked_page"] for r in ok],
                   color=[COLORS[r["engine"]] for r in ok])
            ax.axhline(64, color="gray", linestyle=":", label="KSM rmap_item (64 B)")
            ax.set_ylabel("MemFree drop per tracked page (bytes)")
            ax.set_title("memory per tracked page")
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(f"{outdir}/scale-{dim}.png", dpi=80)
            plt.close(fig)
            continue
        merges = any(r["pages_saved"] for r in rs)
        n = 2 if merges else 1
        fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.5), squeeze=False)
        ax = axes[0][0]
        plot_lines(ax, rs, "cpu_per_scanned_page_us", "scanner CPU per scanned page (us)")
        ax.set_xlabel(unit)
        ax.set_title(f"{dim}: steady-state cost per page (red ring: timed out)")
        if merges:
            ax = axes[0][1]
            plot_lines(ax, rs, "converge_cpu_s", "scanner CPU to converge (s)")
            ax.set_xlabel(unit)
            ax.set_title(f"{dim}: CPU until 99% of the pages saved (x: never)")
        fig.tight_layout()
        fig.savefig(f"{outdir}/scale-{dim}.png", dpi=80)
        plt.close(fig)


def plot_advisor(runs, outdir):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for r in runs:
        t = [s[0] for s in r["scans"]]
        ax1.plot(t, [s[1] for s in r["scans"]], "o-", color=COLORS.get(r["engine"]), label=r["engine"])
        ax2.plot(t, [s[2] for s in r["scans"]], "o-", color=COLORS.get(r["engine"]), label=r["engine"])
    if runs:
        ax1.axhline(runs[0]["target_s"], color="gray", linestyle="--", label="target")
    ax1.set_title("advisor: full scan duration (workload grows at 40 s)")
    ax1.set_xlabel("seconds (TCG guest)")
    ax1.set_ylabel("full scan (s)")
    ax2.set_title("advisor: pages_to_scan set after each full scan")
    ax2.set_xlabel("seconds (TCG guest)")
    ax2.set_ylabel("pages_to_scan")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(f"{outdir}/advisor.png", dpi=80)
    plt.close(fig)


def main(path, outdir):
    data = json.load(open(path))
    if data.get("runs"):
        plot_classic(data["runs"], outdir)
    if data.get("scale"):
        plot_scale(data["scale"], outdir)
    if data.get("advisor"):
        plot_advisor(data["advisor"], outdir)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
