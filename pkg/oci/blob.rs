//! A blob being downloaded, as a [`Read`]: chunks arrive from the network task
//! through a bounded channel; the end says whether the sha256 matched.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::{OciError, Result};
use crate::cancel::CancelToken;
use crate::progress::{Stage, Unit};

/// How often a blob stream reports its byte count.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often a reader waiting for the network checks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(250);

pub(super) enum Chunk {
    Data(Bytes),
    /// The stream ended: the digest of all bytes.
    End(String),
    Failed(String),
}

enum ReadState {
    Streaming,
    Ended { actual: String },
    Failed(String),
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
