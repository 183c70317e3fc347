//! lvh's command line as its `--help` texts describe it (subcommands, aliases,
//! flags and whether they take a value), and the check of one documented
//! command line against it. Parsing is pure; [`Cli::load`] runs the binary.

use std::process::Command;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// `--daemonize`, `-v...`
    None,
    /// `--dir <DIR>`: the next word (or `=`).
    Required,
    /// `--ssh-key [<FILE>]`: the next word unless it looks like a flag.
    Optional,
    /// `--strict[=<STRICT>]`: only with `=`.
    Equals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub long: Option<String>,
    pub short: Option<char>,
    pub value: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Cmd {
    /// `["kernels", "build"]`; empty for `lvh` itself.
    pub path: Vec<String>,
    pub aliases: Vec<String>,
    pub flags: Vec<Flag>,
    pub subs: Vec<Cmd>,
}

/// A subcommand line of a help text's `Commands:` section: `(name, aliases)`.
pub fn parse_commands(help: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let alias_re = regex::Regex::new(r"\[aliases: ([^\]]+)\]").unwrap();
    for l in section(help, "Commands:") {
        if let Some(name) = l.strip_prefix("  ").filter(|r| !r.starts_with(' ')) {
            let name = name.split_whitespace().next().unwrap_or("").to_string();
            out.push((name, Vec::new()));
        }
        if let (Some(c), Some(last)) = (alias_re.captures(l), out.last_mut()) {
            last.1 = c[1].split(',').map(|a| a.trim().to_string()).collect();
        }
    }
    out.retain(|(n, _)| n != "help");
    out
}

/// The flags of a help text's `Options:` section. An option line starts with
/// `  -x, --long` or six spaces and `--long`; wrapped description lines are
/// indented further and ignored.
pub fn parse_flags(help: &str) -> Vec<Flag> {
    let re = regex::Regex::new(
        r"^(?:  -([A-Za-z0-9]), --([a-z0-9][a-z0-9-]*)|      --([a-z0-9][a-z0-9-]*)|  -([A-Za-z0-9]))(\S*)(?: (\[?<[^>]+>\]?))?",
    )
    .unwrap();
    let mut out = Vec::new();
    let alias_re = regex::Regex::new(r"\[alias(?:es)?: ([^\]]+)\]").unwrap();
    for l in section(help, "Options:") {
        // `[alias: --cpus]` in a flag's help: the alias takes what the flag takes.
        if let (Some(a), Some(last)) = (alias_re.captures(l), out.last().cloned()) {
            for name in a[1].split(", ").filter_map(|n| n.strip_prefix("--")) {
                out.push(Flag {
                    long: Some(name.to_string()),
                    short: None,
                    ..last
                });
            }
        }
        let Some(c) = re.captures(l) else { continue };
        let short = c
            .get(1)
            .or(c.get(4))
            .and_then(|m| m.as_str().chars().next());
        let long = c.get(2).or(c.get(3)).map(|m| m.as_str().to_string());
        let attached = c.get(5).map_or("", |m| m.as_str());
        let value = match (attached, c.get(6).map(|m| m.as_str())) {
            (a, _) if a.starts_with("[=") => Value::Equals,
            (_, Some(v)) if v.starts_with('[') => Value::Optional,
            (_, Some(_)) => Value::Required,
            _ => Value::None,
        };
        out.push(Flag { long, short, value });
    }
    out
}

