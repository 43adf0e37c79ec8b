#!/usr/bin/env python3
"""Draw pages saved over time for rksm and KSM, one PNG per workload and speed."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(path, outdir):
    runs = json.load(open(path))["runs"]
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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
