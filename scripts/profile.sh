#!/usr/bin/env bash
# Profile the scanner thread under a bench workload, with perf, in the bench VM.
#   scripts/profile.sh ["rksm-bench args"]
#       default: --section classic --workload dup --speed full --engine rksm
#   PROFILE_COMM=ksmd     KSM's thread instead of rksmd
#   PROFILE_FREQ=10000    perf's sampling rate (Hz)
#   BENCH_KERNEL=test     on the test kernel (its lockdep and irq tracing keep
#                         interrupts off for long stretches, which skews samples)
# Prints perf's self view for the thread (share of its samples per function).
# The host's perf runs in the guest with its libraries, as pack-qemu.sh packs
# QEMU. perf does not resolve rksm's symbols from the .ko there, so they are
# resolved here through the guest's /proc/kallsyms. The call-graph view is
# left out: the kernel's unwinder loses its way through rksm's Rust frames.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
args=${1:---section classic --workload dup --speed full --engine rksm}
comm=${PROFILE_COMM:-rksmd}
freq=${PROFILE_FREQ:-10000}
perf=$(command -v perf) || die "perf is missing: apt-get install linux-perf"
work=$(mktemp -d /tmp/rksm-profile.XXXXXX)
trap 'rm -rf "$work"' EXIT
rksm_bench_target "$work"
guest=$work/guest
mkdir -p "$guest/perf/lib"
"$RKSM_ROOT/scripts/build-bench.sh" "$guest"
cp "$KDIR/vmlinux" "$KDIR/arch/x86/boot/bzImage" "$RKSM_KO" "$guest/"
cp "$perf" "$guest/perf/perf"
ldd "$perf" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' |
	while read -r lib; do cp -L "$lib" "$guest/perf/lib/"; done
loader=$(basename "$(ldd "$perf" | awk '$1 ~ /ld-linux/ { print $1 }')")
cat >"$guest/profile.sh" <<SH
#!/bin/sh
perf() { /host/perf/lib/$loader --library-path /host/perf/lib /host/perf/perf "\$@"; }
mkdir -p /tmp
echo 0 >/proc/sys/kernel/kptr_restrict
echo -1 >/proc/sys/kernel/perf_event_paranoid
perf record -a -F $freq -o /tmp/perf.data -- ./rksm-bench --files vmlinux:bzImage:rksm.ko $args \
	2>&1 | sed -n '/^workload/,/^@@JSON-BEGIN@@/p' | grep -v '^@@'
grep '\[rksm\]' /proc/kallsyms | sed 's/^/@KSYM /'
grep '^rksm ' /proc/modules | sed 's/^/@MOD /'
perf report -i /tmp/perf.data --stdio --comm $comm --no-children --sort dso,sym 2>/dev/null |
	grep -v '^#' | grep . | sed 's/^/@REP /'
SH
"$RKSM_ROOT/scripts/vm-run" --allow-splat --timeout 1800 --mem 8192 -d "$guest" -- sh ./profile.sh >"$work/out.txt"
grep -v '^@' "$work/out.txt"
echo "perf self view of $comm (share of its samples):"
python3 - "$work/out.txt" <<'PY'
import bisect, re, sys
syms, base, rows = [], None, []
for line in open(sys.argv[1]):
    f = line.split()
    if line.startswith("@KSYM ") and len(f) >= 4 and f[2] in "tT":
        syms.append((int(f[1], 16), f[3]))
    elif line.startswith("@MOD ") and len(f) >= 7:
        base = int(f[6], 16)
    elif line.startswith("@REP "):
        m = re.match(r"@REP\s+([\d.]+)%\s+\[(\S+)\]\s+\[k\]\s+(\S+)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3)))
syms.sort()
addrs = [a for a, _ in syms]


def short(name):
    """The last path parts of a Rust v0 symbol: <length><identifier> runs, with the
    disambiguators (s..._) and back-references (B..._) between them skipped."""
    if not name.startswith("_R"):
        return name
    parts, i = [], 2
    while i < len(name):
        c = name[i]
        if c.isdigit():
            m = re.match(r"\d+", name[i:])
            n, i = int(m.group()), i + m.end()
            if name[i:i + 1] == "_":
                i += 1
            parts.append(name[i:i + n])
            i += n
        elif c in "sB":
            j = name.find("_", i)
            i = j + 1 if j >= 0 else len(name)
        else:
            i += 1
    return "::".join(parts[-3:]) or name


agg = {}
for pct, dso, sym in rows:
    if dso == "rksm" and sym.startswith("0x") and base is not None:
        i = bisect.bisect_right(addrs, base + int(sym, 16)) - 1
        sym = "rksm:" + (short(syms[i][1]) if i >= 0 else sym)
    sym = short(sym)
    agg[sym] = agg.get(sym, 0.0) + pct
total = sum(agg.values()) or 1.0
for sym, pct in sorted(agg.items(), key=lambda kv: -kv[1])[:50]:
    print(f"{100 * pct / total:6.2f}%  {sym}")
PY
