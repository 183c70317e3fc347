//! Reading a kernel `.config` and checking that every option `kernels.json` asked
//! for holds after Kconfig resolved dependencies, with the reason when it does not.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::options::{parse_option, ConfigOption, Want};
use super::toolchain::Toolchain;

/// A symbol's state in `.config`: `y`, `m`, a value (strings keep their quotes),
/// or `n` for `# CONFIG_X is not set`. Symbols absent from the file are not in the map.
pub fn parse_dotconfig(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(sym) = rest.strip_suffix(" is not set") {
                m.insert(sym.to_string(), "n".to_string());
            }
        } else if let Some(rest) = line.strip_prefix("CONFIG_") {
            if let Some((sym, val)) = rest.split_once('=') {
                m.insert(sym.to_string(), val.to_string());
            }
        }
    }
    m
}

/// Why a requested option does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Kconfig gave the symbol another value (unmet dependency, a `select`, ...).
    Overridden { want: Want, got: String },
    /// The symbol is not in the final `.config`: it does not exist in this tree
    /// or for this architecture, or its dependencies are not met.
    Absent { want: Want, defined: Option<bool> },
}

/// One option that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub symbol: String,
    pub problem: Problem,
}

impl Finding {
    /// True for what `--strict` refuses: a value Kconfig changed. An absent
    /// symbol (not available for this arch or tree) is only ever a warning.
    pub fn is_override(&self) -> bool {
        matches!(self.problem, Problem::Overridden { .. })
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            Problem::Overridden { want, got } => write!(
                f,
                "CONFIG_{} wanted {want}, Kconfig set {} (dependencies or selects decide it)",
                self.symbol,
                if got == "n" { "it off" } else { got }
            ),
            Problem::Absent { want, defined } => write!(
                f,
                "CONFIG_{} wanted {want}, not in the final .config ({})",
                self.symbol,
                match defined {
                    Some(false) => "no Kconfig in this tree defines it",
                    Some(true) => "its dependencies are not met for this arch/config",
                    None => "not available for this arch, or its dependencies are not met",
                }
            ),
        }
    }
}

/// The final wanted state per symbol: later options win, as `scripts/config` applies them.
pub fn wanted(opts: &[ConfigOption]) -> BTreeMap<String, Want> {
    let mut m = BTreeMap::new();
    for o in opts {
        // Options were validated when kernels.json was loaded.
        for s in parse_option(o).unwrap_or_default() {
            m.insert(s.symbol, s.want);
        }
    }
    m
}

/// Checks `opts` against a parsed `.config`. `defined` tells whether a symbol is
/// declared by some Kconfig file (to explain absences), when known.
pub fn verify(
    opts: &[ConfigOption],
    config: &HashMap<String, String>,
    defined: &dyn Fn(&str) -> Option<bool>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (symbol, want) in wanted(opts) {
        let got = config.get(&symbol);
        let problem = match (&want, got) {
            (Want::Undefine, None) => None,
            (Want::Undefine, Some(g)) => Some(Problem::Overridden {
                want: want.clone(),
                got: g.clone(),
            }),
            (Want::Disable, None) => None,
            (_, None) => Some(Problem::Absent {
                want: want.clone(),
                defined: defined(&symbol),
            }),
            (_, Some(g)) => {
                let holds = match &want {
                    Want::Enable => g == "y",
                    Want::Module => g == "m",
                    Want::Disable => g == "n",
                    Want::Val(v) => g == v || g.trim_matches('"') == v,
                    Want::Str(s) => g.trim_matches('"') == s,
                    Want::Undefine => unreachable!(),
                };
                (!holds).then(|| Problem::Overridden {
                    want: want.clone(),
                    got: g.clone(),
                })
            }
        };
        if let Some(problem) = problem {
            out.push(Finding { symbol, problem });
        }
    }
    out
}

/// Every symbol declared (`config X` / `menuconfig X`) by a Kconfig file in `tree`.
pub fn declared_symbols(tree: &Path) -> std::collections::HashSet<String> {
    scan(tree).into_keys().collect()
}

/// Every declared symbol with the `depends on` expressions of its entries.
pub fn scan(tree: &Path) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !name.starts_with('.') && name != "tar-install" && name != "Documentation" {
                    stack.push(e.path());
                }
            } else if name.starts_with("Kconfig") {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    for (sym, deps) in entries(&text) {
                        map.entry(sym).or_default().extend(deps);
                    }
                }
            }
        }
    }
    map
}

