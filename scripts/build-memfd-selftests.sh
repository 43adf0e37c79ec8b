#!/usr/bin/env bash
# Build the kernel's own memfd test (tools/testing/selftests/memfd/memfd_test.c)
# statically into OUTDIR, twice:
#
#   memfd_test_unmodified  the whole test, unmodified: vm.memfd_noexec in child
#                          pid namespaces, with rksm loaded (its hooks must change
#                          nothing while its knobs are at their defaults);
#   memfd_noexec_kernel    its noexec cases against rksm's knob: the copy's sysctl
#                          helpers read and write /sys/kernel/mm/rksm/memfd_noexec,
#                          and tests/memfd_selftests_driver.c runs one case per call.
#
#   scripts/build-memfd-selftests.sh OUTDIR
#
# The sources are copied out of the kernel tree into build/memfd-selftests/;
# only the copy is changed. tests/memfd_selftests.sh runs both in the VM.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
outdir=$1
kdir=$(rksm_kdir) || die "no test kernel: run 'make kernel'"
headers=$(dirname "$kdir")/headers/include
selftests=$kdir/tools/testing/selftests
[ -f "$selftests/memfd/memfd_test.c" ] || die "no memfd_test.c in $selftests/memfd"

src=$RKSM_ROOT/build/memfd-selftests
rm -rf "$src"
mkdir -p "$src/kernel" "$src/rksm" "$outdir"
cp "$selftests/memfd/memfd_test.c" "$selftests/memfd/common.c" "$selftests/memfd/common.h" \
	"$src/kernel/"
cp "$src"/kernel/* "$src/rksm/"
cp "$RKSM_ROOT/tests/memfd_selftests_driver.c" "$src/rksm/"

sysctl=/proc/sys/vm/memfd_noexec
knob=/sys/kernel/mm/rksm/memfd_noexec
n=$(grep -c "\"$sysctl\"" "$src/rksm/memfd_test.c" || true)
# sysctl_assert_write, sysctl_fail_write, sysctl_assert_equal
[ "$n" = 3 ] || die "memfd_test.c: expected 3 uses of $sysctl, found $n"
sed -i "s|\"$sysctl\"|\"$knob\"|" "$src/rksm/memfd_test.c"
# Any other way to the sysctl would silently test the kernel instead of rksm.
if grep -n -e '/proc/sys' -e 'vm\.memfd_noexec' -e 'sysctl -' "$src/rksm/memfd_test.c"; then
	die "memfd_test.c still reaches vm.memfd_noexec another way"
fi

# Flags as the memfd selftests' Makefile has them, plus -static.
cflags=(-static -O2 -Wall -D_FILE_OFFSET_BITS=64 -isystem "$headers" -I "$selftests")
build() { # dir, output, sources...
	local dir=$1 out=$2
	shift 2
	(cd "$dir" && gcc "${cflags[@]}" -I . -o "$outdir/$out" "$@") 2>"$dir/gcc.log" ||
		{ cat "$dir/gcc.log" >&2; die "building $out failed"; }
	cat "$dir/gcc.log" >&2
}
build "$src/kernel" memfd_test_unmodified memfd_test.c common.c
build "$src/rksm" memfd_noexec_kernel memfd_selftests_driver.c common.c
say "built $outdir/memfd_test_unmodified and $outdir/memfd_noexec_kernel ($knob)"
