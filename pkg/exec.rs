//! The one way lvh runs external programs.
//!
//! Every child gets its own process group, its output lines are forwarded to the
//! reporter (and optionally a log file), the last lines of stderr are kept for the
//! error, a deadline and Ctrl-C both stop it, and a [`Child`] guard that is dropped
//! SIGTERMs the whole group, waits a grace period and then SIGKILLs it. Errors name
//! the argv, how the child ended and the stderr tail.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::cancel::{CancelToken, GroupRegistration};
use crate::progress::StageId;

mod child;
mod error;
mod run;
pub mod sentinel;

pub use child::Child;
use child::POLL;
pub use error::{describe_status, ExecError};

/// How long a child gets between SIGTERM and SIGKILL unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// How many stderr lines an error keeps unless told otherwise.
pub const DEFAULT_TAIL_LINES: usize = 20;
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
    user: Option<(u32, u32)>,
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
            user: None,
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
    /// Runs the child as this user and group, without supplementary
    /// groups (a root lvh lowering a helper's privileges).
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

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
        if let Some((uid, gid)) = self.user {
            // std drops the supplementary groups when root sets the uid.
            c.uid(uid).gid(gid);
        }
        // The death signal is set after the user changes (std's order), which
        // would otherwise clear it.
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
    use std::os::unix::process::ExitStatusExt;

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
}
