#!/bin/sh
# Runs inside the test VM from the directory that holds the test binaries.
# Order matters: load_test reloads the module, so it runs last.
for t in $(ls *_test | grep -v '^load_test$') load_test; do
	[ -x "$t" ] || continue
	echo "# rksm-test-begin: $t"
	./"$t"
	echo "# rksm-test-end: $t rc=$?"
done
