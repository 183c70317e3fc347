//! Root images: `images.json` parsing and validation, the parent forest, cache
//! keys, and the build pipeline (mmdebstrap, `mkfs.ext4 -d`, libguestfs actions,
//! qemu-img), with parallel jobs and a summary.

pub(crate) mod actions;
pub mod appliance;
pub mod build;
pub(crate) mod cache;
pub mod config;
pub(crate) mod customize;
pub(crate) mod entry;
mod error;
pub mod example;
pub(crate) mod forest;
pub mod guestfs;
pub(crate) mod guestfs_sys;
pub mod plan;
pub mod rootfs;

pub use build::{build, ImageOutcome, ImageResult, Summary};
pub use config::{ConfigError, Format, ImageConf, Op};
pub use entry::parse_with_warnings;
pub use error::ImagesError;
pub use plan::{load, plan, BuildOptions, Decision, Plan};