/// The `config`/`menuconfig` entries of one Kconfig file with their
/// `depends on` expressions.
fn entries(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut open = false;
    for l in text.lines() {
        let l = l.trim();
        if let Some(s) = l
            .strip_prefix("config ")
            .or_else(|| l.strip_prefix("menuconfig "))
        {
            out.push((s.trim().to_string(), Vec::new()));
            open = true;
        } else if [
            "menu",
            "endmenu",
            "choice",
            "endchoice",
            "if ",
            "endif",
            "source ",
            "comment ",
        ]
        .iter()
        .any(|k| l.starts_with(k))
        {
            open = false;
        } else if let Some(dep) = l.strip_prefix("depends on ") {
            if let (true, Some(last)) = (open, out.last_mut()) {
                last.1.push(dep.trim().to_string());
            }
        }
    }
    out
}

/// The identifiers of a Kconfig expression, each with whether a `!` negates it.
fn identifiers(expr: &str) -> Vec<(&str, bool)> {
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !word(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && word(bytes[i]) {
            i += 1;
        }
        out.push((&expr[start..i], expr[..start].trim_end().ends_with('!')));
    }
    out
}

/// The compiler family a symbol's dependencies require, read from the
/// compiler symbols they test (`CC_IS_CLANG`, `!CC_IS_GCC`, `LD_IS_LLD`,
/// `AS_IS_LLVM` ask for LLVM; `CC_IS_GCC`, `!CC_IS_CLANG` for gcc), as
/// `(wants LLVM, the expression)`. `None` when they name neither or both.
pub fn compiler_requirement(depends: &[String]) -> Option<(bool, String)> {
    let mut found: Option<(bool, String)> = None;
    for expr in depends {
        for (id, negated) in identifiers(expr) {
            let llvm = match id {
                "CC_IS_CLANG" | "LD_IS_LLD" | "AS_IS_LLVM" => true,
                "CC_IS_GCC" | "LD_IS_BFD" | "AS_IS_GNU" => false,
                _ => continue,
            };
            let wants_llvm = llvm != negated;
            match &found {
                Some((w, _)) if *w != wants_llvm => return None,
                Some(_) => {}
                None => found = Some((wants_llvm, expr.clone())),
            }
        }
    }
    found
}

/// How deep [`compiler_requirement_of`] follows dependencies.
const REQUIREMENT_DEPTH: usize = 4;

/// [`compiler_requirement`] of `symbol`, following the symbols its
/// dependencies need (not those negated, nor alternatives joined by `||`) a
/// few levels deep, with the explanation: `depends on EXPR` or `through SYM:
/// depends on EXPR`.
pub fn compiler_requirement_of(
    deps: &HashMap<String, Vec<String>>,
    symbol: &str,
) -> Option<(bool, String)> {
    let mut seen = std::collections::HashSet::from([symbol.to_string()]);
    let mut queue = std::collections::VecDeque::from([(symbol.to_string(), 0)]);
    while let Some((s, depth)) = queue.pop_front() {
        let Some(exprs) = deps.get(&s) else { continue };
        let exprs: Vec<String> = exprs
            .iter()
            .filter(|e| !e.contains("||"))
            .cloned()
            .collect();
        if let Some((llvm, expr)) = compiler_requirement(&exprs) {
            let why = if s == symbol {
                format!("depends on {expr}")
            } else {
                format!("through {s}: depends on {expr}")
            };
            return Some((llvm, why));
        }
        if depth < REQUIREMENT_DEPTH {
            for e in &exprs {
                for (id, negated) in identifiers(e) {
                    if !negated && deps.contains_key(id) && seen.insert(id.to_string()) {
                        queue.push_back((id.to_string(), depth + 1));
                    }
                }
            }
        }
    }
    None
}

