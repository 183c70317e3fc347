//! `lvh test`: a matrix of kernels × images × tests, each combination in its
//! own VM. The pieces are small and mostly pure: [`config`] reads and
//! validates `lvh-tests.json`; [`expand`] lists the combinations and applies
//! skips, `--filter` and `--partition`; [`execute`] plans each combination
//! through the runner's front door ([`crate::runner::prepare`], as `lvh run`
//! is planned) and runs them in parallel,
//! retrying a boot or infrastructure failure once; [`crashes`] groups the
//! kernel crashes by fingerprint; [`report`] and [`junit`] render the
//! results (table, JSON, GitHub step summary, JUnit XML). Kernel
//! and image references are resolved to local paths by the caller (pulling
//! them is the OCI module's job), so everything here takes paths.

pub mod config;
pub mod crashes;
pub mod execute;
pub mod expand;
pub mod junit;
pub mod merge;
pub mod report;
pub mod resolve;
mod wire;

pub use config::{ImageSource, KernelSource, Matrix};
pub use execute::{Job, Setup};
pub use expand::{Combo, Partition};
pub use report::TestResult;
