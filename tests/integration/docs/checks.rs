//! doc-check's rules as pure functions of the pages, the command tree and the
//! variables the sources read. Each returns the problems it found, every one
//! naming the file and line (or the flag or variable) that is wrong.

use std::collections::{BTreeMap, BTreeSet};

use super::cli::{flag_name, Cmd};
use super::markdown::{self, Page};
use super::sources::Uses;

/// A page as read from disk: its path relative to the repository, text, parse.
pub struct Doc {
    pub path: String,
    pub text: String,
    pub page: Page,
}

impl Doc {
    pub fn new(path: &str, text: &str) -> Doc {
        Doc {
            path: path.into(),
            text: text.into(),
            page: markdown::parse(text),
        }
    }
}

pub type Problems = Vec<String>;

/// Markers that are misplaced or unknown.
pub fn markers(docs: &[Doc]) -> Problems {
    let mut out = Problems::new();
    for d in docs {
        for (line, msg) in &d.page.problems {
            out.push(format!("{}:{line}: {msg}", d.path));
        }
    }
    out
}

/// Every command line's subcommand and flags exist.
pub fn command_flags(docs: &[Doc], cli: &Cmd) -> Problems {
    let mut out = Problems::new();
    for d in docs {
        for c in &d.page.commands {
            if let Err(e) = cli.check(&c.args) {
                out.push(format!("{}:{}: `{}`: {e}", d.path, c.line, c.text));
            }
        }
    }
    out
}

/// The flag a code span starts with (`--persist`, `-vv`, `-p H:V`), if it is
/// written as an lvh flag: QEMU's one-dash words (`-smp`) are not.
pub fn span_flag(span: &str) -> Option<String> {
    let first = markdown::words(span).into_iter().next()?;
    let name = flag_name(&first);
    let name = name.split(['[', '<']).next().unwrap_or(name);
    if let Some(long) = name.strip_prefix("--") {
        let long: String = long
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        return (!long.is_empty()).then(|| format!("--{long}"));
    }
    let letters: String = name
        .strip_prefix('-')?
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let mut cs = letters.chars();
    let c = cs.next()?;
    cs.all(|d| d == c).then(|| format!("-{c}"))
}

/// Every flag a code span names is a flag of some lvh command.
pub fn named_flags(docs: &[Doc], cli: &Cmd) -> Problems {
    let (longs, shorts) = all_flags(cli);
    let mut out = Problems::new();
    for d in docs {
        for (line, span) in &d.page.spans {
            let Some(f) = span_flag(span) else { continue };
            let known = match f.strip_prefix("--") {
                Some(l) => longs.contains(l),
                None => f.chars().nth(1).is_some_and(|c| shorts.contains(&c)),
            };
            if !known {
                out.push(format!(
                    "{}:{line}: `{span}`: lvh has no flag {f} (a flag of another program goes with its name in the span, e.g. `mmdebstrap --variant`)",
                    d.path
                ));
            }
        }
    }
    out
}

fn all_flags(cli: &Cmd) -> (BTreeSet<String>, BTreeSet<char>) {
    let mut longs = BTreeSet::new();
    let mut shorts = BTreeSet::new();
    for c in cli.all() {
        for f in &c.flags {
            longs.extend(f.long.clone());
            shorts.extend(f.short);
        }
    }
    (longs, shorts)
}

/// Every long flag of every command appears in the docs: in a command line or
/// a code span.
pub fn undocumented_flags(docs: &[Doc], cli: &Cmd) -> Problems {
    let mut seen = BTreeSet::new();
    for d in docs {
        let words = d.page.commands.iter().flat_map(|c| c.args.iter().cloned());
        let spans = d.page.spans.iter().flat_map(|(_, s)| markdown::words(s));
        for w in words.chain(spans) {
            if let Some(l) = w.strip_prefix("--") {
                seen.insert(flag_name(l).to_string());
            }
        }
    }
    let mut out = Problems::new();
    for c in cli.all() {
        for long in c.flags.iter().filter_map(|f| f.long.as_deref()) {
            if !seen.contains(long) {
                out.push(format!(
                    "`{} --{long}` (in its --help) is not documented in README.md or docs/",
                    c.name()
                ));
            }
        }
    }
    out.dedup();
    out
}

/// Every subcommand appears in some command line of the docs (one of a
/// subcommand counts for its parents too).
pub fn undocumented_commands(docs: &[Doc], cli: &Cmd) -> Problems {
    let mut seen = BTreeSet::new();
    for c in docs.iter().flat_map(|d| &d.page.commands) {
        if let Ok(name) = cli.check(&c.args) {
            let words: Vec<&str> = name.split(' ').collect();
            seen.extend((1..=words.len()).map(|n| words[..n].join(" ")));
        }
    }
    cli.all()
        .into_iter()
        .map(|c| c.name())
        .filter(|n| !seen.contains(n))
        .map(|n| format!("`{n}` appears in no command line of README.md or docs/"))
        .collect()
}

