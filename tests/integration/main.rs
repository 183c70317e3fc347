//! Integration tier: spawns the built `lvh` binary in temporary directories.
//! Needs no root, network or QEMU.

mod action;
mod action_steps;
mod bad_input;
mod cli;
mod common;
mod docs;
mod dropin;
// The stand-in kernel tree, shared with the system tier.
#[path = "../system/fixtures/fake_kernel.rs"]
mod fake_kernel;
mod images;
mod kernels;
mod linking;
mod load;
mod matrix;
mod oci;
mod release;
mod run;
mod triage;
