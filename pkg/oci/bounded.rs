//! Requests with bounds: every registry request ends by its deadline or at
//! once when lvh is interrupted ([`bounded`]), and a body that is read whole
//! is read with a cap, so a registry cannot make lvh wait forever or hold a
//! 300 MB "manifest". oci-client reads a manifest's body whole before lvh
//! sees it, so lvh fetches manifests itself ([`get_manifest`]), with the
//! bearer token oci-client negotiated.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::Reference;

use super::error::{OciError, Result};
use crate::bytesize::human;
use crate::cancel::CancelToken;

/// How often a waiting request looks at the cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(100);
/// How much of an error response's body is kept for the message.
const ERROR_BODY_MAX: u64 = 64 << 10;

/// Runs `fut` until it ends, `timeout` passes (an error naming `what`), or
/// lvh is interrupted (within [`CANCEL_POLL`]).
pub async fn bounded<T>(
    what: impl FnOnce() -> String,
    timeout: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let cancel = CancelToken::global();
    let cancelled = async {
        while !cancel.is_cancelled() {
            tokio::time::sleep(CANCEL_POLL).await;
        }
    };
    tokio::select! {
        r = fut => r,
        _ = tokio::time::sleep(timeout) => Err(OciError::TimedOut {
            what: what(),
            how: "no complete answer",
            secs: timeout.as_secs(),
        }),
        _ = cancelled => Err(OciError::Interrupted),
    }
}

/// `{scheme}://{registry}/v2/{repository}/manifests/{digest or tag}`, as
/// oci-client addresses it (with `?ns=` for a mirror's namespace).
pub fn manifest_url(scheme: &str, r: &Reference) -> String {
    format!(
        "{scheme}://{}/v2/{}/manifests/{}{}",
        r.resolve_registry(),
        r.repository(),
        r.digest().or(r.tag()).unwrap_or("latest"),
        r.namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default()
    )
}

/// How a request authenticates.
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// The body of `res`, or None once it passes `cap` bytes (read no further).
pub async fn read_capped(
    res: &mut reqwest::Response,
    cap: u64,
) -> std::result::Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A manifest: its bytes (at most `cap`) and the digest the registry named
/// in `Docker-Content-Digest`, if it did. Errors come as oci-client's, for
/// the one mapping in `transport`, except a body over the cap.
pub async fn get_manifest(
    http: &reqwest::Client,
    url: &str,
    accepted: &[&str],
    auth: Auth<'_>,
    cap: u64,
    shown: &str,
) -> std::result::Result<(Vec<u8>, Option<String>), Fetch> {
    let mut req = http
        .get(url)
        .header(reqwest::header::ACCEPT, accepted.join(", "));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
    };
    let mut res = req.send().await.map_err(Fetch::from_reqwest)?;
    let status = res.status();
    if !status.is_success() {
        let body = read_capped(&mut res, ERROR_BODY_MAX)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        return Err(Fetch::Oci(status_error(status, &body, url)));
    }
    let too_large = || {
        Fetch::Lvh(OciError::TooLarge {
            what: format!("the manifest of {shown}"),
            limit: human(cap),
        })
    };
    if res.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let digest = res
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_capped(&mut res, cap)
        .await
        .map_err(Fetch::from_reqwest)?
        .ok_or_else(too_large)?;
    Ok((body, digest))
}

/// A failed fetch: an error oci-client's mapping knows, or one of lvh's own.
pub enum Fetch {
    Oci(OciDistributionError),
    Lvh(OciError),
}

impl Fetch {
    fn from_reqwest(e: reqwest::Error) -> Fetch {
        Fetch::Oci(OciDistributionError::RequestError(e))
    }
}

/// The error for a non-success answer, as oci-client makes it.
fn status_error(status: reqwest::StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError {
            url: url.to_string(),
        };
    }
    match serde_json::from_slice::<OciEnvelope>(body) {
        Ok(envelope) if status.is_client_error() => OciDistributionError::RegistryError {
            envelope,
            url: url.to_string(),
        },
        _ => OciDistributionError::ServerError {
            code: status.as_u16(),
            url: url.to_string(),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// An in-memory sink for a small blob (a config) that refuses to grow past
/// `cap` bytes: oci-client streams the blob into it, and the write that
/// would pass the cap fails, which ends the download.
pub struct CappedVec {
    pub buf: Vec<u8>,
    pub cap: u64,
    pub over: bool,
}

impl CappedVec {
    pub fn new(cap: u64) -> CappedVec {
        CappedVec {
            buf: Vec::new(),
            cap,
            over: false,
        }
    }
}

impl tokio::io::AsyncWrite for CappedVec {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() as u64 + data.len() as u64 > self.cap {
            self.over = true;
            return Poll::Ready(Err(std::io::Error::other("larger than its cap")));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls_as_oci_client_makes_them() {
        let r: Reference = "127.0.0.1:5000/lvh/kernels:6.6-main".parse().unwrap();
        assert_eq!(
            manifest_url("http", &r),
            "http://127.0.0.1:5000/v2/lvh/kernels/manifests/6.6-main"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = r.clone_with_digest(d.clone());
        assert!(manifest_url("https", &r).ends_with(&format!("/manifests/{d}")));
    }

    #[test]
    fn a_capped_sink_refuses_to_grow() {
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut v = CappedVec::new(4);
            v.write_all(b"1234").await.unwrap();
            assert!(v.write_all(b"5").await.is_err());
            assert!(v.over);
            assert_eq!(v.buf, b"1234");
        });
    }

    #[test]
    fn deadlines_and_cancellation_end_a_request() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let t0 = std::time::Instant::now();
        let r: Result<()> = rt.block_on(bounded(
            || "manifest x".into(),
            Duration::from_millis(200),
            std::future::pending(),
        ));
        let e = r.unwrap_err();
        assert!(matches!(e, OciError::TimedOut { .. }), "{e}");
        assert!(e.to_string().contains("manifest x"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        let ok: Result<u8> = rt.block_on(bounded(String::new, Duration::from_secs(5), async {
            Ok(7)
        }));
        assert_eq!(ok.unwrap(), 7);
    }
}
