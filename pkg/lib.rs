//! lvh: build Debian root images and Linux kernels, and boot them in QEMU fast.
//!
//! This is the library behind the `lvh` binary. It never prints: long operations
//! emit [`progress::Event`]s to a [`progress::Reporter`] that the binary renders.
//! The subsystems (`images`, `kernels`, `runner`, `oci`) share the plumbing in
//! [`arch`], [`exec`], [`progress`], [`cancel`] and [`error`] and never reach
//! into each other's internals.

pub mod arch;
pub mod cancel;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod images;
pub mod jsonpos;
pub mod kernels;
pub mod oci;
pub mod progress;
pub mod runner;
pub mod sched;

/// The version of lvh, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
