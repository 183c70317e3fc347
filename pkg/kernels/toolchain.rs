//! Which compiler builds a kernel: `gcc`, `gcc-N`, `llvm` or `llvm-N`
//! (`clang`, `clang-N` are other names for the LLVM ones), the make variables
//! that select it natively and cross, the programs it needs with the Debian
//! packages that provide them, and the one decision of which toolchain a build
//! uses (`--toolchain`, the kernel's `toolchain` key, its `extra_make_args`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// The kernels whose Makefile knows `LLVM=-N` and finds clang's target from `ARCH`.
pub const LLVM_SUFFIX_SINCE: (u32, u32) = (5, 18);

/// A compiler family and, optionally, its major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Toolchain {
    /// GNU: gcc and binutils (`CROSS_COMPILE` for another arch).
    Gcc(Option<u32>),
    /// The whole LLVM toolchain: clang, ld.lld and llvm-* (`LLVM=1`, `LLVM=-N`).
    Llvm(Option<u32>),
}

impl Default for Toolchain {
    fn default() -> Self {
        Toolchain::Gcc(None)
    }
}

/// A program a toolchain needs and the Debian package that provides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub program: String,
    pub package: String,
}

impl FromStr for Toolchain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let (name, version) = match t.split_once('-') {
            Some((n, v)) => {
                let ok = !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit());
                match v.parse::<u32>() {
                    Ok(n_) if ok && n_ > 0 => (n, Some(n_)),
                    _ => return Err(unknown(s)),
                }
            }
            None => (t.as_str(), None),
        };
        match name {
            "gcc" => Ok(Toolchain::Gcc(version)),
            "llvm" | "clang" => Ok(Toolchain::Llvm(version)),
            _ => Err(unknown(s)),
        }
    }
}

fn unknown(s: &str) -> String {
    format!("unknown toolchain {s:?} (known: gcc, gcc-N, llvm, llvm-N, clang, clang-N; e.g. gcc-12, llvm-19)")
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, v) = match self {
            Toolchain::Gcc(v) => ("gcc", v),
            Toolchain::Llvm(v) => ("llvm", v),
        };
        match v {
            Some(v) => write!(f, "{name}-{v}"),
            None => f.write_str(name),
        }
    }
}

impl Serialize for Toolchain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Toolchain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The Debian name of a cross compiler's target (`aarch64-linux-gnu`,
/// `x86-64-linux-gnu`): the package suffix.
fn debian_triple(arch: Arch) -> String {
    arch.cross_compile_prefix()
        .trim_end_matches('-')
        .replace('_', "-")
}

impl Toolchain {
    fn suffix(self) -> String {
        match self {
            Toolchain::Gcc(Some(v)) | Toolchain::Llvm(Some(v)) => format!("-{v}"),
            _ => String::new(),
        }
    }

    pub fn is_llvm(self) -> bool {
        matches!(self, Toolchain::Llvm(_))
    }

    /// The make variables that select this toolchain for `arch` (built on
    /// `host`), for a tree of kernel version `kernel` when known. `ARCH=` is
    /// not among them (every make call has it).
    pub fn make_vars(self, arch: Arch, host: Arch, kernel: Option<(u32, u32)>) -> Vec<String> {
        let cross = arch != host;
        let prefix = arch.cross_compile_prefix();
        let mut v = Vec::new();
        match self {
            Toolchain::Gcc(ver) => {
                if cross {
                    v.push(format!("CROSS_COMPILE={prefix}"));
                }
                if let Some(n) = ver {
                    let p = if cross { prefix } else { "" };
                    v.push(format!("CC={p}gcc-{n}"));
                    v.push(format!("HOSTCC=gcc-{n}"));
                }
            }
            Toolchain::Llvm(ver) => {
                v.push(match ver {
                    Some(n) => format!("LLVM=-{n}"),
                    None => "LLVM=1".to_string(),
                });
                // Older kernels took clang's --target from CROSS_COMPILE.
                if cross && kernel.is_some_and(|k| k < LLVM_SUFFIX_SINCE) {
                    v.push(format!("CROSS_COMPILE={prefix}"));
                }
            }
        }
        v
    }

