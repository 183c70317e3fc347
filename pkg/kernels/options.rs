//! Kernel config options as `kernels.json` stores them (the argv of the kernel's
//! `scripts/config`), parsed into what each asks of the final `.config`, and the
//! embedded option groups (`configs/kconfig/*.conf`).

use std::fmt;

/// One entry of `opts` / `common_opts`: an argv for `scripts/config`.
pub type ConfigOption = Vec<String>;

/// What an option asks for one Kconfig symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    Enable,
    Disable,
    Module,
    /// `--set-val`: the value as `.config` writes it.
    Val(String),
    /// `--set-str`: the string, unquoted.
    Str(String),
    Undefine,
}

/// A parsed `scripts/config` command: a symbol (without `CONFIG_`) and its wanted state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub symbol: String,
    pub want: Want,
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Enable => f.write_str("y"),
            Want::Disable => f.write_str("n"),
            Want::Module => f.write_str("m"),
            Want::Val(v) => f.write_str(v),
            Want::Str(s) => write!(f, "{s:?}"),
            Want::Undefine => f.write_str("undefined"),
        }
    }
}

/// Strips an optional `CONFIG_` prefix and checks the symbol's characters.
pub fn symbol_name(raw: &str) -> Result<String, String> {
    let s = raw.strip_prefix("CONFIG_").unwrap_or(raw);
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{raw:?} is not a kernel config symbol"));
    }
    Ok(s.to_string())
}

