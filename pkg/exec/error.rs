//! How a child process failed: [`ExecError`], whose every variant names the
//! command line, and the wording of exit statuses and output tails in it.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{ExitCode, HasExitCode};

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
