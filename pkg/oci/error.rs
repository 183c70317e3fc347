//! The OCI subsystem's errors: one variant per way a pull or push can fail, each
//! naming the reference, registry, file or value involved; and how oci-client's
//! errors become them ([`map_error`]).

use std::path::PathBuf;

use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope, OciErrorCode};

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
    #[error("digest check failed for {what}: {message}; nothing was written")]
    DigestInvalid { what: String, message: String },
    #[error("{what} is larger than {limit}, the most lvh accepts for it; refused")]
    TooLarge { what: String, limit: String },
    #[error("{what} is longer than the {declared} bytes its descriptor declares; refused, nothing was written")]
    BlobOversize { what: String, declared: u64 },
    #[error(
        "{what} unpacks to more than {limit} (raise it with {knob}); refused, nothing was written"
    )]
    UnpackLimit {
        what: String,
        limit: String,
        knob: &'static str,
    },
    #[error("{what}: {how} within {secs}s (LVH_OCI_TIMEOUT); gave up")]
    TimedOut {
        what: String,
        how: &'static str,
        secs: u64,
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

/// Turns an oci-client error into ours: not found, unauthorized, unreachable,
/// digest mismatch, or a registry error with the registry's words.
pub fn map_error(
    what: &'static str,
    target: &str,
    registry: &str,
    scheme: &'static str,
    e: OciDistributionError,
) -> OciError {
    use OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => OciError::NotFound {
            what,
            reference: target.to_string(),
        },
        E::RegistryError { envelope, .. } => map_envelope(what, target, registry, &envelope),
        E::UnauthorizedError { url } => OciError::Unauthorized {
            reference: target.to_string(),
            hint: unauthorized_hint(registry, &url),
        },
        E::AuthenticationFailure(m) => OciError::Unauthorized {
            reference: target.to_string(),
            hint: unauthorized_hint(registry, &m),
        },
        E::ServerError { code: 404, .. } => OciError::NotFound {
            what,
            reference: target.to_string(),
        },
        E::ServerError {
            code: 401 | 403,
            message,
            ..
        } => OciError::Unauthorized {
            reference: target.to_string(),
            hint: unauthorized_hint(registry, &message),
        },
        E::DigestError(DigestError::VerificationError { expected, actual }) => {
            OciError::DigestMismatch {
                what: format!("{what} {target}"),
                expected,
                actual,
            }
        }
        E::DigestError(d) => OciError::DigestInvalid {
            what: format!("{what} {target}"),
            message: d.to_string(),
        },
        E::RequestError(r) if matches!(r.status().map(|s| s.as_u16()), Some(401 | 403)) => {
            OciError::Unauthorized {
                reference: target.to_string(),
                hint: unauthorized_hint(registry, &r.to_string()),
            }
        }
        E::RequestError(r) if r.status().is_some_and(|s| s.as_u16() == 404) => OciError::NotFound {
            what,
            reference: target.to_string(),
        },
        E::RequestError(r) if r.is_connect() || r.is_timeout() || r.is_request() => {
            OciError::Unreachable {
                registry: registry.to_string(),
                scheme,
                message: crate::error::error_chain(&r),
            }
        }
        other => OciError::Registry {
            reference: target.to_string(),
            message: other.to_string(),
        },
    }
}

/// A registry's error envelope: not found or unauthorized when one of its
/// codes says so, else a registry error quoting every code and message.
fn map_envelope(
    what: &'static str,
    target: &str,
    registry: &str,
    envelope: &OciEnvelope,
) -> OciError {
    let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
    let msg = envelope
        .errors
        .iter()
        .map(|e| format!("{:?}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    if codes.iter().any(|c| {
        matches!(
            c,
            OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::BlobUnknown
                | OciErrorCode::NotFound
        )
    }) {
        OciError::NotFound {
            what,
            reference: target.to_string(),
        }
    } else if codes
        .iter()
        .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
    {
        OciError::Unauthorized {
            reference: target.to_string(),
            hint: unauthorized_hint(registry, &msg),
        }
    } else {
        OciError::Registry {
            reference: target.to_string(),
            message: msg,
        }
    }
}

fn unauthorized_hint(registry: &str, detail: &str) -> String {
    format!(
        "the registry refused access ({detail}); log in (docker/skopeo login {registry}, which writes config.json or auth.json) or set LVH_REGISTRY_USERNAME and LVH_REGISTRY_PASSWORD"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_map_to_clear_kinds() {
        let e = map_error(
            "manifest",
            "quay.io/a/b:c",
            "quay.io",
            "https",
            OciDistributionError::ServerError {
                code: 404,
                url: "u".into(),
                message: String::new(),
            },
        );
        assert!(matches!(e, OciError::NotFound { .. }), "{e}");
        let e = map_error(
            "manifest",
            "quay.io/a/b:c",
            "quay.io",
            "https",
            OciDistributionError::UnauthorizedError { url: "u".into() },
        );
        assert!(e.to_string().contains("docker/skopeo login quay.io"), "{e}");
    }
}
