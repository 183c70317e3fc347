//! A blob being downloaded, as a [`Read`]: chunks arrive from the network task
//! ([`feed`]) through a bounded channel; the end says whether the sha256
//! matched. The network task cuts the blob at its declared size and gives up
//! on a download that stalls.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use oci_client::errors::DigestError;

use super::error::{OciError, Result};
use super::limits::STALL_MIN_BYTES;
use crate::cancel::CancelToken;
use crate::progress::{Stage, Unit};

/// How often a blob stream reports its byte count.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often a reader waiting for the network checks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(250);
/// How many bytes the network task gathers before handing them over: large,
/// so the two threads rarely wait for each other (each wake-up costs a trip
/// through a busy scheduler).
const SEND_CHUNK: usize = 1 << 20;

pub(super) enum Chunk {
    Data(Bytes),
    /// The stream ended: the digest of all bytes.
    End(String),
    Failed(String),
    /// lvh stopped the download: a cap or the stall deadline.
    Refused(Refusal),
}

/// Why lvh stopped a download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// More bytes came than the descriptor declared.
    Oversize { declared: u64 },
    /// Less than `STALL_MIN_BYTES` came in a whole window.
    Stalled { secs: u64 },
}

impl Refusal {
    pub(super) fn error(&self, what: &str) -> OciError {
        match self {
            Refusal::Oversize { declared } => OciError::BlobOversize {
                what: what.to_string(),
                declared: *declared,
            },
            Refusal::Stalled { secs } => OciError::TimedOut {
                what: what.to_string(),
                how: "the download stalled (less than 64 KiB came)",
                secs: *secs,
            },
        }
    }
}

enum ReadState {
    Streaming,
    Ended { actual: String },
    Failed(String),
    Refused(Refusal),
}

/// The network task: passes `stream`'s bytes to the reader in large chunks,
/// and ends with the digest of all of them (oci-client's stream hashes every
/// byte and, at the end, yields an error instead of ending when the sha256
/// differs from the digest asked for; a clean end therefore means verified,
/// and the system tests tamper with a blob to hold it to that). It stops with
/// a refusal as soon as more than `size` bytes came, or when a whole `window`
/// brought less than [`STALL_MIN_BYTES`].
pub(super) async fn feed(
    mut stream: BoxStream<'static, io::Result<Bytes>>,
    tx: tokio::sync::mpsc::Sender<Chunk>,
    expected: String,
    size: u64,
    window: Duration,
) {
    let fresh = || bytes::BytesMut::with_capacity(SEND_CHUNK + (256 << 10));
    let mut pending = fresh();
    let mut total = 0u64;
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        let left = window.saturating_sub(window_start.elapsed());
        let next = tokio::time::timeout(left, stream.next()).await;
        if window_start.elapsed() >= window {
            if window_bytes < STALL_MIN_BYTES {
                let secs = window.as_secs();
                let _ = tx.send(Chunk::Refused(Refusal::Stalled { secs })).await;
                return;
            }
            window_start = Instant::now();
            window_bytes = 0;
        }
        let Ok(next) = next else { continue };
        let Some(item) = next else { break };
        match item {
            Ok(b) => {
                total += b.len() as u64;
                window_bytes += b.len() as u64;
                if total > size {
                    let r = Refusal::Oversize { declared: size };
                    let _ = tx.send(Chunk::Refused(r)).await;
                    return;
                }
                pending.extend_from_slice(&b);
                if pending.len() >= SEND_CHUNK {
                    let full = std::mem::replace(&mut pending, fresh());
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
}

/// The bytes of one blob as a [`Read`], fed by the network task.
pub struct BlobReader<'s> {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    handle: tokio::runtime::Handle,
    cur: Bytes,
    state: ReadState,
    expected: String,
    what: String,
    size: u64,
    pos: u64,
    stage: Option<&'s Stage<'s>>,
    last_report: Instant,
    cancel: CancelToken,
}

impl<'s> BlobReader<'s> {
    pub(super) fn new(
        rx: tokio::sync::mpsc::Receiver<Chunk>,
        handle: tokio::runtime::Handle,
        expected: String,
        what: String,
        size: u64,
        stage: Option<&'s Stage<'s>>,
    ) -> Self {
        BlobReader {
            rx,
            handle,
            cur: Bytes::new(),
            state: ReadState::Streaming,
            expected,
            what,
            size,
            pos: 0,
            stage,
            last_report: Instant::now(),
            cancel: CancelToken::global(),
        }
    }

    /// Reads whatever is left, then says whether the blob was complete and intact.
    pub fn finish(&mut self) -> Result<u64> {
        io::copy(self, &mut io::sink()).map_err(|e| match self.failure() {
            Some(f) => f,
            None => OciError::Registry {
                reference: self.what.clone(),
                message: e.to_string(),
            },
        })?;
        if let Some(f) = self.failure() {
            return Err(f);
        }
        if let Some(s) = self.stage {
            s.progress(self.pos, Some(self.size.max(self.pos)), Unit::Bytes);
        }
        Ok(self.pos)
    }

    /// The reason reading stopped early, if it did (digest mismatch,
    /// network failure, interruption).
    pub fn failure(&self) -> Option<OciError> {
        if self.cancel.is_cancelled() {
            return Some(OciError::Interrupted);
        }
        match &self.state {
            ReadState::Streaming => None,
            ReadState::Ended { actual } if *actual == self.expected => None,
            ReadState::Ended { actual } => Some(OciError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual: actual.clone(),
            }),
            ReadState::Failed(m) => Some(OciError::Registry {
                reference: self.what.clone(),
                message: format!("download failed: {m}"),
            }),
            ReadState::Refused(r) => Some(r.error(&self.what)),
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            match self.state {
                ReadState::Streaming => {}
                ReadState::Ended { ref actual } if *actual == self.expected => return Ok(0),
                _ => return Err(io::Error::other("blob download failed")),
            }
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("interrupted"));
            }
            // Wait in short slices so that Ctrl-C is noticed on a stalled download.
            let msg = match self.rx.try_recv() {
                Ok(m) => Some(m),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    let rx = &mut self.rx;
                    // The timer must be made inside the runtime, hence the async block.
                    match self
                        .handle
                        .block_on(async { tokio::time::timeout(CANCEL_POLL, rx.recv()).await })
                    {
                        Ok(m) => m,
                        Err(_) => continue,
                    }
                }
            };
            match msg {
                Some(Chunk::Data(b)) => self.cur = b,
                Some(Chunk::End(actual)) => self.state = ReadState::Ended { actual },
                Some(Chunk::Failed(m)) => self.state = ReadState::Failed(m),
                Some(Chunk::Refused(r)) => self.state = ReadState::Refused(r),
                None => self.state = ReadState::Failed("the download stopped".into()),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        self.pos += n as u64;
        if let Some(s) = self.stage {
            if self.last_report.elapsed() >= PROGRESS_EVERY {
                self.last_report = Instant::now();
                s.progress(self.pos, Some(self.size), Unit::Bytes);
            }
        }
        Ok(n)
    }
}