    /// The compilers make runs (CC and HOSTCC), by name: what a compiler
    /// cache puts itself in front of.
    pub fn compilers(self, arch: Arch, host: Arch) -> Vec<String> {
        let suffix = self.suffix();
        let mut v = match self {
            Toolchain::Gcc(_) => {
                let p = if arch != host {
                    arch.cross_compile_prefix()
                } else {
                    ""
                };
                vec![format!("{p}gcc{suffix}"), format!("gcc{suffix}")]
            }
            Toolchain::Llvm(_) => vec![format!("clang{suffix}")],
        };
        v.dedup();
        v
    }

    /// Every program the build needs from this toolchain, with its Debian package.
    pub fn tools(self, arch: Arch, host: Arch) -> Vec<Tool> {
        let s = self.suffix();
        let tool = |program: String, package: String| Tool { program, package };
        match self {
            Toolchain::Gcc(_) => {
                let mut v = Vec::new();
                if arch != host {
                    let package = match self {
                        Toolchain::Gcc(Some(n)) => format!("gcc-{n}-{}", debian_triple(arch)),
                        _ => arch.cross_gcc_package().to_string(),
                    };
                    v.push(tool(
                        format!("{}gcc{s}", arch.cross_compile_prefix()),
                        package,
                    ));
                    if matches!(self, Toolchain::Gcc(Some(_))) {
                        // The versioned cross gcc still uses the cross binutils.
                        v.push(tool(
                            format!("{}ld", arch.cross_compile_prefix()),
                            format!("binutils-{}", debian_triple(arch)),
                        ));
                    }
                }
                v.push(tool(format!("gcc{s}"), format!("gcc{s}")));
                v
            }
            Toolchain::Llvm(_) => {
                let mut v = vec![
                    tool(format!("clang{s}"), format!("clang{s}")),
                    tool(format!("ld.lld{s}"), format!("lld{s}")),
                ];
                for t in ["ar", "nm", "objcopy", "objdump", "readelf", "strip"] {
                    v.push(tool(format!("llvm-{t}{s}"), format!("llvm{s}")));
                }
                v
            }
        }
    }

    /// Why this toolchain cannot build a tree of kernel version `kernel`, if it cannot.
    pub fn unusable_for(self, kernel: (u32, u32)) -> Option<String> {
        match self {
            Toolchain::Llvm(Some(n)) if kernel < LLVM_SUFFIX_SINCE => Some(format!(
                "the toolchain llvm-{n} needs kernel {}.{} or later (LLVM=-{n}); this tree is {}.{}: use --toolchain llvm with clang-{n}'s directory first in PATH",
                LLVM_SUFFIX_SINCE.0, LLVM_SUFFIX_SINCE.1, kernel.0, kernel.1
            )),
            _ => None,
        }
    }
}

/// The programs of `tools` that `which` cannot find, as one message naming
/// them and the packages to install, or `None` when all are there.
pub fn missing(tools: &[Tool], which: &dyn Fn(&str) -> bool) -> Option<String> {
    let absent: Vec<&Tool> = tools.iter().filter(|t| !which(&t.program)).collect();
    if absent.is_empty() {
        return None;
    }
    let programs: Vec<&str> = absent.iter().map(|t| t.program.as_str()).collect();
    let mut packages: Vec<&str> = absent.iter().map(|t| t.package.as_str()).collect();
    packages.dedup();
    Some(format!(
        "{} not installed: install the Debian package{} {}",
        match programs.as_slice() {
            [one] => format!("`{one}` is"),
            many => format!("`{}` are", many.join("`, `")),
        },
        if packages.len() == 1 { "" } else { "s" },
        packages.join(" ")
    ))
}

/// The make variables that pick a compiler: when `extra_make_args` sets one,
/// it chose the toolchain itself.
const TOOLCHAIN_VARS: &[&str] = &["LLVM", "CC", "HOSTCC", "CROSS_COMPILE"];

