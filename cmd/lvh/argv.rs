//! cobra's argv habits, made clap's: a leaf command's flags may come before its
//! name (`lvh kernels --dir . build X`), and run's Go bool `--verbose=BOOL`
//! maps onto lvh's counting `-v`. One pure function of the clap tree and argv.

use std::ffi::OsString;

use clap::{Arg, Command};

/// Rewrites `args` (program name first) into the form clap parses:
/// options written before the leaf subcommand move to right after it, and
/// `--verbose=BOOL` / `-v=BOOL` become `--verbose` or nothing. Anything the
/// function does not understand is left alone for clap to judge.
pub fn normalize(cmd: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut built = cmd.clone();
    built.build();
    let args = hoist(&built, args);
    let args = optional_before_dashdash(args);
    verbose_bools(&built, args)
}

/// Flags whose value is optional (`--ssh-key [FILE]`).
const OPTIONAL_VALUE: [&str; 1] = ["--ssh-key"];

/// `--ssh-key --`: clap would take the `--` for a missing value; the flag
/// without a value is meant, which `--ssh-key=` says unambiguously.
fn optional_before_dashdash(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(dd) = args.iter().position(|a| a == "--") else {
        return args;
    };
    if dd > 0 && OPTIONAL_VALUE.iter().any(|f| args[dd - 1] == *f) {
        let mut a = args[dd - 1].clone();
        a.push("=");
        args[dd - 1] = a;
    }
    args
}

/// Whether `flag` (as written, `--name` or `-x`) is one that takes the next
/// word as its value, anywhere in `cmd`'s subtree (cobra assumes as much for
/// flags it meets before the subcommand).
fn takes_next(cmd: &Command, flag: &str) -> bool {
    if flag.contains('=') {
        return false;
    }
    let matches = |a: &Arg| -> bool {
        if let Some(long) = flag.strip_prefix("--") {
            a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|v| v.contains(&long))
        } else {
            let mut cs = flag.chars().skip(1);
            match (cs.next(), cs.next()) {
                (Some(c), None) => a.get_short() == Some(c),
                _ => false,
            }
        }
    };
    fn walk(cmd: &Command, f: &dyn Fn(&Arg) -> bool) -> bool {
        cmd.get_arguments().any(|a| {
            f(a) && a.get_action().takes_values()
                && !a.is_require_equals_set()
                && a.get_num_args().is_none_or(|r| r.min_values() > 0)
        }) || cmd.get_subcommands().any(|s| walk(s, f))
    }
    walk(cmd, &matches)
}

fn is_flag(s: &str) -> bool {
    s.starts_with('-') && s != "-"
}

/// Moves the options met before the leaf subcommand to right after its name.
fn hoist(cmd: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut cur = cmd;
    let mut path: Vec<OsString> = args.iter().take(1).cloned().collect();
    let mut moved: Vec<OsString> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let Some(a) = args[i].to_str() else {
            return args;
        };
        if a == "--" {
            return args;
        }
        if is_flag(a) {
            moved.push(args[i].clone());
            i += 1;
            if takes_next(cur, a) && i < args.len() {
                moved.push(args[i].clone());
                i += 1;
            }
            continue;
        }
        let Some(sub) = cur.find_subcommand(a) else {
            return args;
        };
        path.push(args[i].clone());
        i += 1;
        cur = sub;
        if !cur.has_subcommands() {
            path.extend(moved);
            path.extend(args[i..].iter().cloned());
            return path;
        }
    }
    args
}

