#!/usr/bin/env bash
# Build the test kernel: tinyconfig + qemu/kernel.config + qemu/patches.
# Cached in $RKSM_CACHE/kernel-<key>, the key being a hash of the source
# version, the config fragment, the patches and RECIPE, so a second run
# rebuilds nothing. Prints the tree's path when done.
#   RKSM_KERNEL_FLAVOR=bench   the bench kernel instead: kernel.config with
#                              qemu/bench-kernel.config's lines in place of
#                              its own (no lockdep, no DEBUG_VM), cached in
#                              $RKSM_CACHE/benchkernel-<key>; current-kernel
#                              stays the test kernel.
#   RKSM_KERNEL_FLAVOR=kasan   the KASAN kernel: kernel.config plus
#                              qemu/kasan-kernel.config, cached in
#                              $RKSM_CACHE/kasankernel-<key>.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

version=$(cat "$RKSM_CACHE/kernel-source-version" 2>/dev/null) || die "run scripts/setup.sh first"
tarball=$(cat "$RKSM_CACHE/kernel-source-tarball")
# Bump RECIPE when a change to this script changes what it builds.
RECIPE=1
flavor=${RKSM_KERNEL_FLAVOR:-test}
extra_args=()
fragment=$(mktemp /tmp/rksm-kconfig.XXXXXX)
trap 'rm -f "$fragment"' EXIT
case "$flavor" in
test)
	prefix=kernel
	cp "$RKSM_ROOT/qemu/kernel.config" "$fragment"
	;;
bench)
	prefix=benchkernel
	# Each option the bench fragment names replaces kernel.config's line for it.
	opts=$(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=.*/\1/p; s/^# \(CONFIG_[A-Z0-9_]*\) is not set/\1/p' \
		"$RKSM_ROOT/qemu/bench-kernel.config")
	grep -v -w -F "$opts" "$RKSM_ROOT/qemu/kernel.config" >"$fragment" || true
	cat "$RKSM_ROOT/qemu/bench-kernel.config" >>"$fragment"
	;;
kasan)
	# Rust and KASAN together need a clang-built kernel (init/Kconfig:
	# RUST depends on !KASAN || CC_IS_CLANG): Debian 12's clang-19.
	prefix=kasankernel
	extra_args=(LLVM=-19)
	command -v clang-19 >/dev/null && command -v ld.lld-19 >/dev/null || {
		say "installing clang-19, lld-19 and llvm-19 for the KASAN kernel"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-19 lld-19 llvm-19 >/dev/null
	}
	cat "$RKSM_ROOT/qemu/kernel.config" "$RKSM_ROOT/qemu/kasan-kernel.config" >"$fragment"
	;;
*) die "RKSM_KERNEL_FLAVOR must be test, bench or kasan, not $flavor" ;;
esac
key=$( { echo "$version $RECIPE"; cat "$fragment" "$RKSM_ROOT"/qemu/patches/*.patch; } |
	sha256sum | cut -c1-16)
dir=$RKSM_CACHE/$prefix-$key
tree=$dir/linux

if [ -f "$dir/.done" ]; then
	[ "$flavor" != test ] || echo "$tree" >"$RKSM_CACHE/current-kernel"
	say "$flavor kernel $version is cached ($dir)"
	echo "$tree"
	exit 0
fi

say "building $flavor kernel $version into $dir (about 10 minutes on 2 cores)"
rm -rf "$dir"
mkdir -p "$dir"
tar -C "$dir" -xf "$tarball"
mv "$dir"/linux-source-* "$tree" 2>/dev/null || mv "$dir"/linux-* "$tree"
for p in "$RKSM_ROOT"/qemu/patches/*.patch; do
	say "applying $(basename "$p")"
	patch -d "$tree" -p1 -s --no-backup-if-mismatch <"$p" || die "patch $(basename "$p") does not apply to $version"
done

export LIBCLANG_PATH=${LIBCLANG_PATH:-$(rksm_libclang_path)}
km=(make -C "$tree" ARCH=x86_64 "${KRUST[@]}" "${extra_args[@]}")
# Module builds against this tree read the same arguments (lib.sh, kmake).
echo "${extra_args[*]}" >"$dir/make-args"
"${km[@]}" -s tinyconfig
"$tree"/scripts/kconfig/merge_config.sh -m -O "$tree" "$tree/.config" "$fragment" >/dev/null
"${km[@]}" -s olddefconfig

# An option the fragment asks for but olddefconfig dropped (a missing
# dependency, a toolchain Kconfig found unusable) is a hard error.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qxF "$line" "$tree/.config" || { say "config: wanted $line, got: $(grep "^${line%%=*}=\|# ${line%%=*} is" "$tree/.config" || echo unset)"; bad=1; } ;;
	"# CONFIG_"*" is not set")
		# Off: no value (a selected-only option has no "is not set" line).
		opt=${line#\# }
		opt=${opt%% *}
		! grep -q "^$opt=" "$tree/.config" || { say "config: wanted '$line', got: $(grep "^$opt=" "$tree/.config")"; bad=1; } ;;
	esac
done <"$fragment"
if [ $bad != 0 ]; then
	[ -n "$(grep -x 'CONFIG_RUST=y' "$RKSM_ROOT/qemu/kernel.config")" ] && "${km[@]}" rustavailable || true
	die "kernel config lost options (see above)"
fi

"${km[@]}" -j"$(nproc)" >"$dir/build.log" 2>&1 || { tail -n 40 "$dir/build.log"; die "kernel build failed (log: $dir/build.log)"; }
"${km[@]}" -s headers_install INSTALL_HDR_PATH="$dir/headers" >/dev/null
echo "$version" >"$dir/version"
touch "$dir/.done"
if [ "$flavor" != test ]; then
	# Keep the newest kernel of this flavor only.
	ls -1dt "$RKSM_CACHE"/$prefix-*/ 2>/dev/null | tail -n +2 | xargs -r rm -rf
else
	echo "$tree" >"$RKSM_CACHE/current-kernel"
	# Keep the two newest kernels; each is a few GiB.
	ls -1dt "$RKSM_CACHE"/kernel-*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
fi
say "$flavor kernel $version built"
echo "$tree"
