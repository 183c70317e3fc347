//! Everything that can go wrong in the image builder, and the exit code of
//! each (decided here).

use std::path::PathBuf;

use super::config::ConfigError;
use crate::error::{ExitCode, HasExitCode, InvalidInput};

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
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
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
