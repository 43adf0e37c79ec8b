#!/usr/bin/env bash
# `make run`: boot the test kernel, load rksm, show /sys/kernel/mm/rksm and
# rksmd, unload, power off.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
demo=$(mktemp -d /tmp/rksm-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
cat >"$demo/demo.sh" <<'SH'
set -e
echo "== uname: $(uname -r)"
echo "== rksm loaded: $(grep -w rksm /proc/modules)"
echo "== /sys/kernel/mm/rksm:"
for f in /sys/kernel/mm/rksm/*; do printf '  %-36s %s\n' "${f##*/}" "$(cat "$f")"; done
echo "== run=1"
echo 1 >/sys/kernel/mm/rksm/run
sleep 1
ps | grep '[r]ksmd'
echo "== run=0, rmmod"
echo 0 >/sys/kernel/mm/rksm/run
rmmod rksm
test ! -e /sys/kernel/mm/rksm && echo "  /sys/kernel/mm/rksm is gone"
SH
"$RKSM_ROOT/scripts/vm-run" -d "$demo" -- sh demo.sh
