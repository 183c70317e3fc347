//! Integration tier: spawns the built `lvh` binary in temporary directories.
//! Needs no root, network or QEMU.

mod action;
mod action_steps;
mod architecture;
mod bad_input;
mod bisect;
mod cli;
mod cloudinit;
mod common;
mod docs;
mod dropin;
mod guest_inits;
mod images;
mod kernels;
mod kmemleak;
mod linking;
mod load;
mod matrix;
mod matrix_merge;
mod oci;
mod release;
mod run;
#[path = "../support/mod.rs"]
mod support;
mod triage;
mod vocabulary;

// The stand-in kernel tree, shared with the system tier.
use support::fixtures::fake_kernel;

/// Plain `cargo test` builds neither the system tier nor the benches.
#[test]
#[ignore = "the system tier runs apart: `make test-system` or `cargo test --release --test system`"]
fn system_tier() {}
