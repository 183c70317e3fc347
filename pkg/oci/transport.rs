//! Talking to a registry: oci-client on a private tokio runtime behind a
//! blocking API, plain http for local registries and `--insecure`, errors
//! mapped to [`OciError`], and blobs streamed through a bounded channel to a
//! reader that hashes what it passes on. Every request is bounded (see
//! `bounded`): a deadline, Ctrl-C, a cap on what is read whole, and a blob
//! cut at the size its descriptor declares.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

pub use super::blob::BlobReader;
use super::blob::{Chunk, Refusal};
use super::bounded::{self, bounded, Auth, CappedVec, Fetch};
use super::error::{map_error, OciError, Result};
use super::limits::{CapFlags, Limits, MANIFEST_MAX};
use super::reference::{display, is_local_registry};
use crate::bytesize::human;
use crate::cancel::CancelToken;
use crate::progress::{Stage, Unit};

/// How many chunks may wait between the network and the consumer, and their
/// size: large, so the two threads rarely wait for each other (each wake-up
/// costs a trip through a busy scheduler).
const CHANNEL_CHUNKS: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How often an upload reports its byte count.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Plain http for every registry (local ones always use it).
    pub insecure: bool,
    /// Unpacking caps given as flags (the rest from the environment).
    pub caps: CapFlags,
}

