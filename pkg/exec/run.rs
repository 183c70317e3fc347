//! [`Cmd::run`]: supervising a child to completion. Output lines go to the
//! reporter and the log file while the tails are kept for the error; the
//! deadline and Ctrl-C stop the child's group.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Child, Cmd, ExecError, Input, Io, Output, PIPE_DRAIN, POLL};
use crate::progress::{Event, NullReporter, Reporter, Stream};

/// Output lines from the reader threads; `None` when a stream closed.
type Lines = mpsc::Receiver<(Stream, Option<Vec<u8>>)>;

impl Cmd {
    /// Runs to completion, streaming output lines to `reporter`.
    pub fn run(&self, reporter: &dyn Reporter) -> Result<Output, ExecError> {
        let start = Instant::now();
        let mut log = self.open_log()?;
        let (mut child, lines) = self.start_piped()?;
        let out = self.collect(&mut child, &lines, reporter, &mut log, start)?;
        self.finish(out, start)
    }

    /// Runs with no reporting and returns captured stdout, trimmed.
    pub fn read(&self) -> Result<String, ExecError> {
        Ok(self
            .clone()
            .capture_stdout()
            .run(&NullReporter)?
            .stdout_str())
    }

    fn take_line(
        &self,
        reporter: &dyn Reporter,
        out: &mut Collected,
        stream: Stream,
        line: Vec<u8>,
    ) {
        if stream == Stream::Stdout && self.capture_stdout {
            out.stdout.extend_from_slice(&line);
            return;
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        out.push_tail(stream, text.clone());
        reporter.report(Event::Line {
            stage: self.stage,
            stream,
            line: text,
        });
    }

    fn io_error(&self, source: io::Error) -> ExecError {
        ExecError::Io {
            argv: self.display(),
            source,
        }
    }

    /// The log file that gets every output line, opened for appending.
    fn open_log(&self) -> Result<Option<File>, ExecError> {
        let Some(p) = &self.log_file else {
            return Ok(None);
        };
        let f = File::options()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| self.io_error(e))?;
        Ok(Some(f))
    }

    /// Spawns the child with piped output, feeds it its stdin bytes and starts
    /// one reader thread per output stream.
    fn start_piped(&self) -> Result<(Child, Lines), ExecError> {
        let stdin = match self.input {
            Input::Null => Io::Null,
            Input::Inherit => Io::Inherit,
            Input::Bytes(_) => Io::Piped,
        };
        let mut child = self.spawn(stdin, Io::Piped, Io::Piped)?;
        if let Input::Bytes(bytes) = &self.input {
            let mut w = child.inner.stdin.take().expect("piped stdin");
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                let _ = w.write_all(&bytes);
            });
        }
        let (tx, rx) = mpsc::channel::<(Stream, Option<Vec<u8>>)>();
        pump(
            child.inner.stdout.take().expect("piped"),
            Stream::Stdout,
            tx.clone(),
        );
        pump(
            child.inner.stderr.take().expect("piped"),
            Stream::Stderr,
            tx,
        );
        Ok((child, rx))
    }

    /// Forwards output lines until the child has exited and its pipes closed
    /// (or [`PIPE_DRAIN`] passed); stops it at the deadline or on Ctrl-C.
    fn collect(
        &self,
        child: &mut Child,
        lines: &Lines,
        reporter: &dyn Reporter,
        log: &mut Option<File>,
        start: Instant,
    ) -> Result<Collected, ExecError> {
        let mut out = Collected::new(self.tail_lines);
        let deadline = self.timeout.map(|t| start + t);
        let mut exited_at: Option<Instant> = None;
        let mut open_streams = 2;
        loop {
            match lines.recv_timeout(POLL) {
                Ok((stream, Some(line))) => {
                    if let Some(f) = log.as_mut() {
                        let _ = f.write_all(&line);
                    }
                    self.take_line(reporter, &mut out, stream, line);
                    continue;
                }
                Ok((_, None)) => open_streams -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open_streams = 0,
            }
            if exited_at.is_none() {
                if let Some(st) = child.try_wait().map_err(|e| self.io_error(e))? {
                    child.kill_group(Signal::SIGKILL);
                    out.status = Some(st);
                    exited_at = Some(Instant::now());
                }
            }
            if let Some(t) = exited_at {
                if open_streams == 0 || t.elapsed() > PIPE_DRAIN {
                    return Ok(out);
                }
                continue;
            }
            self.stop_if_due(child, &out, deadline)?;
        }
    }

    /// Stops a child that is still running when Ctrl-C came or the deadline
    /// passed, and says which.
    fn stop_if_due(
        &self,
        child: &mut Child,
        out: &Collected,
        deadline: Option<Instant>,
    ) -> Result<(), ExecError> {
        if self.cancel.is_cancelled() {
            let _ = child.terminate();
            return Err(ExecError::Interrupted {
                argv: self.display(),
            });
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.terminate();
            return Err(ExecError::Timeout {
                argv: self.display(),
                timeout: self.timeout.unwrap_or_default(),
                tail: out.tail(),
                log: self.log_file.clone(),
            });
        }
        Ok(())
    }

    /// The output of a child that exited; an error if it failed and the
    /// command is checked.
    fn finish(&self, out: Collected, start: Instant) -> Result<Output, ExecError> {
        let status = out.status.expect("collect returns only after exit");
        let output = Output {
            status,
            tail: out.tail(),
            stdout: out.stdout,
            elapsed: start.elapsed(),
        };
        if self.check && !status.success() {
            return Err(ExecError::Failed {
                argv: self.display(),
                status,
                tail: output.tail,
                log: self.log_file.clone(),
            });
        }
        Ok(output)
    }
}

struct Collected {
    stdout: Vec<u8>,
    err_tail: VecDeque<String>,
    out_tail: VecDeque<String>,
    cap: usize,
    status: Option<ExitStatus>,
}

impl Collected {
    fn new(cap: usize) -> Self {
        Collected {
            stdout: Vec::new(),
            err_tail: VecDeque::new(),
            out_tail: VecDeque::new(),
            cap,
            status: None,
        }
    }

    fn push_tail(&mut self, stream: Stream, line: String) {
        let q = match stream {
            Stream::Stdout => &mut self.out_tail,
            Stream::Stderr => &mut self.err_tail,
        };
        if self.cap == 0 {
            return;
        }
        if q.len() == self.cap {
            q.pop_front();
        }
        q.push_back(line);
    }

    fn tail(&self) -> Vec<String> {
        let q = if self.err_tail.is_empty() {
            &self.out_tail
        } else {
            &self.err_tail
        };
        q.iter().cloned().collect()
    }
}

fn pump(
    r: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Option<Vec<u8>>)>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        loop {
            let mut buf = Vec::new();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send((stream, Some(buf))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send((stream, None));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_prefers_stderr_and_is_bounded() {
        let mut c = Collected::new(2);
        c.push_tail(Stream::Stdout, "o".into());
        assert_eq!(c.tail(), vec!["o"]);
        for l in ["a", "b", "c"] {
            c.push_tail(Stream::Stderr, l.into());
        }
        assert_eq!(c.tail(), vec!["b", "c"]);
    }
}
