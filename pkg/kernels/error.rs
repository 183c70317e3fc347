//! The kernel builder's errors: each names the file, kernel, field or value at
//! fault, and knows its exit code (bad config or flag value => invalid input).

use std::path::PathBuf;

use crate::error::{ExitCode, HasExitCode, InvalidInput};

/// Everything that can go wrong in `lvh kernels ...`.
#[derive(Debug, thiserror::Error)]
pub enum KernelsError {
    /// A config file, flag value or name is wrong; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{file}: {message}")]
    BadConfig { file: PathBuf, message: String },
    #[error("{file} does not exist (run `lvh kernels init --dir {dir}` first)")]
    NoConfig { file: PathBuf, dir: String },
    #[error("kernel {name:?} is not in {file} (known: {known})")]
    UnknownKernel {
        name: String,
        file: PathBuf,
        known: String,
    },
    #[error("kernel {name:?} has no url in {file}: it cannot be fetched (make its tree another way and use `lvh kernels raw_configure`)")]
    NoUrl { name: String, file: PathBuf },
    #[error("kernel {kernel:?}: fragment {file}: {message} (in the tree {})", .tree.display())]
    Fragment {
        kernel: String,
        file: String,
        tree: PathBuf,
        message: String,
    },
    #[error("kernel {name:?} has not been fetched: {path} does not exist (run `lvh kernels fetch {name}`)")]
    NotFetched { name: String, path: PathBuf },
    #[error("{what} {}", .path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git: {what}")]
    Git {
        what: String,
        #[source]
        source: git2::Error,
    },
    #[error("{what}")]
    Exec {
        what: String,
        #[source]
        source: crate::exec::ExecError,
    },
    #[error(transparent)]
    Lock(#[from] crate::fsutil::LockError),
    #[error("{count} option(s) did not hold after configuring {kernel} (--strict):\n{details}")]
    Strict {
        kernel: String,
        count: usize,
        details: String,
    },
    /// A toolchain that cannot be used: missing programs (naming the Debian
    /// packages), a tree too old for it, options that need another compiler.
    #[error("{0}")]
    Toolchain(String),
    /// A `--reproduce` record that does not match what is there to build.
    #[error("{0}")]
    Reproduce(String),
}

impl KernelsError {
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        KernelsError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    pub fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> Self {
        let what = what.into();
        move |source| KernelsError::Git { what, source }
    }

    pub fn exec(what: impl Into<String>) -> impl FnOnce(crate::exec::ExecError) -> Self {
        let what = what.into();
        move |source| KernelsError::Exec { what, source }
    }
}

impl KernelsError {
    /// Bad input said in a sentence that names what is wrong.
    pub(crate) fn invalid(reason: impl Into<String>) -> KernelsError {
        KernelsError::Invalid(InvalidInput {
            reason: reason.into(),
            ..Default::default()
        })
    }
}

impl HasExitCode for KernelsError {
    fn exit_code(&self) -> ExitCode {
        match self {
            KernelsError::Invalid(_)
            | KernelsError::BadConfig { .. }
            | KernelsError::NoConfig { .. }
            | KernelsError::UnknownKernel { .. }
            | KernelsError::NoUrl { .. }
            | KernelsError::NotFetched { .. }
            | KernelsError::Fragment { .. }
            | KernelsError::Toolchain(_)
            | KernelsError::Reproduce(_) => ExitCode::InvalidInput,
            KernelsError::Exec { source, .. } => source.exit_code(),
            _ => ExitCode::Failure,
        }
    }
}

pub type Result<T, E = KernelsError> = std::result::Result<T, E>;
