#!/usr/bin/env bash
# Pack the host's qemu-system-x86_64 for use inside the test VM, whose
# busybox initramfs has no libraries: the binary, every shared library it
# loads, the dynamic loader and the firmware it needs go into DEST. Inside
# the guest, DEST/run-qemu runs it through that loader.
#   scripts/pack-qemu.sh DEST
set -euo pipefail
. "$(dirname "$0")/lib.sh"
dest=${1:?usage: pack-qemu.sh DEST}
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86 is missing: run scripts/setup.sh"
mkdir -p "$dest/lib" "$dest/share"
cp "$qemu" "$dest/qemu-system-x86_64"
ldd "$qemu" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' |
	while read -r lib; do cp -L "$lib" "$dest/lib/"; done
# TCG itself is a loadable module in Debian's build.
mkdir -p "$dest/modules"
tcg=/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
[ ! -f "$tcg" ] || cp "$tcg" "$dest/modules/"
loader=$(basename "$(ldd "$qemu" | awk '$1 ~ /ld-linux/ { print $1 }')")
[ -f "$dest/lib/$loader" ] || die "pack-qemu: no dynamic loader in ldd's output"
# SeaBIOS for the pc machine, qboot for microvm, and the option ROMs -kernel uses.
for fw in /usr/share/seabios/bios-256k.bin /usr/share/qemu/qboot.rom \
	/usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/multiboot_dma.bin /usr/share/qemu/kvmvapic.bin; do
	cp -L "$fw" "$dest/share/"
done
ln -sf qboot.rom "$dest/share/bios-microvm.bin"
cat >"$dest/run-qemu" <<SH
#!/bin/sh
d=\$(dirname "\$0")
QEMU_MODULE_DIR=\$d/modules exec "\$d/lib/$loader" --library-path "\$d/lib" "\$d/qemu-system-x86_64" -L "\$d/share" "\$@"
SH
chmod +x "$dest/run-qemu"
