#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# rksm-apply (what rksm.service runs at boot) against the live module: a
# config is applied in its order with run last and advisor_mode after
# pages_to_scan; bad lines and refused values are reported by line with the
# other lines still applied and exit 1; --stop and --unmerge; and loading the
# module when it is not loaded. Ends with a fresh load of rksm, at defaults.
# Prints TAP.
S=/sys/kernel/mm/rksm
KO=${RKSM_KO_PATH:-/rksm.ko}
APPLY=./rksm-apply
conf=./rksm-apply-test.conf
errs=./rksm-apply-test.err
n=0
failed=0

ok() { # condition-status description
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $2"
	else
		echo "not ok $n $2"
		failed=$((failed + 1))
	fi
}
is() { # knob expected description
	got=$(cat "$S/$1")
	[ "$got" = "$2" ]
	st=$?
	[ $st = 0 ] || echo "# $1: expected '$2', got '$got'"
	ok $st "$3"
}

echo "TAP version 13"
echo "1..18"

echo 2 >"$S/run"
cat >"$conf" <<'EOF'
# comments and blank lines are skipped

  sleep_millisecs = 50
run=1
merge_domains=uid
use_zero_pages=1
EOF
$APPLY -c "$conf" 2>"$errs"
ok $? "a good config applies (exit 0)"
is sleep_millisecs 50 "blanks around = are trimmed"
is merge_domains "none [uid] process" "word knobs take their word"
is use_zero_pages 1 "bool knobs"
is run 1 "run is written, last"

echo 2 >"$S/run"
cat >"$conf" <<'EOF'
advisor_mode=scan-time
pages_to_scan=300
EOF
$APPLY -c "$conf" 2>"$errs"
ok $? "advisor_mode before pages_to_scan in the file still applies"
is pages_to_scan 500 "advisor_mode went after pages_to_scan (the advisor starts at its minimum)"
echo none >"$S/advisor_mode"

cat >"$conf" <<'EOF'
max_page_sharing=1
no_such_knob=3
just some words
sleep_millisecs=70
EOF
$APPLY -c "$conf" 2>"$errs"
[ $? = 1 ]
ok $? "a bad config exits 1"
sed 's/^/# /' "$errs"
grep -q "rksm-apply-test.conf:1: max_page_sharing=1 refused .*keeps 256" "$errs"
ok $? "a refused value is reported with its line and the value kept"
grep -q ":2: no knob named no_such_knob" "$errs" && grep -q ":3: not NAME=VALUE" "$errs"
ok $? "unknown knobs and malformed lines are reported by line"
is sleep_millisecs 70 "the good lines are applied anyway"
is max_page_sharing 256 "a refused value leaves the knob as it was"

# The config make install ships.
$APPLY -c ./rksm.conf 2>"$errs"
ok $? "the shipped /etc/rksm.conf applies cleanly"
is advisor_mode "none [scan-time]" "it turns KSM's advisor on"

$APPLY --stop
is run 0 "--stop writes run=0"
$APPLY --unmerge
is run 2 "--unmerge writes run=2"

# Not loaded: rksm-apply loads it, then applies the config.
rmmod rksm
printf 'pages_to_scan=321\nrun=1\n' >"$conf"
$APPLY -m "$KO" -c "$conf" 2>"$errs"
ok $? "loads rksm when it is not loaded"
is pages_to_scan 321 "and applies the config after loading"

# Leave rksm as the next suites expect it: freshly loaded, at its defaults.
echo 2 >"$S/run"
rmmod rksm && insmod "$KO"
rm -f "$conf" "$errs"
[ $failed = 0 ]
