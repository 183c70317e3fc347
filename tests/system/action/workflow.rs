//! action.yaml run as GitHub's runner runs a composite action, for the tests:
//! its steps in order, each `if:` evaluated, each `env:` value's `${{ ... }}`
//! expressions filled from the inputs (action.yaml's defaults, then the test's),
//! earlier steps' outputs and the github/runner contexts, each `run:` with bash
//! (`--noprofile --norc -eo pipefail`) in a clean environment. `$GITHUB_OUTPUT`
//! becomes the step's outputs and `$GITHUB_PATH` lines are prepended to PATH for
//! the steps after, as the runner does. actions/cache is emulated with a folder
//! per key: a restore copies the saved paths back and sets `cache-hit`, and
//! [`Job::post`] saves the paths of the keys that missed, as its post step does.
//!
//! The parser reads only the YAML shapes action.yaml uses (block scalars are
//! not), and the evaluator only the expression forms it uses: `&&`, `||`,
//! `==`, `!=`, `!`, parentheses, 'strings' and context paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One step of action.yaml.
#[derive(Debug, Default, Clone)]
pub struct Step {
    pub name: String,
    pub id: String,
    pub cond: String,
    pub uses: String,
    pub run: String,
    pub env: Vec<(String, String)>,
    pub with: Vec<(String, String)>,
}

/// The inputs of action.yaml with their defaults ("" without one), and its steps.
pub fn parse_action() -> (BTreeMap<String, String>, Vec<Step>) {
    let yaml = std::fs::read_to_string(Path::new(REPO).join("action.yaml")).expect("action.yaml");
    let mut inputs = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut lines = yaml.lines();
    for line in lines.by_ref() {
        if line == "runs:" {
            break;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                inputs.insert(name.to_string(), String::new());
                current = Some(name.to_string());
            }
        } else if let (Some(n), Some(v)) = (&current, line.strip_prefix("    default: ")) {
            let v = v.trim_matches('\'').replace("''", "'");
            inputs.insert(n.clone(), v);
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut map: Option<&'static str> = None;
    for line in lines {
        let (indent, rest) = (line.len() - line.trim_start().len(), line.trim_start());
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let rest = if let Some(r) = rest.strip_prefix("- ") {
            steps.push(Step::default());
            map = None;
            r
        } else {
            rest
        };
        let Some(step) = steps.last_mut() else {
            continue; // `using:`, `steps:`
        };
        let (key, value) = rest.split_once(':').expect("key: value");
        let value = value.trim().to_string();
        if indent >= 8 && !line.trim_start().starts_with("- ") {
            let entry = (key.to_string(), value);
            match map {
                Some("env") => step.env.push(entry),
                Some("with") => step.with.push(entry),
                _ => panic!("action.yaml: unexpected nested line {line:?}"),
            }
            continue;
        }
        map = None;
        match key {
            "name" => step.name = value,
            "id" => step.id = value,
            "if" => step.cond = value,
            "uses" => step.uses = value.split(" #").next().unwrap().to_string(),
            "run" => step.run = value,
            "shell" => assert_eq!(value, "bash", "shell of {}", step.name),
            "env" => map = Some("env"),
            "with" => map = Some("with"),
            other => panic!("action.yaml: unknown step key {other}"),
        }
    }
    (inputs, steps)
}

/// An expression's value: GitHub's strings and booleans.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Str(s) => !s.is_empty(),
        }
    }
    fn text(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

struct Parser<'a> {
    toks: Vec<String>,
    at: usize,
    lookup: &'a dyn Fn(&str) -> String,
}

