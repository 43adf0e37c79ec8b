#!/usr/bin/env bash
# `make demo`: boot the test kernel, load rksm, merge a real workload
# (qemu/demo.c) while printing what it saves, break COW with a write and
# check the data, unmerge, unload, power off.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
demo=$(mktemp -d /tmp/rksm-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
gcc -static -O2 -Wall -o "$demo/rksm-demo" "$RKSM_ROOT/qemu/demo.c"
cat >"$demo/demo.sh" <<'SH'
set -e
echo "== $(uname -sr); rksm loaded: $(grep -c '^rksm ' /proc/modules) module"
echo "== /sys/kernel/mm/rksm before:"
(cd /sys/kernel/mm/rksm && grep . * | sed 's/^/  /')
echo
./rksm-demo
echo
echo "== rmmod rksm"
rmmod rksm
test ! -e /sys/kernel/mm/rksm && echo "  /sys/kernel/mm/rksm is gone (vm-run fails on any kernel splat)"
SH
"$RKSM_ROOT/scripts/vm-run" -d "$demo" -- sh demo.sh
