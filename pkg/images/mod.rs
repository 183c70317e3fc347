//! Root images: `images.json` parsing and validation, the parent forest, cache
//! keys, and the build pipeline (mmdebstrap, `mkfs.ext4 -d`, libguestfs actions,
//! qemu-img), with parallel jobs and a summary.

pub(crate) mod actions;
pub mod appliance;
pub mod build;
pub(crate) mod cache;
pub mod config;
pub(crate) mod customize;
mod entry;
pub mod example;
pub(crate) mod forest;
pub mod guestfs;
pub(crate) mod guestfs_sys;
pub mod plan;
pub mod rootfs;

use std::path::PathBuf;

use crate::error::{ExitCode, HasExitCode};

pub use build::{build, ImageOutcome, ImageResult, Summary};
pub use config::{ConfigError, Format, ImageConf, Op};
pub use plan::{load, plan, BuildOptions, Decision, Plan};

/// Everything that can go wrong in the image builder.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {}", .path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {image:?}: cannot read input {}", .path.display())]
    ReadInput {
        image: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bad input found before building (names file, field and value).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Lock(#[from] crate::fsutil::LockError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image {image:?}: {step} failed")]
    Step {
        image: String,
        step: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("interrupted")]
    Interrupted,
}

impl HasExitCode for ImagesError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ImagesError::Config(_) | ImagesError::Invalid(_) | ImagesError::ReadInput { .. } => {
                ExitCode::InvalidInput
            }
            ImagesError::ReadConfig { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ExitCode::InvalidInput
            }
            ImagesError::Interrupted => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }
}

impl ImagesError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ImagesError {
        ImagesError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn step(
        image: &str,
        step: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ImagesError {
        ImagesError::Step {
            image: image.to_string(),
            step: step.into(),
            source: source.into(),
        }
    }
}
