#!/bin/sh
# Runs the kernel's KSM selftest, tools/testing/selftests/mm/ksm_tests.c, built
# by scripts/build-ksm-selftests.sh with KSM_SYSFS_PATH pointing at rksm, once
# per mode, and prints one TAP line per mode. Runs in the test VM (busybox sh)
# from the directory that holds ksm_tests.
#
# The modes and flags are those of the kernel's run_vmtests.sh, with sizes cut
# for QEMU TCG. ksm_tests exits 0 on pass (also when its one result is a SKIP:
# its "ok 1 ... # SKIP" line tells), 4 (KSFT_SKIP) when it cannot run at all,
# anything else on failure. Its own TAP lines are echoed as "# " comments so the
# host counts only the lines printed here.

# "name|ksm_tests arguments|skip reason (empty: run it)"
MODES='
merge|-M -p 10|
merge prctl|-M -p 10 -t 1|
unmerge|-U|
unmerge prctl|-U -t 1|
zero pages off|-Z -p 10 -z 0|
zero pages on|-Z -p 10 -z 1|
numa merge_across_nodes=1|-N -m 1|
numa merge_across_nodes=0|-N -m 0|
merge time|-P -s 8|
merge time THP|-H -s 8|
unmerge time|-D -s 8|
COW time|-C|
'

log=${TMPDIR:-/tmp}/ksm_tests.log
plan=$(printf '%s\n' "$MODES" | grep -c '|')
echo "1..$plan"

n=0
printf '%s\n' "$MODES" | grep '|' | {
	while IFS='|' read -r name args skip; do
		n=$((n + 1))
		title="ksm_tests $args ($name)"
		if [ -n "$skip" ]; then
			echo "ok $n $title # SKIP $skip"
			continue
		fi
		[ -x ./ksm_tests ] || { echo "not ok $n $title # ksm_tests is missing"; continue; }
		start=$(date +%s)
		# -l bounds each wait for full scans (default 120 s).
		./ksm_tests -l 60 $args >"$log" 2>&1 </dev/null
		rc=$?
		secs=$(($(date +%s) - start))
		sed 's/^/# /' "$log"
		# The reason of a skip or failure: the last diagnostic before the result line.
		why=$(awk '/^(not )?ok / { if (r == "") r = last; next }
			/^# / { last = substr($0, 3) } /^Bail out/ { last = $0 }
			END { print (r != "" ? r : last) }' "$log")
		if [ $rc = 4 ] || { [ $rc = 0 ] && grep -q '^ok .*# SKIP' "$log"; }; then
			echo "ok $n $title # SKIP ${why:-skipped by ksm_tests}"
		elif [ $rc = 0 ]; then
			echo "ok $n $title # ${secs}s"
		else
			echo "not ok $n $title # rc=$rc ${why}"
		fi
	done
}
rm -f "$log"
exit 0
