//! Kconfig fragment files named by a kernel's `fragments` key (lvh extension),
//! e.g. `tools/testing/selftests/bpf/config`: parsed into `scripts/config`
//! options and merged like `scripts/kconfig/merge_config.sh` (a later value of a
//! symbol wins), applied after `common_opts` and before the kernel's `opts`.

use std::collections::HashMap;
use std::path::{Component, Path};

use super::options::ConfigOption;
use crate::arch::Arch;

/// Name suffixes that mark a fragment as arch specific (the kernel's `uname -m`
/// names, as the selftests' `config.x86_64`, `config.aarch64`, ... use them).
pub const ARCH_SUFFIXES: &[&str] = &[
    "x86_64",
    "aarch64",
    "s390x",
    "riscv64",
    "ppc64",
    "ppc64le",
    "loongarch64",
    "arm",
    "i386",
    "mips",
    "sparc64",
];

/// Whether the fragment `name` applies to `arch`: a name ending in another
/// arch's suffix (`config.aarch64` on amd64) does not.
pub fn applies_to(name: &str, arch: Arch) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    match file.rsplit_once('.') {
        Some((_, ext)) if ARCH_SUFFIXES.contains(&ext) => ext == arch.uname_machine(),
        _ => true,
    }
}

/// Checks a `fragments` entry: a relative path inside the kernel tree.
pub fn check_path(name: &str) -> Result<(), String> {
    let p = Path::new(name);
    if name.trim().is_empty() {
        return Err("a fragment path must not be empty".into());
    }
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "{name:?} must be a path inside the kernel tree (relative, without \"..\")"
        ));
    }
    Ok(())
}

/// Parses one fragment (`.config` syntax) into options, one per line that sets
/// a symbol: `=y` enable, `=m` module, `=n` and `# CONFIG_X is not set` disable,
/// `="s"` a string, anything else a value. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<ConfigOption>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim();
            if let Some(sym) = rest.strip_suffix(" is not set") {
                out.push(opt(&["--disable", symbol(sym, n)?]));
            }
            continue;
        }
        let (sym, val) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: expected CONFIG_X=value, got {line:?}"))?;
        let sym = symbol(sym.trim(), n)?;
        let val = val.trim();
        let o = match val {
            "y" => opt(&["--enable", sym]),
            "m" => opt(&["--module", sym]),
            "n" => opt(&["--disable", sym]),
            "" => return Err(format!("line {n}: {sym} has no value")),
            v if v.starts_with('"') => {
                let s = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .filter(|_| v.len() >= 2)
                    .ok_or_else(|| format!("line {n}: unterminated string for {sym}"))?;
                opt(&[
                    "--set-str",
                    sym,
                    &s.replace("\\\"", "\"").replace("\\\\", "\\"),
                ])
            }
            v => opt(&["--set-val", sym, v]),
        };
        out.push(o);
    }
    Ok(out)
}

fn symbol(raw: &str, line: usize) -> Result<&str, String> {
    let ok = raw
        .strip_prefix("CONFIG_")
        .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if ok {
        Ok(raw)
    } else {
        Err(format!("line {line}: {raw:?} is not a CONFIG_ symbol"))
    }
}

