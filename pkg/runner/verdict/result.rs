//! `lvh run --result-json FILE`: what a run ended with, for a CI to read
//! without parsing stderr. The verdict is a pure function of the outcome;
//! the file is written atomically (a reader never sees half of it). The
//! schema is documented in docs/run.md ("Result file").

use std::path::Path;

use serde::Serialize;

use super::outcome::{Outcome, RunFacts};
use super::splat::SplatKind;
use crate::error::HasExitCode;
use crate::runner::error::RunError;

/// The version of the result file's schema; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// How the run ended, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultVerdict {
    /// The command exited 0 and no splat failed the run.
    Passed,
    /// The command exited non-zero.
    Failed,
    /// A kernel splat or panic failed the run (exit code 245 or 241).
    Splat,
    /// The command did not finish within `--timeout` (244).
    Timeout,
    /// The guest never started the command (242).
    BootFailure,
    /// lvh or QEMU failed around the guest (240, 243, 3).
    InfrastructureFailure,
    /// Ctrl-C or SIGTERM (130).
    Interrupted,
}

/// The verdict for a run's outcome.
pub fn verdict_of(result: &Result<Outcome, RunError>) -> ResultVerdict {
    match result {
        Ok(Outcome::Command(0) | Outcome::Exited(0) | Outcome::Daemonized { .. }) => {
            ResultVerdict::Passed
        }
        Ok(Outcome::Command(_) | Outcome::Exited(_)) => ResultVerdict::Failed,
        Err(RunError::Splat { .. } | RunError::KernelPanic { .. }) => ResultVerdict::Splat,
        Err(RunError::CommandTimeout(..)) => ResultVerdict::Timeout,
        Err(RunError::NoSignOfLife { .. } | RunError::NotStarted { .. }) => {
            ResultVerdict::BootFailure
        }
        Err(RunError::Interrupted) => ResultVerdict::Interrupted,
        Err(RunError::Exec(e)) if e.exit_code() == crate::error::ExitCode::Interrupted => {
            ResultVerdict::Interrupted
        }
        Err(_) => ResultVerdict::InfrastructureFailure,
    }
}

