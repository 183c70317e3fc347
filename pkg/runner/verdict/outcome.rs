//! How a run ended when it did not fail ([`Outcome`]), and what a
//! command-mode run found on the way ([`RunFacts`]): together a
//! [`RunReport`], the runner's answer for `--result-json` and `lvh test`.

use std::path::PathBuf;
use std::time::Duration;

use super::SeenSplat;
use crate::runner::error::RunError;

/// How a run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest command exited with this code.
    Command(i32),
    /// QEMU ran in the foreground and exited with this status.
    Exited(i32),
    /// QEMU daemonized with this pid (and ssh answered, if asked).
    Daemonized { pid: u32 },
}

/// What a command-mode run found besides its outcome: for `--result-json`.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// From QEMU's start to the command's start.
    pub boot_time: Option<Duration>,
    pub command_time: Option<Duration>,
    pub splats: Vec<SeenSplat>,
    pub taint: Option<(u64, u64)>,
    pub kernel_release: Option<String>,
    pub cmdline: Option<String>,
    pub console_log: Option<PathBuf>,
}

/// A run's outcome and what it found.
#[derive(Debug)]
pub struct RunReport {
    pub result: Result<Outcome, RunError>,
    pub facts: RunFacts,
}
