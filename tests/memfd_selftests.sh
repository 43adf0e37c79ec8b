#!/bin/sh
# The kernel's own memfd test, tools/testing/selftests/memfd/memfd_test.c,
# built by scripts/build-memfd-selftests.sh. Runs in the test VM (busybox sh)
# from the directory that holds the binaries; prints one TAP line per case.
#
#  - Its noexec cases run against rksm's memfd_noexec knob (the copy's sysctl
#    helpers use /sys/kernel/mm/rksm/memfd_noexec), one case per process, with
#    vm.memfd_noexec left at 0: each case must find it still 0 afterwards.
#  - Then the unmodified test runs whole, with rksm loaded at its defaults: the
#    hooks must change nothing then (its sysctl cases set vm.memfd_noexec only
#    in child pid namespaces).
# Its output is echoed as "# " comments, so the host counts only these lines.

KNOB=/sys/kernel/mm/rksm/memfd_noexec
SYSCTL=/proc/sys/vm/memfd_noexec

# "case|what it checks|skip reason (empty: run it)"
CASES='
exec_seal|MFD_EXEC memfd: mode 0777, F_SEAL_EXEC freezes the x bits|
exec_no_seal|MFD_EXEC without MFD_ALLOW_SEALING: F_SEAL_SEAL|
noexec_seal|MFD_NOEXEC_SEAL: mode 0666, F_SEAL_EXEC, chmod +x fails|
sysctl_0|memfd_noexec=0: a legacy call is executable|
sysctl_1|memfd_noexec=1: a legacy call is noexec-sealed, MFD_EXEC still allowed|
sysctl_2|memfd_noexec=2: legacy noexec-sealed, MFD_EXEC refused|
sysctl_simple|0, 1, 0, 2, 1, 0 from a new pid namespace|
sysctl_1_failset|a child pid namespace cannot lower 1|memfd_noexec is one system-wide value that root sets, not a per-namespace one: writing a lower value succeeds by design (memfd_test checks the floor under the value of each namespace instead)
sysctl_2_failset|a child pid namespace cannot lower 2|as sysctl_1_failset: a lower write of the system-wide knob succeeds by design
sysctl_nested|inheritance and lowering across nested pid namespaces|memfd_noexec is not per pid namespace: nothing is inherited, and the lowering steps expect failures a system-wide knob does not have
hugetlbfs|the same cases on hugetlbfs memfds (memfd_test hugetlbfs)|the test kernel has no HUGETLBFS
'

log=${TMPDIR:-/tmp}/memfd_selftests.log
plan=$(($(printf '%s\n' "$CASES" | grep -c '|') + 1))
echo "1..$plan"

reset() {
	echo 0 >$KNOB
}

n=0
printf '%s\n' "$CASES" | grep '|' | {
	while IFS='|' read -r name what skip; do
		n=$((n + 1))
		title="memfd_test $name ($what)"
		if [ -n "$skip" ]; then
			echo "ok $n $title # SKIP $skip"
			continue
		fi
		[ -x ./memfd_noexec_kernel ] || { echo "not ok $n $title # memfd_noexec_kernel is missing"; continue; }
		reset
		./memfd_noexec_kernel "$name" >"$log" 2>&1 </dev/null
		rc=$?
		sed 's/^/# /' "$log"
		sysctl=$(cat $SYSCTL)
		knob=$(cat $KNOB)
		reset
		if [ $rc != 0 ]; then
			echo "not ok $n $title # rc=$rc $(tail -n 1 "$log")"
		elif [ "$sysctl" != 0 ]; then
			echo "not ok $n $title # vm.memfd_noexec is $sysctl afterwards"
		else
			echo "ok $n $title # memfd_noexec ended at $knob"
		fi
	done
}

n=$plan
title="memfd_test, unmodified, whole (vm.memfd_noexec in child pid namespaces, rksm at defaults)"
if [ ! -x ./memfd_test_unmodified ]; then
	echo "not ok $n $title # memfd_test_unmodified is missing"
else
	./memfd_test_unmodified >"$log" 2>&1 </dev/null
	rc=$?
	sed 's/^/# /' "$log"
	if [ $rc = 0 ] && [ "$(cat $SYSCTL)" = 0 ]; then
		echo "ok $n $title"
	else
		echo "not ok $n $title # rc=$rc, vm.memfd_noexec $(cat $SYSCTL)"
	fi
fi
rm -f "$log"
exit 0
