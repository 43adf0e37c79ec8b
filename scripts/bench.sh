#!/usr/bin/env bash
# `make bench`: rksm against in-kernel KSM in the same VM, both with the same
# settings, on every workload, at full speed and at KSM's defaults. Saves the
# table and JSON under bench/results/ and draws one PNG per workload.
#   BENCH_ARGS="--workload dup --speed full"   passed to rksm-bench
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(rksm_kdir) || die "no test kernel: run 'make kernel'"
results=$RKSM_ROOT/bench/results
work=$(mktemp -d /tmp/rksm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$RKSM_ROOT/scripts/build-bench.sh" "$work"
# vm-image: a realistic mix of code, data and zeros, the kind a guest holds.
cp "$kdir/vmlinux" "$kdir/arch/x86/boot/bzImage" "$RKSM_ROOT/rksm.ko" "$work/"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
log=$work/out.txt
# shellcheck disable=SC2086
"$RKSM_ROOT/scripts/vm-run" --timeout 5400 --mem 3072 -d "$work" -- \
	./rksm-bench --files vmlinux:bzImage:rksm.ko ${BENCH_ARGS:-} | tee "$log"
sed -n '/^@@JSON-BEGIN@@$/,/^@@JSON-END@@$/p' "$log" | sed '1d;$d' >"$results/$stamp.json"
[ -s "$results/$stamp.json" ] || die "no results in the guest output"
sed '/^@@JSON-BEGIN@@$/,$d' "$log" | grep -v '^done:' >"$results/$stamp.txt"
cp "$results/$stamp.json" "$results/latest.json"
cp "$results/$stamp.txt" "$results/latest.txt"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
	say "installing python3-matplotlib for the plots"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >/dev/null
fi
/usr/bin/python3 "$RKSM_ROOT/scripts/plot-bench.py" "$results/latest.json" "$results"
say "results: $results/$stamp.json, $results/latest.txt, $results/*.png"
