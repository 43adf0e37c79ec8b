#!/usr/bin/env bash
# `make bench`: rksm against in-kernel KSM in the same VM, both with the same
# settings: the classic workloads at full speed and at KSM's defaults, then the
# scale section (cost against size: qemu, vmas, procs, size, crafted, memory).
# Saves the table and JSON under bench/results/ and draws the PNGs there.
#   BENCH_ARGS="--workload dup --speed full"   passed to rksm-bench
#   BENCH_ARGS="--section scale"               the scale section only
#   BENCH_MEM=8192  BENCH_TIMEOUT=4800         guest MiB, guest time limit (s)
#   BENCH_KERNEL=test                          measure on the test kernel
#                                              (lockdep, DEBUG_VM) instead of
#                                              the bench kernel
set -euo pipefail
. "$(dirname "$0")/lib.sh"
results=$RKSM_ROOT/bench/results
work=$(mktemp -d /tmp/rksm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
rksm_bench_target "$work"
say "benchmarking on $KDIR"
"$RKSM_ROOT/scripts/build-bench.sh" "$work"
# vm-image: a realistic mix of code, data and zeros, the kind a guest holds.
cp "$KDIR/vmlinux" "$KDIR/arch/x86/boot/bzImage" "$RKSM_KO" "$work/"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
log=$work/out.txt
# The size workload maps 2 x 2 GiB, the memory one 1 GiB: the guest needs room.
# A kernel splat (vm-run exit 125) still leaves results worth keeping: save
# them, then fail.
# shellcheck disable=SC2086
"$RKSM_ROOT/scripts/vm-run" --timeout "${BENCH_TIMEOUT:-4800}" --mem "${BENCH_MEM:-8192}" -d "$work" -- \
	./rksm-bench --files vmlinux:bzImage:rksm.ko ${BENCH_ARGS:-} | tee "$log" && rc=0 || rc=$?
sed -n '/^@@JSON-BEGIN@@$/,/^@@JSON-END@@$/p' "$log" | sed '1d;$d' >"$results/$stamp.json"
[ -s "$results/$stamp.json" ] || { rm -f "$results/$stamp.json"; die "no results in the guest output (vm-run exit $rc)"; }
sed '/^@@JSON-BEGIN@@$/,$d' "$log" | grep -v '^done:' >"$results/$stamp.txt"
cp "$results/$stamp.json" "$results/latest.json"
cp "$results/$stamp.txt" "$results/latest.txt"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
	say "installing python3-matplotlib for the plots"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >/dev/null
fi
/usr/bin/python3 "$RKSM_ROOT/scripts/plot-bench.py" "$results/latest.json" "$results"
say "results: $results/$stamp.json, $results/latest.txt, $results/*.png"
[ "$rc" = 0 ] || die "vm-run exited $rc (125: kernel splat in the guest; see above); results saved anyway"
