//! Talking to a registry: oci-client on a private tokio runtime behind a
//! blocking API, plain http for local registries and `--insecure`, errors
//! mapped to [`OciError`], and blobs streamed through a bounded channel to a
//! reader that hashes what it passes on.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

pub use super::blob::BlobReader;
use super::blob::Chunk;
use super::error::{OciError, Result};
use super::reference::{display, is_local_registry};
use crate::cancel::CancelToken;
use crate::progress::{Stage, Unit};

/// How many chunks may wait between the network and the consumer, and their
/// size: large, so the two threads rarely wait for each other (each wake-up
/// costs a trip through a busy scheduler).
const CHANNEL_CHUNKS: usize = 32;
const SEND_CHUNK: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How often an upload reports its byte count.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Plain http for every registry (local ones always use it).
    pub insecure: bool,
}

/// A connection to one repository.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: Client,
    auth: RegistryAuth,
    pub reference: Reference,
    scheme: &'static str,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

impl Remote {
    pub fn connect(reference: Reference, transport: &Transport) -> Result<Remote> {
        let registry = reference.resolve_registry().to_string();
        let plain = scheme_for(&registry, transport.insecure) == "http";
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            platform_resolver: None,
            user_agent: concat!("lvh/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| OciError::Registry {
            reference: display(&reference),
            message: format!("cannot set up the http client: {e}"),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lvh-oci")
            .enable_all()
            .build()
            .map_err(OciError::io("cannot start the OCI runtime for", "tokio"))?;
        let auth = super::auth::auth_for(&registry)?;
        Ok(Remote {
            rt,
            client,
            auth,
            reference,
            scheme: if plain { "http" } else { "https" },
        })
    }

    fn shown(&self) -> String {
        display(&self.reference)
    }

    fn map(&self, what: &'static str, target: &str, e: OciDistributionError) -> OciError {
        map_error(
            what,
            target,
            self.reference.resolve_registry(),
            self.scheme,
            e,
        )
    }

    /// Runs one request; on a 401 (a bearer token that expired or was
    /// revoked mid-pull) fetches a new token for `op` and runs it once more
    /// (see [`super::retry::reauthenticate`]).
    fn reauthenticating<T>(
        &self,
        op: RegistryOperation,
        mut request: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        match request() {
            Err(e) if super::retry::reauthenticate(&e) => {
                tracing::debug!("{e}; fetching a new token and trying once more");
                self.authenticate(op)?;
                request()
            }
            r => r,
        }
    }

    /// Authenticates for `op`: fetches a new token (a no-op for registries
    /// without auth).
    fn authenticate(&self, op: RegistryOperation) -> Result<()> {
        let r = self
            .rt
            .block_on(self.client.auth(&self.reference, &self.auth, op));
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self.map("repository", &self.shown(), e)),
        }
    }

    /// Fetches a manifest (by tag or digest) and its verified digest.
    pub fn manifest(&self, r: &Reference, accepted: &[&str]) -> Result<(Vec<u8>, String)> {
        let (bytes, digest) = self.reauthenticating(RegistryOperation::Pull, || {
            self.rt
                .block_on(self.client.pull_manifest_raw(r, &self.auth, accepted))
                .map_err(|e| self.map("manifest", &display(r), e))
        })?;
        let actual = sha256_digest(&bytes);
        if digest.starts_with("sha256:") && digest != actual {
            return Err(OciError::DigestMismatch {
                what: format!("manifest of {}", display(r)),
                expected: digest,
                actual,
            });
        }
        Ok((bytes.to_vec(), actual))
    }

    /// A small blob (a config) in memory, verified.
    pub fn blob_bytes(&self, digest: &str) -> Result<Vec<u8>> {
        let out = self.reauthenticating(RegistryOperation::Pull, || {
            let mut out = Vec::new();
            self.rt
                .block_on(self.client.pull_blob(&self.reference, digest, &mut out))
                .map_err(|e| self.map("blob", digest, e))?;
            Ok(out)
        })?;
        let actual = sha256_digest(&out);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("blob of {}", self.shown()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(out)
    }

    /// Starts streaming a blob. The reader yields its bytes; [`BlobReader::finish`]
    /// says whether they matched `digest`.
    pub fn blob_reader<'s>(
        &self,
        digest: &str,
        size: u64,
        stage: Option<&'s Stage<'s>>,
    ) -> Result<BlobReader<'s>> {
        self.rt.block_on(
            self.client
                .store_auth_if_needed(self.reference.resolve_registry(), &self.auth),
        );
        let sized = self.reauthenticating(RegistryOperation::Pull, || {
            self.rt
                .block_on(self.client.pull_blob_stream(&self.reference, digest))
                .map_err(|e| self.map("blob", digest, e))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        let expected = digest.to_string();
        let what = format!("layer {digest} of {}", self.shown());
        // oci-client's stream hashes every byte and, at the end, yields an error
        // instead of ending when the sha256 differs from the digest asked for; a
        // clean end therefore means verified (the system tests tamper with a
        // blob to hold it to that). One hash instead of two keeps pulls fast.
        self.rt.spawn(async move {
            let mut stream = sized.stream;
            let mut pending = bytes::BytesMut::with_capacity(SEND_CHUNK + (256 << 10));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(b) => {
                        pending.extend_from_slice(&b);
                        if pending.len() >= SEND_CHUNK {
                            let next = bytes::BytesMut::with_capacity(SEND_CHUNK + (256 << 10));
                            let full = std::mem::replace(&mut pending, next);
                            if tx.send(Chunk::Data(full.freeze())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let msg = match e.get_ref().and_then(|r| r.downcast_ref::<DigestError>()) {
                            Some(DigestError::VerificationError { actual, .. }) => {
                                Chunk::End(actual.clone())
                            }
                            _ => Chunk::Failed(e.to_string()),
                        };
                        let _ = tx.send(msg).await;
                        return;
                    }
                }
            }
            if !pending.is_empty() && tx.send(Chunk::Data(pending.freeze())).await.is_err() {
                return;
            }
            let _ = tx.send(Chunk::End(expected)).await;
        });
        Ok(BlobReader::new(
            rx,
            self.rt.handle().clone(),
            digest.to_string(),
            what,
            size,
            stage,
        ))
    }

    /// All tags of the repository, page by page until a page brings nothing new
    /// (registries cap `n` differently, some ignore it).
    pub fn list_tags(&self) -> Result<Vec<String>> {
        const PAGE: usize = 100;
        let mut all: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.reauthenticating(RegistryOperation::Pull, || {
                self.rt
                    .block_on(self.client.list_tags(
                        &self.reference,
                        &self.auth,
                        Some(PAGE),
                        last.as_deref(),
                    ))
                    .map_err(|e| self.map("repository", &self.shown(), e))
            })?;
            let new_last = page.tags.last().cloned();
            let before = all.len();
            all.extend(page.tags);
            if new_last.is_none() || new_last == last || all.len() == before {
                break;
            }
            last = new_last;
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    pub fn blob_exists(&self, digest: &str) -> Result<bool> {
        self.authenticate(RegistryOperation::Push)?;
        self.reauthenticating(RegistryOperation::Push, || {
            self.rt
                .block_on(self.client.blob_exists(&self.reference, digest))
                .map_err(|e| self.map("blob", digest, e))
        })
    }

    pub fn push_blob_bytes(&self, data: Vec<u8>, digest: &str) -> Result<()> {
        self.authenticate(RegistryOperation::Push)?;
        self.reauthenticating(RegistryOperation::Push, || {
            self.rt
                .block_on(self.client.push_blob(&self.reference, data.clone(), digest))
                .map_err(|e| self.map("blob", digest, e))
        })?;
        Ok(())
    }

    /// Uploads a file as a blob, streaming it from disk.
    pub fn push_blob_file(&self, path: &Path, digest: &str, stage: &Stage<'_>) -> Result<()> {
        self.authenticate(RegistryOperation::Push)?;
        self.reauthenticating(RegistryOperation::Push, || {
            self.push_blob_file_once(path, digest, stage)
        })
    }

    fn push_blob_file_once(&self, path: &Path, digest: &str, stage: &Stage<'_>) -> Result<()> {
        let size = std::fs::metadata(path)
            .map_err(OciError::io("cannot stat", path))?
            .len();
        let file = std::fs::File::open(path).map_err(OciError::io("cannot open", path))?;
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(8);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let client = self.client.clone();
        let reference = self.reference.clone();
        let d = digest.to_string();
        let upload = self.rt.spawn(async move {
            client
                .push_blob_stream(&reference, stream, &d, Some(size))
                .await
        });
        let cancel = CancelToken::global();
        let mut file = io::BufReader::with_capacity(1 << 20, file);
        let mut sent = 0u64;
        let mut last = Instant::now();
        loop {
            if cancel.is_cancelled() {
                upload.abort();
                return Err(OciError::Interrupted);
            }
            let mut buf = vec![0u8; 4 << 20];
            let n = super::sparse::read_full(&mut file, &mut buf)
                .map_err(OciError::io("cannot read", path))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            sent += n as u64;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                break;
            }
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                stage.progress(sent, Some(size), Unit::Bytes);
            }
        }
        drop(tx);
        stage.progress(sent, Some(size), Unit::Bytes);
        match self.rt.block_on(upload) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.map("blob", digest, e)),
            Err(e) => Err(OciError::Registry {
                reference: self.shown(),
                message: format!("upload task failed: {e}"),
            }),
        }
    }

    /// Uploads a manifest under the reference's tag (or digest).
    pub fn push_manifest(&self, body: Vec<u8>, media_type: &str) -> Result<()> {
        self.authenticate(RegistryOperation::Push)?;
        self.reauthenticating(RegistryOperation::Push, || {
            let ct = media_type
                .parse()
                .map_err(|_| OciError::invalid(format!("bad media type {media_type}")))?;
            self.rt
                .block_on(
                    self.client
                        .push_manifest_raw(&self.reference, body.clone(), ct),
                )
                .map_err(|e| self.map("manifest", &self.shown(), e))
        })?;
        Ok(())
    }
}

/// Plain http for local registries and with `--insecure`, https otherwise.
pub fn scheme_for(registry: &str, insecure: bool) -> &'static str {
    if insecure || is_local_registry(registry) {
        "http"
    } else {
        "https"
    }
}

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
        E::DigestError(d) => OciError::DigestMismatch {
            what: format!("{what} {target}"),
            expected: String::new(),
            actual: d.to_string(),
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
    fn schemes_table() {
        for (reg, insecure, want) in [
            ("quay.io", false, "https"),
            ("quay.io", true, "http"),
            ("registry.example:5000", false, "https"),
            ("registry.example:5000", true, "http"),
            ("localhost:5000", false, "http"),
            ("127.0.0.1:41234", false, "http"),
        ] {
            assert_eq!(scheme_for(reg, insecure), want, "{reg} insecure={insecure}");
        }
    }

    #[test]
    fn hex_and_digests() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

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
