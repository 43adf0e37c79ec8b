#!/usr/bin/env bash
# Build the kernel's own KSM selftest (tools/testing/selftests/mm/ksm_tests.c)
# statically, pointed at rksm's sysfs directory, into OUTDIR.
#
#   scripts/build-ksm-selftests.sh [--ksm] OUTDIR
#
# The sources are copied out of the kernel tree into build/ksm-selftests/
# and only the copy is changed: KSM_SYSFS_PATH becomes /sys/kernel/mm/rksm/.
# --ksm keeps the original /sys/kernel/mm/ksm/ (to check the harness against
# the in-kernel KSM: scripts/vm-run --no-load -d OUTDIR -- sh ksm_selftests.sh).
#
# ksm_functional_tests.c is built too, from its own copy in which every
# /sys/kernel/mm/ksm/ path (its own and vm_util.c's) names rksm's directory;
# tests/ksm_functional.sh runs it and says which of its cases cannot apply.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

sysfs=/sys/kernel/mm/rksm/
variant=rksm
if [ "${1:-}" = --ksm ]; then
	sysfs=/sys/kernel/mm/ksm/
	variant=ksm
	shift
fi
[ $# -eq 1 ] || die "usage: $0 [--ksm] OUTDIR"
outdir=$1

kdir=$(rksm_kdir) || die "no test kernel: run 'make kernel'"
headers=$(dirname "$kdir")/headers/include
selftests=$kdir/tools/testing/selftests
[ -f "$selftests/mm/ksm_tests.c" ] || die "no ksm_tests.c in $selftests/mm"

# libnuma (static) links into ksm_tests; scripts/setup.sh installs it too.
if ! dpkg-query -W -f='${Status}' libnuma-dev 2>/dev/null | grep -q "ok installed"; then
	[ "$(id -u)" = 0 ] || die "libnuma-dev is missing: run scripts/setup.sh as root"
	say "installing: libnuma-dev"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q libnuma-dev >/dev/null
fi

src=$RKSM_ROOT/build/ksm-selftests/$variant
rm -rf "$src"
mkdir -p "$src/include/vdso" "$outdir"
cp "$selftests/mm/ksm_tests.c" "$selftests/mm/vm_util.c" "$selftests/mm/vm_util.h" \
	"$selftests/mm/hugepage_settings.c" "$selftests/mm/hugepage_settings.h" \
	"$selftests/kselftest.h" "$src/"
# ksm_tests.c includes <include/vdso/time64.h> relative to the kernel root.
cp "$kdir/include/vdso/time64.h" "$src/include/vdso/"

if [ "$variant" = rksm ]; then
	sed -i 's|^#define KSM_SYSFS_PATH "/sys/kernel/mm/ksm/"$|#define KSM_SYSFS_PATH "/sys/kernel/mm/rksm/"|' \
		"$src/ksm_tests.c"
fi
grep -q "^#define KSM_SYSFS_PATH \"$sysfs\"\$" "$src/ksm_tests.c" ||
	die "ksm_tests.c: could not set KSM_SYSFS_PATH to $sysfs"
# Any other hard-coded KSM path would silently test KSM instead of rksm.
if [ "$variant" = rksm ] && grep -n '/sys/kernel/mm/ksm' "$src/ksm_tests.c"; then
	die "ksm_tests.c still names /sys/kernel/mm/ksm"
fi

# Flags as the mm selftests' Makefile has them, plus -static.
if ! (cd "$src" && gcc -static -Wall -O2 -U_FORTIFY_SOURCE -I . -isystem "$headers" \
	-I "$selftests" ksm_tests.c vm_util.c hugepage_settings.c \
	-lnuma -lrt -lpthread -lm -o "$outdir/ksm_tests") 2>"$src/gcc.log"; then
	cat "$src/gcc.log" >&2
	die "building ksm_tests failed"
fi
# Static libnuma warns that getaddrinfo (in code ksm_tests never calls) needs
# glibc's shared libraries at run time: drop that, show anything else.
grep -v -e 'affinity_ip' -e "Using 'getaddrinfo'" "$src/gcc.log" >&2 || true
say "built $outdir/ksm_tests (KSM_SYSFS_PATH $sysfs)"

# ksm_functional_tests: the per-process counters and the prctl, through the
# helpers of vm_util.c, whose paths change too.
fsrc=$RKSM_ROOT/build/ksm-selftests/$variant-functional
rm -rf "$fsrc"
mkdir -p "$fsrc"
cp "$selftests/mm/ksm_functional_tests.c" "$selftests/mm/vm_util.c" "$selftests/mm/vm_util.h" \
	"$selftests/mm/hugepage_settings.c" "$selftests/mm/hugepage_settings.h" \
	"$selftests/kselftest.h" "$fsrc/"
if [ "$variant" = rksm ]; then
	sed -i 's|/sys/kernel/mm/ksm/|/sys/kernel/mm/rksm/|g' "$fsrc/ksm_functional_tests.c" "$fsrc/vm_util.c"
	if grep -n '/sys/kernel/mm/ksm' "$fsrc/ksm_functional_tests.c" "$fsrc/vm_util.c"; then
		die "ksm_functional_tests still names /sys/kernel/mm/ksm"
	fi
fi
if ! (cd "$fsrc" && gcc -static -Wall -O2 -U_FORTIFY_SOURCE -I . -isystem "$headers" \
	-I "$selftests" ksm_functional_tests.c vm_util.c hugepage_settings.c \
	-lpthread -o "$outdir/ksm_functional_tests") 2>"$fsrc/gcc.log"; then
	cat "$fsrc/gcc.log" >&2
	die "building ksm_functional_tests failed"
fi
say "built $outdir/ksm_functional_tests (${sysfs%/})"