/// The lines of a help section, from its title to the next unindented line.
fn section<'a>(help: &'a str, title: &'a str) -> impl Iterator<Item = &'a str> {
    help.lines()
        .skip_while(move |l| *l != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
}

impl Cmd {
    /// The whole tree, from `lvh [PATH] --help` of the binary.
    pub fn load(bin: &str) -> Cmd {
        fn walk(bin: &str, path: Vec<String>) -> Cmd {
            let o = Command::new(bin)
                .args(&path)
                .arg("--help")
                .env("COLUMNS", "100")
                .output()
                .expect("run lvh --help");
            let help = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "lvh {} --help failed", path.join(" "));
            let subs = parse_commands(&help)
                .into_iter()
                .map(|(name, aliases)| {
                    let mut p = path.clone();
                    p.push(name);
                    Cmd {
                        aliases,
                        ..walk(bin, p)
                    }
                })
                .collect();
            Cmd {
                path,
                aliases: Vec::new(),
                flags: parse_flags(&help),
                subs,
            }
        }
        walk(bin, Vec::new())
    }

    pub fn name(&self) -> String {
        std::iter::once("lvh")
            .chain(self.path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn sub(&self, word: &str) -> Option<&Cmd> {
        self.subs.iter().find(|s| {
            s.path.last().is_some_and(|n| n == word) || s.aliases.iter().any(|a| a == word)
        })
    }

    /// Every command of the tree, this one first.
    pub fn all(&self) -> Vec<&Cmd> {
        let mut v = vec![self];
        for s in &self.subs {
            v.extend(s.all());
        }
        v
    }

    fn flag(&self, word: &str) -> Option<&Flag> {
        match word.strip_prefix("--") {
            Some(long) => self.flags.iter().find(|f| f.long.as_deref() == Some(long)),
            None => {
                let c = word.strip_prefix('-')?.chars().next()?;
                self.flags.iter().find(|f| f.short == Some(c))
            }
        }
    }

    /// The flag `word` names in this command or below (cobra lets a leaf's flag
    /// come before the leaf's name).
    fn flag_below(&self, word: &str) -> Option<&Flag> {
        self.all().into_iter().find_map(|c| c.flag(word))
    }

    /// Checks the words after `lvh` against the tree: subcommand names and the
    /// flags of the command they lead to. Returns that command's name, or what
    /// is wrong.
    pub fn check(&self, args: &[String]) -> Result<String, String> {
        let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let args = &args[..end];
        let cur = self.leaf(args)?;
        // Every flag, against that command.
        let mut i = 0;
        while i < args.len() {
            let w = args[i].as_str();
            i += 1;
            if !(w.starts_with('-') && w.len() > 1) {
                continue;
            }
            if w.starts_with("--") {
                let f = cur
                    .flag(flag_name(w))
                    .ok_or_else(|| no_flag(cur, flag_name(w)))?;
                i += takes_next(Some(f), w, args.get(i)) as usize;
                continue;
            }
            // A cluster of short flags: `-vv`, `-j2`, `-p 2222:22`.
            for (k, c) in w.char_indices().skip(1) {
                let f = cur
                    .flag(&format!("-{c}"))
                    .ok_or_else(|| no_flag(cur, &format!("-{c}")))?;
                if f.value == Value::Required {
                    i += (k + c.len_utf8() == w.len()) as usize;
                    break;
                }
            }
        }
        Ok(cur.name())
    }

    /// Whether the last word is a flag that needs a value and has none
    /// (`lvh run --kernel`, naming the flag in prose).
    pub fn ends_with_bare_value_flag(&self, args: &[String]) -> bool {
        let (Ok(cur), Some(last)) = (self.leaf(args), args.last()) else {
            return false;
        };
        last.starts_with("--")
            && !last.contains('=')
            && cur.flag(last).is_some_and(|f| f.value == Value::Required)
    }

    /// The command the subcommand words lead to.
    fn leaf(&self, args: &[String]) -> Result<&Cmd, String> {
        let mut cur = self;
        let mut i = 0;
        while i < args.len() {
            let w = args[i].as_str();
            i += 1;
            if w.starts_with('-') && w.len() > 1 {
                i += takes_next(cur.flag_below(flag_name(w)), w, args.get(i)) as usize;
            } else if let Some(s) = cur.sub(w) {
                cur = s;
            } else if !cur.subs.is_empty() {
                return Err(format!("`{}` has no subcommand `{w}`", cur.name()));
            } else {
                break;
            }
        }
        Ok(cur)
    }
}

fn no_flag(cmd: &Cmd, flag: &str) -> String {
    format!("no flag {flag} in `{} --help`", cmd.name())
}

/// `--name` of `--name=value`.
pub fn flag_name(w: &str) -> &str {
    w.split_once('=').map_or(w, |(n, _)| n)
}

/// Whether the flag word `w` takes the next word as its value.
fn takes_next(f: Option<&Flag>, w: &str, next: Option<&String>) -> bool {
    let attached = w.contains('=') || (!w.starts_with("--") && w.len() > 2);
    match f.map(|f| f.value) {
        _ if attached => false,
        Some(Value::Required) => true,
        Some(Value::Optional) => next.is_some_and(|n| !n.starts_with('-')),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "Usage: lvh [OPTIONS] <COMMAND>\n\nCommands:\n  images      Build and pull VM root images\n  kernels     Build and pull kernels [aliases: kernel, k]\n  run         Run VMs\n  help        Print this message\n\nOptions:\n  -v, --verbose...\n          More output\n\n      --strict[=<STRICT>]\n          Treat warnings\n  -h, --help\n          Print help\n";
    const KERNELS: &str = "Commands:\n  build  Build a kernel\n\nOptions:\n  -v, --verbose...         More\n      --strict[=<STRICT>]  Treat\n";
    const BUILD: &str = "Usage: lvh kernels build [OPTIONS] --dir <DIR> <NAME>\n\nOptions:\n      --dir <DIR>          Directory to place kernels\n  -v, --verbose...         More output: child process lines, QEMU console (-v), debug logs (-vv). On\n                           --verbose does (--verbose=BOOL is accepted).\n      --arch <ARCH>        Target architecture [default: amd64]\n      --strict[=<STRICT>]  Treat\n";
    const RUN: &str = "Options:\n      --image <IMAGE>\n          VM image\n  -p, --port <PORTS>\n          Forward a port\n      --ssh-key [<FILE>]\n          Give root\n      --shell[=<BOOL>]\n          A root shell ... Without\n          --kernel: the image's console login\n      --gdb [<PORT>]\n          gdbstub\n  -v, --verbose...\n          More\n";

    fn flag(long: &str, short: Option<char>, value: Value) -> Flag {
        Flag {
            long: Some(long.into()),
            short,
            value,
        }
    }

    fn tree() -> Cmd {
        let build = Cmd {
            path: vec!["kernels".into(), "build".into()],
            flags: parse_flags(BUILD),
            ..Default::default()
        };
        let kernels = Cmd {
            path: vec!["kernels".into()],
            aliases: vec!["kernel".into(), "k".into()],
            flags: parse_flags(KERNELS),
            subs: vec![build],
        };
        let run = Cmd {
            path: vec!["run".into()],
            flags: parse_flags(RUN),
            ..Default::default()
        };
        Cmd {
            flags: parse_flags(ROOT),
            subs: vec![kernels, run],
            ..Default::default()
        }
    }

    #[test]
    fn commands_and_aliases_are_read_and_help_is_left_out() {
        let c = parse_commands(ROOT);
        let names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["images", "kernels", "run"]);
        assert_eq!(c[1].1, ["kernel", "k"]);
    }

    #[test]
    fn flags_and_their_values_are_read_and_wrapped_lines_ignored() {
        assert_eq!(
            parse_flags(RUN),
            vec![
                flag("image", None, Value::Required),
                flag("port", Some('p'), Value::Required),
                flag("ssh-key", None, Value::Optional),
                flag("shell", None, Value::Equals),
                flag("gdb", None, Value::Optional),
                flag("verbose", Some('v'), Value::None),
            ]
        );
        let b = parse_flags(BUILD);
        assert_eq!(b.len(), 4, "{b:?}");
        assert_eq!(b[0], flag("dir", None, Value::Required));
    }

    fn check(args: &str) -> Result<String, String> {
        tree().check(
            &args
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn documented_command_lines_are_checked_against_the_tree() {
        assert_eq!(
            check("k --dir . build --arch arm64 X"),
            Ok("lvh kernels build".into())
        );
        assert_eq!(
            check("kernels build X --dir d -vv --strict=1"),
            Ok("lvh kernels build".into())
        );
        assert_eq!(
            check("run --ssh-key -p 2222:22 -- --not-a-flag"),
            Ok("lvh run".into())
        );
        assert_eq!(check("run --gdb 1234 --image i"), Ok("lvh run".into()));
        assert_eq!(check("run -p2222:22 --image=x"), Ok("lvh run".into()));
        assert_eq!(check("kernels"), Ok("lvh kernels".into()));
        assert_eq!(
            check("kernels build X --bogus"),
            Err("no flag --bogus in `lvh kernels build --help`".into())
        );
        assert_eq!(
            check("run -x"),
            Err("no flag -x in `lvh run --help`".into())
        );
        assert_eq!(
            check("kernels frob X"),
            Err("`lvh kernels` has no subcommand `frob`".into())
        );
        assert_eq!(
            check("run --image i --dir d"),
            Err("no flag --dir in `lvh run --help`".into())
        );
    }

    #[test]
    fn a_bare_value_flag_at_the_end_is_a_reference() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(tree().ends_with_bare_value_flag(&args("run --image")));
        assert!(tree().ends_with_bare_value_flag(&args("k build --dir")));
        assert!(!tree().ends_with_bare_value_flag(&args("run --image i")));
        assert!(!tree().ends_with_bare_value_flag(&args("run --ssh-key")));
        assert!(!tree().ends_with_bare_value_flag(&args("run --image=")));
    }
}
