#!/usr/bin/env bash
# Build the kselftests in tests/ statically, run them in three test VMs side
# by side, and count the TAP results. Prints "guest: N passed, N failed, N skipped"
# and exits non-zero on any failure, splat or timeout.
#   TESTS="sysfs_test ..."  run only these
#   RKSM_TEST_TIMEOUT=S     power each guest off after S seconds (default 2400)
#   RKSM_TEST_SERIAL=1      one guest after the other, the main one with 5 GiB
#                           (`make check KASAN=1` sets it: there the guests run
#                           4 times slower, and side by side the time-bound
#                           tests starve)
# Three guests run side by side, each one test VM:
#   main  every other test (2 GiB);
#   scale scale_test, whose big case holds 3 GiB of data (5 GiB) and takes
#         minutes: in line with the others it would nearly double the time
#         the guests take, so it starts as soon as it is built;
#   numa  provider_test, in a small guest with two fake NUMA nodes (it
#         migrates merged pages between them). Not in the main guest: there
#         a node could fill up, and compaction would then move pages while
#         tests compare PFNs.
# Their TAP goes to build/logs/tap.txt in that order; the consoles and dmesg
# to build/logs, build/logs/scale and build/logs/numa.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir=$(rksm_kdir) || die "no test kernel: run 'make kernel'"
headers=$(dirname "$kdir")/headers/include
out=$RKSM_ROOT/build/guest
numa_out=$RKSM_ROOT/build/guest-numa
numa_tests="provider_test"
scale_out=$RKSM_ROOT/build/guest-scale
scale_tests="scale_test"
logs=$RKSM_ROOT/build/logs
rm -rf "$out" "$numa_out" "$scale_out" "$logs"
mkdir -p "$out" "$numa_out" "$scale_out" "$logs"

# guest NAME DIR MIB [vm-run options]: runs DIR's tests in a VM if it holds
# any; TAP into $logs/NAME.tap, the exit status into $logs/NAME.rc.
guest() {
	local name=$1 dir=$2 mem=$3
	shift 3
	echo 0 >"$logs/$name.rc"
	find "$dir" -maxdepth 1 \( -name "*_test" -o -name "*.sh" \) ! -name run-guest.sh | grep -q . ||
		return 0
	mkdir -p "$logs/$name"
	"$RKSM_ROOT/scripts/vm-run" --mem "$mem" --timeout "${RKSM_TEST_TIMEOUT:-2400}" "$@" \
		-d "$dir" --logs "$logs/$name" -- sh run-guest.sh >"$logs/$name.tap"
	echo $? >"$logs/$name.rc"
}

# A guest started here and still running when the script fails is stopped
# with everything under it.
kill_tree() {
	local c
	for c in $(pgrep -P "$1"); do kill_tree "$c"; done
	kill "$1" 2>/dev/null || true
}
scale_pid=""
trap '[ -z "$scale_pid" ] || kill_tree "$scale_pid"' EXIT

for d in "$out" "$numa_out" "$scale_out"; do
	cp "$RKSM_ROOT/tests/run-guest.sh" "$d/"
	# On the KASAN kernel, tests that weigh free memory leave out what KASAN
	# adds (redzones, quarantined objects): run-guest.sh exports RKSM_KASAN=1.
	if grep -qx 'CONFIG_KASAN=y' "$kdir/.config"; then
		touch "$d/kasan"
	fi
done

cflags=(-static -O2 -g -Wall -Werror -D_GNU_SOURCE -isystem "$headers"
	-I "$kdir/tools/testing/selftests" -I "$RKSM_ROOT/tests")