/// `--verbose=BOOL` (Go's bool on `run`) as lvh's counting flag: true is one
/// `--verbose`, false is none. Values of flags and words after `--` are untouched.
fn verbose_bools(cmd: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    if let Some(p) = it.next() {
        out.push(p);
    }
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        let value = s
            .strip_prefix("--verbose=")
            .or_else(|| s.strip_prefix("-v="));
        match value.map(crate::gobool::parse) {
            Some(Ok(true)) => out.push("--verbose".into()),
            Some(Ok(false)) => {}
            _ => {
                let skip = is_flag(s) && takes_next(cmd, s);
                out.push(a);
                if skip {
                    out.extend(it.next());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(line: &str) -> String {
        let args = std::iter::once("lvh")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect();
        let out = normalize(&crate::cli::command(), args);
        out[1..]
            .iter()
            .map(|s| s.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn cobra_forms_become_clap_forms() {
        let cases = [
            // the forms little-vm-helper-images' Dockerfiles use
            (
                "kernels --dir . fetch bpf-next",
                "kernels fetch --dir . bpf-next",
            ),
            (
                "kernels --dir . configure --arch amd64 bpf-next",
                "kernels configure --dir . --arch amd64 bpf-next",
            ),
            (
                "kernels --dir . build --arch arm64 X",
                "kernels build --dir . --arch arm64 X",
            ),
            ("images --dir _data build", "images build --dir _data"),
            ("k --dir=. list", "k list --dir=."),
            ("-v kernels --dir . list", "kernels list -v --dir ."),
            ("kernels pull -d D 6.6-main", "kernels pull -d D 6.6-main"),
            ("kernels -d D pull 6.6-main", "kernels pull -d D 6.6-main"),
            ("--image x.qcow2 run -- true", "run --image x.qcow2 -- true"),
            // bool flags never take the next word
            (
                "images --dry-run build --dir D",
                "images build --dry-run --dir D",
            ),
            // already in clap's form, or nothing to hoist: unchanged
            (
                "kernels fetch --dir . bpf-next",
                "kernels fetch --dir . bpf-next",
            ),
            ("kernels list", "kernels list"),
            ("kernels --dir .", "kernels --dir ."),
            ("help kernels", "help kernels"),
            ("-- kernels list", "-- kernels list"),
            ("kernels --bogus list", "kernels list --bogus"),
            // run's Go bool --verbose
            ("run --verbose=true --image x", "run --verbose --image x"),
            ("run --verbose=1 -v --image x", "run --verbose -v --image x"),
            ("run --verbose=false --image x", "run --image x"),
            ("run -v=F --image x", "run --image x"),
            ("run --verbose=maybe", "run --verbose=maybe"),
            (
                "run --image x -- sh --verbose=true",
                "run --image x -- sh --verbose=true",
            ),
            (
                "run --append --verbose=1 --image x",
                "run --append --verbose=1 --image x",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(norm(line), want, "{line}");
        }
    }

    #[test]
    fn every_leaf_flag_parses_before_the_subcommand() {
        // Each leaf's own flags, placed before the leaf's name, parse as they do after it.
        fn leaves(cmd: &Command, path: Vec<String>, out: &mut Vec<(Vec<String>, Command)>) {
            for s in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(s.get_name().to_string());
                if s.has_subcommands() {
                    leaves(s, p, out);
                } else {
                    out.push((p, s.clone()));
                }
            }
        }
        let cmd = crate::cli::command();
        let mut all = Vec::new();
        leaves(&cmd, vec![], &mut all);
        let mut checked = 0;
        for (path, leaf) in all {
            if path.len() < 2 {
                continue;
            }
            for a in leaf.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if a.is_global_set() || a.is_positional() || long == "help" || long == "version" {
                    continue;
                }
                let mut line: Vec<String> = vec!["lvh".into(), path[0].clone()];
                line.push(format!("--{long}"));
                let takes = a.get_action().takes_values() && !a.is_require_equals_set();
                if takes {
                    line.push("V".into());
                }
                line.extend(path[1..].iter().cloned());
                let out = normalize(&cmd, line.iter().map(OsString::from).collect());
                let mut want: Vec<String> = vec!["lvh".into()];
                want.extend(path.iter().cloned());
                want.push(format!("--{long}"));
                if takes {
                    want.push("V".into());
                }
                let out: Vec<String> = out.into_iter().map(|s| s.into_string().unwrap()).collect();
                assert_eq!(out, want);
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} flags checked");
    }
}
