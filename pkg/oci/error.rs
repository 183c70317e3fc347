//! The OCI subsystem's errors: one variant per way a pull or push can fail, each
//! naming the reference, registry, file or value involved.

use std::path::PathBuf;

use crate::error::{ExitCode, HasExitCode, InvalidInput};

/// Everything that can go wrong talking to a registry or unpacking an artifact.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid OCI reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid platform {value:?}: expected <os>/<arch>[/<variant>], e.g. linux/amd64")]
    InvalidPlatform { value: String },
    #[error("invalid kernel tag {tag:?}: it must match {regex} (e.g. 6.6-main, bpf-next-20240404.012646)")]
    InvalidKernelTag { tag: String, regex: &'static str },
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error("{what} not found in the registry: {reference}")]
    NotFound {
        what: &'static str,
        reference: String,
    },
    #[error("unauthorized for {reference}: {hint}")]
    Unauthorized { reference: String, hint: String },
    #[error("no image for platform {platform} in {reference} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoSuchPlatform {
        reference: String,
        platform: String,
        available: Vec<String>,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; nothing was written")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("registry {registry} is unreachable ({scheme}): {message}")]
    Unreachable {
        registry: String,
        scheme: &'static str,
        message: String,
    },
    #[error("registry error for {reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("unsafe entry {entry:?} in layer {layer}: {reason}")]
    UnsafePath {
        entry: String,
        layer: String,
        reason: String,
    },
    #[error("{reference} is not in little-vm-helper's layout: {message}")]
    Layout { reference: String, message: String },
    #[error("{context} {path}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad registry credentials file {path}: {message}")]
    AuthConfig { path: PathBuf, message: String },
    #[error("no such image file {given} (--image), and it is not a registry reference: {reason}")]
    NotLocalNorReference { given: String, reason: String },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Lock(#[from] crate::fsutil::LockError),
}

impl OciError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> OciError {
        let path = path.into();
        move |source| OciError::Io {
            context,
            path,
            source,
        }
    }
}

impl OciError {
    /// Bad input said in a sentence that names what is wrong.
    pub(crate) fn invalid(reason: impl Into<String>) -> OciError {
        OciError::InvalidInput(InvalidInput {
            reason: reason.into(),
            ..Default::default()
        })
    }
}

impl HasExitCode for OciError {
    fn exit_code(&self) -> ExitCode {
        match self {
            OciError::InvalidReference { .. }
            | OciError::InvalidPlatform { .. }
            | OciError::InvalidKernelTag { .. }
            | OciError::InvalidInput(_)
            | OciError::NotLocalNorReference { .. }
            | OciError::AuthConfig { .. } => ExitCode::InvalidInput,
            OciError::Interrupted => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }
}

pub type Result<T, E = OciError> = std::result::Result<T, E>;
