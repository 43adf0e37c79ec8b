#!/bin/sh
# `make run` inside the test VM (scripts/run-guests.sh packs this directory
# as /host): nested QEMU guests, deduplicated by rksm, then the same
# scenario under in-kernel KSM, side by side.
#
# Each inner guest is TCG with mem-merge=on (QEMU's default: guest RAM is
# MADV_MERGEABLE, as on a real KVM host). All boot the same kernel (the test
# kernel) and run guestcheck as init. While they run, this prints a live
# table; at the end each guest's integrity verdict, the counters back at 0
# after run=2, and a summary.
#   GUESTS=2 GUEST_MIB=160 CHECK_MIB=64 CHECK_SECS=60 ENGINES="rksm ksm"
set -u
GUESTS=${GUESTS:-2} GUEST_MIB=${GUEST_MIB:-160} CHECK_MIB=${CHECK_MIB:-64}
CHECK_SECS=${CHECK_SECS:-60} ENGINES=${ENGINES:-rksm ksm}
SAMPLE=5
fail=0

kthread_pid() { # comm
	for c in /proc/[0-9]*/comm; do
		[ "$(cat "$c" 2>/dev/null)" = "$1" ] && { p=${c#/proc/}; echo "${p%/comm}"; return; }
	done
}
cpu_secs() { # pid: utime + stime, in seconds
	awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"
}
knob() { cat "$dir/$1"; }

run_engine() { # rksm | ksm
	eng=$1
	case $eng in
	rksm) dir=/sys/kernel/mm/rksm other=/sys/kernel/mm/ksm thread=rksmd ;;
	ksm) dir=/sys/kernel/mm/ksm other=/sys/kernel/mm/rksm thread=ksmd ;;
	esac
	echo 2 >"$other/run"; echo 0 >"$other/run"
	echo 2 >"$dir/run"
	echo 2000 >"$dir/pages_to_scan"
	echo 20 >"$dir/sleep_millisecs"
	echo 1 >"$dir/run"
	tpid=$(kthread_pid $thread)
	cpu0=$(cpu_secs "$tpid")
	echo
	echo "== $eng: $GUESTS guests x $GUEST_MIB MiB booting $(uname -r), checker on $CHECK_MIB MiB for $CHECK_SECS s"
	echo "   $thread: pages_to_scan=$(knob pages_to_scan) sleep_millisecs=$(knob sleep_millisecs)"
	# Inner guests run without lockdep's proving: the host's locking is the
	# one under test, and the inner boots are slow enough.
	pids=""
	g=1
	while [ $g -le "$GUESTS" ]; do
		./qemu/run-qemu -machine pc,mem-merge=on -accel tcg -cpu qemu64 -m "$GUEST_MIB" \
			-nodefaults -no-user-config -display none -no-reboot \
			-serial "file:$eng-guest$g.log" -kernel bzImage -initrd inner.cpio.gz \
			-append "console=ttyS0 quiet reboot=t panic=-1 lockdep.prove_locking=0 rksm_guest=$g rksm_mib=$CHECK_MIB rksm_secs=$CHECK_SECS" \
			</dev/null >"$eng-qemu$g.err" 2>&1 &
		pids="$pids $!"
		g=$((g + 1))
	done
	# The live table: every guest's RSS and merged pages (its
	# /proc/<pid>/ksm_merging_pages), the engine's counters and CPU.
	hdr="     t"
	g=1
	for p in $pids; do hdr="$hdr  g$g RSS MiB g$g merged"; g=$((g + 1)); done
	echo "$hdr    shared   sharing  saved MiB  $thread CPU s"
	: >"$eng.series"
	start=$(date +%s)
	while :; do
		t=$(($(date +%s) - start))
		alive=0
		row=$(printf '%6d' $t)
		for p in $pids; do
			if [ -d "/proc/$p" ]; then
				alive=$((alive + 1))
				rss=$(awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$p/status" 2>/dev/null)
				m=$(cat "/proc/$p/ksm_merging_pages" 2>/dev/null)
			else
				rss=- m=-
			fi
			row="$row  $(printf '%10s %9s' "${rss:--}" "${m:--}")"
		done
		sharing=$(knob pages_sharing)
		saved=$((sharing * 4 / 1024))
		cpu=$(awk -v a="$(cpu_secs "$tpid")" -v b="$cpu0" 'BEGIN { printf "%.1f", a - b }')
		echo "$row  $(printf '%8s  %8s  %9s  %12s' "$(knob pages_shared)" "$sharing" $saved "$cpu")"
		# Guests whose checker has not given its verdict yet.
		checking=0 g=1
		while [ $g -le "$GUESTS" ]; do
			grep -aq 'rksm-guest: \(PASS\|FAIL\)' "$eng-guest$g.log" 2>/dev/null ||
				checking=$((checking + 1))
			g=$((g + 1))
		done
		echo "$t $sharing $cpu $checking" >>"$eng.series"
		[ $alive -gt 0 ] || break
		sleep $SAMPLE
	done
	for p in $pids; do wait "$p"; done
	g=1
	while [ $g -le "$GUESTS" ]; do
		v=$(grep -a 'rksm-guest: \(PASS\|FAIL\)' "$eng-guest$g.log" | tail -n 1)
		echo "   guest $g: ${v:-rksm-guest: FAIL guest $g: no verdict (console: $(tail -c 200 "$eng-guest$g.log" | tr '\n' ' '); qemu: $(tail -c 200 "$eng-qemu$g.err" | tr '\n' ' '))}"
		case "$v" in *PASS*) ;; *) fail=1 ;; esac
		g=$((g + 1))
	done
	echo 2 >"$dir/run"
	echo "   guests stopped; run=2: pages_shared=$(knob pages_shared) pages_sharing=$(knob pages_sharing) pages_unshared=$(knob pages_unshared)"
	[ "$(knob pages_shared)" = 0 ] && [ "$(knob pages_sharing)" = 0 ] || fail=1
	echo 0 >"$dir/run"
	# The final saving (the last sample before any checker finished),
	# the peak, the first sample at 90% of the final saving, and the CPU
	# spent by then and in all.
	awk -v eng=$eng -v n="$GUESTS" '{ t[NR] = $1; s[NR] = $2; c[NR] = $3
			if ($4 == n) fin = $2; if ($2 > peak) peak = $2 }
		END { for (i = 1; i <= NR; i++) if (s[i] >= 0.9 * fin) break
		      printf "%s %.1f %.1f %d %.1f %.1f\n", eng, fin * 4 / 1024, peak * 4 / 1024,
			t[i], c[i], c[NR] }' \
		"$eng.series" >>summary
}

: >summary
for e in $ENGINES; do run_engine "$e"; done
echo
echo "== side by side (samples every $SAMPLE s from the guests' start)"
echo "(final: the last sample before a checker finished; time and CPU to 90% of it)"
printf '%-6s %15s %14s %16s %15s %15s\n' engine "final MiB saved" "peak MiB saved" "time to 90% (s)" "CPU to 90% (s)" "CPU in all (s)"
while read -r e fin peak t c call; do
	printf '%-6s %15s %14s %16s %15s %15s\n' "$e" "$fin" "$peak" "$t" "$c" "$call"
done <summary
[ $fail = 0 ] && echo "== every guest verified its memory; counters back at 0 after run=2" ||
	echo "== FAILED: see above"
exit $fail
