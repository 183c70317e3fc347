//! The compiler cache of kernel builds: ccache in front of the toolchain's
//! compilers through a directory of symlinks put first in make's PATH (so
//! `CC` stays what it was and a build with the cache off, or a plain `make` in
//! the tree, rebuilds nothing), the environment that makes its entries safe to
//! share, and the per-build statistics read from ccache's stats log.
//!
//! What keys an entry (ccache's own hashing): the compiler (its path, size
//! and mtime), the whole command line and the source with every header it
//! includes, so another toolchain, a compiler update, another `.config`
//! (`autoconf.h` is included everywhere) or other flags never reuse an
//! object. `CCACHE_BASEDIR` makes absolute paths under the tree relative;
//! the directory a compile ran in is still hashed when it emits debug info
//! (the object records it), so trees at different paths share entries only
//! without debug info.

use std::path::{Path, PathBuf};

/// The ccache program.
pub const CCACHE: &str = "ccache";
/// The Debian package that provides it.
pub const CCACHE_PACKAGE: &str = "ccache";

/// Whether a build uses the compiler cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// When ccache is installed (the default).
    #[default]
    Auto,
    /// Always; a missing ccache is an error.
    On,
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Mode::Auto),
            "on" | "ccache" | "true" | "1" => Ok(Mode::On),
            "off" | "none" | "false" | "0" => Ok(Mode::Off),
            _ => Err(format!("unknown cache mode {s:?} (known: auto, on, off)")),
        }
    }
}

/// The cache directory when none is given: `$CCACHE_DIR`, else
/// `<lvh cache>/ccache` (`$LVH_CACHE_DIR`, `$XDG_CACHE_HOME/lvh`, `~/.cache/lvh`).
pub fn default_dir() -> PathBuf {
    match std::env::var_os("CCACHE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => crate::fsutil::cache_dir().join("ccache"),
    }
}

/// The decision for one build: use the cache or not, and why not.
pub fn decide(mode: Mode, ccache_installed: bool) -> Result<bool, String> {
    match (mode, ccache_installed) {
        (Mode::Off, _) => Ok(false),
        (_, true) => Ok(true),
        (Mode::Auto, false) => Ok(false),
        (Mode::On, false) => Err(format!(
            "--cache on: `{CCACHE}` is not installed: install the Debian package {CCACHE_PACKAGE}"
        )),
    }
}

/// Makes `bin` hold one symlink to `ccache` per compiler name (and nothing
/// else), for ccache's masquerade mode: run as `gcc`, it finds the real gcc
/// further in PATH.
pub fn masquerade(bin: &Path, ccache: &Path, compilers: &[String]) -> std::io::Result<()> {
    if bin.exists() {
        std::fs::remove_dir_all(bin)?;
    }
    std::fs::create_dir_all(bin)?;
    for c in compilers {
        std::os::unix::fs::symlink(ccache, bin.join(c))?;
    }
    Ok(())
}

/// The environment of a build through the cache: `bin` first in PATH, the
/// cache directory, the tree as base directory, the stats log.
pub fn env(
    bin: &Path,
    dir: &Path,
    tree: &Path,
    statslog: &Path,
    path: Option<&std::ffi::OsStr>,
) -> Vec<(String, std::ffi::OsString)> {
    let mut dirs = vec![bin.to_path_buf()];
    if let Some(p) = path {
        dirs.extend(std::env::split_paths(p));
    }
    let path = std::env::join_paths(dirs).unwrap_or_else(|_| bin.as_os_str().to_owned());
    vec![
        ("PATH".into(), path),
        ("CCACHE_DIR".into(), dir.as_os_str().to_owned()),
        ("CCACHE_BASEDIR".into(), tree.as_os_str().to_owned()),
        ("CCACHE_STATSLOG".into(), statslog.as_os_str().to_owned()),
    ]
}

/// What the compiles of one build did with the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Results found in the cache (direct or preprocessed lookups).
    pub hits: u64,
    /// Cacheable compiles that were not in the cache.
    pub misses: u64,
    /// Calls ccache passed through (links, preprocessing only, probes).
    pub uncacheable: u64,
}

impl Stats {
    /// Hits over cacheable compiles, when there were any.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.hit_rate() {
            Some(r) => write!(
                f,
                "{} of {} compiles from the cache ({:.1}%)",
                self.hits,
                self.hits + self.misses,
                r * 100.0
            ),
            None => f.write_str("no cacheable compiles"),
        }
    }
}

/// Reads ccache's stats log: one `# <input>` line per call, then the
/// counters it bumped (`direct_cache_hit`, `cache_miss`, `called_for_link`, ...).
pub fn parse_statslog(text: &str) -> Stats {
    let mut s = Stats::default();
    let mut call: Option<(bool, bool)> = None;
    let flush = |c: Option<(bool, bool)>, s: &mut Stats| match c {
        Some((true, _)) => s.hits += 1,
        Some((false, true)) => s.misses += 1,
        Some((false, false)) => s.uncacheable += 1,
        None => {}
    };
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            flush(call.take(), &mut s);
            call = Some((false, false));
        } else if let Some(c) = call.as_mut() {
            match l {
                "direct_cache_hit" | "preprocessed_cache_hit" => c.0 = true,
                "cache_miss" => c.1 = true,
                _ => {}
            }
        }
    }
    flush(call, &mut s);
    s
}