/// Parses one option (which may hold several `scripts/config` commands) into the
/// settings it makes, in order. Rejects commands lvh cannot verify or that would
/// change how later commands are read (`--file`, `--keep-case`, `--state`).
pub fn parse_option(opt: &[String]) -> Result<Vec<Setting>, String> {
    if opt.is_empty() {
        return Err(
            "an option must not be empty (expected e.g. [\"--enable\", \"CONFIG_X\"])".into(),
        );
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < opt.len() {
        let cmd = opt[i].as_str();
        let (arity, want): (usize, fn(&[String]) -> Want) = match cmd {
            "--enable" | "-e" | "--enable-after" | "-E" => (1, |_| Want::Enable),
            "--disable" | "-d" | "--disable-after" | "-D" => (1, |_| Want::Disable),
            "--module" | "-m" | "--module-after" | "-M" => (1, |_| Want::Module),
            "--undefine" | "-u" => (1, |_| Want::Undefine),
            "--set-str" => (2, |a| Want::Str(a[1].clone())),
            "--set-val" => (2, |a| Want::Val(a[1].clone())),
            other => {
                return Err(format!(
                    "unknown scripts/config command {other:?} in {opt:?} (known: --enable, --disable, --module, --undefine, --set-str, --set-val, --enable-after, --disable-after, --module-after)"
                ))
            }
        };
        // The -after forms name the symbol to place the new one after first.
        let skip = usize::from(cmd.ends_with("-after") || matches!(cmd, "-E" | "-D" | "-M"));
        let args = &opt[i + 1..];
        if args.len() < skip + arity {
            return Err(format!(
                "{cmd} needs {} argument(s) in {opt:?}",
                skip + arity
            ));
        }
        let args = &args[skip..skip + arity];
        if args
            .iter()
            .any(|a| a.starts_with('-') && a.len() > 1 && arity == 1)
        {
            return Err(format!("{cmd} is missing its symbol in {opt:?}"));
        }
        out.push(Setting {
            symbol: symbol_name(&args[0]).map_err(|e| format!("{e} in {opt:?}"))?,
            want: want(args),
        });
        i += 1 + skip + arity;
    }
    Ok(out)
}

/// An option group shipped with lvh.
pub struct Group {
    pub name: &'static str,
    pub text: &'static str,
}

/// Every group, in the order `--help` lists them.
pub const GROUPS: &[Group] = &[
    Group {
        name: "basic",
        text: include_str!("../../configs/kconfig/basic.conf"),
    },
    Group {
        name: "bpf",
        text: include_str!("../../configs/kconfig/bpf.conf"),
    },
    Group {
        name: "virtio",
        text: include_str!("../../configs/kconfig/virtio.conf"),
    },
    Group {
        name: "minimize",
        text: include_str!("../../configs/kconfig/minimize.conf"),
    },
    Group {
        name: "namespaces",
        text: include_str!("../../configs/kconfig/namespaces.conf"),
    },
    Group {
        name: "runner",
        text: include_str!("../../configs/kconfig/runner.conf"),
    },
    Group {
        name: "compat",
        text: include_str!("../../configs/kconfig/compat.conf"),
    },
    Group {
        name: "testing",
        text: include_str!("../../configs/kconfig/testing.conf"),
    },
    Group {
        name: "kmemleak",
        text: include_str!("../../configs/kconfig/kmemleak.conf"),
    },
    Group {
        name: "tracing",
        text: include_str!("../../configs/kconfig/tracing.conf"),
    },
];

/// The names of every group, comma separated.
pub fn group_names() -> String {
    GROUPS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
}

/// Parses a group file: one option per line (whitespace-separated argv), `#` comments.
pub fn parse_group_text(text: &str) -> Vec<ConfigOption> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// The options of the named groups, concatenated in the given order. An unknown
/// group is an error that lists the known ones.
pub fn group_options(names: &[String]) -> Result<Vec<ConfigOption>, String> {
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let g = GROUPS
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| format!("unknown config group {name:?} (known: {})", group_names()))?;
        out.extend(parse_group_text(g.text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    type Case<'a> = (&'a [&'a str], &'a [(&'a str, Want)]);

    #[test]
    fn parses_scripts_config_commands() {
        let cases: &[Case] = &[
            (&["--enable", "CONFIG_BPF"], &[("BPF", Want::Enable)]),
            (&["-d", "WERROR"], &[("WERROR", Want::Disable)]),
            (&["--module", "CONFIG_E1000"], &[("E1000", Want::Module)]),
            (
                &["--set-val", "CONFIG_NR_CPUS", "4"],
                &[("NR_CPUS", Want::Val("4".into()))],
            ),
            (
                &["--set-str", "LOCALVERSION", "-lvh"],
                &[("LOCALVERSION", Want::Str("-lvh".into()))],
            ),
            (&["--enable-after", "A", "CONFIG_B"], &[("B", Want::Enable)]),
            (
                &["-e", "A", "-d", "B"],
                &[("A", Want::Enable), ("B", Want::Disable)],
            ),
        ];
        for (input, want) in cases {
            let got = parse_option(&v(input)).unwrap();
            let want: Vec<Setting> = want
                .iter()
                .map(|(s, w)| Setting {
                    symbol: s.to_string(),
                    want: w.clone(),
                })
                .collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn rejects_malformed_options() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "must not be empty"),
            (&["--enable"], "needs 1 argument"),
            (&["--set-val", "X"], "needs 2 argument"),
            (
                &["--file", "x"],
                "unknown scripts/config command \"--file\"",
            ),
            (&["CONFIG_X"], "unknown scripts/config command"),
            (&["--enable", "CONFIG_X=y"], "is not a kernel config symbol"),
            (&["--enable", "--disable"], "missing its symbol"),
        ];
        for (input, want) in cases {
            let err = parse_option(&v(input)).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn every_group_parses_and_matches_little_vm_helper() {
        for g in GROUPS {
            let opts = parse_group_text(g.text);
            assert!(!opts.is_empty(), "{}", g.name);
            for o in &opts {
                parse_option(o).unwrap_or_else(|e| panic!("group {}: {e}", g.name));
            }
        }
        let count = |n: &str| group_options(&[n.to_string()]).unwrap().len();
        // The sizes of little-vm-helper's groups (minimize with ISO9660_FS fixed).
        assert_eq!(count("basic"), 4);
        assert_eq!(count("bpf"), 15);
        assert_eq!(count("virtio"), 9);
        assert_eq!(count("minimize"), 18);
        assert_eq!(count("namespaces"), 7);
        let basic = group_options(&["basic".into()]).unwrap();
        assert_eq!(basic[3], v(&["--disable", "CONFIG_WERROR"]));
    }

    #[test]
    fn runner_group_has_the_boot_essentials() {
        let runner = group_options(&["runner".into()]).unwrap();
        for sym in [
            "SERIAL_8250_CONSOLE",
            "SERIAL_AMBA_PL011_CONSOLE",
            "VIRTIO_BLK",
            "EXT4_FS",
            "DEVTMPFS_MOUNT",
            "9P_FS_POSIX_ACL",
            "VIRTIO_NET",
            "IP_PNP",
            "OVERLAY_FS",
            "CGROUPS",
            "VIRTIO_CONSOLE",
            "PVH",
        ] {
            assert!(
                runner.contains(&v(&["--enable", &format!("CONFIG_{sym}")])),
                "{sym}"
            );
        }
    }

    #[test]
    fn unknown_group_lists_the_known_ones() {
        let err = group_options(&["basic".into(), "nope".into()]).unwrap_err();
        assert!(err.contains("\"nope\""), "{err}");
        assert!(
            err.contains("basic, bpf, virtio, minimize, namespaces, runner, compat"),
            "{err}"
        );
    }
}
