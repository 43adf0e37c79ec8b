#!/usr/bin/env bash
# Build rksm.ko against the test kernel (or KDIR). Extra arguments go to
# kbuild, e.g. CLIPPY=1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kmake M="$RKSM_ROOT" "$@" modules
