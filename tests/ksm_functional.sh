#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs the kernel's tools/testing/selftests/mm/ksm_functional_tests.c, built by
# scripts/build-ksm-selftests.sh with every /sys/kernel/mm/ksm/ path pointing
# at rksm, and prints one TAP line per case of it. Its own TAP lines are echoed
# as "# " comments so the host counts only the lines printed here. Runs in the
# test VM (busybox sh) from the directory that holds ksm_functional_tests.
#
# "number|case|skip reason (empty: must pass)". The reasons are rksm's design
# or this test kernel, never a failure of rksm's merging: see README.md.
CASES='
1|test_unmerge|
2|test_unmerge_zero_pages|reads the per-process ksm_zero_pages, which rksm leaves to KSM (docs/admin-guide.md, per-process savings)
3|test_unmerge_discarded|
4|test_unmerge_uffd_wp|
5|test_prot_none|its /proc/self/mem write into a PROT_NONE mapping fails on this kernel with in-kernel KSM too, before merging matters
6|test_prctl|
7|test_prctl_fork|
8|test_prctl_fork_exec|
9|test_prctl_unmerge|
10|test_fork_ksm_merging_page_count|
'
S=/sys/kernel/mm/rksm
log=${TMPDIR:-/tmp}/ksm_functional.log
[ -d "${TMPDIR:-/tmp}" ] || log=./ksm_functional.log
saved=""
for k in pages_to_scan sleep_millisecs use_zero_pages; do
	saved="$saved $k=$(cat "$S/$k")"
done

./ksm_functional_tests >"$log" 2>&1
rc=$?
sed 's/^/# /' "$log"
echo "# ksm_functional_tests exit $rc"

plan=$(printf '%s\n' "$CASES" | grep -c '|')
echo "1..$plan"
printf '%s\n' "$CASES" | grep '|' | {
	failed=0
	while IFS='|' read -r n name skip; do
		line=$(grep -E "^(not )?ok $n( |\$)" "$log" | head -n 1)
		title="ksm_functional_tests $n ($name)"
		if [ -n "$skip" ]; then
			echo "ok $n $title # SKIP $skip"
		elif [ -z "$line" ]; then
			echo "not ok $n $title: no result"
			failed=1
		else
			case "$line" in
			"not ok"*) echo "not ok $n $title"; failed=1 ;;
			*"# SKIP"*) echo "ok $n $title # SKIP ${line#*# SKIP }" ;;
			*) echo "ok $n $title" ;;
			esac
		fi
	done
	# Leave the knobs as the next suites expect them.
	echo 2 >"$S/run"
	echo 0 >"$S/run"
	for kv in $saved; do
		echo "${kv#*=}" >"$S/${kv%%=*}"
	done
	exit $failed
}
