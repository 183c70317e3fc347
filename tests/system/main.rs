//! System tier: the real tools (processes, QEMU, mmdebstrap, libguestfs, a
//! registry). Expensive fixtures are built once by lvh's own commands and cached
//! outside the checkout (see `support::fixtures`, shared with the other tiers). A missing tool is a failure, not a skip.
//!
//! Not part of plain `cargo test` (`test = false` in Cargo.toml): `make test`,
//! `make test-system` or `cargo test --release --test system` run it.

#[path = "../support/mod.rs"]
pub mod support;

mod accel;
mod action;
mod appliance;
mod bad_input;
mod bisect;
mod cloudinit;
mod console;
mod dist;
mod dropin;
mod dropin_kernels;
mod exec;
mod faults;
mod gdb;
mod images;
mod install;
mod kbuild;
mod kernels;
mod load;
mod matrix;
mod no_guestfs;
mod oci;
mod runner;
mod saved;
mod security;
mod shell;
mod splat;
mod sshkey;
mod tools;
mod triage;
mod virtiofs;