/// `LVH_*` names in a text, with their lines.
pub fn env_names(text: &str) -> Vec<(String, usize)> {
    let re = regex::Regex::new(r"(?:^|[^A-Za-z0-9_])(LVH_[A-Z0-9_]*[A-Z0-9])").unwrap();
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        out.extend(re.captures_iter(l).map(|c| (c[1].to_string(), n + 1)));
    }
    out
}

/// Every `LVH_*` the docs name is read by the sources, and every one the
/// sources read is named in the docs.
pub fn env_vars(docs: &[Doc], uses: &Uses) -> Problems {
    let mut out = Problems::new();
    let mut named = BTreeMap::new();
    for d in docs {
        for (v, line) in env_names(&d.text) {
            if !uses.contains_key(&v) {
                out.push(format!(
                    "{}:{line}: {v}: no source of lvh reads this variable",
                    d.path
                ));
            }
            named.entry(v).or_insert(line);
        }
    }
    for (v, at) in uses {
        if !named.contains_key(v) {
            out.push(format!("{v} (read at {at}) is not documented in README.md or docs/ (docs/environment.md lists them)"));
        }
    }
    out
}

/// Every relative link resolves to a file (`exists` says, for a path relative to
/// the repository), and a `#fragment` to an anchor of the target page.
pub fn links(docs: &[Doc], exists: &dyn Fn(&str) -> bool) -> Problems {
    let anchors: BTreeMap<&str, &Vec<String>> = docs
        .iter()
        .map(|d| (d.path.as_str(), &d.page.anchors))
        .collect();
    let mut out = Problems::new();
    for d in docs {
        let dir = d.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        for (line, dest) in &d.page.links {
            if dest.contains("://") || dest.starts_with("mailto:") {
                continue;
            }
            let (file, frag) = dest
                .split_once('#')
                .map_or((dest.as_str(), None), |(f, a)| (f, Some(a)));
            let target = if file.is_empty() {
                d.path.clone()
            } else {
                normalize(dir, file)
            };
            if !file.is_empty() && !exists(&target) {
                out.push(format!(
                    "{}:{line}: link `{dest}`: no such file {target}",
                    d.path
                ));
                continue;
            }
            let Some(frag) = frag else { continue };
            match anchors.get(target.as_str()) {
                Some(a) if a.iter().any(|x| x == frag) => {}
                Some(_) => out.push(format!("{}:{line}: link `{dest}`: {target} has no heading or anchor `#{frag}`", d.path)),
                None => out.push(format!("{}:{line}: link `{dest}`: an anchor into {target}, which is not a Markdown page", d.path)),
            }
        }
    }
    out
}

/// Every page is reachable from README.md by following links, so none is lost.
pub fn orphans(docs: &[Doc]) -> Problems {
    let mut reached = BTreeSet::from(["README.md".to_string()]);
    let mut todo = vec!["README.md".to_string()];
    while let Some(path) = todo.pop() {
        let Some(d) = docs.iter().find(|d| d.path == path) else {
            continue;
        };
        let dir = d.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        for (_, dest) in &d.page.links {
            let file = dest.split('#').next().unwrap_or("");
            if file.is_empty() || dest.contains("://") {
                continue;
            }
            let target = normalize(dir, file);
            if reached.insert(target.clone()) {
                todo.push(target);
            }
        }
    }
    docs.iter()
        .filter(|d| !reached.contains(&d.path))
        .map(|d| format!("{}: no link leads here from README.md (add it to README.md's \"Documentation\" table or link it from a page that is)", d.path))
        .collect()
}

