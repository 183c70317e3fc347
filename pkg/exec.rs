//! The one way lvh runs external programs.
//!
//! Every child gets its own process group, its output lines are forwarded to the
//! reporter (and optionally a log file), the last lines of stderr are kept for the
//! error, a deadline and Ctrl-C both stop it, and a [`Child`] guard that is dropped
//! SIGTERMs the whole group, waits a grace period and then SIGKILLs it. Errors name
//! the argv, how the child ended and the stderr tail.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::cancel::{CancelToken, GroupRegistration};
use crate::error::{ExitCode, HasExitCode};
use crate::progress::{Event, NullReporter, Reporter, StageId, Stream};

/// How long a child gets between SIGTERM and SIGKILL unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// How many stderr lines an error keeps unless told otherwise.
pub const DEFAULT_TAIL_LINES: usize = 20;
/// How often waits poll the child, the deadline and the cancel token.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait for output pipes after the child's group is gone (a daemon
/// that escaped the group may hold them open forever).
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// Where a spawned child's stdin/stdout/stderr goes.
#[derive(Debug, Clone)]
pub enum Io {
    Null,
    Inherit,
    Piped,
    File(PathBuf),
}

/// What a child reads on stdin in [`Cmd::run`].
#[derive(Debug, Clone)]
pub enum Input {
    Null,
    Inherit,
    Bytes(Vec<u8>),
}

/// A command to run: program, arguments and how to supervise it.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    timeout: Option<Duration>,
    grace: Duration,
    input: Input,
    capture_stdout: bool,
    log_file: Option<PathBuf>,
    tail_lines: usize,
    stage: Option<StageId>,
    cancel: CancelToken,
    check: bool,
    die_with_parent: bool,
}

/// What a finished child left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    /// Everything the child wrote to stdout, when [`Cmd::capture_stdout`] was set.
    pub stdout: Vec<u8>,
    /// The last lines of stderr (or of stdout when stderr was empty).
    pub tail: Vec<String>,
    pub elapsed: Duration,
}

impl Output {
    /// Captured stdout as text, trailing whitespace trimmed.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim_end().to_string()
    }
}

/// How a child failed. Every variant names the command line.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` was not found in PATH (needed for `{argv}`)")]
    NotFound { program: String, argv: String },
    #[error("failed to start `{argv}`")]
    Spawn {
        argv: String,
        #[source]
        source: io::Error,
    },
    #[error("`{argv}` {}{}{}", describe_status(.status), fmt_log(.log), fmt_tail(.tail))]
    Failed {
        argv: String,
        status: ExitStatus,
        tail: Vec<String>,
        log: Option<PathBuf>,
    },
    #[error("`{argv}` did not finish within {}s and was stopped{}{}", .timeout.as_secs_f64(), fmt_log(.log), fmt_tail(.tail))]
    Timeout {
        argv: String,
        timeout: Duration,
        tail: Vec<String>,
        log: Option<PathBuf>,
    },
    #[error("`{argv}` was interrupted")]
    Interrupted { argv: String },
    #[error("i/o error while running `{argv}`")]
    Io {
        argv: String,
        #[source]
        source: io::Error,
    },
}

impl ExecError {
    /// The failed command's exit status, when it ran and exited.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            ExecError::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The kept output tail, when there is one.
    pub fn tail(&self) -> &[String] {
        match self {
            ExecError::Failed { tail, .. } | ExecError::Timeout { tail, .. } => tail,
            _ => &[],
        }
    }
}

impl HasExitCode for ExecError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ExecError::Interrupted { .. } => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }
}

/// "exited with status 2" / "was killed by signal 9 (SIGKILL)".
pub fn describe_status(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("was killed by signal {sig} ({})", s.as_str()),
            Err(_) => format!("was killed by signal {sig}"),
        }
    } else {
        format!("ended with {status}")
    }
}

