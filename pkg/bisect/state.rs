//! A bisection's state and log, kept in the kernel's tree beside lvh's
//! other state (`.lvh/`, which git ignores): `bisect.json` (the revisions,
//! the command and every step so far, rewritten atomically after each step,
//! so Ctrl-C loses at most the step under way) and `bisect.log` (one line per
//! step, appended), with each step's command output and console log in
//! `bisect/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::decide::{BadOn, Mark};
use super::error::BisectError;
use super::git::Commit;

/// The state file's format version.
pub const FORMAT: u32 = 1;

/// One tested commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub commit: String,
    pub subject: String,
    pub mark: Mark,
    pub reason: String,
    /// The title of the crash that marked it bad, if one did.
    pub title: Option<String>,
    pub build_seconds: f64,
    /// `None` when it was not run (its build failed).
    pub run_seconds: Option<f64>,
    /// The command's output and the console log of the run.
    pub output: Option<PathBuf>,
    pub console_log: Option<PathBuf>,
}

/// A bisection in progress (or finished, until the next one starts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub kernel: String,
    pub good: Commit,
    pub bad: Commit,
    /// What HEAD was before the bisection (a branch or a commit), restored at its end.
    pub restore: String,
    pub command: Vec<String>,
    pub bad_on: BadOn,
    pub image: PathBuf,
    /// The commits after good up to bad, oldest first.
    pub candidates: Vec<Commit>,
    pub steps: Vec<Step>,
    /// Whether it ended (the tree is back at `restore`).
    pub done: bool,
}

impl State {
    /// The mark of each candidate, from its latest step.
    pub fn marks(&self) -> Vec<Option<Mark>> {
        self.candidates
            .iter()
            .map(|c| {
                self.steps
                    .iter()
                    .rev()
                    .find(|s| s.commit == c.commit)
                    .map(|s| s.mark)
            })
            .collect()
    }

    /// Whether a new request asks for this same bisection.
    pub fn same_as(&self, kernel: &str, good: &str, bad: &str, cmd: &[String], on: BadOn) -> bool {
        self.kernel == kernel
            && self.good.commit == good
            && self.bad.commit == bad
            && self.command == cmd
            && self.bad_on == on
    }

    /// The step that marked `commit`, if any.
    pub fn step_of(&self, commit: &str) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.commit == commit)
    }
}

/// `<tree>/.lvh/bisect.json`.
pub fn state_file(tree: &Path) -> PathBuf {
    crate::kernels::layout::state_dir(tree).join("bisect.json")
}

/// `<tree>/.lvh/bisect.log`.
pub fn log_file(tree: &Path) -> PathBuf {
    crate::kernels::layout::state_dir(tree).join("bisect.log")
}

/// `<tree>/.lvh/bisect/`: each step's output and console log.
pub fn steps_dir(tree: &Path) -> PathBuf {
    crate::kernels::layout::state_dir(tree).join("bisect")
}

/// The saved state, if there is one.
pub fn load(tree: &Path) -> Result<Option<State>, BisectError> {
    let f = state_file(tree);
    let text = match std::fs::read(&f) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BisectError::io("failed to read", &f, e)),
    };
    let s: State = serde_json::from_slice(&text).map_err(|e| {
        BisectError::Other(format!(
            "{}: {e} (remove it, or run with --reset, to start again)",
            f.display()
        ))
    })?;
    if s.format != FORMAT {
        return Err(BisectError::Other(format!(
            "{}: format {} is not {FORMAT} (run with --reset to start again)",
            f.display(),
            s.format
        )));
    }
    Ok(Some(s))
}

pub fn save(tree: &Path, s: &State) -> Result<(), BisectError> {
    let f = state_file(tree);
    let mut text = serde_json::to_vec_pretty(s).expect("state serializes");
    text.push(b'\n');
    crate::fsutil::write_atomic(&f, &text).map_err(|e| BisectError::io("failed to write", &f, e))
}

pub fn remove(tree: &Path) -> Result<(), BisectError> {
    let f = state_file(tree);
    match std::fs::remove_file(&f) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BisectError::io("failed to remove", &f, e))
        }
        _ => Ok(()),
    }
}

/// One log line for a step (tab-separated, as the header names).
pub fn log_line(n: usize, s: &Step, at: &str) -> String {
    let run = s.run_seconds.map_or("-".to_string(), |r| format!("{r:.1}"));
    format!(
        "{at}\t{n}\t{}\t{}\t{:.1}\t{run}\t{}\t{}\n",
        s.commit,
        s.mark,
        s.build_seconds,
        s.reason.replace(['\t', '\n'], " "),
        s.subject
    )
}

/// The log's header line.
pub const LOG_HEADER: &str = "time\tstep\tcommit\tmark\tbuild_s\trun_s\treason\tsubject\n";

/// Appends `text` to the log (with the header when the log is new).
pub fn append_log(tree: &Path, text: &str) -> Result<(), BisectError> {
    let f = log_file(tree);
    let fresh = !f.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&f)
        .map_err(|e| BisectError::io("failed to open", &f, e))?;
    if fresh {
        file.write_all(LOG_HEADER.as_bytes())
            .map_err(|e| BisectError::io("failed to write", &f, e))?;
    }
    file.write_all(text.as_bytes())
        .map_err(|e| BisectError::io("failed to write", &f, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str) -> Commit {
        Commit {
            commit: id.into(),
            subject: format!("subject {id}"),
        }
    }

    fn step(id: &str, mark: Mark) -> Step {
        Step {
            commit: id.into(),
            subject: String::new(),
            mark,
            reason: "r\tx".into(),
            title: None,
            build_seconds: 1.25,
            run_seconds: None,
            output: None,
            console_log: None,
        }
    }

    #[test]
    fn marks_come_from_the_latest_step_and_the_state_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let s = State {
            format: FORMAT,
            kernel: "k".into(),
            good: c("g"),
            bad: c("b"),
            restore: "lvh-k".into(),
            command: vec!["true".into()],
            bad_on: BadOn::Any,
            image: "/i".into(),
            candidates: vec![c("1"), c("2"), c("b")],
            steps: vec![step("2", Mark::Skip), step("2", Mark::Good)],
            done: false,
        };
        assert_eq!(s.marks(), [None, Some(Mark::Good), None]);
        assert!(s.same_as("k", "g", "b", &["true".into()], BadOn::Any));
        assert!(!s.same_as("k", "g", "b", &["true".into()], BadOn::Exit));
        std::fs::create_dir_all(d.path().join(".lvh")).unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
        save(d.path(), &s).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(s));
        std::fs::write(state_file(d.path()), "{").unwrap();
        assert!(load(d.path()).unwrap_err().to_string().contains("--reset"));
        assert_eq!(
            log_line(1, &step("2", Mark::Skip), "T"),
            "T\t1\t2\tskip\t1.2\t-\tr x\t\n"
        );
    }
}