impl Parser<'_> {
    fn tokenize(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let cs: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < cs.len() {
            let c = cs[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '\'' {
                let mut j = i + 1;
                let mut lit = String::from("'");
                while j < cs.len() {
                    if cs[j] == '\'' && cs.get(j + 1) == Some(&'\'') {
                        lit.push('\'');
                        j += 2;
                    } else if cs[j] == '\'' {
                        break;
                    } else {
                        lit.push(cs[j]);
                        j += 1;
                    }
                }
                out.push(lit);
                i = j + 1;
            } else if "=!&|".contains(c) && cs.get(i + 1).is_some_and(|d| "=&|".contains(*d)) {
                out.push(cs[i..i + 2].iter().collect());
                i += 2;
            } else if "()!".contains(c) {
                out.push(c.to_string());
                i += 1;
            } else {
                let mut j = i;
                while j < cs.len() && (cs[j].is_alphanumeric() || "._-".contains(cs[j])) {
                    j += 1;
                }
                assert!(j > i, "expression: unexpected {c:?} in {s:?}");
                out.push(cs[i..j].iter().collect());
                i = j;
            }
        }
        out
    }
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.at).map(String::as_str)
    }
    fn next(&mut self) -> String {
        self.at += 1;
        self.toks[self.at - 1].clone()
    }
    fn or(&mut self) -> Value {
        let mut v = self.and();
        while self.peek() == Some("||") {
            self.next();
            let r = self.and();
            v = if v.truthy() { v } else { r };
        }
        v
    }
    fn and(&mut self) -> Value {
        let mut v = self.cmp();
        while self.peek() == Some("&&") {
            self.next();
            let r = self.cmp();
            v = if v.truthy() { r } else { v };
        }
        v
    }
    fn cmp(&mut self) -> Value {
        let l = self.unary();
        match self.peek() {
            Some(op @ ("==" | "!=")) => {
                let eq = op == "==";
                self.next();
                let r = self.unary();
                // GitHub compares strings case-insensitively.
                Value::Bool((l.text().to_lowercase() == r.text().to_lowercase()) == eq)
            }
            _ => l,
        }
    }
    fn unary(&mut self) -> Value {
        match self.next().as_str() {
            "!" => Value::Bool(!self.unary().truthy()),
            "(" => {
                let v = self.or();
                assert_eq!(self.next(), ")", "expression: unbalanced parentheses");
                v
            }
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            t if t.starts_with('\'') => Value::Str(t[1..].to_string()),
            path => Value::Str((self.lookup)(path)),
        }
    }
}

fn eval(expr: &str, lookup: &dyn Fn(&str) -> String) -> Value {
    let mut p = Parser {
        toks: Parser::tokenize(expr),
        at: 0,
        lookup,
    };
    let v = p.or();
    assert!(
        p.peek().is_none(),
        "expression: trailing tokens in {expr:?}"
    );
    v
}

