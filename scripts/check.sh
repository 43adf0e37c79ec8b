#!/usr/bin/env bash
# `make check`: everything, from set-up to the QEMU kselftests. Each step
# counts as tests; the last line is "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$RKSM_ROOT"

passed=0 failed=0
step() { # name, command...
	local name=$1; shift
	say "== $name"
	if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); say "FAILED: $name"; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; exit $?; }

if ! scripts/setup.sh || ! scripts/build-kernel.sh >/dev/null; then
	failed=$((failed + 1)); say "FAILED: set-up or kernel build"; finish
fi
# KASAN=1: the same steps on the KASAN kernel (qemu/kasan-kernel.config).
if [ "${KASAN:-0}" = 1 ]; then
	if ! KDIR=$(RKSM_KERNEL_FLAVOR=kasan scripts/build-kernel.sh | tail -n 1); then
		failed=$((failed + 1)); say "FAILED: KASAN kernel build"; finish
	fi
	# KASAN slows the guest down about 4x (scale_test: 790 s against 190 s),
	# and the guests then run one after the other: side by side, the tests with
	# a time budget (nested_test, stress_test, scale_test's big merge) starved.
	export KDIR RKSM_TEST_TIMEOUT=${RKSM_TEST_TIMEOUT:-6000} RKSM_TEST_SERIAL=1
fi
kdir=$(rksm_kdir)

# Clippy runs as the compiler, so force a rebuild of the Rust objects.
module_clippy() {
	rm -f src/*.o src/.*.cmd
	scripts/build-module.sh CLIPPY=1
}
step "module build with clippy (warnings are errors)" module_clippy

# The guest tests run in the background while the host tests use the other
# core; their output follows once both are done.
mkdir -p build
guest_log=build/guest-run.log
scripts/run-tests.sh >"$guest_log" 2>&1 &
guest_pid=$!

# Host unit tests: every cargo test counts.
log=$(mktemp)
cargo test --workspace 2>&1 | tee "$log"
cargo_rc=${PIPESTATUS[0]}
read -r p f < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
passed=$((passed + p)); failed=$((failed + f))
[ "$cargo_rc" = 0 ] || [ "$f" != 0 ] || failed=$((failed + 1))

rustfmt_check() {
	/usr/bin/rustfmt --edition 2021 --check --config-path "$kdir/.rustfmt.toml" \
		src/rksm_main.rs src/host.rs
}
step "rustfmt --check (kernel .rustfmt.toml)" rustfmt_check

guest_tests() {
	wait "$guest_pid"
	local rc=$?
	cat "$guest_log"
	return $rc
}
step "QEMU kselftests" guest_tests
# Fold the guest's own counts in, in place of the one step above.
if [ -f build/logs/tap.txt ]; then
	read -r gp gf < <(awk '/^ok / && !/# SKIP/ { p++ } /^not ok / { f++ } END { print p + 0, f + 0 }' build/logs/tap.txt)
	passed=$((passed + gp))
	failed=$((failed + gf))
fi
finish
