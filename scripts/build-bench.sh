#!/usr/bin/env bash
# Build bench/ (rksm-bench) as a static binary for the test VM, into DIR.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
dir=${1:?usage: build-bench.sh DIR}
# --target keeps crt-static off the host build scripts.
(cd "$RKSM_ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build -q --release --locked -p rksm-bench --target x86_64-unknown-linux-gnu)
cp "$RKSM_ROOT/target/x86_64-unknown-linux-gnu/release/rksm-bench" "$dir/"
