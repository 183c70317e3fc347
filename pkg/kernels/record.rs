//! The build record: `<tree>/lvh-build.json`, next to `tar-install`, says how
//! the install tree was built (commit, configuration and its hash, toolchain
//! and compiler version, make variables, environment, duration, warnings,
//! compiler-cache hits) and holds what `kernels build --reproduce` needs to
//! build the same thing again; also the facts it records from outside the
//! build (the tree's HEAD, kbuild's build identity). Written atomically once
//! `tar-install` is in place, and removed before a new one replaces it, so a
//! record always describes the install tree beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ccache::Stats;
use super::config::KernelConf;
use super::makevars::MakeVar;
use super::options::ConfigOption;
use crate::arch::Arch;

/// The record's file name inside a kernel tree.
pub const FILE_NAME: &str = "lvh-build.json";
/// The record format; a reader refuses newer ones.
pub const FORMAT: u32 = 1;

/// Where a tree's record lives.
pub fn path(tree: &Path) -> PathBuf {
    tree.join(FILE_NAME)
}

/// How one build went through the compiler cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheUse {
    pub dir: PathBuf,
    #[serde(flatten)]
    pub stats: Stats,
    /// `hits / (hits + misses)`, absent when nothing was compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<f64>,
}

/// Everything known about the build that produced `tar-install`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub format: u32,
    pub lvh_version: String,
    pub kernel: String,
    #[serde(with = "arch_str")]
    pub arch: Arch,
    /// `make kernelrelease`.
    pub release: String,
    /// The tree's HEAD commit, when it is a git worktree.
    #[serde(default)]
    pub commit: Option<String>,
    /// Whether tracked files differed from the commit.
    #[serde(default)]
    pub modified: bool,
    /// sha256 of the `.config` the kernel was built with.
    pub config_sha256: String,
    /// The kernel's entry in kernels.json as configured, and the common options.
    pub kernel_conf: KernelConf,
    #[serde(default)]
    pub common_opts: Vec<ConfigOption>,
    /// `gcc`, `gcc-12`, `llvm-19`, or `custom` when `extra_make_args` chose.
    pub toolchain: String,
    /// The compiler's version as the kernel saw it (`CONFIG_CC_VERSION_TEXT`).
    pub compiler: String,
    /// Every variable on make's command line, in order.
    pub make_vars: Vec<String>,
    /// The `--make-var` ones among them.
    #[serde(default)]
    pub user_make_vars: Vec<MakeVar>,
    /// The kbuild environment lvh set (`KBUILD_BUILD_TIMESTAMP`, ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub jobs: usize,
    /// When the build started, UTC, RFC 3339.
    pub started: String,
    pub duration_secs: f64,
    /// Compiler and kbuild warnings in the build's output.
    pub warnings: u64,
    #[serde(default)]
    pub cache: Option<CacheUse>,
    /// The bootable image, relative to the tree, and its sha256.
    pub image: String,
    pub image_sha256: String,
}

mod arch_str {
    use crate::arch::Arch;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Arch, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl BuildRecord {
    /// Pretty JSON, as written.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a record serializes");
        s.push('\n');
        s
    }

    /// Parses a record; the error names what is wrong.
    pub fn parse(text: &str) -> Result<BuildRecord, String> {
        #[derive(Deserialize)]
        struct Head {
            format: Option<u32>,
        }
        let head: Head =
            serde_json::from_str(text).map_err(|e| format!("not a build record: {e}"))?;
        match head.format {
            Some(f) if f > FORMAT => {
                return Err(format!(
                    "format {f} is newer than this lvh reads ({FORMAT}): update lvh"
                ))
            }
            None => return Err("not a build record: no \"format\"".into()),
            _ => {}
        }
        serde_json::from_str(text).map_err(|e| format!("not a build record: {e}"))
    }

