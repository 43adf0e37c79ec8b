// SPDX-License-Identifier: GPL-2.0

//! rksm: a samepage-merging engine for private anonymous memory.
//!
//! This crate root only wires the parts together; see README.md for the design.

use kernel::prelude::*;

mod control;
mod engine;
#[path = "../rust-bindings/ffi.rs"]
mod ffi;
mod intervals;
mod knobs;
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
}

/// The loaded module. Fields drop in order: the sysfs files go first, so no
/// write waits for the scanner while it stops. Both share the one [`control::Control`].
struct Rksm {
    _sysfs: sysfs::Registration,
    _scanner: scanner::Scanner,
}

impl kernel::Module for Rksm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let control = control::Control::new()?;
        // rksmd first: a write of run=2 waits for it.
        let scanner = scanner::Scanner::start(control.clone())?;
        let sysfs = sysfs::Registration::new(control)?;
        pr_info!("loaded\n");
        Ok(Rksm {
            _sysfs: sysfs,
            _scanner: scanner,
        })
    }
}

impl Drop for Rksm {
    fn drop(&mut self) {
        pr_info!("unloading\n");
    }
}
