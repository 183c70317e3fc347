//! Reading a kernel `.config` and checking that every option `kernels.json` asked
//! for holds after Kconfig resolved dependencies, with the reason when it does not.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::options::{parse_option, ConfigOption, Want};

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
    let mut set = std::collections::HashSet::new();
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
                    for l in text.lines() {
                        let l = l.trim_start();
                        let sym = l
                            .strip_prefix("config ")
                            .or_else(|| l.strip_prefix("menuconfig "));
                        if let Some(s) = sym {
                            set.insert(s.trim().to_string());
                        }
                    }
                }
            }
        }
    }
    set
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
    fn tells_the_arch() {
        let amd = parse_dotconfig("CONFIG_X86_64=y\nCONFIG_X86=y\n");
        let arm = parse_dotconfig("CONFIG_ARM64=y\n");
        assert_eq!(config_arch(&amd), Some(crate::arch::Arch::Amd64));
        assert_eq!(config_arch(&arm), Some(crate::arch::Arch::Arm64));
        assert_eq!(config_arch(&HashMap::new()), None);
    }
}