/// A connection to one repository.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// For the requests lvh makes itself (manifests, read with a cap).
    http: reqwest::Client,
    auth: RegistryAuth,
    /// The pull token oci-client negotiated, once asked (None inside: the
    /// registry wants none).
    token: std::sync::Mutex<Option<Option<String>>>,
    pub reference: Reference,
    scheme: &'static str,
    pub limits: Limits,
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
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("lvh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OciError::Registry {
                reference: display(&reference),
                message: format!("cannot set up the http client: {e}"),
            })?;
        let limits = Limits::from_env(transport.caps)?;
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
            http,
            auth,
            token: std::sync::Mutex::new(None),
            reference,
            scheme: if plain { "http" } else { "https" },
            limits,
        })
    }

    /// Runs a request on the runtime, bounded by the timeout and Ctrl-C.
    fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.rt.block_on(bounded(what, self.limits.timeout, fut))
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
        let token = self.run(|| format!("authentication for {}", self.shown()), async {
            self.client
                .auth(&self.reference, &self.auth, op)
                .await
                .map_err(|e| self.map("repository", &self.shown(), e))
        })?;
        if op == RegistryOperation::Pull {
            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        }
        Ok(())
    }

    /// The pull token, negotiated on first use.
    fn pull_token(&self) -> Result<Option<String>> {
        if let Some(t) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(t);
        }
        self.authenticate(RegistryOperation::Pull)?;
        Ok(self
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .flatten())
    }

    /// Fetches a manifest (by tag or digest) and its verified digest. At most
    /// [`MANIFEST_MAX`] bytes are read.
    pub fn manifest(&self, r: &Reference, accepted: &[&str]) -> Result<(Vec<u8>, String)> {
        let shown = display(r);
        let url = bounded::manifest_url(self.scheme, r);
        let (bytes, digest) = self.reauthenticating(RegistryOperation::Pull, || {
            let token = self.pull_token()?;
            let auth = match (&token, &self.auth) {
                (Some(t), _) => Auth::Bearer(t),
                (None, RegistryAuth::Basic(u, p)) => Auth::Basic(u, p),
                (None, _) => Auth::None,
            };
            self.run(|| format!("the manifest of {shown}"), async {
                bounded::get_manifest(&self.http, &url, accepted, auth, MANIFEST_MAX, &shown)
                    .await
                    .map_err(|e| match e {
                        Fetch::Oci(e) => self.map("manifest", &shown, e),
                        Fetch::Lvh(e) => e,
                    })
            })
        })?;
        let actual = sha256_digest(&bytes);
        let claimed = digest
            .filter(|d| d.starts_with("sha256:"))
            .or_else(|| r.digest().map(str::to_string));
        if let Some(expected) = claimed {
            if expected != actual {
                return Err(OciError::DigestMismatch {
                    what: format!("manifest of {shown}"),
                    expected,
                    actual,
                });
            }
        }
        Ok((bytes, actual))
    }

    /// A small blob (a config) in memory, verified: cut at its declared
    /// `size`, which may be at most `cap`.
    pub fn blob_bytes(&self, digest: &str, size: u64, cap: u64) -> Result<Vec<u8>> {
        let what = || format!("blob {digest} of {}", self.shown());
        if size > cap {
            return Err(OciError::TooLarge {
                what: what(),
                limit: human(cap),
            });
        }
        let out = self.reauthenticating(RegistryOperation::Pull, || {
            self.run(what, async {
                let mut out = CappedVec::new(size);
                let r = self
                    .client
                    .pull_blob(&self.reference, digest, &mut out)
                    .await;
                match r {
                    _ if out.over => Err(OciError::TooLarge {
                        what: format!("{} (declared as {size} bytes)", what()),
                        limit: human(size),
                    }),
                    Ok(()) => Ok(out.buf),
                    Err(e) => Err(self.map("blob", digest, e)),
                }
            })
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
        let what = format!("layer {digest} of {}", self.shown());
        let sized = self.reauthenticating(RegistryOperation::Pull, || {
            self.run(|| what.clone(), async {
                self.client
                    .pull_blob_stream(&self.reference, digest)
                    .await
                    .map_err(|e| self.map("blob", digest, e))
            })
        })?;
        if let Some(n) = sized.content_length.filter(|&n| n > size) {
            return Err(
                Refusal::Oversize { declared: size }.error(&format!("{what} ({n} bytes sent)"))
            );
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        let expected = digest.to_string();
        let window = self.limits.timeout;
        // oci-client's stream hashes every byte and, at the end, yields an error
        // instead of ending when the sha256 differs from the digest asked for; a
        // clean end therefore means verified (the system tests tamper with a
        // blob to hold it to that). One hash instead of two keeps pulls fast.
        self.rt
            .spawn(super::blob::feed(sized.stream, tx, expected, size, window));
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
                self.run(|| format!("the tags of {}", self.shown()), async {
                    self.client
                        .list_tags(&self.reference, &self.auth, Some(PAGE), last.as_deref())
                        .await
                        .map_err(|e| self.map("repository", &self.shown(), e))
                })
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
            self.run(|| format!("blob {digest} of {}", self.shown()), async {
                self.client
                    .blob_exists(&self.reference, digest)
                    .await
                    .map_err(|e| self.map("blob", digest, e))
            })
        })
    }

    pub fn push_blob_bytes(&self, data: Vec<u8>, digest: &str) -> Result<()> {
        self.authenticate(RegistryOperation::Push)?;
        self.reauthenticating(RegistryOperation::Push, || {
            self.run(
                || format!("upload of blob {digest} to {}", self.shown()),
                async {
                    self.client
                        .push_blob(&self.reference, data.clone(), digest)
                        .await
                        .map_err(|e| self.map("blob", digest, e))
                },
            )
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
        self.run(
            || format!("the end of the upload of blob {digest} to {}", self.shown()),
            async {
                match upload.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(self.map("blob", digest, e)),
                    Err(e) => Err(OciError::Registry {
                        reference: self.shown(),
                        message: format!("upload task failed: {e}"),
                    }),
                }
            },
        )
    }

    /// Uploads a manifest under the reference's tag (or digest).
    pub fn push_manifest(&self, body: Vec<u8>, media_type: &str) -> Result<()> {
        self.authenticate(RegistryOperation::Push)?;
        self.reauthenticating(RegistryOperation::Push, || {
            let ct = media_type
                .parse()
                .map_err(|_| OciError::invalid(format!("bad media type {media_type}")))?;
            self.run(
                || format!("upload of the manifest of {}", self.shown()),
                async {
                    self.client
                        .push_manifest_raw(&self.reference, body.clone(), ct)
                        .await
                        .map_err(|e| self.map("manifest", &self.shown(), e))
                },
            )
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
}