/// `dir/../x/./y` as a path relative to the repository.
fn normalize(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.trim_end_matches('/').split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::super::cli::{Flag, Value};
    use super::*;

    fn cli() -> Cmd {
        let f = |l: &str, s: Option<char>, v| Flag {
            long: Some(l.into()),
            short: s,
            value: v,
        };
        let run = Cmd {
            path: vec!["run".into()],
            flags: vec![
                f("image", None, Value::Required),
                f("port", Some('p'), Value::Required),
                f("verbose", Some('v'), Value::None),
            ],
            ..Default::default()
        };
        Cmd {
            flags: vec![f("verbose", Some('v'), Value::None)],
            subs: vec![run],
            ..Default::default()
        }
    }

    const GOOD: &str = "# Run\n\n```sh\nlvh run --image i -p 1:2 -- true\n```\n\n`--verbose`, `-vv`, `--port`, `-smp 2`, `mmdebstrap --variant` and [run](#run).\n";

    #[test]
    fn a_good_page_has_no_problems() {
        let docs = [Doc::new("docs/run.md", GOOD)];
        assert_eq!(command_flags(&docs, &cli()), Problems::new());
        assert_eq!(named_flags(&docs, &cli()), Problems::new());
        assert_eq!(undocumented_flags(&docs, &cli()), Problems::new());
        assert_eq!(undocumented_commands(&docs, &cli()), Problems::new());
        assert_eq!(links(&docs, &|_| true), Problems::new());
    }

    // Each kind of planted error is reported with the file, the line and what is wrong.

    #[test]
    fn a_planted_unknown_flag_in_a_command_is_found() {
        let docs = [Doc::new("README.md", "x\n\n```\nlvh run --imag i\n```\n")];
        assert_eq!(
            command_flags(&docs, &cli()),
            ["README.md:4: `lvh run --imag i`: no flag --imag in `lvh run --help`"]
        );
    }

    #[test]
    fn a_planted_unknown_flag_in_a_span_is_found() {
        let docs = [Doc::new("docs/a.md", "one\n\nthen `--persist` and `-q`\n")];
        let p = named_flags(&docs, &cli());
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("docs/a.md:3: `--persist`: lvh has no flag --persist"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("docs/a.md:3: `-q`: lvh has no flag -q"),
            "{p:?}"
        );
    }

    #[test]
    fn a_planted_undocumented_flag_is_found() {
        let docs = [Doc::new("docs/a.md", "`lvh run --image i --verbose`\n")];
        assert_eq!(
            undocumented_flags(&docs, &cli()),
            ["`lvh run --port` (in its --help) is not documented in README.md or docs/"]
        );
    }

    #[test]
    fn a_planted_undocumented_subcommand_is_found() {
        let mut cli = cli();
        cli.subs.push(Cmd {
            path: vec!["triage".into()],
            ..Default::default()
        });
        let docs = [Doc::new("docs/run.md", GOOD)];
        assert_eq!(
            undocumented_commands(&docs, &cli),
            ["`lvh triage` appears in no command line of README.md or docs/"]
        );
    }

    #[test]
    fn planted_env_var_errors_are_found_both_ways() {
        let uses: Uses = [
            ("LVH_A".to_string(), "pkg/a.rs:3".to_string()),
            ("LVH_B".to_string(), "scripts/b.sh:1".to_string()),
        ]
        .into();
        let docs = [Doc::new(
            "docs/env.md",
            "`LVH_A` and\n`$LVH_NOPE`, not XLVH_B\n",
        )];
        assert_eq!(
            env_vars(&docs, &uses),
            [
                "docs/env.md:2: LVH_NOPE: no source of lvh reads this variable",
                "LVH_B (read at scripts/b.sh:1) is not documented in README.md or docs/ (docs/environment.md lists them)",
            ]
        );
    }

    #[test]
    fn planted_broken_links_are_found() {
        let docs = [
            Doc::new("README.md", "[a](docs/x.md) [b](docs/run.md#nope) [c](docs/run.md#run) [d](https://x.org/y) [e](configs/a.json#k)\n"),
            Doc::new("docs/run.md", "# Run\n\n[up](../README.md) [img](../images/bpf) [self](#run)\n"),
        ];
        let exists =
            |p: &str| ["README.md", "docs/run.md", "images/bpf", "configs/a.json"].contains(&p);
        assert_eq!(
            links(&docs, &exists),
            [
                "README.md:1: link `docs/x.md`: no such file docs/x.md",
                "README.md:1: link `docs/run.md#nope`: docs/run.md has no heading or anchor `#nope`",
                "README.md:1: link `configs/a.json#k`: an anchor into configs/a.json, which is not a Markdown page",
            ]
        );
    }

    #[test]
    fn a_planted_orphan_page_is_found() {
        let docs = [
            Doc::new("README.md", "[run](docs/run.md)\n"),
            Doc::new("docs/run.md", "[more](more.md#x)\n"),
            Doc::new("docs/more.md", "# X\n"),
            Doc::new("docs/lost.md", "[back](../README.md)\n"),
        ];
        assert_eq!(orphans(&docs), ["docs/lost.md: no link leads here from README.md (add it to README.md's \"Documentation\" table or link it from a page that is)"]);
    }

    #[test]
    fn span_flags_are_read_as_lvh_writes_them() {
        let cases = [
            ("--fast-boot[=BOOL]", Some("--fast-boot")),
            ("--splat fail|warn|off", Some("--splat")),
            ("--append i8042.noaux=0", Some("--append")),
            ("-vv", Some("-v")),
            ("-p ADDR:H:V", Some("-p")),
            ("-j2", Some("-j")),
            ("-smp N,sockets=N", None),
            ("-- sh -c 'x'", None),
            ("make -j8", None),
        ];
        for (span, want) in cases {
            assert_eq!(span_flag(span).as_deref(), want, "{span}");
        }
    }
}