/// What `extra_make_args` say about the toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Implied {
    /// Nothing: the toolchain is lvh's to choose.
    Nothing,
    /// `LLVM=1` or `LLVM=-N` and nothing else of the kind.
    Named(Toolchain),
    /// Other compiler variables (`CC=...`, `LLVM=/path/`): make uses what they
    /// say; lvh neither adds its own nor checks the programs.
    Custom(Vec<String>),
}

/// Reads the toolchain `extra_make_args` chose, if any.
pub fn implied(extra: &[String]) -> Implied {
    let vars: Vec<&String> = extra
        .iter()
        .filter(|a| {
            a.split_once('=')
                .is_some_and(|(k, _)| TOOLCHAIN_VARS.contains(&k))
        })
        .collect();
    match vars.as_slice() {
        [] => Implied::Nothing,
        [one] => match one.split_once('=') {
            Some(("LLVM", "1")) => Implied::Named(Toolchain::Llvm(None)),
            Some(("LLVM", v)) => match v.strip_prefix('-').map(str::parse::<u32>) {
                Some(Ok(n)) => Implied::Named(Toolchain::Llvm(Some(n))),
                _ => Implied::Custom(vec![one.to_string()]),
            },
            _ => Implied::Custom(vec![one.to_string()]),
        },
        many => Implied::Custom(many.iter().map(|s| s.to_string()).collect()),
    }
}

/// Where the toolchain of a build came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Config,
    ExtraMakeArgs,
    Default,
}

/// The toolchain a build uses: `None` when the kernel's `extra_make_args`
/// choose the compiler themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub toolchain: Option<Toolchain>,
    pub source: Source,
}

/// Decides the toolchain: `--toolchain`, else the kernel's `toolchain` key,
/// else what `extra_make_args` imply, else gcc. A choice that contradicts
/// `extra_make_args` is refused, naming both.
pub fn select(
    flag: Option<Toolchain>,
    conf: Option<Toolchain>,
    extra: &[String],
    kernel: &str,
) -> Result<Selected, String> {
    let chosen = match (flag, conf) {
        (Some(t), _) => Some((t, Source::Flag, format!("--toolchain {t}"))),
        (None, Some(t)) => Some((t, Source::Config, format!("\"toolchain\": \"{t}\""))),
        (None, None) => None,
    };
    match (chosen, implied(extra)) {
        (None, Implied::Nothing) => Ok(Selected {
            toolchain: Some(Toolchain::default()),
            source: Source::Default,
        }),
        (None, Implied::Named(t)) => Ok(Selected {
            toolchain: Some(t),
            source: Source::ExtraMakeArgs,
        }),
        (None, Implied::Custom(_)) => Ok(Selected {
            toolchain: None,
            source: Source::ExtraMakeArgs,
        }),
        (Some((t, source, _)), Implied::Nothing) => Ok(Selected {
            toolchain: Some(t),
            source,
        }),
        (Some((t, source, _)), Implied::Named(i)) if i == t => Ok(Selected {
            toolchain: Some(t),
            source,
        }),
        (Some((_, _, what)), Implied::Named(_) | Implied::Custom(_)) => {
            let vars: Vec<&str> = extra
                .iter()
                .filter(|a| {
                    a.split_once('=')
                        .is_some_and(|(k, _)| TOOLCHAIN_VARS.contains(&k))
                })
                .map(String::as_str)
                .collect();
            Err(format!(
                "kernel {kernel:?}: {what} contradicts its extra_make_args {}: remove one of them",
                vars.join(" ")
            ))
        }
    }
}

