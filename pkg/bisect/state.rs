//! A bisection's state and log, kept in the kernel's tree beside lvh's
//! other state (`.lvh/`, which git ignores): `bisect.json` (the revisions,
//! the command and every step so far, rewritten atomically after each step,
//! so Ctrl-C loses at most the step under way) and `bisect.log` (one line per
//! step, appended), with each step's command output and console log in
//! `bisect/`. None of them is written through a symlink: a `.lvh`, a
//! `bisect/` or a file there that is one is refused, naming it (a tree may
//! come from anywhere).

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

/// What a refused state directory is.
const REFUSED: &str = "cannot keep the bisection's state in";

/// `dir`, made when absent and refused when it is a symlink or not a
/// directory.
fn ready_dir(dir: PathBuf) -> Result<PathBuf, BisectError> {
    crate::fsutil::real_dir(&dir).map_err(|e| BisectError::io(REFUSED, &dir, e))?;
    Ok(dir)
}

/// Refuses `path` if it is a symlink, saying what lvh was about to do.
fn no_symlink(path: &Path, what: &str) -> Result<(), BisectError> {
    crate::fsutil::not_a_symlink(path).map_err(|e| BisectError::io(what, path, e))
}

/// `<tree>/.lvh/`, made ready ([`ready_dir`]).
fn own_dir(tree: &Path) -> Result<PathBuf, BisectError> {
    ready_dir(crate::kernels::layout::state_dir(tree))
}

/// [`steps_dir`], made ready as `.lvh` is ([`own_dir`]).
pub fn make_steps_dir(tree: &Path) -> Result<PathBuf, BisectError> {
    own_dir(tree)?;
    ready_dir(steps_dir(tree))
}

/// Refuses a step's file (its output or console log) that is a symlink.
pub fn check_step_file(f: &Path) -> Result<(), BisectError> {
    no_symlink(f, "refusing to write")
}

/// The saved state, if there is one.
pub fn load(tree: &Path) -> Result<Option<State>, BisectError> {
    no_symlink(&crate::kernels::layout::state_dir(tree), REFUSED)?;
    let f = state_file(tree);
    no_symlink(&f, "refusing to read")?;
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
    own_dir(tree)?;
    let f = state_file(tree);
    no_symlink(&f, "refusing to write")?;
    let mut text = serde_json::to_vec_pretty(s).expect("state serializes");
    text.push(b'\n');
    crate::fsutil::write_atomic(&f, &text).map_err(|e| BisectError::io("failed to write", &f, e))
}

pub fn remove(tree: &Path) -> Result<(), BisectError> {
    no_symlink(&crate::kernels::layout::state_dir(tree), REFUSED)?;
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
    own_dir(tree)?;
    let f = log_file(tree);
    let mut file =
        crate::fsutil::open_append(&f).map_err(|e| BisectError::io("failed to open", &f, e))?;
    let fresh = file
        .metadata()
        .map_err(|e| BisectError::io("failed to open", &f, e))?
        .len()
        == 0;
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

    /// A bisection of `k` from g to b with these candidates and steps.
    fn state(candidates: Vec<Commit>, steps: Vec<Step>) -> State {
        State {
            format: FORMAT,
            kernel: "k".into(),
            good: c("g"),
            bad: c("b"),
            restore: "lvh-k".into(),
            command: vec!["true".into()],
            bad_on: BadOn::Any,
            image: "/i".into(),
            candidates,
            steps,
            done: false,
        }
    }

    #[test]
    fn marks_come_from_the_latest_step_and_the_state_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let s = state(
            vec![c("1"), c("2"), c("b")],
            vec![step("2", Mark::Skip), step("2", Mark::Good)],
        );
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

    /// Each place the bisection writes, planted with a symlink to a file or
    /// directory elsewhere: refused with the path named, the target as it was.
    #[test]
    fn nothing_is_written_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let keep = elsewhere.join("keep");
        std::fs::write(&keep, "keep\n").unwrap();
        let s = state(vec![c("b")], vec![]);
        let refused = |e: BisectError, path: &Path| {
            let msg = crate::error::error_chain(&e);
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("symbolic link"),
                "{msg}"
            );
        };
        // `.lvh` itself.
        let lvh = tree.join(".lvh");
        std::os::unix::fs::symlink(&elsewhere, &lvh).unwrap();
        refused(save(&tree, &s).unwrap_err(), &lvh);
        refused(append_log(&tree, "x").unwrap_err(), &lvh);
        refused(make_steps_dir(&tree).unwrap_err(), &lvh);
        refused(load(&tree).unwrap_err(), &lvh);
        refused(remove(&tree).unwrap_err(), &lvh);
        std::fs::remove_file(&lvh).unwrap();
        // The files in it, and the steps' directory.
        std::fs::create_dir(&lvh).unwrap();
        for f in [state_file(&tree), log_file(&tree), steps_dir(&tree)] {
            std::os::unix::fs::symlink(&keep, &f).unwrap();
        }
        refused(save(&tree, &s).unwrap_err(), &state_file(&tree));
        refused(load(&tree).unwrap_err(), &state_file(&tree));
        refused(append_log(&tree, "x").unwrap_err(), &log_file(&tree));
        refused(make_steps_dir(&tree).unwrap_err(), &steps_dir(&tree));
        std::fs::remove_file(steps_dir(&tree)).unwrap();
        let out = make_steps_dir(&tree).unwrap().join("01-b.console.log");
        std::os::unix::fs::symlink(&keep, &out).unwrap();
        refused(check_step_file(&out).unwrap_err(), &out);
        assert_eq!(std::fs::read_to_string(&keep).unwrap(), "keep\n");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
        // Without the links, the same calls write.
        for f in [state_file(&tree), log_file(&tree)] {
            std::fs::remove_file(f).unwrap();
        }
        save(&tree, &s).unwrap();
        append_log(&tree, "one\n").unwrap();
        append_log(&tree, "two\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(log_file(&tree)).unwrap(),
            format!("{LOG_HEADER}one\ntwo\n")
        );
        assert_eq!(load(&tree).unwrap(), Some(s));
    }
}
