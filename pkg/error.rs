//! The exit codes lvh returns, named once and documented in the README; the
//! trait by which an error says which code it deserves ([`HasExitCode`],
//! implemented by each subsystem for its own errors, where the failures are
//! decided); and the one structured invalid-input error ([`InvalidInput`]:
//! file, field, value and reason) that every subsystem uses for bad input.
//! This module knows no subsystem: the binary, which knows them all, asks
//! each error of a chain for its code.

use std::path::PathBuf;

/// Every exit code lvh itself uses. In `lvh run` command mode the guest
/// command's own exit code is returned as is; lvh's own failures there use the
/// 24x range so they cannot be mistaken for the command's 1, 2, 126, 127 or 128+N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for was done.
    Success,
    /// lvh failed; stderr says what and why.
    Failure,
    /// Bad command-line usage (unknown flag, missing argument).
    Usage,
    /// Invalid input: a config file, path or value is wrong; nothing was changed.
    InvalidInput,
    /// Some of the work failed and the rest was done (e.g. some images built).
    Partial,
    /// Interrupted by Ctrl-C / SIGTERM; children stopped and temporary files removed.
    Interrupted,
    /// `lvh run`: lvh failed around the guest (bad input, QEMU could not start, ...).
    RunError,
    /// `lvh run`: the guest kernel panicked.
    KernelPanic,
    /// `lvh run`: the guest showed no sign of life before the boot deadline.
    NoSignOfLife,
    /// `lvh run`: QEMU exited before the guest command finished.
    QemuExited,
    /// `lvh run`: the guest command did not finish before `--timeout`.
    CommandTimeout,
    /// `lvh run`: the guest kernel splatted (WARN, BUG, Oops, lockup, ...) or
    /// became tainted, and `--splat fail` (the default) made that a failure.
    KernelSplat,
    /// `lvh run -- CMD`: the guest command's own exit code, passed through.
    Command(u8),
}

impl ExitCode {
    pub const fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::InvalidInput => 3,
            ExitCode::Partial => 4,
            ExitCode::Interrupted => 130,
            ExitCode::RunError => 240,
            ExitCode::KernelPanic => 241,
            ExitCode::NoSignOfLife => 242,
            ExitCode::QemuExited => 243,
            ExitCode::CommandTimeout => 244,
            ExitCode::KernelSplat => 245,
            ExitCode::Command(c) => c as i32,
        }
    }

    /// All codes with a one-line meaning, for `--help` and the README.
    /// (5, once "not implemented", is reserved: every command is implemented.)
    pub const ALL: [(ExitCode, &'static str); 12] = [
        (ExitCode::Success, "success"),
        (ExitCode::Failure, "error (stderr says what failed)"),
        (ExitCode::Usage, "bad command-line usage"),
        (
            ExitCode::InvalidInput,
            "invalid input (config file, path or value); nothing changed",
        ),
        (
            ExitCode::Partial,
            "part of the work failed, the rest was done",
        ),
        (ExitCode::Interrupted, "interrupted (Ctrl-C or SIGTERM)"),
        (ExitCode::RunError, "run: lvh failed around the guest"),
        (ExitCode::KernelPanic, "run: guest kernel panic"),
        (
            ExitCode::NoSignOfLife,
            "run: guest showed no sign of life in time",
        ),
        (
            ExitCode::QemuExited,
            "run: QEMU exited before the command finished",
        ),
        (ExitCode::CommandTimeout, "run: guest command timed out"),
        (
            ExitCode::KernelSplat,
            "run: guest kernel splat (WARN, BUG, Oops, lockup, ...) or new taint",
        ),
    ];
}

/// Errors that know which exit code they deserve.
pub trait HasExitCode {
    fn exit_code(&self) -> ExitCode;
}

/// Invalid input detected before doing anything: which file (if any), which
/// field or flag, which value, and why it is wrong.
#[derive(Debug, Default, thiserror::Error)]
pub struct InvalidInput {
    pub file: Option<PathBuf>,
    pub field: String,
    pub value: Option<String>,
    pub reason: String,
}

impl InvalidInput {
    /// A bad value of a flag or field: `--jobs "0": must be at least 1`.
    pub fn value(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        InvalidInput {
            field: field.into(),
            value: Some(value.into()),
            reason: reason.into(),
            ..Default::default()
        }
    }

    /// A flag or field that cannot be used as given (no single bad value):
    /// `--daemonize: cannot be combined with a command`.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidInput {
            field: field.into(),
            reason: reason.into(),
            ..Default::default()
        }
    }

    /// The same error, located in `file`.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.field.is_empty() {
            f.write_str(&self.field)?;
            if let Some(v) = &self.value {
                write!(f, " {v:?}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

impl HasExitCode for InvalidInput {
    fn exit_code(&self) -> ExitCode {
        ExitCode::InvalidInput
    }
}

/// An error and its `source()` chain on one line, joined by ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_names_file_field_value_and_reason() {
        let e = InvalidInput::value("--jobs", "0", "must be at least 1");
        assert_eq!(e.to_string(), "--jobs \"0\": must be at least 1");
        let e = InvalidInput {
            field: "kernels[1].url".into(),
            reason: "missing".into(),
            ..Default::default()
        }
        .in_file("d/kernels.json");
        assert_eq!(e.to_string(), "d/kernels.json: kernels[1].url: missing");
    }

    #[test]
    fn codes_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for (c, _) in ExitCode::ALL {
            assert!(seen.insert(c.code()), "duplicate code {}", c.code());
        }
    }

    #[test]
    fn run_codes_stay_clear_of_common_command_codes() {
        for c in [
            ExitCode::RunError,
            ExitCode::KernelPanic,
            ExitCode::NoSignOfLife,
            ExitCode::QemuExited,
            ExitCode::CommandTimeout,
            ExitCode::KernelSplat,
        ] {
            assert!((240..=250).contains(&c.code()));
        }
    }
}
