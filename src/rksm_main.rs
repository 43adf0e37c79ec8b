// SPDX-License-Identifier: GPL-2.0

//! rksm: a samepage-merging engine for private anonymous memory.
//!
//! This crate root only wires the parts together; see README.md for the design.

use kernel::prelude::*;

mod advisor;
mod control;
mod engine;
#[path = "../rust-bindings/ffi.rs"]
mod ffi;
mod intervals;
mod knobs;
mod memfd;
mod memfd_policy;
mod merge_policy;
mod mm;
mod page;
mod range_walk;
mod scanner;
mod smart_scan;
mod stable;
mod stats;
mod sysfs;

module! {
    type: Rksm,
    name: "rksm",
    authors: ["rksm developers"],
    description: "Samepage merging with a range-walk scanner",
    license: "GPL",
    params: {
        memfd_hooks: bool {
            default: true,
            description: "Place the memfd hooks (memfd_noexec, memfd_exec). false leaves them \
                          out, as on a kernel where they cannot be placed: both knobs then \
                          refuse any value but their default with EOPNOTSUPP.",
        },
    },
}

/// The loaded module. Fields drop in order: the sysfs files go first, so no
/// write waits for the scanner while it stops; then the memfd hooks, then the
/// scanner. All share the one [`control::Control`].
struct Rksm {
    _sysfs: sysfs::Registration,
    _memfd: memfd::Hooks,
    _scanner: scanner::Scanner,
}

impl kernel::Module for Rksm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let control = control::Control::new()?;
        // rksmd first: a write of run=2 waits for it.
        let scanner = scanner::Scanner::start(control.clone())?;
        // Before sysfs: a knob whose hook is missing must refuse from the first write on.
        let memfd = memfd::Hooks::register(&control, module_parameters::memfd_hooks.value());
        let sysfs = sysfs::Registration::new(control)?;
        pr_info!("loaded\n");
        Ok(Rksm {
            _sysfs: sysfs,
            _memfd: memfd,
            _scanner: scanner,
        })
    }
}

impl Drop for Rksm {
    fn drop(&mut self) {
        pr_info!("unloading\n");
    }
}
