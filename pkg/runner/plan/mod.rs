//! The run plan: the options ([`options::RunOptions`]) and what the host and
//! the files say about them ([`facts::Facts`]) decided once
//! ([`decision::RunPlan::decide`], pure) into a plan whose every value is
//! valid, with errors that name the flag and the value. The probes and reads
//! that feed it are the front door's (`runner::front`); the host checks after
//! it are [`preflight`]'s and [`kcheck`]'s.

pub mod accel;
pub mod cloudinit;
pub mod cmdline;
pub mod decision;
pub mod facts;
pub mod fastboot;
pub mod hostmount;
pub mod image;
pub mod kcheck;
#[cfg(target_arch = "x86_64")]
mod kvm_guest;
pub mod kvm_probe;
pub mod limits;
pub mod options;
pub mod ports;
pub mod preflight;
pub mod pvh;
pub mod sharefs;
pub mod sshkey;

#[cfg(test)]
pub(crate) mod tests;
