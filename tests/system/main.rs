//! System tier: the real tools (processes, QEMU, mmdebstrap, libguestfs, a
//! registry). Expensive fixtures are built once by lvh's own commands and cached
//! outside the checkout (see `fixtures`). A missing tool is a failure, not a skip.
//!
//! Compiled only with `LVH_SYSTEM_TESTS=1` (`make test`, `make test-system`; see
//! build.rs); plain `cargo test` reports the tier as one ignored test instead.

#[cfg(lvh_system)]
mod accel;
#[cfg(lvh_system)]
mod action;
#[cfg(lvh_system)]
mod appliance;
#[cfg(lvh_system)]
mod bad_input;
#[cfg(lvh_system)]
mod common;
#[cfg(lvh_system)]
mod dropin;
#[cfg(lvh_system)]
mod dropin_kernels;
#[cfg(lvh_system)]
mod exec;
#[cfg(lvh_system)]
mod faults;
#[cfg(lvh_system)]
pub mod fixtures;
#[cfg(lvh_system)]
mod gdb;
#[cfg(lvh_system)]
mod images;
#[cfg(lvh_system)]
mod kbuild;
#[cfg(lvh_system)]
mod kernels;
#[cfg(lvh_system)]
mod load;
#[cfg(lvh_system)]
mod matrix;
#[cfg(lvh_system)]
mod no_guestfs;
#[cfg(lvh_system)]
mod oci;
#[cfg(lvh_system)]
mod runner;
#[cfg(lvh_system)]
mod saved;
#[cfg(lvh_system)]
mod shell;
#[cfg(lvh_system)]
mod splat;
#[cfg(lvh_system)]
mod sshkey;
#[cfg(lvh_system)]
mod tools;

#[cfg(not(lvh_system))]
#[test]
#[ignore = "system tier not built: run `make test-system` or `LVH_SYSTEM_TESTS=1 cargo test --release --test system`"]
fn system_tier() {}
