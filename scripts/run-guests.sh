#!/usr/bin/env bash
# `make run`: rksm's main job, KVM-host deduplication, on real guests. The
# test VM runs nested QEMU guests (qemu/nested/guests.sh) under rksm, then
# under in-kernel KSM, and prints a live table and a side-by-side summary.
# Nested TCG is slow: a guest takes minutes to boot, and the run about
# 11.5 minutes in all (README). GUESTS, GUEST_MIB, CHECK_MIB, CHECK_SECS and
# ENGINES pass through to guests.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(rksm_kdir) || die "no test kernel: run 'make kernel'"
work=$(mktemp -d /tmp/rksm-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
nested=$RKSM_ROOT/qemu/nested
"$RKSM_ROOT/scripts/pack-qemu.sh" "$work/qemu"
cp "$kdir/arch/x86/boot/bzImage" "$nested/guests.sh" "$work/"
# The inner guests' initramfs: guestcheck as /init, and a console.
mkdir -p "$work/inner/dev"
gcc -static -O2 -Wall -Werror -o "$work/inner/init" "$nested/guestcheck.c"
mknod "$work/inner/dev/console" c 5 1
(cd "$work/inner" && find . | cpio -o -H newc --quiet | gzip) >"$work/inner.cpio.gz"
rm -rf "$work/inner"
env=()
for v in GUESTS GUEST_MIB CHECK_MIB CHECK_SECS ENGINES; do
	[ -z "${!v:-}" ] || env+=("$v=${!v}")
done
"$RKSM_ROOT/scripts/vm-run" -d "$work" -t "${RKSM_RUN_TIMEOUT:-2400}" -- env "${env[@]}" sh guests.sh
