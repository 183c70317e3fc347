//! Integration tier: spawns the built `lvh` binary in temporary directories.
//! Needs no root, network or QEMU.

mod cli;
mod common;
mod dropin;
mod images;
mod kernels;
mod linking;
mod matrix;
mod oci;
mod run;