/// `VERSION` and `PATCHLEVEL` of a kernel's top-level Makefile.
pub fn kernel_version(makefile: &str) -> Option<(u32, u32)> {
    let get = |key: &str| {
        makefile.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().parse::<u32>().ok())?
        })
    };
    Some((get("VERSION")?, get("PATCHLEVEL")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Arch::{Amd64, Arm64};

    fn t(s: &str) -> Toolchain {
        s.parse().unwrap()
    }

    #[test]
    fn names_parse_and_print_canonically() {
        for (input, want) in [
            ("gcc", "gcc"),
            ("GCC-12", "gcc-12"),
            ("llvm", "llvm"),
            ("clang", "llvm"),
            ("llvm-19", "llvm-19"),
            ("clang-19", "llvm-19"),
            (" gcc-8 ", "gcc-8"),
        ] {
            assert_eq!(t(input).to_string(), want, "{input}");
        }
        for bad in [
            "",
            "icc",
            "gcc-",
            "gcc-x",
            "gcc-0",
            "llvm-19.1",
            "gcc-1234",
            "clang--1",
        ] {
            let e = bad.parse::<Toolchain>().unwrap_err();
            assert!(
                e.contains("unknown toolchain") && e.contains("llvm-N"),
                "{bad}: {e}"
            );
        }
        let j = serde_json::to_string(&t("clang-19")).unwrap();
        assert_eq!(j, "\"llvm-19\"");
        assert_eq!(serde_json::from_str::<Toolchain>(&j).unwrap(), t("llvm-19"));
    }

    #[test]
    fn make_vars_native_and_cross() {
        let new = Some((6, 12));
        let cases: &[(&str, Arch, &[&str])] = &[
            ("gcc", Amd64, &[]),
            ("gcc", Arm64, &["CROSS_COMPILE=aarch64-linux-gnu-"]),
            ("gcc-12", Amd64, &["CC=gcc-12", "HOSTCC=gcc-12"]),
            (
                "gcc-12",
                Arm64,
                &[
                    "CROSS_COMPILE=aarch64-linux-gnu-",
                    "CC=aarch64-linux-gnu-gcc-12",
                    "HOSTCC=gcc-12",
                ],
            ),
            ("llvm", Amd64, &["LLVM=1"]),
            ("llvm", Arm64, &["LLVM=1"]),
            ("llvm-19", Arm64, &["LLVM=-19"]),
        ];
        for (name, arch, want) in cases {
            assert_eq!(t(name).make_vars(*arch, Amd64, new), *want, "{name} {arch}");
        }
        // A 5.10 tree takes clang's target from CROSS_COMPILE.
        assert_eq!(
            t("llvm").make_vars(Arm64, Amd64, Some((5, 10))),
            ["LLVM=1", "CROSS_COMPILE=aarch64-linux-gnu-"]
        );
        // On an arm64 host, amd64 is the cross target.
        assert_eq!(
            t("gcc").make_vars(Amd64, Arm64, new),
            ["CROSS_COMPILE=x86_64-linux-gnu-"]
        );
    }

    #[test]
    fn tools_name_their_debian_packages() {
        let names = |tc: &str, arch| -> Vec<(String, String)> {
            t(tc)
                .tools(arch, Amd64)
                .into_iter()
                .map(|x| (x.program, x.package))
                .collect()
        };
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(names("gcc", Amd64), [p("gcc", "gcc")]);
        assert_eq!(
            names("gcc", Arm64),
            [
                p("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
                p("gcc", "gcc")
            ]
        );
        assert_eq!(
            names("gcc-12", Arm64),
            [
                p("aarch64-linux-gnu-gcc-12", "gcc-12-aarch64-linux-gnu"),
                p("aarch64-linux-gnu-ld", "binutils-aarch64-linux-gnu"),
                p("gcc-12", "gcc-12")
            ]
        );
        let llvm = names("llvm-19", Arm64);
        assert_eq!(llvm[0], p("clang-19", "clang-19"));
        assert_eq!(llvm[1], p("ld.lld-19", "lld-19"));
        assert!(llvm[2..]
            .iter()
            .all(|(prog, pkg)| prog.ends_with("-19") && pkg == "llvm-19"));
        assert_eq!(names("llvm", Amd64)[1], p("ld.lld", "lld"));
        // gcc's x86-64 cross package has dashes where the prefix has an underscore.
        assert_eq!(
            t("gcc-13").tools(Amd64, Arm64)[0].package,
            "gcc-13-x86-64-linux-gnu"
        );
    }

    #[test]
    fn compilers_are_cc_and_hostcc() {
        assert_eq!(t("gcc").compilers(Amd64, Amd64), ["gcc"]);
        assert_eq!(
            t("gcc-12").compilers(Arm64, Amd64),
            ["aarch64-linux-gnu-gcc-12", "gcc-12"]
        );
        assert_eq!(t("llvm-19").compilers(Arm64, Amd64), ["clang-19"]);
    }

    #[test]
    fn missing_programs_name_the_packages() {
        let tools = t("llvm-19").tools(Amd64, Amd64);
        assert_eq!(missing(&tools, &|_| true), None);
        let m = missing(&tools, &|p| !p.starts_with("clang")).unwrap();
        assert_eq!(
            m,
            "`clang-19` is not installed: install the Debian package clang-19"
        );
        let m = missing(&tools, &|_| false).unwrap();
        assert!(
            m.starts_with("`clang-19`, `ld.lld-19`, `llvm-ar-19`"),
            "{m}"
        );
        assert!(m.ends_with("packages clang-19 lld-19 llvm-19"), "{m}");
    }

    #[test]
    fn old_trees_refuse_versioned_llvm() {
        assert_eq!(t("llvm-19").unusable_for((6, 12)), None);
        assert_eq!(t("llvm").unusable_for((5, 10)), None);
        let e = t("llvm-19").unusable_for((5, 15)).unwrap();
        assert!(
            e.contains("5.18 or later") && e.contains("this tree is 5.15"),
            "{e}"
        );
    }

    #[test]
    fn extra_make_args_imply_a_toolchain() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(implied(&v(&["W=1"])), Implied::Nothing);
        assert_eq!(implied(&v(&["LLVM=1", "W=1"])), Implied::Named(t("llvm")));
        assert_eq!(implied(&v(&["LLVM=-19"])), Implied::Named(t("llvm-19")));
        assert_eq!(
            implied(&v(&["LLVM=/opt/llvm/bin/"])),
            Implied::Custom(v(&["LLVM=/opt/llvm/bin/"]))
        );
        assert_eq!(
            implied(&v(&["LLVM=1", "CC=clang"])),
            Implied::Custom(v(&["LLVM=1", "CC=clang"]))
        );
    }

    #[test]
    fn selection_order_and_conflicts() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let sel = |flag: Option<&str>, conf: Option<&str>, extra: &[&str]| {
            select(flag.map(t), conf.map(t), &v(extra), "k")
        };
        let ok = |tc: Option<&str>, source| Selected {
            toolchain: tc.map(t),
            source,
        };
        assert_eq!(
            sel(None, None, &[]).unwrap(),
            ok(Some("gcc"), Source::Default)
        );
        assert_eq!(
            sel(None, Some("llvm-19"), &[]).unwrap(),
            ok(Some("llvm-19"), Source::Config)
        );
        assert_eq!(
            sel(Some("gcc-12"), Some("llvm-19"), &[]).unwrap(),
            ok(Some("gcc-12"), Source::Flag)
        );
        assert_eq!(
            sel(None, None, &["LLVM=1"]).unwrap(),
            ok(Some("llvm"), Source::ExtraMakeArgs)
        );
        assert_eq!(
            sel(None, None, &["CC=my-cc"]).unwrap(),
            ok(None, Source::ExtraMakeArgs)
        );
        // agreeing with extra_make_args is fine
        assert_eq!(
            sel(Some("clang"), None, &["LLVM=1"]).unwrap(),
            ok(Some("llvm"), Source::Flag)
        );
        let e = sel(Some("gcc"), None, &["LLVM=1", "W=1"]).unwrap_err();
        assert_eq!(
            e,
            "kernel \"k\": --toolchain gcc contradicts its extra_make_args LLVM=1: remove one of them"
        );
        let e = sel(None, Some("llvm-19"), &["CC=my-cc"]).unwrap_err();
        assert!(
            e.contains("\"toolchain\": \"llvm-19\" contradicts") && e.contains("CC=my-cc"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_tree_version() {
        let mk = "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\n";
        assert_eq!(kernel_version(mk), Some((6, 12)));
        assert_eq!(kernel_version("all:\n\ttrue\n"), None);
    }
}
