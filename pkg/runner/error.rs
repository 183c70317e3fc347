//! Everything that can go wrong around the guest, and the exit code each
//! failure deserves (decided here, where the failures are named; the binary
//! only asks [`HasExitCode`]).

use std::path::PathBuf;
use std::time::Duration;

use super::verdict::splat;
use crate::error::{ExitCode, HasExitCode, InvalidInput};

/// How many console lines an error shows.
pub const CONSOLE_TAIL_LINES: usize = 25;

/// Everything that can go wrong around the guest. Each variant has its own
/// exit code (see the README) so scripts can tell them from the command's.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag, a test file's field or a saved state is wrong; nothing ran.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0}")]
    Setup(String),
    #[error("failed to {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error("QEMU could not start: `{argv}` {status}{}", fmt_lines("QEMU said", .stderr))]
    QemuFailed {
        argv: String,
        status: String,
        stderr: Vec<String>,
    },
    #[error("the guest kernel panicked: {line}{}", fmt_lines("last console lines", .console))]
    KernelPanic { line: String, console: Vec<String> },
    #[error("the guest showed no sign of life within {}s ({accel}): no console output at all; {hint}{}", .after.as_secs(), fmt_lines("QEMU said", .stderr))]
    NoSignOfLife {
        after: Duration,
        accel: String,
        hint: String,
        stderr: Vec<String>,
    },
    #[error("the guest booted but did not start the command within {}s{}", .after.as_secs(), fmt_lines("last console lines", .console))]
    NotStarted {
        after: Duration,
        console: Vec<String>,
    },
    #[error("QEMU exited ({status}) before the guest command finished{}{}", fmt_lines("last console lines", .console), fmt_lines("QEMU said", .stderr))]
    QemuExited {
        status: String,
        console: Vec<String>,
        stderr: Vec<String>,
    },
    /// A helper daemon of the run (virtiofsd) exited while the VM ran.
    #[error("{what} {status} while the VM ran: the guest lost its host mount and the VM was stopped{}{}", fmt_lines("virtiofsd said", .stderr), fmt_lines("last console lines", .console))]
    DaemonDied {
        /// The daemon, its pid and what it served.
        what: String,
        status: String,
        stderr: Vec<String>,
        console: Vec<String>,
    },
    #[error("the guest could not run the command: {0}")]
    Guest(String),
    #[error("{}", fmt_splats(.splats, .command_status))]
    Splat {
        /// The splats that failed the run, in order.
        splats: Vec<splat::Splat>,
        /// The command's own exit status, when it ended.
        command_status: Option<i32>,
    },
    /// The deadline, and the last console lines (what a hung guest said last).
    #[error("the guest command did not finish within {}s and the VM was stopped{}", .0.as_secs(), fmt_lines("last console lines", .1))]
    CommandTimeout(Duration, Vec<String>),
    #[error("the guest command ended but its {stream} stopped at {got} of {want} bytes")]
    Incomplete {
        stream: &'static str,
        got: u64,
        want: u64,
    },
    #[error("ssh did not answer on 127.0.0.1:{port} within {}s{}", .after.as_secs(), fmt_log(.console_log))]
    SshTimeout {
        port: u16,
        after: Duration,
        console_log: Option<PathBuf>,
    },
    #[error("interrupted: the VM was stopped and its overlay removed")]
    Interrupted,
}

fn fmt_lines(title: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = format!("\n  {title}:");
    for l in lines {
        s.push_str("\n    ");
        s.push_str(l);
    }
    s
}

/// The first line names the first splat's kind and function; every splat's
/// title, fingerprint and whole trace follow.
fn fmt_splats(splats: &[splat::Splat], status: &Option<i32>) -> String {
    let Some(first) = splats.first() else {
        return "kernel splat".into();
    };
    let mut s = format!("kernel splat: {}", first.summary());
    if splats.len() > 1 {
        s.push_str(&format!(" (and {} more)", splats.len() - 1));
    }
    match status {
        Some(c) => s.push_str(&format!(" (the command exited with {c})")),
        None => s.push_str(" (the VM was stopped: the command could not finish)"),
    }
    for sp in splats {
        s.push_str(&fmt_lines(&sp.headline(), &sp.lines));
    }
    s
}

