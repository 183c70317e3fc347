//! The bisection's errors: bad revisions and flags (invalid input), the
//! kernel's own errors, git failures, and a bisection already in progress.

use std::path::PathBuf;

use crate::error::{ExitCode, HasExitCode, InvalidInput};
use crate::kernels::KernelsError;

#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Kernels(#[from] KernelsError),
    #[error("{what}")]
    Git {
        what: String,
        #[source]
        source: crate::exec::ExecError,
    },
    #[error("{what} {}", .path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
    #[error("interrupted: the bisection is saved in {} (run the same command again to continue)", .0.display())]
    Interrupted(PathBuf),
}

impl BisectError {
    pub fn io(what: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        BisectError::Io {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

impl HasExitCode for BisectError {
    fn exit_code(&self) -> ExitCode {
        match self {
            BisectError::Invalid(e) => e.exit_code(),
            BisectError::Kernels(e) => e.exit_code(),
            BisectError::Git { source, .. } => source.exit_code(),
            BisectError::Interrupted(_) => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }
}
