// SPDX-License-Identifier: GPL-2.0

//! rksm: a samepage-merging engine for private anonymous memory.
//!
//! This crate root only wires the parts together; see README.md for the design.

use kernel::prelude::*;

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
/// write can kick the scanner while it stops.
struct Rksm {
    _sysfs: sysfs::Registration,
    _scanner: scanner::Scanner,
}

impl kernel::Module for Rksm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let sysfs = sysfs::Registration::new()?;
        let scanner = scanner::Scanner::start()?;
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