fn fmt_log(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!(" (console log: {})", p.display()),
        None => " (use --console-log-file to see the console)".into(),
    }
}

impl RunError {
    /// A bad value of a flag or field: `--cpu "0": expected 1 or more`.
    pub(crate) fn invalid(
        field: &str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> RunError {
        RunError::Invalid(InvalidInput::value(field, value.to_string(), reason))
    }

    /// A flag that cannot be used as given: `--daemonize: cannot be combined with ...`.
    pub(crate) fn refused(field: &str, reason: impl Into<String>) -> RunError {
        RunError::Invalid(InvalidInput::field(field, reason))
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> RunError {
        RunError::Io {
            what: what.into(),
            source,
        }
    }
}

impl HasExitCode for RunError {
    fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Invalid(_) => ExitCode::InvalidInput,
            RunError::KernelPanic { .. } => ExitCode::KernelPanic,
            RunError::Splat { .. } => ExitCode::KernelSplat,
            RunError::NoSignOfLife { .. }
            | RunError::NotStarted { .. }
            | RunError::SshTimeout { .. } => ExitCode::NoSignOfLife,
            RunError::QemuExited { .. } => ExitCode::QemuExited,
            RunError::CommandTimeout(..) => ExitCode::CommandTimeout,
            RunError::Interrupted => ExitCode::Interrupted,
            RunError::Exec(e) => match e.exit_code() {
                ExitCode::Interrupted => ExitCode::Interrupted,
                _ => ExitCode::RunError,
            },
            RunError::Setup(_)
            | RunError::Io { .. }
            | RunError::QemuFailed { .. }
            | RunError::DaemonDied { .. }
            | RunError::Guest(_)
            | RunError::Incomplete { .. } => ExitCode::RunError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_own_code() {
        let d = Duration::from_secs(1);
        let cases = [
            (RunError::Invalid(InvalidInput::value("--cpu", "0", "x")), 3),
            (
                RunError::KernelPanic {
                    line: "p".into(),
                    console: vec![],
                },
                241,
            ),
            (
                RunError::NoSignOfLife {
                    after: d,
                    accel: "kvm".into(),
                    hint: "h".into(),
                    stderr: vec![],
                },
                242,
            ),
            (
                RunError::NotStarted {
                    after: d,
                    console: vec![],
                },
                242,
            ),
            (
                RunError::QemuExited {
                    status: "s".into(),
                    console: vec![],
                    stderr: vec![],
                },
                243,
            ),
            (RunError::CommandTimeout(d, vec![]), 244),
            (
                RunError::Splat {
                    splats: vec![],
                    command_status: Some(0),
                },
                245,
            ),
            (RunError::Guest("g".into()), 240),
            (
                RunError::DaemonDied {
                    what: "virtiofsd".into(),
                    status: "s".into(),
                    stderr: vec![],
                    console: vec![],
                },
                240,
            ),
            (RunError::Interrupted, 130),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code().code(), code, "{e}");
        }
    }

    #[test]
    fn errors_show_the_console_tail() {
        let e = RunError::KernelPanic {
            line: "Kernel panic - not syncing: VFS".into(),
            console: vec!["a".into(), "b".into()],
        };
        let s = e.to_string();
        assert!(s.contains("last console lines:\n    a\n    b"), "{s}");
        let e = RunError::DaemonDied {
            what: "virtiofsd (pid 7, serving --host-mount /src)".into(),
            status: "was killed by signal 9 (SIGKILL)".into(),
            stderr: vec!["oops".into()],
            console: vec!["c".into()],
        };
        assert_eq!(
            e.to_string(),
            "virtiofsd (pid 7, serving --host-mount /src) was killed by signal 9 (SIGKILL) \
             while the VM ran: the guest lost its host mount and the VM was stopped\
             \n  virtiofsd said:\n    oops\n  last console lines:\n    c"
        );
    }
}
