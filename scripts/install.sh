#!/usr/bin/env bash
# `make install KDIR=...`: build rksm.ko against KDIR (a built, Rust-enabled
# kernel tree that carries qemu/patches/) and install it with rksm-apply,
# rksm.service and /etc/rksm.conf (kept if present) on this machine.
#   DESTDIR=dir   install under dir (packaging); depmod and systemd are skipped
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ -n "${KDIR:-}" ] || die "make install needs KDIR=/path/to/the/kernel/tree the module is for"
[ -f "$KDIR/Module.symvers" ] || die "$KDIR is not a built kernel tree (no Module.symvers)"
grep -q '^CONFIG_RUST=y' "$KDIR/.config" || die "$KDIR was built without CONFIG_RUST"
for sym in $(grep -ho 'EXPORT_SYMBOL_FOR_MODULES([a-z_0-9]*' "$RKSM_ROOT"/qemu/patches/*.patch |
	sed 's/.*(//' | sort -u); do
	grep -qw "$sym" "$KDIR/Module.symvers" ||
		die "$KDIR does not export $sym to rksm: apply qemu/patches/ to it first"
done
destdir=${DESTDIR:-}
release=$(make -s -C "$KDIR" kernelrelease)

say "building rksm.ko for $release"
scripts/build-module.sh
say "installing into ${destdir:-/}"
kmake M="$RKSM_ROOT" INSTALL_MOD_PATH="${destdir:-/}" INSTALL_MOD_DIR=extra modules_install
install -D -m 0755 "$RKSM_ROOT/scripts/rksm-apply" "$destdir/usr/local/sbin/rksm-apply"
install -D -m 0644 "$RKSM_ROOT/scripts/rksm.service" "$destdir/etc/systemd/system/rksm.service"
install -D -m 0644 "$RKSM_ROOT/docs/admin-guide.md" "$destdir/usr/local/share/doc/rksm/admin-guide.md"
if [ -e "$destdir/etc/rksm.conf" ]; then
	say "keeping $destdir/etc/rksm.conf"
else
	install -D -m 0644 "$RKSM_ROOT/scripts/rksm.conf" "$destdir/etc/rksm.conf"
fi
if [ -z "$destdir" ]; then
	depmod "$release"
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		say "enable at boot with: systemctl enable --now rksm.service"
	fi
fi
say "installed rksm for $release"