/// The exit code lvh returns for a run's outcome.
pub fn exit_code_of(result: &Result<Outcome, RunError>) -> i32 {
    match result {
        Ok(Outcome::Command(c) | Outcome::Exited(c)) => c & 0xff,
        Ok(Outcome::Daemonized { .. }) => 0,
        Err(e) => e.exit_code().code(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowedBy {
    /// 1-based entry of the `--splat-allow` file.
    pub entry: usize,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultSplat {
    /// `WARNING in lkdtm_WARNING`: the title `lvh triage` gives the report.
    pub title: String,
    pub kind: SplatKind,
    /// The report's fingerprint, as `lvh triage` gives it.
    pub fingerprint: String,
    pub function: Option<String>,
    pub first_line: String,
    pub lines: Vec<String>,
    /// The allowlist entry that covers it, if any.
    pub allowed_by: Option<AllowedBy>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub before: u64,
    pub after: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// From the kernel's `Linux version` banner on the console.
    pub release: Option<String>,
    pub cmdline: Option<String>,
}

/// The result file's content.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunResult {
    pub schema_version: u32,
    pub verdict: ResultVerdict,
    /// The code lvh exits with.
    pub exit_code: i32,
    /// The guest command's own exit status, when it ended.
    pub command_status: Option<i32>,
    /// lvh's error message, when the run did not end with the command's status.
    pub error: Option<String>,
    pub boot_seconds: Option<f64>,
    pub command_seconds: Option<f64>,
    pub splats: Vec<ResultSplat>,
    pub taint: Option<Taint>,
    pub kernel: Kernel,
    pub console_log: Option<String>,
}

impl RunResult {
    pub fn new(result: &Result<Outcome, RunError>, facts: &RunFacts) -> RunResult {
        let command_status = match result {
            Ok(Outcome::Command(c)) => Some(*c),
            Err(RunError::Splat { command_status, .. }) => *command_status,
            _ => None,
        };
        let round = |d: std::time::Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        RunResult {
            schema_version: SCHEMA_VERSION,
            verdict: verdict_of(result),
            exit_code: exit_code_of(result),
            command_status,
            error: result.as_ref().err().map(|e| crate::error::error_chain(e)),
            boot_seconds: facts.boot_time.map(round),
            command_seconds: facts.command_time.map(round),
            splats: facts
                .splats
                .iter()
                .map(|s| ResultSplat {
                    title: s.splat.title.clone(),
                    kind: s.splat.kind,
                    fingerprint: s.splat.fingerprint.clone(),
                    function: s.splat.function.clone(),
                    first_line: s.splat.first_line.clone(),
                    lines: s.splat.lines.clone(),
                    allowed_by: s.allowed.as_ref().map(|(entry, reason)| AllowedBy {
                        entry: *entry,
                        reason: reason.clone(),
                    }),
                })
                .collect(),
            taint: facts.taint.map(|(before, after)| Taint { before, after }),
            kernel: Kernel {
                release: facts.kernel_release.clone(),
                cmdline: facts.cmdline.clone(),
            },
            console_log: facts
                .console_log
                .as_deref()
                .map(|p| p.display().to_string()),
        }
    }

    /// Writes the result to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), RunError> {
        let mut text = serde_json::to_vec_pretty(self).expect("a result serializes");
        text.push(b'\n');
        crate::fsutil::write_atomic(path, &text)
            .map_err(|e| RunError::io(format!("write the result file {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::splat::Splat;
    use super::*;
    use crate::runner::verdict::SeenSplat;
    use std::time::Duration;

    fn facts() -> RunFacts {
        RunFacts {
            boot_time: Some(Duration::from_millis(2345)),
            command_time: Some(Duration::from_micros(500_400)),
            splats: vec![SeenSplat {
                splat: Splat {
                    kind: SplatKind::Report(crate::triage::Kind::Warning),
                    title: "WARNING in lkdtm_WARNING".into(),
                    fingerprint: "4cda48a19d14d057".into(),
                    function: Some("lkdtm_WARNING".into()),
                    first_line: "WARNING: x".into(),
                    lines: vec!["WARNING: x".into(), "Call Trace:".into()],
                },
                allowed: Some((2, "known".into())),
            }],
            taint: Some((0, 512)),
            kernel_release: Some("6.12.57".into()),
            cmdline: Some("root=/dev/vda".into()),
            console_log: Some("/tmp/r.json.console.log".into()),
        }
    }

    #[test]
    fn one_verdict_per_outcome() {
        let d = Duration::from_secs(1);
        let cases: Vec<(Result<Outcome, RunError>, ResultVerdict, i32)> = vec![
            (Ok(Outcome::Command(0)), ResultVerdict::Passed, 0),
            (Ok(Outcome::Command(3)), ResultVerdict::Failed, 3),
            (Ok(Outcome::Command(256 + 7)), ResultVerdict::Failed, 7),
            (
                Err(RunError::Splat {
                    splats: vec![],
                    command_status: Some(0),
                }),
                ResultVerdict::Splat,
                245,
            ),
            (
                Err(RunError::KernelPanic {
                    line: "p".into(),
                    console: vec![],
                }),
                ResultVerdict::Splat,
                241,
            ),
            (
                Err(RunError::CommandTimeout(d, vec![])),
                ResultVerdict::Timeout,
                244,
            ),
            (
                Err(RunError::NotStarted {
                    after: d,
                    console: vec![],
                }),
                ResultVerdict::BootFailure,
                242,
            ),
            (
                Err(RunError::QemuExited {
                    status: "s".into(),
                    console: vec![],
                    stderr: vec![],
                }),
                ResultVerdict::InfrastructureFailure,
                243,
            ),
            (
                Err(RunError::Guest("g".into())),
                ResultVerdict::InfrastructureFailure,
                240,
            ),
            (
                Err(RunError::DaemonDied {
                    what: "virtiofsd".into(),
                    status: "s".into(),
                    stderr: vec![],
                    console: vec![],
                }),
                ResultVerdict::InfrastructureFailure,
                240,
            ),
            (Err(RunError::Interrupted), ResultVerdict::Interrupted, 130),
        ];
        for (r, verdict, code) in cases {
            assert_eq!(verdict_of(&r), verdict, "{r:?}");
            assert_eq!(exit_code_of(&r), code, "{r:?}");
        }
    }

    #[test]
    fn the_file_has_the_documented_fields() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        let r = RunResult::new(
            &Err(RunError::Splat {
                splats: vec![],
                command_status: Some(1),
            }),
            &facts(),
        );
        r.write(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["verdict"], "splat");
        assert_eq!(v["exit_code"], 245);
        assert_eq!(v["command_status"], 1);
        assert!(v["error"].as_str().unwrap().starts_with("kernel splat"));
        assert_eq!(v["boot_seconds"], 2.345);
        assert_eq!(v["command_seconds"], 0.5);
        assert_eq!(v["splats"][0]["kind"], "warning");
        assert_eq!(v["splats"][0]["function"], "lkdtm_WARNING");
        assert_eq!(v["splats"][0]["title"], "WARNING in lkdtm_WARNING");
        assert_eq!(v["splats"][0]["fingerprint"], "4cda48a19d14d057");
        assert_eq!(v["splats"][0]["lines"][1], "Call Trace:");
        assert_eq!(v["splats"][0]["allowed_by"]["entry"], 2);
        assert_eq!(v["taint"]["after"], 512);
        assert_eq!(v["kernel"]["release"], "6.12.57");
        assert_eq!(v["kernel"]["cmdline"], "root=/dev/vda");
        assert_eq!(v["console_log"], "/tmp/r.json.console.log");
        // Nothing else is left in the directory (atomic write).
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);

        let passed = RunResult::new(&Ok(Outcome::Command(0)), &RunFacts::default());
        let v = serde_json::to_value(&passed).unwrap();
        assert_eq!(v["verdict"], "passed");
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(v["splats"], serde_json::json!([]));
    }
}
