# SPDX-License-Identifier: GPL-2.0
# rksm: user-facing targets. kbuild reads ./Kbuild, never this file.
#
#   make          set up, build the test kernel (cached), build rksm.ko
#   make kernel   set up and build the test kernel only
#   make run      the main job: nested QEMU guests in the test VM deduplicated
#                 by rksm, then by in-kernel KSM, side by side (about 11 minutes)
#   make demo     the quick synthetic demo: four processes merged (seconds)
#   make check    host unit tests, rustfmt, clippy, module build, QEMU kselftests
#   make check KASAN=1   the same on a KASAN build of the test kernel (slower)
#   make bench    rksm against in-kernel KSM in the same VM (tens of minutes)
#   make install KDIR=...  install rksm.ko for that kernel, with rksm-apply,
#                 rksm.service and /etc/rksm.conf (DESTDIR=dir for packaging)
#   make clean    remove build output (the kernel cache stays)
#
# KDIR=/path/to/built/kernel   build against that tree instead of the cache
# RKSM_CACHE=dir               cache directory (default ~/.cache/rksm)

SHELL := /bin/bash
.PHONY: all setup kernel module run demo check bench install clean rust-analyzer

all: module

setup:
	scripts/setup.sh

kernel: setup
	@if [ -z "$(KDIR)" ]; then scripts/build-kernel.sh >/dev/null; fi

module: kernel
	scripts/build-module.sh

run: module
	scripts/run-guests.sh

demo: module
	scripts/run-demo.sh

check:
	KASAN=$(KASAN) scripts/check.sh

bench: module
	scripts/bench.sh

install:
	scripts/install.sh

rust-analyzer: kernel
	scripts/build-module.sh rust-analyzer

clean:
	-scripts/build-module.sh clean 2>/dev/null
	rm -rf build target
