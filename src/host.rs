// SPDX-License-Identifier: GPL-2.0

//! Host build of rksm's kernel-free files, for `cargo test`.
//!
//! The kernel module includes the same files from `src/rksm_main.rs`; keep
//! them free of `kernel::` so both builds see identical code.

// Items are `pub(crate)` for the module's sake, so only the tests use them here.
#![allow(dead_code)]

mod advisor;
mod intervals;
mod knobs;
mod memfd_policy;
mod merge_policy;
#[path = "engine/pass.rs"]
mod pass;
mod smart_scan;
