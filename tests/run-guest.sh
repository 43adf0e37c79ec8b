#!/bin/sh
# Runs inside the test VM from the directory that holds the test binaries.
# Each test binary, then each suite script (NAME.sh printing its own TAP),
# runs as one block between begin/end lines that scripts/run-tests.sh counts.
# Order matters: sysfs_test checks the load-time defaults, so it runs first;
# load_test reloads the module, so it runs last.
block() { # name, command...
	name=$1
	shift
	echo "# rksm-test-begin: $name"
	t0=$(date +%s)
	"$@"
	rc=$?
	echo "# rksm-test-end: $name rc=$rc secs=$(($(date +%s) - t0))"
}
# The KASAN kernel (scripts/run-tests.sh leaves the mark).
[ -f kasan ] && export RKSM_KASAN=1
[ -x sysfs_test ] && block sysfs_test ./sysfs_test
for t in *_test; do
	case "$t" in sysfs_test | load_test) continue ;; esac
	[ -x "$t" ] && block "$t" ./"$t"
done
for s in *.sh; do
	[ "$s" != run-guest.sh ] && block "${s%.sh}" sh "$s"
done
[ -x load_test ] && block load_test ./load_test
exit 0
