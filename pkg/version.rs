//! What `lvh version` says, decided from the facts the build recorded.
//!
//! `build.rs` records `git describe` of the checkout lvh was built from (tags
//! `vX.Y.Z`), the full commit, the target and the compiler. A build of a
//! release tag prints the bare release version (`v0.1.0`), one line, as
//! little-vm-helper prints its version; a build between releases prints where
//! it is in git's own words (`v0.1.0-3-gabc1234`, `-dirty` for uncommitted
//! changes), so the commit is always named; a build without git (the crates.io
//! package) prints the crate's version.

/// The crate's version (`Cargo.toml`).
pub const PKG_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the build recorded about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate version, without a `v`.
    pub pkg_version: &'static str,
    /// `git describe --tags --long --always --match 'v[0-9]*' --dirty` of the
    /// checkout, when lvh was built from one.
    pub describe: Option<&'static str>,
    /// The full commit id, from git or from the crate package's
    /// `.cargo_vcs_info.json`.
    pub commit: Option<&'static str>,
    /// The Rust target triple lvh was built for.
    pub target: &'static str,
    /// `rustc -V` of the compiler that built lvh.
    pub rustc: &'static str,
}

/// This build's facts.
pub const BUILD: BuildInfo = BuildInfo {
    pkg_version: PKG_VERSION,
    describe: option_env!("LVH_GIT_DESCRIBE"),
    commit: option_env!("LVH_GIT_COMMIT"),
    target: env!("LVH_BUILD_TARGET"),
    rustc: env!("LVH_BUILD_RUSTC"),
};

/// `git describe --long` output taken apart: `<tag>-<n>-g<hex>` or, with no
/// tag in the history, `<hex>`; either with `-dirty`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Describe<'a> {
    /// The tag and how many commits HEAD is past it.
    tag: Option<(&'a str, u32)>,
    abbrev: &'a str,
    dirty: bool,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_describe(s: &str) -> Option<Describe<'_>> {
    let (s, dirty) = match s.strip_suffix("-dirty") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    if is_hex(s) {
        return Some(Describe {
            tag: None,
            abbrev: s,
            dirty,
        });
    }
    // From the right: a tag may itself contain hyphens (v1.0.0-rc.1).
    let (rest, g) = s.rsplit_once('-')?;
    let abbrev = g.strip_prefix('g').filter(|h| is_hex(h))?;
    let (tag, n) = rest.rsplit_once('-')?;
    let n = n.parse().ok()?;
    (!tag.is_empty()).then_some(Describe {
        tag: Some((tag, n)),
        abbrev,
        dirty,
    })
}

impl BuildInfo {
    /// The one line `lvh version` prints: `v0.1.0` for a clean build of the
    /// release's tag, else git's description naming the commit.
    pub fn version(&self) -> String {
        let release = format!("v{}", self.pkg_version);
        let Some(d) = self.describe.and_then(parse_describe) else {
            return release;
        };
        let dirty = if d.dirty { "-dirty" } else { "" };
        match d.tag {
            Some((tag, 0)) if tag == release && !d.dirty => release,
            Some((tag, n)) => format!("{tag}-{n}-g{}{dirty}", d.abbrev),
            // No release tag in the history yet: the coming release and the commit.
            None => format!("{release}-g{}{dirty}", d.abbrev),
        }
    }

    /// The lines `lvh version -v` prints after the version, as (label, value).
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let dirty = self
            .describe
            .and_then(parse_describe)
            .is_some_and(|d| d.dirty);
        let commit = match self.commit {
            Some(c) if dirty => format!("{c} (with uncommitted changes)"),
            Some(c) => c.to_string(),
            None => "unknown".into(),
        };
        vec![
            ("commit", commit),
            ("target", self.target.to_string()),
            ("rustc", self.rustc.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(describe: Option<&'static str>) -> BuildInfo {
        BuildInfo {
            pkg_version: "0.1.0",
            describe,
            commit: Some("75af17799e9d8ad0b9a7b1d26c20b7c6f0a1c2d3"),
            target: "x86_64-unknown-linux-gnu",
            rustc: "rustc 1.95.0",
        }
    }

    #[test]
    fn the_release_prints_bare_and_other_builds_name_their_commit() {
        for (describe, want) in [
            (None, "v0.1.0"),
            (Some("v0.1.0-0-g75af177"), "v0.1.0"),
            (Some("v0.1.0-0-g75af177-dirty"), "v0.1.0-0-g75af177-dirty"),
            (Some("v0.1.0-3-g75af177"), "v0.1.0-3-g75af177"),
            (Some("v0.1.0-3-g75af177-dirty"), "v0.1.0-3-g75af177-dirty"),
            // Cargo.toml bumped for the next release, not tagged yet.
            (Some("v0.0.9-0-g75af177"), "v0.0.9-0-g75af177"),
            (Some("v0.2.0-rc.1-2-g75af177"), "v0.2.0-rc.1-2-g75af177"),
            (Some("75af177"), "v0.1.0-g75af177"),
            (Some("75af177-dirty"), "v0.1.0-g75af177-dirty"),
            // Not git's shape: the crate version, never a garbled line.
            (Some(""), "v0.1.0"),
            (Some("v0.1.0-x-g75af177"), "v0.1.0"),
            (Some("-0-g75af177"), "v0.1.0"),
            (Some("v0.1.0-0-gzz"), "v0.1.0"),
        ] {
            assert_eq!(info(describe).version(), want, "{describe:?}");
        }
    }

    #[test]
    fn details_name_the_commit_target_and_compiler() {
        let d = info(Some("v0.1.0-0-g75af177")).details();
        let labels: Vec<&str> = d.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels, ["commit", "target", "rustc"]);
        assert_eq!(d[0].1, "75af17799e9d8ad0b9a7b1d26c20b7c6f0a1c2d3");
        let dirty = info(Some("v0.1.0-3-g75af177-dirty")).details();
        assert!(dirty[0].1.ends_with("(with uncommitted changes)"));
        let mut none = info(None);
        none.commit = None;
        assert_eq!(none.details()[0].1, "unknown");
    }

    #[test]
    fn this_build_has_a_well_formed_version() {
        let v = BUILD.version();
        assert!(
            v.starts_with('v') && !v.contains(char::is_whitespace),
            "{v}"
        );
        assert!(!BUILD.target.is_empty() && BUILD.rustc.starts_with("rustc "));
    }
}
