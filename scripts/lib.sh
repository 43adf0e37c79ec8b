# Common settings for rksm's scripts. Source it; do not run it.
# Everything it points at lives in the cache, outside the repo.

RKSM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RKSM_CACHE=${RKSM_CACHE:-$HOME/.cache/rksm}
mkdir -p "$RKSM_CACHE"

# The kernel's Rust toolchain is Debian's rustc-web (/usr/bin). rustup's
# stable comes first on PATH and is only for the host crates; HOSTRUSTC must
# match RUSTC because the proc macros it builds are loaded by RUSTC.
KRUST=(RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc
       RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver)
export PATH="$PATH:$HOME/.cargo/bin"

say() { printf '[rksm] %s\n' "$*" >&2; }
die() { printf '[rksm] error: %s\n' "$*" >&2; exit 1; }

# libclang >= 17 for bindgen: PyPI's libclang wheel, unpacked into the cache
# by setup.sh (no pip install, which Debian 12's system Python refuses).
RKSM_LIBCLANG=$RKSM_CACHE/libclang-18.1.1
rksm_libclang_path() {
	local dir=$RKSM_LIBCLANG/libclang-18.1.1.data/platlib/clang/native
	[ -e "$dir/libclang.so" ] && echo "$dir"
}

# The kernel tree `make kernel` built last (or KDIR when the user set it).
rksm_kdir() {
	if [ -n "${KDIR:-}" ]; then
		echo "$KDIR"
	elif [ -f "$RKSM_CACHE/current-kernel" ]; then
		cat "$RKSM_CACHE/current-kernel"
	else
		return 1
	fi
}

# make -C $KDIR with the toolchain variables every kernel/module make needs,
# and those the tree was built with (make-args beside it: LLVM=-19 for the
# KASAN kernel).
kmake() {
	local kdir extra=()
	kdir=$(rksm_kdir) || die "no kernel built yet: run 'make kernel'"
	[ ! -f "$kdir/../make-args" ] || read -ra extra <"$kdir/../make-args"
	LIBCLANG_PATH=${LIBCLANG_PATH:-$(rksm_libclang_path)} \
		make -C "$kdir" ARCH=x86_64 "${KRUST[@]}" "${extra[@]}" "$@"
}