    /// Reads `file`.
    pub fn read(file: &Path) -> Result<BuildRecord, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read it: {e}"))?;
        Self::parse(&text)
    }

    /// Refuses to rebuild from another commit than the record's, saying
    /// what to check out.
    pub fn check_commit(&self, head: Option<&Head>, tree: &Path) -> Result<(), String> {
        match (&self.commit, head) {
            (Some(want), Some(h)) if *want != h.commit => Err(format!(
                "the tree {} is at commit {}, the record was built from {want}: check it out first (git -C {} checkout {want})",
                tree.display(),
                h.commit,
                tree.display()
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a `.config` (of sha256 `sha`) other than the recorded one.
    pub fn check_config(&self, sha: &str, dotconfig: &Path) -> Result<(), String> {
        if self.config_sha256 == sha {
            return Ok(());
        }
        Err(format!(
            "the configuration differs from the record's (.config sha256 {sha}, recorded {}): compare {} with the recorded compiler {:?}",
            self.config_sha256,
            dotconfig.display(),
            self.compiler
        ))
    }

    /// The hit rate as a percentage for tables, `-` without the cache.
    pub fn hit_rate_text(&self) -> String {
        match self.cache.as_ref().and_then(|c| c.hit_rate) {
            Some(r) => format!("{:.0}%", r * 100.0),
            None => "-".into(),
        }
    }
}

/// A tree's HEAD commit, its time, and whether tracked files differ from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub commit: String,
    pub time: i64,
    pub modified: bool,
}

/// The HEAD of the git worktree `tree`, if it is one.
pub fn head(tree: &Path) -> Option<Head> {
    let repo = git2::Repository::open(tree).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    let mut o = git2::StatusOptions::new();
    o.include_untracked(false).include_ignored(false);
    let modified = repo
        .statuses(Some(&mut o))
        .map(|s| !s.is_empty())
        .unwrap_or(false);
    Some(Head {
        commit: commit.id().to_string(),
        time: commit.time().seconds(),
        modified,
    })
}

/// kbuild's build identity, fixed so that builds of one commit are alike (and
/// hit the cache): the commit's time as `KBUILD_BUILD_TIMESTAMP`, `lvh` as
/// user and host; each unless set in lvh's own environment.
pub fn kbuild_env(
    commit_time: Option<i64>,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let defaults = [
        ("KBUILD_BUILD_TIMESTAMP", commit_time.map(c_locale_date)),
        ("KBUILD_BUILD_USER", Some("lvh".to_string())),
        ("KBUILD_BUILD_HOST", Some("lvh".to_string())),
    ];
    for (k, d) in defaults {
        if let Some(val) = getenv(k).or(d) {
            v.push((k.to_string(), val));
        }
    }
    v
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    Ok(format!("{:x}", Sha256::digest(std::fs::read(path)?)))
}

/// Whether a line of a build's output is a warning: a compiler's
/// `file:line:col: warning: ...` or kbuild's `WARNING: ...` (modpost, objtool).
pub fn is_warning(line: &str) -> bool {
    let l = line.trim_start();
    l.contains(": warning: ") || l.starts_with("WARNING: ") || l.contains(": warning: objtool:")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn rfc3339(unix: i64) -> String {
    let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let d = crate::date::Date::from_unix_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year,
        d.month,
        d.day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A Unix time as `date -u` prints it in the C locale
/// (`Sun Nov 17 00:00:00 UTC 2024`): what `uname -v` shows, and what kbuild
/// can hand back to `date -d`.
pub fn c_locale_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let d = crate::date::Date::from_unix_days(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(d.month - 1) as usize],
        d.day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BuildRecord {
        BuildRecord {
            format: FORMAT,
            lvh_version: "0.1.0".into(),
            kernel: "bpf-next".into(),
            arch: Arch::Arm64,
            release: "6.12.118".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            modified: false,
            config_sha256: "ab".repeat(32),
            kernel_conf: KernelConf {
                name: "bpf-next".into(),
                url: "/src/linux".into(),
                base_config: Some("tinyconfig".into()),
                ..Default::default()
            },
            common_opts: vec![vec!["--enable".into(), "CONFIG_BPF".into()]],
            toolchain: "llvm-19".into(),
            compiler: "Debian clang version 19.1.7 (3~deb12u1)".into(),
            make_vars: vec!["ARCH=arm64".into(), "LLVM=-19".into(), "W=1".into()],
            user_make_vars: vec!["W=1".parse().unwrap()],
            env: [("KBUILD_BUILD_USER".to_string(), "lvh".to_string())].into(),
            jobs: 2,
            started: rfc3339(1_731_801_600),
            duration_secs: 312.5,
            warnings: 3,
            cache: Some(CacheUse {
                dir: "/c".into(),
                stats: Stats {
                    hits: 95,
                    misses: 5,
                    uncacheable: 10,
                },
                hit_rate: Some(0.95),
            }),
            image: "arch/arm64/boot/Image.gz".into(),
            image_sha256: "cd".repeat(32),
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let r = sample();
        let text = r.to_json();
        assert!(text.contains("\"arch\": \"arm64\""), "{text}");
        assert!(text.contains("\"hits\": 95"), "{text}");
        assert_eq!(BuildRecord::parse(&text).unwrap(), r);
        assert_eq!(r.hit_rate_text(), "95%");
        let newer = text.replace("\"format\": 1", "\"format\": 2");
        assert!(BuildRecord::parse(&newer)
            .unwrap_err()
            .contains("update lvh"));
        assert!(BuildRecord::parse("{}")
            .unwrap_err()
            .contains("no \"format\""));
        assert!(BuildRecord::parse("[")
            .unwrap_err()
            .starts_with("not a build record"));
        let bad_arch = text.replace("\"arm64\"", "\"sparc\"");
        assert!(BuildRecord::parse(&bad_arch).unwrap_err().contains("sparc"));
    }

    #[test]
    fn kbuild_env_defaults_give_way_to_the_environment() {
        let none = |_: &str| None;
        let v = kbuild_env(Some(1_731_801_600), &none);
        assert_eq!(
            v,
            [
                (
                    "KBUILD_BUILD_TIMESTAMP".to_string(),
                    "Sun Nov 17 00:00:00 UTC 2024".to_string()
                ),
                ("KBUILD_BUILD_USER".into(), "lvh".into()),
                ("KBUILD_BUILD_HOST".into(), "lvh".into()),
            ]
        );
        let host = |k: &str| (k == "KBUILD_BUILD_HOST").then(|| "ci-runner".to_string());
        let v = kbuild_env(None, &host);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[1], ("KBUILD_BUILD_HOST".into(), "ci-runner".into()));
    }

    #[test]
    fn rebuilding_needs_the_recorded_commit_and_config() {
        let mut rec = sample();
        let t = Path::new("/t");
        let at = |c: String| Head {
            commit: c,
            time: 0,
            modified: false,
        };
        assert!(rec
            .check_commit(Some(&at(rec.commit.clone().unwrap())), t)
            .is_ok());
        let other = at("f".repeat(40));
        let e = rec.check_commit(Some(&other), t).unwrap_err();
        assert!(e.contains("git -C /t checkout 0123456789abcdef"), "{e}");
        assert!(rec.check_config(&"ab".repeat(32), t).is_ok());
        let e = rec.check_config("00", Path::new("/t/.config")).unwrap_err();
        assert!(
            e.contains("compare /t/.config") && e.contains("clang version 19"),
            "{e}"
        );
        rec.commit = None;
        assert!(rec.check_commit(Some(&other), t).is_ok());
    }

    #[test]
    fn warnings_are_compiler_and_kbuild_ones() {
        for (l, want) in [
            (
                "kernel/fork.c:12:5: warning: unused variable 'x' [-Wunused-variable]",
                true,
            ),
            (
                "WARNING: modpost: vmlinux: section mismatch in reference",
                true,
            ),
            (
                "vmlinux.o: warning: objtool: foo+0x1: call without frame pointer",
                true,
            ),
            ("  CC      kernel/fork.o", false),
            ("   12 | int x;", false),
            ("warning: this is not a compiler line", false),
        ] {
            assert_eq!(is_warning(l), want, "{l}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_731_801_600), "2024-11-17T00:00:00Z");
        assert_eq!(c_locale_date(0), "Thu Jan  1 00:00:00 UTC 1970");
        assert_eq!(
            c_locale_date(1_731_801_600 + 3_661),
            "Sun Nov 17 01:01:01 UTC 2024"
        );
    }
}
