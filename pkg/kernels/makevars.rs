//! `--make-var KEY=VALUE`: extra variables for the kernel's make (`W=1`,
//! `KCFLAGS=...`), checked before anything runs. A key must be a make
//! variable name; keys lvh sets itself are refused with the flag that sets
//! them; a key one typo away from a kbuild variable is refused with the
//! variable it probably meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One `KEY=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeVar {
    pub key: String,
    pub value: String,
}

impl fmt::Display for MakeVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Keys lvh sets itself, and what to use instead.
const RESERVED: &[(&str, &str)] = &[
    ("ARCH", "use --arch"),
    ("SRCARCH", "use --arch"),
    (
        "CROSS_COMPILE",
        "use --toolchain (lvh sets it for cross builds)",
    ),
    ("LLVM", "use --toolchain llvm or llvm-N"),
    ("CC", "use --toolchain"),
    ("HOSTCC", "use --toolchain"),
    ("O", "lvh builds inside the kernel tree"),
    ("KBUILD_OUTPUT", "lvh builds inside the kernel tree"),
    ("KCONFIG_CONFIG", "lvh configures the tree's .config"),
    ("M", "lvh builds the kernel, not external modules"),
    (
        "KBUILD_EXTMOD",
        "lvh builds the kernel, not external modules",
    ),
    ("INSTALL_MOD_PATH", "lvh installs into tar-install"),
    ("INSTALL_PATH", "lvh installs into tar-install"),
];

/// kbuild's documented command-line and environment variables: what a
/// near-miss key is compared with.
const KNOWN: &[&str] = &[
    "V",
    "W",
    "C",
    "CF",
    "CHECK",
    "CHECKFLAGS",
    "KCFLAGS",
    "KCPPFLAGS",
    "KAFLAGS",
    "KRUSTFLAGS",
    "CFLAGS_KERNEL",
    "AFLAGS_KERNEL",
    "RUSTFLAGS_KERNEL",
    "CFLAGS_MODULE",
    "AFLAGS_MODULE",
    "LDFLAGS_MODULE",
    "RUSTFLAGS_MODULE",
    "HOSTCFLAGS",
    "HOSTCXXFLAGS",
    "HOSTLDFLAGS",
    "HOSTLDLIBS",
    "HOSTRUSTFLAGS",
    "USERCFLAGS",
    "USERLDFLAGS",
    "LOCALVERSION",
    "LLVM_IAS",
    "LD",
    "AR",
    "NM",
    "OBJCOPY",
    "OBJDUMP",
    "READELF",
    "STRIP",
    "PAHOLE",
    "RESOLVE_BTFIDS",
    "INSTALL_MOD_STRIP",
    "INSTALL_HDR_PATH",
    "INSTALL_DTBS_PATH",
    "KBUILD_BUILD_TIMESTAMP",
    "KBUILD_BUILD_USER",
    "KBUILD_BUILD_HOST",
    "KBUILD_BUILD_VERSION",
    "KBUILD_VERBOSE",
    "KBUILD_EXTRA_WARN",
    "KBUILD_ABS_SRCTREE",
    "KBUILD_SIGN_PIN",
    "KBUILD_MODPOST_WARN",
    "KBUILD_MODPOST_NOFINAL",
    "KCONFIG_ALLCONFIG",
    "KALLSYMS_EXTRA_PASS",
    "CLIPPY",
];

impl FromStr for MakeVar {
    type Err = String;

    /// Parses and checks one `KEY=VALUE`; the error names the key.
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!("{s:?}: expected KEY=VALUE (e.g. W=1)"));
        };
        check_key(key)?;
        Ok(MakeVar {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// Why `key` cannot be a `--make-var` key, if it cannot.
pub fn check_key(key: &str) -> Result<(), String> {
    let well_formed = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err(format!(
            "{key:?} is not a make variable name (letters, digits and '_', not starting with a digit)"
        ));
    }
    if let Some((_, instead)) = RESERVED.iter().find(|(k, _)| *k == key) {
        return Err(format!("{key} is set by lvh: {instead}"));
    }
    // CONFIG_* on make's command line is kbuild's own habit (CONFIG_DEBUG_SECTION_MISMATCH=y).
    if KNOWN.contains(&key) || key.starts_with("CONFIG_") || key.len() < 4 {
        return Ok(());
    }
    let near = KNOWN
        .iter()
        .chain(RESERVED.iter().map(|(k, _)| k))
        .filter(|k| k.len() >= 4)
        .map(|k| (strsim::osa_distance(k, key), *k))
        .filter(|(d, k)| *d <= if k.len() >= 8 { 2 } else { 1 })
        .min();
    match near {
        Some((_, k)) => Err(format!("{key} is not a kbuild variable; did you mean {k}?")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_vars_parse() {
        for (s, k, v) in [
            ("W=1", "W", "1"),
            ("KCFLAGS=-O1 -g", "KCFLAGS", "-O1 -g"),
            ("LOCALVERSION=", "LOCALVERSION", ""),
            (
                "CONFIG_DEBUG_SECTION_MISMATCH=y",
                "CONFIG_DEBUG_SECTION_MISMATCH",
                "y",
            ),
            ("MY_OWN_FLAG=a=b", "MY_OWN_FLAG", "a=b"),
            ("LLVM_IAS=0", "LLVM_IAS", "0"),
            ("_x=1", "_x", "1"),
        ] {
            let m: MakeVar = s.parse().unwrap();
            assert_eq!((m.key.as_str(), m.value.as_str()), (k, v), "{s}");
            assert_eq!(m.to_string(), s);
        }
    }

    #[test]
    fn bad_vars_are_refused_naming_the_key() {
        let cases = [
            ("W", "expected KEY=VALUE"),
            ("=1", "\"\" is not a make variable name"),
            ("1W=1", "\"1W\" is not a make variable name"),
            ("-j4=1", "\"-j4\" is not a make variable name"),
            ("FOO BAR=1", "\"FOO BAR\" is not a make variable name"),
            ("ARCH=arm64", "ARCH is set by lvh: use --arch"),
            ("LLVM=1", "LLVM is set by lvh: use --toolchain llvm"),
            ("CC=clang", "CC is set by lvh: use --toolchain"),
            ("CROSS_COMPILE=x-", "CROSS_COMPILE is set by lvh"),
            (
                "O=/tmp/out",
                "O is set by lvh: lvh builds inside the kernel tree",
            ),
            (
                "KCFALGS=-O2",
                "KCFALGS is not a kbuild variable; did you mean KCFLAGS?",
            ),
            ("LOCALVERISON=-x", "did you mean LOCALVERSION?"),
            ("HOSTCFLAG=-O2", "did you mean HOSTCFLAGS?"),
            ("LLVM_ISA=0", "did you mean LLVM_IAS?"),
        ];
        for (s, want) in cases {
            let e = s.parse::<MakeVar>().unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
