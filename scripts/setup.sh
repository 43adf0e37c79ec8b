#!/usr/bin/env bash
# Install what building and testing rksm needs. Idempotent: each step checks
# first and does nothing when its result is already there.
#
#   RKSM_KERNEL_SRC=/path/to/linux-source-7.3_*.deb or linux-*.tar.xz
#       use that instead of `apt-get download linux-source-7.3`
#   RKSM_REFRESH=1   download the newest linux-source-7.3 again
set -euo pipefail
. "$(dirname "$0")/lib.sh"

APT_PKGS=(rustc-web rust-web-src rust-web-clippy rustfmt-web
	qemu-system-x86 busybox-static cpio bc flex bison libelf-dev libssl-dev
	xz-utils python3-pip gcc make git rsync libnuma-dev)

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (run as root, as README.md says)"; }

# --- bindgen 0.72.1 (cargo install) -----------------------------------------
# The longest step on a fresh machine (about 2 minutes of compiling), so it
# runs in the background while apt and the downloads below run, whenever
# cargo and a C linker are already there; otherwise after apt.
bindgen_pid=""
bindgen_log=$RKSM_CACHE/bindgen-install.log
bindgen_ok() { [ "$(bindgen --version 2>/dev/null)" = "bindgen 0.72.1" ]; }
bindgen_install() { cargo install -q --locked bindgen-cli --version 0.72.1 >"$bindgen_log" 2>&1; }
if ! bindgen_ok && command -v cargo >/dev/null && command -v cc >/dev/null; then
	say "installing bindgen-cli 0.72.1 in the background (cargo install, about 2 minutes)"
	bindgen_install &
	bindgen_pid=$!
fi

# --- Debian packages --------------------------------------------------------
missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	need_root "apt-get install"
	say "installing: ${missing[*]}"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

# --- Linux source: linux-source-7.3 from trixie-backports ------------------
# Only trixie-backports is added: backports are pinned low, so apt never
# upgrades anything else from it. Never add trixie or sid themselves.
src_dir=$RKSM_CACHE/src
mkdir -p "$src_dir"
if [ -n "${RKSM_KERNEL_SRC:-}" ]; then
	pkg=$RKSM_KERNEL_SRC
	[ -f "$pkg" ] || die "RKSM_KERNEL_SRC=$pkg does not exist"
else
	pkg=$(ls -1 "$src_dir"/linux-source-7.3_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$pkg" ] || [ -n "${RKSM_REFRESH:-}" ]; then
		need_root "adding trixie-backports"
		list=/etc/apt/sources.list.d/trixie-backports.sources
		if ! grep -rqs "trixie-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
			say "adding the trixie-backports apt source ($list)"
			cat >"$list" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		fi
		apt-get update -q >/dev/null
		(cd "$src_dir" && apt-get download -q -o APT::Sandbox::User=root linux-source-7.3 >/dev/null)
		pkg=$(ls -1 "$src_dir"/linux-source-7.3_*.deb | sort -V | tail -n 1)
	fi
fi

# Unpack to a tarball once; build-kernel.sh extracts a fresh tree per cache key.
case "$pkg" in
*.deb)
	version=$(dpkg-deb -f "$pkg" Version)
	tarball=$src_dir/linux-source-$version.tar.xz
	if [ ! -f "$tarball" ]; then
		tmp=$(mktemp -d "$src_dir/deb.XXXX")
		dpkg-deb -x "$pkg" "$tmp"
		mv "$tmp"/usr/src/linux-source-*.tar.* "$tarball"
		rm -rf "$tmp"
	fi
	;;
*.tar.*)
	version=$(basename "$pkg" | sed 's/\.tar\..*//')
	tarball=$pkg
	;;
*) die "RKSM_KERNEL_SRC must be a .deb or a tarball: $pkg" ;;
esac
echo "$version" >"$RKSM_CACHE/kernel-source-version"
echo "$tarball" >"$RKSM_CACHE/kernel-source-tarball"

# --- libclang 18, then bindgen's result ----------------------------------------
if [ -z "$(rksm_libclang_path)" ]; then
	say "fetching libclang 18.1.1 from PyPI into $RKSM_LIBCLANG"
	tmp=$(mktemp -d "$RKSM_CACHE/wheel.XXXX")
	python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2010_x86_64 \
		-d "$tmp" libclang==18.1.1 2>&1 | grep -v "Running pip as the 'root'" || true
	rm -rf "$RKSM_LIBCLANG"
	python3 -m zipfile -e "$tmp"/libclang-18.1.1-*.whl "$RKSM_LIBCLANG"
	rm -rf "$tmp"
fi
[ -n "$(rksm_libclang_path)" ] || die "libclang 18.1.1 not found in $RKSM_LIBCLANG"
if [ -n "$bindgen_pid" ]; then
	wait "$bindgen_pid" || { cat "$bindgen_log" >&2; die "cargo install bindgen-cli failed"; }
elif ! bindgen_ok; then
	say "installing bindgen-cli 0.72.1 (cargo install, about 2 minutes)"
	bindgen_install || { cat "$bindgen_log" >&2; die "cargo install bindgen-cli failed"; }
fi
bindgen_ok || die "bindgen 0.72.1 is not on PATH after cargo install (PATH=$PATH)"
say "setup ok: linux-source $version, $(/usr/bin/rustc --version), $(bindgen --version)"
