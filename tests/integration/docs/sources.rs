//! The `LVH_*` environment variables lvh's sources read: string literals in
//! Rust and C (not those only handed to a child with `.env(...)`), `$LVH_*` in
//! shell scripts, any `LVH_*` in the Makefile. Pure per file; [`scan`] walks the tree.

use std::collections::BTreeMap;
use std::path::Path;

/// Where a variable is first read: `path:line`.
pub type Uses = BTreeMap<String, String>;

/// The variables one file reads, with their lines. In Rust, a literal handed to
/// a child (`.env("X", ..)`, `.env_remove("X")`, `.insert("X"..)`) is not a
/// read, nor, under tests/, the name in an `("X", value)` pair of a list of
/// settings.
pub fn vars_in(path: &str, text: &str) -> Vec<(String, usize)> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let rust = path.ends_with(".rs") || path.ends_with(".c");
    let re = if rust {
        r#""(LVH_[A-Z0-9_]+)""#
    } else if path.ends_with(".sh") || path.starts_with(".ci/") {
        r"\$\{?(LVH_[A-Z0-9_]+)"
    } else if name == "Makefile" {
        r"\b(LVH_[A-Z0-9_]+)\b"
    } else {
        return Vec::new();
    };
    let re = regex::Regex::new(re).unwrap();
    let setter = regex::Regex::new(r"\.(?:env|env_remove|insert)\(\s*$").unwrap();
    let pair = regex::Regex::new(r"(?:^|[\s\[,])\(\s*$").unwrap();
    let in_tests = path.starts_with("tests/");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for c in re.captures_iter(line) {
            let m = c.get(0).unwrap();
            let (before, after) = (&line[..m.start()], line[m.end()..].trim_start());
            if rust
                && (setter.is_match(before)
                    || (in_tests && pair.is_match(before) && after.starts_with(',')))
            {
                continue;
            }
            out.push((c[1].to_string(), n + 1));
        }
    }
    out
}

/// Every variable read under the repository's `pkg/`, `cmd/`, `tests/`,
/// `scripts/`, `.ci/`, `build.rs` and `Makefile`, except in `skip` (this
/// checker, whose tests name variables that do not exist).
pub fn scan(root: &Path, skip: &str) -> Uses {
    let mut files = Vec::new();
    for top in [
        "pkg", "cmd", "tests", "scripts", ".ci", "build.rs", "Makefile",
    ] {
        walk(root, Path::new(top), &mut files);
    }
    let mut uses = Uses::new();
    for rel in files {
        let rel = rel.to_string_lossy().into_owned();
        if rel.starts_with(skip) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        for (var, line) in vars_in(&rel, &text) {
            uses.entry(var).or_insert_with(|| format!("{rel}:{line}"));
        }
    }
    uses
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) {
    let p = root.join(rel);
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&p).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            walk(root, &rel.join(e.file_name()), out);
        }
    } else if p.is_file() {
        out.push(rel.to_path_buf());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &str, text: &str) -> Vec<String> {
        vars_in(path, text).into_iter().map(|(v, _)| v).collect()
    }

    #[test]
    fn reads_are_found_and_child_settings_are_not() {
        let rs = "let a = std::env::var(\"LVH_A\");\nconst B: &str = \"LVH_B\";\nc.env(\"LVH_C\", \"1\").env_remove(\"LVH_D\");\n// \"LVH_E_\" too\nformat!(\"<<'LVH_EOF'\\n{x}LVH_EOF\")\nm.insert(\"LVH_F\".into(), v);";
        assert_eq!(names("pkg/x.rs", rs), ["LVH_A", "LVH_B", "LVH_E_"]);
        let t = "let envs = [(\"LVH_G\", \"1\"), (\"LVH_H\", x)];\nlet n = env_count(\"LVH_RUNS\", 3);\ninputs(a, \"LVH_K\", \"LVH_I\")";
        assert_eq!(
            names("tests/system/x.rs", t),
            ["LVH_RUNS", "LVH_K", "LVH_I"]
        );
        assert_eq!(
            names("pkg/runner/init.c", "getenv(\"LVH_TRACE\")"),
            ["LVH_TRACE"]
        );
        let sh = "X=${LVH_X:-a}\necho \"$LVH_Y\"\nlocal d=\"LVH_DELIM_$$\"\n";
        assert_eq!(names("scripts/a.sh", sh), ["LVH_X", "LVH_Y"]);
        assert_eq!(names(".ci/run", "make test $LVH_Z"), ["LVH_Z"]);
        assert_eq!(
            names("Makefile", "export LVH_ACCEL ?= tcg\n\tLVH_N=$(N) cargo"),
            ["LVH_ACCEL", "LVH_N"]
        );
        assert_eq!(names("action.yaml", "LVH_ROOT: x"), Vec::<String>::new());
    }

    #[test]
    fn lines_are_kept() {
        assert_eq!(vars_in("a.sh", "\n\n$LVH_Q"), [("LVH_Q".to_string(), 3)]);
    }
}