fn opt(parts: &[&str]) -> ConfigOption {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A symbol a later fragment set again with another value (merge_config.sh's
/// "Value of CONFIG_X is redefined by fragment").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redefined {
    pub symbol: String,
    pub fragment: String,
}

/// Merges parsed fragments in order: one option per symbol, the last value
/// winning, kept at the place the symbol first appeared.
pub fn merge(fragments: &[(String, Vec<ConfigOption>)]) -> (Vec<ConfigOption>, Vec<Redefined>) {
    let mut out: Vec<ConfigOption> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut redefined = Vec::new();
    for (name, opts) in fragments {
        for o in opts {
            let sym = o[1].clone();
            match at.get(&sym) {
                Some(&i) => {
                    if out[i] != *o {
                        redefined.push(Redefined {
                            symbol: sym,
                            fragment: name.clone(),
                        });
                    }
                    out[i] = o.clone();
                }
                None => {
                    at.insert(sym, out.len());
                    out.push(o.clone());
                }
            }
        }
    }
    (out, redefined)
}

/// Why fragments could not be read.
#[derive(Debug)]
pub enum LoadError {
    Missing { file: String },
    Read { file: String, err: std::io::Error },
    Parse { file: String, message: String },
}

/// Reads the fragments that apply to `arch` from `tree`, in order, and merges them.
pub fn load(
    tree: &Path,
    names: &[String],
    arch: Arch,
) -> Result<(Vec<ConfigOption>, Vec<Redefined>), LoadError> {
    let mut parsed = Vec::new();
    for name in names.iter().filter(|n| applies_to(n, arch)) {
        let path = tree.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::Missing { file: name.clone() })
            }
            Err(err) => {
                return Err(LoadError::Read {
                    file: name.clone(),
                    err,
                })
            }
        };
        let opts = parse(&text).map_err(|message| LoadError::Parse {
            file: name.clone(),
            message,
        })?;
        parsed.push((name.clone(), opts));
    }
    Ok(merge(&parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::kconfig;
    use crate::kernels::options::Want;

    #[test]
    fn parses_every_line_form() {
        let text = "\
# a comment
CONFIG_BPF=y

CONFIG_TEST_BPF=m
# CONFIG_BPF_UNPRIV_DEFAULT_OFF is not set
CONFIG_X=n
CONFIG_BLK_DEV_RAM_SIZE=16384
CONFIG_MASK=0x1f
CONFIG_LOCALVERSION=\"-bpf \\\"x\\\"\"
  CONFIG_SPACED=y  
";
        let got = parse(text).unwrap();
        let want: Vec<ConfigOption> = vec![
            opt(&["--enable", "CONFIG_BPF"]),
            opt(&["--module", "CONFIG_TEST_BPF"]),
            opt(&["--disable", "CONFIG_BPF_UNPRIV_DEFAULT_OFF"]),
            opt(&["--disable", "CONFIG_X"]),
            opt(&["--set-val", "CONFIG_BLK_DEV_RAM_SIZE", "16384"]),
            opt(&["--set-val", "CONFIG_MASK", "0x1f"]),
            opt(&["--set-str", "CONFIG_LOCALVERSION", "-bpf \"x\""]),
            opt(&["--enable", "CONFIG_SPACED"]),
        ];
        assert_eq!(got, want);
        // Every option is one lvh's option parser (and so verification) accepts.
        for o in &got {
            crate::kernels::options::parse_option(o).unwrap();
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            (
                "CONFIG_A=y\nBPF=y\n",
                "line 2: \"BPF\" is not a CONFIG_ symbol",
            ),
            ("CONFIG_A\n", "line 1: expected CONFIG_X=value"),
            ("CONFIG_A=\n", "line 1: CONFIG_A has no value"),
            ("CONFIG_S=\"open\n", "line 1: unterminated string"),
            ("CONFIG_S=\"\n", "line 1: unterminated string"),
            ("# CONFIG_A-B is not set\n", "line 1: \"CONFIG_A-B\""),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn arch_suffixes_pick_fragments() {
        let table = [
            ("tools/testing/selftests/bpf/config", Arch::Amd64, true),
            ("tools/testing/selftests/bpf/config", Arch::Arm64, true),
            (
                "tools/testing/selftests/bpf/config.x86_64",
                Arch::Amd64,
                true,
            ),
            (
                "tools/testing/selftests/bpf/config.x86_64",
                Arch::Arm64,
                false,
            ),
            (
                "tools/testing/selftests/bpf/config.aarch64",
                Arch::Arm64,
                true,
            ),
            (
                "tools/testing/selftests/bpf/config.aarch64",
                Arch::Amd64,
                false,
            ),
            (
                "tools/testing/selftests/bpf/config.s390x",
                Arch::Amd64,
                false,
            ),
            ("tools/testing/selftests/bpf/config.vm", Arch::Amd64, true),
            ("kernel/configs/kvm_guest.config", Arch::Arm64, true),
            ("a.b/config", Arch::Amd64, true),
        ];
        for (name, arch, want) in table {
            assert_eq!(applies_to(name, arch), want, "{name} on {arch}");
        }
    }

    #[test]
    fn paths_stay_inside_the_tree() {
        check_path("tools/testing/selftests/bpf/config").unwrap();
        for bad in ["", "/etc/config", "../config", "a/../../b"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_keeps_the_last_value_like_merge_config() {
        let a = parse("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=m\n").unwrap();
        let b = parse("# CONFIG_B is not set\nCONFIG_D=y\nCONFIG_C=m\n").unwrap();
        let (merged, redefined) = merge(&[("a".into(), a), ("b".into(), b)]);
        assert_eq!(
            merged,
            vec![
                opt(&["--enable", "CONFIG_A"]),
                opt(&["--disable", "CONFIG_B"]),
                opt(&["--module", "CONFIG_C"]),
                opt(&["--enable", "CONFIG_D"]),
            ]
        );
        // Only a changed value counts as redefined (C is set to m twice).
        assert_eq!(
            redefined,
            vec![Redefined {
                symbol: "CONFIG_B".into(),
                fragment: "b".into()
            }]
        );
        let w = kconfig::wanted(&merged);
        assert_eq!(w["B"], Want::Disable);
        assert_eq!(w["C"], Want::Module);
    }

    #[test]
    fn load_reads_arch_fragments_and_names_missing_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sel");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config"), "CONFIG_A=y\nCONFIG_B=y\n").unwrap();
        std::fs::write(dir.join("config.x86_64"), "# CONFIG_B is not set\n").unwrap();
        std::fs::write(dir.join("config.aarch64"), "CONFIG_ARM_ONLY=y\n").unwrap();
        let names: Vec<String> = ["sel/config", "sel/config.x86_64", "sel/config.aarch64"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (amd, _) = load(d.path(), &names, Arch::Amd64).unwrap();
        assert_eq!(
            amd,
            vec![
                opt(&["--enable", "CONFIG_A"]),
                opt(&["--disable", "CONFIG_B"])
            ]
        );
        let (arm, _) = load(d.path(), &names, Arch::Arm64).unwrap();
        assert_eq!(arm.len(), 3);
        assert_eq!(arm[1], opt(&["--enable", "CONFIG_B"]));

        let missing = vec!["sel/config.vm".to_string()];
        match load(d.path(), &missing, Arch::Amd64) {
            Err(LoadError::Missing { file }) => assert_eq!(file, "sel/config.vm"),
            other => panic!("{other:?}"),
        }
        // A missing fragment of another arch is not read, so not an error.
        let other = vec!["sel/config.s390x".to_string()];
        assert!(load(d.path(), &other, Arch::Amd64).unwrap().0.is_empty());
        std::fs::write(dir.join("bad"), "CONFIG_A=y\nnonsense\n").unwrap();
        match load(d.path(), &["sel/bad".to_string()], Arch::Amd64) {
            Err(LoadError::Parse { file, message }) => {
                assert_eq!(file, "sel/bad");
                assert!(message.contains("line 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
