#!/bin/sh
# Runs inside the test VM from the directory that holds the test binaries.
# Order matters: load_test reloads the module, so it runs last.
for t in $(ls *_test | grep -v '^load_test$') load_test; do
	# The kernel's KSM selftest against rksm: after the others, before the reload.
	if [ "$t" = load_test ] && [ -f ksm_selftests.sh ]; then
		echo "# rksm-test-begin: ksm_selftests"
		sh ksm_selftests.sh
		echo "# rksm-test-end: ksm_selftests rc=$?"
	fi
	[ -x "$t" ] || continue
	echo "# rksm-test-begin: $t"
	./"$t"
	echo "# rksm-test-end: $t rc=$?"
done