for src in "$RKSM_ROOT"/tests/*_test.c; do
	name=$(basename "$src" .c)
	if [ -n "${TESTS:-}" ] && ! grep -qw "$name" <<<"$TESTS"; then continue; fi
	dest=$out
	grep -qw "$name" <<<"$numa_tests" && dest=$numa_out
	grep -qw "$name" <<<"$scale_tests" && dest=$scale_out
	gcc "${cflags[@]}" -o "$dest/$name" "$src"
done
# The scale guest has the longest run: it starts now, while the rest builds.
: >"$logs/tap.txt"
serial=${RKSM_TEST_SERIAL:-0}
if [ "$serial" != 1 ]; then
	guest scale "$scale_out" 5120 &
	scale_pid=$!
fi
# mmu_notifier_test's helper module, built from a copy (no .o in tests/)
# against the test kernel; the test loads it from ./ in the guest.
if [ -x "$out/mmu_notifier_test" ]; then
	mn=$RKSM_ROOT/build/mn
	rm -rf "$mn"
	cp -r "$RKSM_ROOT/tests/mmu_notifier" "$mn"
	kmake M="$mn" modules >"$logs/mn-build.log" 2>&1 ||
		{ cat "$logs/mn-build.log" >&2; die "building rksm_mn_test.ko failed"; }
	cp "$mn/rksm_mn_test.ko" "$out/"
fi
# nested_test's guests: the host's QEMU, packed, and the bare-metal checker.
if [ -x "$out/nested_test" ]; then
	"$RKSM_ROOT/scripts/pack-qemu.sh" "$out/qemu"
	gcc -m32 -ffreestanding -fno-pic -fno-stack-protector -nostdlib -O2 -Wall -Werror \
		-c -o "$out/baremetal.o" "$RKSM_ROOT/qemu/nested/baremetal.c"
	ld -m elf_i386 --no-warn-rwx-segments -T "$RKSM_ROOT/qemu/nested/baremetal.ld" \
		-o "$out/rksm-guest.elf" "$out/baremetal.o"
	rm "$out/baremetal.o"
fi
# The kernel's own KSM selftest (ksm_tests), pointed at /sys/kernel/mm/rksm.
if [ -z "${TESTS:-}" ] || grep -qwE 'ksm_selftests|ksm_functional' <<<"$TESTS"; then
	"$RKSM_ROOT/scripts/build-ksm-selftests.sh" "$out"
	cp "$RKSM_ROOT/tests/ksm_selftests.sh" "$RKSM_ROOT/tests/ksm_functional.sh" "$out/"
fi
# The kernel's own memfd test: its noexec cases against rksm's memfd_noexec.
if [ -z "${TESTS:-}" ] || grep -qw memfd_selftests <<<"$TESTS"; then
	"$RKSM_ROOT/scripts/build-memfd-selftests.sh" "$out"
	cp "$RKSM_ROOT/tests/memfd_selftests.sh" "$out/"
fi
# rksm-apply (what rksm.service runs) against the live module.
if [ -z "${TESTS:-}" ] || grep -qw apply_config <<<"$TESTS"; then
	cp "$RKSM_ROOT/tests/apply_config.sh" "$RKSM_ROOT/scripts/rksm-apply" "$RKSM_ROOT/scripts/rksm.conf" "$out/"
fi
# The benchmark's smoke run (static, for the guest).
if [ -z "${TESTS:-}" ] || grep -qw bench_smoke <<<"$TESTS"; then
	"$RKSM_ROOT/scripts/build-bench.sh" "$out"
	cp "$RKSM_ROOT/tests/bench_smoke.sh" "$out/"
fi

set +e
if [ "$serial" = 1 ]; then
	guest main "$out" 5120 &
	tail -n +1 --pid=$! -F "$logs/main.tap" 2>/dev/null
	wait
	guest scale "$scale_out" 5120
	guest numa "$numa_out" 1024 --append "numa=fake=2"
else
	guest numa "$numa_out" 1024 --append "numa=fake=2" &
	guest main "$out" 2048 &
	# Show the main guest's TAP as it comes, then the others'.
	tail -n +1 --pid=$! -F "$logs/main.tap" 2>/dev/null
	wait
fi
scale_pid=""
vmrc=0
for name in main scale numa; do
	[ -f "$logs/$name.tap" ] || continue
	[ "$name" = main ] || cat "$logs/$name.tap"
	cat "$logs/$name.tap" >>"$logs/tap.txt"
	rc=$(cat "$logs/$name.rc")
	[ "$vmrc" != 0 ] || vmrc=$rc
	# The main guest's logs stay where they always were.
	[ "$name" != main ] || mv "$logs/main"/* "$logs/" 2>/dev/null
done
set -e

# Count TAP results per binary. A binary that announced more tests than it
# reported, or that exited non-zero without a failed test, counts one
# failure more: a crash must not pass.
awk -v vmrc="$vmrc" '
	/^# rksm-test-begin:/ { name = $3; plan = 0; seen = 0; failed = 0; next }
	/^1\.\.[0-9]+/ { split($0, p, "\\."); plan = p[3] + 0; next }
	/^ok / { seen++; if ($0 ~ /# SKIP/) skip++; else pass++; next }
	/^not ok / { seen++; fail++; failed++; print "FAILED: " name ": " $0 > "/dev/stderr"; next }
	/^# rksm-test-end:/ {
		rc = $4; sub("rc=", "", rc)
		if (seen < plan) { fail++; print "FAILED: " name ": reported " seen " of " plan " tests" > "/dev/stderr" }
		else if (rc != 0 && failed == 0) { fail++; print "FAILED: " name ": exit " rc > "/dev/stderr" }
		name = ""
	}
	END {
		if (name != "") { fail++; print "FAILED: " name ": did not finish" > "/dev/stderr" }
		if (vmrc == 124) { fail++; print "FAILED: the guest timed out" > "/dev/stderr" }
		else if (vmrc == 125) { fail++; print "FAILED: kernel splat in the guest dmesg" > "/dev/stderr" }
		else if (vmrc != 0) { fail++; print "FAILED: the guest run exited " vmrc > "/dev/stderr" }
		if (pass + fail == 0) { fail++; print "FAILED: no test ran" > "/dev/stderr" }
		printf "guest: %d passed, %d failed, %d skipped\n", pass, fail, skip
		exit (fail > 0)
	}' "$logs/tap.txt"