fn fmt_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = format!("; last {} lines of output:", tail.len());
    for l in tail {
        s.push_str("\n    ");
        s.push_str(l);
    }
    s
}

fn fmt_log(log: &Option<PathBuf>) -> String {
    match log {
        Some(p) => format!(" (full log: {})", p.display()),
        None => String::new(),
    }
}

/// Quotes one argument so the printed command line can be pasted into a shell.
pub fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            timeout: None,
            grace: DEFAULT_GRACE,
            input: Input::Null,
            capture_stdout: false,
            log_file: None,
            tail_lines: DEFAULT_TAIL_LINES,
            stage: None,
            cancel: CancelToken::global(),
            check: true,
            die_with_parent: true,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(val.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with an empty environment plus what [`Cmd::env`] adds.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The deadline for [`Cmd::run`]; past it the child is stopped and `Timeout` returned.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Time between SIGTERM and SIGKILL when stopping the child.
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    pub fn input(mut self, input: Input) -> Self {
        self.input = input;
        self
    }

    /// Keep stdout in [`Output::stdout`] instead of reporting it line by line.
    pub fn capture_stdout(mut self) -> Self {
        self.capture_stdout = true;
        self
    }

    /// Append every output line to this file too.
    pub fn log_to(mut self, path: impl AsRef<Path>) -> Self {
        self.log_file = Some(path.as_ref().to_owned());
        self
    }

    pub fn tail_lines(mut self, n: usize) -> Self {
        self.tail_lines = n;
        self
    }

    /// Attribute output lines to this stage.
    pub fn stage(mut self, id: StageId) -> Self {
        self.stage = Some(id);
        self
    }

    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Return `Ok` whatever the exit status (the caller inspects it).
    pub fn allow_failure(mut self) -> Self {
        self.check = false;
        self
    }

    /// Whether the child gets SIGKILL if lvh itself dies (default: yes).
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The command line, quoted for a shell.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(|a| a.as_os_str()))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn std_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args);
        if self.env_clear {
            c.env_clear();
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c.process_group(0);
        if self.die_with_parent {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c
    }

    fn spawn_error(&self, e: io::Error) -> ExecError {
        if e.kind() == io::ErrorKind::NotFound && self.cwd.as_ref().is_none_or(|d| d.is_dir()) {
            ExecError::NotFound {
                program: self.program.to_string_lossy().into_owned(),
                argv: self.display(),
            }
        } else {
            ExecError::Spawn {
                argv: self.display(),
                source: e,
            }
        }
    }

    /// Starts the child with the given stdio and returns its guard; the caller
    /// supervises it. The child is in its own process group.
    pub fn spawn(&self, stdin: Io, stdout: Io, stderr: Io) -> Result<Child, ExecError> {
        let mut c = self.std_command();
        let io_err = |e| ExecError::Io {
            argv: self.display(),
            source: e,
        };
        c.stdin(to_stdio(&stdin, false).map_err(io_err)?);
        c.stdout(to_stdio(&stdout, true).map_err(io_err)?);
        c.stderr(to_stdio(&stderr, true).map_err(io_err)?);
        let inner = c.spawn().map_err(|e| self.spawn_error(e))?;
        let pgid = inner.id() as i32;
        tracing::debug!(pid = pgid, argv = %self.display(), "spawned");
        Ok(Child {
            inner,
            argv: self.display(),
            grace: self.grace,
            status: None,
            detached: false,
            _reg: GroupRegistration::new(pgid),
        })
    }

    /// Runs to completion, streaming output lines to `reporter`.
    pub fn run(&self, reporter: &dyn Reporter) -> Result<Output, ExecError> {
        let start = Instant::now();
        let argv = self.display();
        let io_err = |e| ExecError::Io {
            argv: argv.clone(),
            source: e,
        };
        let mut log = match &self.log_file {
            Some(p) => Some(
                File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(io_err)?,
            ),
            None => None,
        };
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

        let mut out = Collected::new(self.tail_lines);
        let deadline = self.timeout.map(|t| start + t);
        let mut exited_at: Option<Instant> = None;
        let mut open_streams = 2;
        loop {
            match rx.recv_timeout(POLL) {
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
                if let Some(st) = child.try_wait().map_err(io_err)? {
                    child.kill_group(Signal::SIGKILL);
                    out.status = Some(st);
                    exited_at = Some(Instant::now());
                }
            }
            if let Some(t) = exited_at {
                if open_streams == 0 || t.elapsed() > PIPE_DRAIN {
                    break;
                }
                continue;
            }
            if self.cancel.is_cancelled() {
                let _ = child.terminate();
                return Err(ExecError::Interrupted { argv });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = child.terminate();
                return Err(ExecError::Timeout {
                    argv,
                    timeout: self.timeout.unwrap_or_default(),
                    tail: out.tail(),
                    log: self.log_file.clone(),
                });
            }
        }
        let status = out.status.expect("loop ends only after exit");
        let output = Output {
            status,
            tail: out.tail(),
            stdout: out.stdout,
            elapsed: start.elapsed(),
        };
        if self.check && !status.success() {
            return Err(ExecError::Failed {
                argv,
                status,
                tail: output.tail,
                log: self.log_file.clone(),
            });
        }
        Ok(output)
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

fn to_stdio(io: &Io, write: bool) -> io::Result<Stdio> {
    Ok(match io {
        Io::Null => Stdio::null(),
        Io::Inherit => Stdio::inherit(),
        Io::Piped => Stdio::piped(),
        Io::File(p) if write => File::options().create(true).append(true).open(p)?.into(),
        Io::File(p) => File::open(p)?.into(),
    })
}

/// A running child in its own process group. Dropping it stops the whole group
/// (SIGTERM, grace period, SIGKILL) unless it was [`Child::detach`]ed.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    argv: String,
    grace: Duration,
    status: Option<ExitStatus>,
    detached: bool,
    _reg: GroupRegistration,
}

impl Child {
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    pub fn argv(&self) -> &str {
        &self.argv
    }

    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.inner.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// The exit status if the child has exited (reaps it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.inner.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits for exit until `deadline`, returning `None` if it passed or `cancel` was set.
    pub fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        cancel: &CancelToken,
    ) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if cancel.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `sig` to the child's whole process group (errors such as "no such
    /// group" are ignored: the group is already gone).
    pub fn kill_group(&self, sig: Signal) {
        let _ = killpg(Pid::from_raw(self.inner.id() as i32), sig);
    }

    /// Stops the group politely, then forcefully after the grace period, and reaps the child.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.try_wait()? {
            self.kill_group(Signal::SIGKILL);
            return Ok(st);
        }
        self.kill_group(Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Some(st) = self.try_wait()? {
                self.kill_group(Signal::SIGKILL);
                return Ok(st);
            }
            std::thread::sleep(POLL);
        }
        tracing::debug!(argv = %self.argv, "grace period over, sending SIGKILL");
        self.kill_group(Signal::SIGKILL);
        let st = self.inner.wait()?;
        self.status = Some(st);
        Ok(st)
    }

    /// Leaves the child running after the guard is gone (for `--daemonize`).
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.detached {
            let _ = self.terminate();
        }
    }
}

/// Whether `program` can be found in PATH (or is an existing path).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(OsStr::new("abc-1.2")), "abc-1.2");
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
    }

    #[test]
    fn display_joins_quoted_argv() {
        let c = Cmd::new("sh").args(["-c", "echo hi"]);
        assert_eq!(c.display(), "sh -c 'echo hi'");
    }

    #[test]
    fn status_descriptions() {
        assert_eq!(
            describe_status(&ExitStatus::from_raw(2 << 8)),
            "exited with status 2"
        );
        assert_eq!(
            describe_status(&ExitStatus::from_raw(9)),
            "was killed by signal 9 (SIGKILL)"
        );
    }

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