/// Requested options that did not hold because they need the other compiler
/// family, as one message saying what to change; `None` when there are none.
pub fn toolchain_conflicts(
    name: &str,
    findings: &[Finding],
    toolchain: Toolchain,
    tree: &Path,
) -> Option<String> {
    let relevant: Vec<_> = findings
        .iter()
        .filter(|f| {
            f.is_override()
                || matches!(
                    f.problem,
                    Problem::Absent {
                        defined: Some(true) | None,
                        ..
                    }
                )
        })
        .collect();
    if relevant.is_empty() {
        return None;
    }
    let deps = scan(tree);
    let lines: Vec<String> = relevant
        .iter()
        .filter_map(|f| {
            let (llvm, why) = compiler_requirement_of(&deps, &f.symbol)?;
            (llvm != toolchain.is_llvm()).then(|| {
                format!(
                    "  CONFIG_{} needs {} ({why})",
                    f.symbol,
                    if llvm { "clang/LLVM" } else { "gcc" }
                )
            })
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    let instead = if toolchain.is_llvm() {
        "--toolchain gcc"
    } else {
        "--toolchain llvm (or llvm-N)"
    };
    Some(format!(
        "kernel {name}: {} option(s) cannot hold with the toolchain {toolchain}:\n{}\nbuild with {instead} (or a \"toolchain\" key in kernels.json), or remove the option(s)",
        lines.len(),
        lines.join("\n")
    ))
}

/// The architecture a `.config` was made for, from its arch symbols.
pub fn config_arch(config: &HashMap<String, String>) -> Option<crate::arch::Arch> {
    if config.get("ARM64").is_some_and(|v| v == "y") {
        Some(crate::arch::Arch::Arm64)
    } else if config.get("X86_64").is_some_and(|v| v == "y") || config.contains_key("X86") {
        Some(crate::arch::Arch::Amd64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(s: &[&str]) -> ConfigOption {
        s.iter().map(|x| x.to_string()).collect()
    }

    const CONFIG: &str = "\
# Automatically generated file; DO NOT EDIT.
CONFIG_64BIT=y
CONFIG_BPF=y
# CONFIG_WERROR is not set
CONFIG_E1000=m
CONFIG_NR_CPUS=4
CONFIG_LOCALVERSION=\"-lvh\"
# CONFIG_DEBUG_INFO_BTF is not set
";

    #[test]
    fn parses_values_and_not_set_lines() {
        let c = parse_dotconfig(CONFIG);
        assert_eq!(c["BPF"], "y");
        assert_eq!(c["WERROR"], "n");
        assert_eq!(c["E1000"], "m");
        assert_eq!(c["LOCALVERSION"], "\"-lvh\"");
        assert!(!c.contains_key("Automatically"));
    }

    #[test]
    fn verification_reports_overrides_and_absences() {
        let c = parse_dotconfig(CONFIG);
        let opts = vec![
            opt(&["--enable", "CONFIG_BPF"]),
            opt(&["--disable", "CONFIG_WERROR"]),
            opt(&["--module", "CONFIG_E1000"]),
            opt(&["--set-val", "CONFIG_NR_CPUS", "4"]),
            opt(&["--set-str", "CONFIG_LOCALVERSION", "-lvh"]),
            opt(&["--disable", "CONFIG_NOT_THERE"]),
            // overridden: Kconfig turned it off
            opt(&["--enable", "CONFIG_DEBUG_INFO_BTF"]),
            // absent: e.g. an arm64-only driver on amd64
            opt(&["--enable", "CONFIG_SERIAL_AMBA_PL011"]),
            // later options win over earlier ones
            opt(&["--enable", "CONFIG_64BIT"]),
            opt(&["--disable", "CONFIG_64BIT"]),
        ];
        let defined = |s: &str| Some(s != "SERIAL_AMBA_PL011");
        let f = verify(&opts, &c, &defined);
        let syms: Vec<&str> = f.iter().map(|x| x.symbol.as_str()).collect();
        assert_eq!(syms, vec!["64BIT", "DEBUG_INFO_BTF", "SERIAL_AMBA_PL011"]);
        assert!(f[0].is_override() && f[1].is_override());
        assert!(!f[2].is_override());
        assert!(
            f[1].to_string().contains("wanted y, Kconfig set it off"),
            "{}",
            f[1]
        );
        assert!(
            f[2].to_string()
                .contains("no Kconfig in this tree defines it"),
            "{}",
            f[2]
        );
    }

    #[test]
    fn finds_declared_symbols() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("drivers/x")).unwrap();
        std::fs::write(
            d.path().join("drivers/x/Kconfig"),
            "menuconfig FOO\n\tbool \"foo\"\nconfig BAR\n\tdepends on FOO\n",
        )
        .unwrap();
        let s = declared_symbols(d.path());
        assert!(s.contains("FOO") && s.contains("BAR") && s.len() == 2);
    }

    #[test]
    fn scans_dependencies_and_tells_the_compiler_they_need() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("Kconfig"),
            "config LTO_CLANG_THIN\n\tbool \"thin\"\n\tdepends on HAS_LTO_CLANG\n\tdepends on CC_IS_CLANG && CLANG_VERSION >= 130000\n\
             menu \"x\"\n\tdepends on FOO\n\
             config PLUGIN\n\tdepends on !CC_IS_CLANG\n\
             config EITHER\n\tdepends on CC_IS_GCC || CC_IS_CLANG\n\
             config PLAIN\n\tdepends on NET\n",
        )
        .unwrap();
        let m = scan(d.path());
        assert_eq!(m["LTO_CLANG_THIN"].len(), 2);
        assert_eq!(
            compiler_requirement(&m["LTO_CLANG_THIN"]),
            Some((true, "CC_IS_CLANG && CLANG_VERSION >= 130000".into()))
        );
        assert_eq!(
            compiler_requirement(&m["PLUGIN"]),
            Some((false, "!CC_IS_CLANG".into()))
        );
        assert_eq!(compiler_requirement(&m["EITHER"]), None);
        assert_eq!(compiler_requirement(&m["PLAIN"]), None);
        assert_eq!(m["PLAIN"], ["NET"]);
        assert!(!m.contains_key("x"));
        // Followed through the symbols a dependency needs, not through `!` or `||`.
        let deps: HashMap<String, Vec<String>> = [
            ("LTO_THIN", "HAS_LTO && ARCH_LTO"),
            ("HAS_LTO", "CC_IS_CLANG && LD_IS_LLD"),
            ("ARCH_LTO", "X86"),
            ("NOT_LTO", "!HAS_LTO"),
            ("MAYBE_LTO", "HAS_LTO || GCC_THING"),
            ("LOOP_A", "LOOP_B"),
            ("LOOP_B", "LOOP_A"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
        .collect();
        assert_eq!(
            compiler_requirement_of(&deps, "LTO_THIN"),
            Some((
                true,
                "through HAS_LTO: depends on CC_IS_CLANG && LD_IS_LLD".into()
            ))
        );
        assert_eq!(
            compiler_requirement_of(&deps, "HAS_LTO"),
            Some((true, "depends on CC_IS_CLANG && LD_IS_LLD".into()))
        );
        for none in ["NOT_LTO", "MAYBE_LTO", "LOOP_A", "ARCH_LTO", "UNKNOWN"] {
            assert_eq!(compiler_requirement_of(&deps, none), None, "{none}");
        }
    }

    #[test]
    fn options_that_need_the_other_compiler_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("Kconfig"),
            "config LTO_CLANG_THIN\n\tdepends on CC_IS_CLANG\nconfig GCC_PLUGINS\n\tdepends on !CC_IS_CLANG\nconfig NET\n",
        )
        .unwrap();
        let finding = |sym: &str| Finding {
            symbol: sym.into(),
            problem: Problem::Overridden {
                want: Want::Enable,
                got: "n".into(),
            },
        };
        let c = [finding("LTO_CLANG_THIN"), finding("NET")];
        let gcc = Toolchain::default();
        let m = toolchain_conflicts("k", &c, gcc, d.path()).unwrap();
        assert!(
            m.contains("CONFIG_LTO_CLANG_THIN needs clang/LLVM (depends on CC_IS_CLANG)"),
            "{m}"
        );
        assert!(m.contains("build with --toolchain llvm"), "{m}");
        assert!(!m.contains("CONFIG_NET"), "{m}");
        assert_eq!(
            toolchain_conflicts("k", &c, "llvm".parse().unwrap(), d.path()),
            None
        );
        let c = [finding("GCC_PLUGINS")];
        let m = toolchain_conflicts("k", &c, "llvm-19".parse().unwrap(), d.path()).unwrap();
        assert!(
            m.contains("needs gcc") && m.contains("--toolchain gcc"),
            "{m}"
        );
    }

    #[test]
    fn tells_the_arch() {
        let amd = parse_dotconfig("CONFIG_X86_64=y\nCONFIG_X86=y\n");
        let arm = parse_dotconfig("CONFIG_ARM64=y\n");
        assert_eq!(config_arch(&amd), Some(crate::arch::Arch::Amd64));
        assert_eq!(config_arch(&arm), Some(crate::arch::Arch::Arm64));
        assert_eq!(config_arch(&HashMap::new()), None);
    }
}
