//! The fixture cache: expensive test inputs (a small kernel, a small root image)
//! built once by lvh's own commands and kept outside the checkout, in
//! `$LVH_TEST_CACHE` or `${XDG_CACHE_HOME:-$HOME/.cache}/lvh-tests`, under a key
//! that hashes every input. A fixture appears at its final path only when
//! complete, and a lock keeps two test processes from building it twice.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use lvh::fsutil::{Lock, Partial};
use sha2::{Digest, Sha256};

/// How long a test waits for another process building the same fixture.
const BUILD_WAIT: Duration = Duration::from_secs(60 * 60);

/// Where fixtures live.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("LVH_TEST_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    base.join("lvh-tests")
}

/// A short stable hash of a fixture's inputs.
pub fn key(inputs: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for i in inputs {
        h.update((i.len() as u64).to_le_bytes());
        h.update(i);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Returns the fixture directory `<root>/<name>-<key>`, building it with `build`
/// (which fills the directory it is given) if it is not cached yet.
pub fn fixture_in(
    root: &Path,
    name: &str,
    key: &str,
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let dir = root.join(format!("{name}-{key}"));
    if dir.is_dir() {
        return Ok(dir);
    }
    let _lock = Lock::acquire(&root.join(format!("{name}.lock")), name, BUILD_WAIT)?;
    if dir.is_dir() {
        return Ok(dir);
    }
    let partial = Partial::new(&dir)?;
    std::fs::create_dir_all(partial.path())?;
    build(partial.path())?;
    Ok(partial.commit()?)
}

/// [`fixture_in`] under [`cache_root`].
pub fn fixture(
    name: &str,
    key: &str,
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    fixture_in(&cache_root(), name, key, build)
}

#[test]
fn a_fixture_is_built_once_and_a_failed_build_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let k = key(&[b"input"]);
    let err = fixture_in(root.path(), "thing", &k, |d| {
        std::fs::write(d.join("half"), b"")?;
        anyhow::bail!("boom")
    });
    assert!(err.is_err());
    assert!(!root.path().join(format!("thing-{k}")).exists());

    let mut builds = 0;
    for _ in 0..2 {
        let d = fixture_in(root.path(), "thing", &k, |d| {
            builds += 1;
            std::fs::write(d.join("whole"), b"ok")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(d.join("whole")).unwrap(), b"ok");
    }
    assert_eq!(builds, 1);
    assert_ne!(key(&[b"input"]), key(&[b"other"]));
}