/// `s` with each `${{ expr }}` replaced by its value.
fn fill(s: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${{") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find("}}").expect("unclosed ${{") + at;
        out.push_str(&eval(&rest[at + 3..end], lookup).text());
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// What a step did.
#[derive(Debug)]
pub struct Ran {
    pub step: String,
    pub output: Option<Output>,
}

/// One job: a runner's folders, the inputs, the contexts, the steps' outputs.
pub struct Job {
    pub tmp: tempfile::TempDir,
    pub inputs: BTreeMap<String, String>,
    pub steps: Vec<Step>,
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// Variables every step sees (the workflow's env and the runner's).
    pub env: BTreeMap<String, String>,
    /// github.action_repository and github.action_ref.
    pub action_repository: String,
    pub action_ref: String,
    /// $GITHUB_PATH entries so far, newest first.
    pub path_prefix: Vec<String>,
    /// actions/cache's store: `<store>/<key>/<path>`.
    pub cache_store: PathBuf,
    missed: Vec<(String, String)>,
}

impl Job {
    /// A job with action.yaml's defaults overridden by `inputs`, and an
    /// actions/cache store (shared by jobs that pass the same folder).
    pub fn new(inputs: &[(&str, &str)], cache_store: &Path) -> Job {
        let (mut all, steps) = parse_action();
        for (k, v) in inputs {
            assert!(all.contains_key(*k), "{k} is not an input of action.yaml");
            all.insert(k.to_string(), v.to_string());
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["temp", "tool-cache", "workspace", "parent", "lvh-cache"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let p = |d: &str| tmp.path().join(d).display().to_string();
        let mut env = BTreeMap::new();
        for (k, v) in [
            (
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            ),
            ("PATH", path_without_lvh(&tmp.path().join("path"))),
            ("CI", "true".into()),
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_ACTION_PATH", REPO.into()),
            ("GITHUB_WORKSPACE", p("workspace")),
            ("GITHUB_SERVER_URL", "https://github.com".into()),
            ("RUNNER_OS", "Linux".into()),
            ("RUNNER_TEMP", p("temp")),
            ("RUNNER_TOOL_CACHE", p("tool-cache")),
            ("TMPDIR", p("temp")),
            ("LVH_CACHE_DIR", p("lvh-cache")),
            ("LVH_CONSOLE_LOG", p("console.log")),
            ("LVH_ACCEL", "tcg".into()),
        ] {
            env.insert(k.to_string(), v);
        }
        Job {
            tmp,
            inputs: all,
            steps,
            outputs: BTreeMap::new(),
            env,
            action_repository: "example/lvh".into(),
            action_ref: format!("v{}", env!("CARGO_PKG_VERSION")),
            path_prefix: Vec::new(),
            cache_store: cache_store.to_owned(),
            missed: Vec::new(),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    pub fn set(&mut self, input: &str, value: &str) {
        assert!(self.inputs.contains_key(input), "{input} is not an input");
        self.inputs.insert(input.into(), value.into());
    }

    fn lookup(&self, path: &str) -> String {
        let parts: Vec<&str> = path.split('.').collect();
        match parts.as_slice() {
            ["inputs", name] => self.inputs.get(*name).cloned().unwrap_or_default(),
            ["steps", id, "outputs", name] => self
                .outputs
                .get(*id)
                .and_then(|o| o.get(*name))
                .cloned()
                .unwrap_or_default(),
            ["env", name] => self.env.get(*name).cloned().unwrap_or_default(),
            ["github", "action_path"] => REPO.into(),
            ["github", "action_repository"] => self.action_repository.clone(),
            ["github", "action_ref"] => self.action_ref.clone(),
            ["runner", "os"] => "Linux".into(),
            _ => panic!("expression: unknown context {path}"),
        }
    }

    /// Runs the steps in order up to and including the one whose script is
    /// `scripts/action/<last>.sh` (all of them for ""), stopping at a failure.
    /// Each call is one use of the action: the steps' outputs start empty.
    pub fn run_until(&mut self, last: &str) -> Vec<Ran> {
        self.outputs.clear();
        let mut ran = Vec::new();
        for i in 0..self.steps.len() {
            let step = self.steps[i].clone();
            let cond = step.cond.trim_start_matches("${{").trim_end_matches("}}");
            if !cond.is_empty() && !eval(cond, &|p| self.lookup(p)).truthy() {
                ran.push(Ran {
                    step: step.name.clone(),
                    output: None,
                });
                continue;
            }
            let output = if step.uses.starts_with("actions/cache@") {
                self.restore(&step);
                None
            } else {
                Some(self.run_step(&step))
            };
            let failed = output.as_ref().is_some_and(|o| !o.status.success());
            let is_last = step.run.contains(&format!("/scripts/action/{last}.sh"));
            ran.push(Ran {
                step: if step.name.is_empty() {
                    step.uses.clone()
                } else {
                    step.name.clone()
                },
                output,
            });
            if failed || (!last.is_empty() && is_last) {
                break;
            }
        }
        ran
    }

    fn run_step(&mut self, step: &Step) -> Output {
        let out_file = self.path("github_output");
        let path_file = self.path("github_path");
        std::fs::write(&out_file, "").unwrap();
        std::fs::write(&path_file, "").unwrap();
        let lookup = |p: &str| self.lookup(p);
        let script = fill(&step.run, &lookup);
        let mut c = Command::new("bash");
        c.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .env_clear()
            .envs(&self.env)
            .env("GITHUB_OUTPUT", &out_file)
            .env("GITHUB_PATH", &path_file)
            .current_dir(self.path("workspace"))
            .stdin(std::process::Stdio::null());
        let mut path = self.path_prefix.clone();
        path.push(self.env["PATH"].clone());
        c.env("PATH", path.join(":"));
        for (k, v) in &step.env {
            c.env(k, fill(v, &lookup));
        }
        let o = c.output().expect("run bash");
        eprintln!(
            "== step {}: {}",
            step.name,
            crate::support::text(&o).replace('\n', "\n   ")
        );
        let mut outs = BTreeMap::new();
        for line in std::fs::read_to_string(&out_file).unwrap().lines() {
            if let Some((k, v)) = line.split_once('=') {
                outs.insert(k.to_string(), v.to_string());
            }
        }
        if !step.id.is_empty() {
            self.outputs.insert(step.id.clone(), outs);
        }
        for line in std::fs::read_to_string(&path_file).unwrap().lines().rev() {
            self.path_prefix.insert(0, line.to_string());
        }
        o
    }

    fn with(&self, step: &Step, key: &str) -> String {
        let v = step
            .with
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{} has no with.{key}", step.uses));
        fill(&v.1, &|p| self.lookup(p))
    }

    /// actions/cache's restore: the key's saved path, if any, copied back.
    fn restore(&mut self, step: &Step) {
        let (path, key) = (self.with(step, "path"), self.with(step, "key"));
        let saved = self
            .cache_store
            .join(&key)
            .join(path.trim_start_matches('/'));
        let hit = saved.exists();
        if hit {
            if let Some(parent) = Path::new(&path).parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            copy(&saved, Path::new(&path));
        } else {
            self.missed.push((key.clone(), path.clone()));
        }
        eprintln!(
            "== cache {key} ({path}): {}",
            if hit { "hit" } else { "miss" }
        );
        if !step.id.is_empty() {
            let o = self.outputs.entry(step.id.clone()).or_default();
            o.insert("cache-hit".into(), hit.to_string());
        }
    }

    /// actions/cache's post step: saves the paths of the keys that missed.
    pub fn post(&mut self) -> Vec<String> {
        let mut saved = Vec::new();
        for (key, path) in std::mem::take(&mut self.missed) {
            if !Path::new(&path).exists() {
                eprintln!("== cache {key}: {path} does not exist, not saved");
                continue;
            }
            let dst = self
                .cache_store
                .join(&key)
                .join(path.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            copy(Path::new(&path), &dst);
            saved.push(key);
        }
        saved
    }
}

fn copy(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The test process's PATH with no `lvh` on it: a folder that holds one is
/// replaced by a folder (under `farm`) of links to everything else in it.
pub fn path_without_lvh(farm: &Path) -> String {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    let mut out = Vec::new();
    for (i, dir) in path.split(':').enumerate() {
        let d = Path::new(dir);
        if !d.join("lvh").exists() {
            out.push(dir.to_string());
            continue;
        }
        let f = farm.join(i.to_string());
        std::fs::create_dir_all(&f).unwrap();
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_name() != "lvh" {
                let _ = std::os::unix::fs::symlink(e.path(), f.join(e.file_name()));
            }
        }
        out.push(f.display().to_string());
    }
    out.join(":")
}

/// The steps' outputs (and stderr) joined, for assertions.
pub fn stderr_of(ran: &[Ran]) -> String {
    ran.iter()
        .filter_map(|r| r.output.as_ref())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last step that ran a script.
pub fn last(ran: &[Ran]) -> &Output {
    ran.iter()
        .rev()
        .find_map(|r| r.output.as_ref())
        .expect("a step ran")
}

#[test]
fn expressions_evaluate_as_githubs() {
    let ctx = |p: &str| match p {
        "inputs.provision" => "true".to_string(),
        "inputs.kernel-version" => String::new(),
        "steps.s.outputs.lvh-install" => "skip".into(),
        _ => String::new(),
    };
    let cases = [
        ("inputs.provision == 'true'", true),
        ("inputs.provision == 'TRUE'", true),
        (
            "inputs.provision == 'true' && inputs.kernel-version != ''",
            false,
        ),
        (
            "inputs.provision == 'true' && steps.s.outputs.lvh-install != 'skip'",
            false,
        ),
        ("!(inputs.kernel-version) || false", true),
        ("inputs.kernel-version", false),
    ];
    for (e, want) in cases {
        assert_eq!(eval(e, &ctx).truthy(), want, "{e}");
    }
    assert_eq!(
        fill("a ${{ inputs.provision }} b ${{ 'it''s' }}", &ctx),
        "a true b it's"
    );
}
