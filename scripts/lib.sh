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

# The kernel and module a benchmark guest runs (scripts/bench.sh, profile.sh),
# exported as KDIR and RKSM_KO. BENCH_KERNEL=test: the test kernel (lockdep,
# DEBUG_VM) and ./rksm.ko. Otherwise the bench kernel: the test kernel's
# config without lockdep and the other debugging (qemu/bench-kernel.config),
# built once and cached, with rksm built against it from a copy of the
# sources in DIR/module.
rksm_bench_target() { # DIR
	local work=$1 kdir ko
	if [ "${BENCH_KERNEL:-bench}" = test ]; then
		kdir=$(rksm_kdir) || die "no test kernel: run 'make kernel'"
		ko=$RKSM_ROOT/rksm.ko
		[ -f "$ko" ] || die "no $ko: run 'make'"
	else
		kdir=$(RKSM_KERNEL_FLAVOR=bench "$RKSM_ROOT/scripts/build-kernel.sh" | tail -n 1)
		mkdir -p "$work/module"
		cp -r "$RKSM_ROOT/Kbuild" "$RKSM_ROOT/src" "$RKSM_ROOT/rust-bindings" "$work/module/"
		find "$work/module" \( -name '*.o' -o -name '.*.cmd' -o -name '*.d' \) -delete
		KDIR=$kdir kmake M="$work/module" modules >"$work/module/build.log" 2>&1 ||
			{ tail -n 30 "$work/module/build.log"; die "building rksm for the bench kernel failed"; }
		ko=$work/module/rksm.ko
	fi
	export KDIR=$kdir RKSM_KO=$ko
}
