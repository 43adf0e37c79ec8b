#!/bin/sh
# `make check`'s 10-second smoke run of the benchmark (`make bench` is the real
# one): both engines on a tiny dup workload; the program must finish, print
# its ratio table, and see both engines save the same pages.
echo "1..1"
out=$(./rksm-bench --smoke 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
rksm=$(echo "$out" | awk '$1 == "dup" && $3 == "rksm" { print $9 }')
ksm=$(echo "$out" | awk '$1 == "dup" && $3 == "ksm" { print $9 }')
if [ $rc = 0 ] && echo "$out" | grep -q "rksm/KSM ratios" && [ -n "$rksm" ] && [ "$rksm" -gt 0 ] && [ "$rksm" = "$ksm" ]; then
	echo "ok 1 bench smoke: rksm and KSM both saved $rksm pages"
else
	echo "not ok 1 bench smoke (rc=$rc, saved rksm=$rksm ksm=$ksm)"
fi
