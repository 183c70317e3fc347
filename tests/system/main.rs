//! System tier: the real tools (processes, QEMU, mmdebstrap, libguestfs, a
//! registry). Expensive fixtures are built once by lvh's own commands and cached
//! outside the checkout (see `fixtures`). A missing tool is a failure, not a skip.

mod exec;
pub mod fixtures;
mod images;
mod kernels;
mod oci;
mod runner;
mod splat;
mod tools;