/// Whether a file under the cache directory is a cache entry worth sharing
/// (results and manifests), not ccache's own bookkeeping (stats counters,
/// locks, temporary files, its configuration).
pub fn is_entry(rel: &Path) -> bool {
    let comps: Vec<_> = rel.components().collect();
    let Some(name) = rel.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    let top = comps
        .first()
        .map(|c| c.as_os_str().to_string_lossy())
        .unwrap_or_default();
    comps.len() >= 2
        && top.len() == 1
        && top.chars().all(|c| c.is_ascii_hexdigit())
        && name != "stats"
        && name != "CACHEDIR.TAG"
        && !name.ends_with(".lock")
        && !name.contains(".tmp")
        && !name.starts_with('.')
}

/// The artifact kind of a pushed cache (the `dev.lvh.artifact` annotation).
pub const ARTIFACT: &str = "kernel-build-cache";
/// Its directory inside the layer: `data/ccache/`.
pub const LAYER_DIR: &str = "ccache";

/// `lvh kernels cache push`: the cache's entries as an OCI artifact.
pub fn push(
    dir: &Path,
    reference: &str,
    opts: &crate::oci::PushOptions,
    reporter: &dyn crate::progress::Reporter,
) -> Result<crate::oci::Pushed, crate::oci::OciError> {
    crate::oci::push_dir(
        dir, LAYER_DIR, ARTIFACT, &is_entry, reference, opts, reporter,
    )
}

/// `lvh kernels cache pull`: a pushed cache's entries into `dir` (entries
/// `dir` has already are kept), then ccache recounts the cache's size.
pub fn pull(
    reference: &str,
    dir: &Path,
    opts: &crate::oci::PullOptions,
    reporter: &dyn crate::progress::Reporter,
) -> Result<crate::oci::PulledDir, crate::oci::OciError> {
    let pulled = crate::oci::pull_dir(reference, LAYER_DIR, dir, opts, reporter)?;
    if crate::exec::which(CCACHE).is_some() {
        let r = crate::exec::Cmd::new(CCACHE)
            .arg("--cleanup")
            .env("CCACHE_DIR", dir)
            .timeout(std::time::Duration::from_secs(600))
            .run(reporter);
        if let Err(e) = r {
            crate::progress::warn(
                reporter,
                format!(
                    "ccache could not recount the cache in {}: {e}",
                    dir.display()
                ),
            );
        }
    }
    Ok(pulled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_the_decision() {
        assert_eq!("off".parse::<Mode>().unwrap(), Mode::Off);
        assert_eq!("ON".parse::<Mode>().unwrap(), Mode::On);
        assert!("sometimes"
            .parse::<Mode>()
            .unwrap_err()
            .contains("auto, on, off"));
        assert_eq!(decide(Mode::Auto, true), Ok(true));
        assert_eq!(decide(Mode::Auto, false), Ok(false));
        assert_eq!(decide(Mode::Off, true), Ok(false));
        let e = decide(Mode::On, false).unwrap_err();
        assert!(e.contains("install the Debian package ccache"), "{e}");
    }

    #[test]
    fn stats_log_counts_hits_misses_and_passthroughs() {
        // ccache 4.7's stats log of: a miss, a direct hit, a link, a
        // preprocessed hit, and a call it could not cache.
        let log =
            "# a.c\ncache_miss\ndirect_cache_miss\nlocal_storage_miss\npreprocessed_cache_miss\n\
                   # a.c\ndirect_cache_hit\nlocal_storage_hit\n\
                   # a.o\ncalled_for_link\n\
                   # b.c\ndirect_cache_miss\npreprocessed_cache_hit\n\
                   # /dev/null\nno_input_file\n";
        let s = parse_statslog(log);
        assert_eq!(
            s,
            Stats {
                hits: 2,
                misses: 1,
                uncacheable: 2
            }
        );
        assert_eq!(s.hit_rate(), Some(2.0 / 3.0));
        assert_eq!(s.to_string(), "2 of 3 compiles from the cache (66.7%)");
        assert_eq!(parse_statslog(""), Stats::default());
        assert_eq!(Stats::default().hit_rate(), None);
    }

    #[test]
    fn entries_are_results_and_manifests_only() {
        for (p, want) in [
            ("0/8/3a9bphk9eic6nksdmv2cmosfcbck956R", true),
            ("c/5a0dmg56s4tjsnb849f7atdim2ovlu2M", true),
            ("0/stats", false),
            ("0/c/stats", false),
            ("0/CACHEDIR.TAG", false),
            ("ccache.conf", false),
            ("tmp/x.tmp.123", false),
            ("lock/auto_cleanup", false),
            ("0/8/x.lock", false),
            ("stats", false),
        ] {
            assert_eq!(is_entry(Path::new(p)), want, "{p}");
        }
    }

    #[test]
    fn masquerade_dir_links_each_compiler() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("stale"), b"").unwrap();
        masquerade(
            &bin,
            Path::new("/usr/bin/ccache"),
            &["gcc".into(), "clang-19".into()],
        )
        .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["clang-19", "gcc"]);
        assert_eq!(
            std::fs::read_link(bin.join("gcc")).unwrap(),
            Path::new("/usr/bin/ccache")
        );
        let e = env(
            &bin,
            Path::new("/c"),
            Path::new("/t"),
            Path::new("/s"),
            Some("/usr/bin:/bin".as_ref()),
        );
        assert_eq!(e[0].1, format!("{}:/usr/bin:/bin", bin.display()).as_str());
        assert_eq!(e[1], ("CCACHE_DIR".to_string(), "/c".into()));
    }
}
