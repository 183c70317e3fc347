//! Whether KVM can really run a guest on this host, found out in well under a
//! second: `/dev/kvm` must open, and a tiny 64-bit guest (a few instructions,
//! no firmware) must touch some memory, spin a million times and report back
//! through an `out` and a `hlt` within [`PROBE_DEADLINE`]. On working KVM that
//! takes about a millisecond; under nested virtualization that runs only
//! specially built guests it takes seconds or never ends, which is exactly how
//! a stock kernel hangs there. The guest runs on its own thread, kicked out of
//! `KVM_RUN` by a signal at the deadline, so the probe itself cannot hang.
//!
//! A probe result is cached per boot of the host (keyed on
//! `/proc/sys/kernel/random/boot_id`) in `$XDG_RUNTIME_DIR/lvh/kvm-probe.json`
//! (else in lvh's cache directory); opening `/dev/kvm` is checked every time,
//! so fixing its permissions takes effect at once.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::accel::{KvmCheck, KvmStatus};

/// The KVM device.
pub const KVM_DEV: &str = "/dev/kvm";
/// How long the test guest may take, from creating the VM to its `hlt`.
pub const PROBE_DEADLINE: Duration = Duration::from_millis(250);
/// Bumped when the probe changes, so old cached verdicts are not trusted.
const PROBE_VERSION: u32 = 1;
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// What `open(/dev/kvm)` failing means, with the fix.
pub fn open_failure(dev: &Path, err: &io::Error) -> KvmStatus {
    let d = dev.display();
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => KvmStatus::Missing,
        Some(libc::EACCES) | Some(libc::EPERM) => KvmStatus::NoAccess(format!(
            "{d} exists but this user cannot open it ({err}): add the user to the device's group \
             (`sudo usermod -aG kvm $USER`, then log in again) or let everyone use it with the udev rule \
             `KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0666\"` (e.g. in /etc/udev/rules.d/99-kvm.rules, \
             then `sudo udevadm control --reload-rules && sudo udevadm trigger --name-match=kvm`)"
        )),
        _ => KvmStatus::NoAccess(format!("{d} cannot be opened: {err}")),
    }
}

/// Whether `dev` opens read-write (the check for an explicit `--accel kvm`).
pub fn open_status(dev: &Path) -> KvmStatus {
    match std::fs::File::options().read(true).write(true).open(dev) {
        Ok(_) => KvmStatus::Usable,
        Err(e) => open_failure(dev, &e),
    }
}

/// A probe verdict as cached on disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    boot_id: String,
    probe_version: u32,
    ok: bool,
    #[serde(default)]
    reason: String,
}

/// The cached verdict in `text`, if it is for this boot and this probe.
fn cached_verdict(text: &str, boot_id: &str) -> Option<Result<(), String>> {
    let e: CacheEntry = serde_json::from_str(text).ok()?;
    if e.boot_id != boot_id || e.probe_version != PROBE_VERSION {
        return None;
    }
    Some(if e.ok { Ok(()) } else { Err(e.reason) })
}

fn cache_text(boot_id: &str, verdict: &Result<(), String>) -> String {
    serde_json::to_string(&CacheEntry {
        boot_id: boot_id.to_string(),
        probe_version: PROBE_VERSION,
        ok: verdict.is_ok(),
        reason: verdict.clone().err().unwrap_or_default(),
    })
    .expect("a plain struct serializes")
}

/// Where the verdict is cached: the runtime directory (cleared at each boot)
/// when there is one, else lvh's cache directory.
pub fn cache_path(runtime_dir: Option<&Path>, cache_dir: &Path) -> PathBuf {
    match runtime_dir {
        Some(d) if d.is_absolute() => d.join("lvh").join("kvm-probe.json"),
        _ => cache_dir.join("kvm-probe.json"),
    }
}

fn default_cache_path() -> PathBuf {
    let rt = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    cache_path(rt.as_deref(), &crate::fsutil::cache_dir())
}

/// What [`super::accel::decide`] needs to know for `check`, found out on
/// this host (the probe's verdict cached per boot, see the module doc).
pub fn status(check: KvmCheck) -> KvmStatus {
    let dev = Path::new(KVM_DEV);
    match check {
        KvmCheck::None => KvmStatus::NotChecked,
        KvmCheck::Open => open_status(dev),
        KvmCheck::Probe => match open_status(dev) {
            KvmStatus::Usable => match cached_probe(&default_cache_path(), PROBE_DEADLINE) {
                Ok(()) => KvmStatus::Usable,
                Err(why) => KvmStatus::Broken(why),
            },
            other => other,
        },
    }
}

/// The probe's verdict from the cache at `cache`, or from running it (and
/// caching the result when the boot is known; a cache that cannot be written
/// only costs the next run another probe).
fn cached_probe(cache: &Path, deadline: Duration) -> Result<(), String> {
    let boot_id = std::fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if !boot_id.is_empty() {
        if let Some(v) = std::fs::read_to_string(cache)
            .ok()
            .and_then(|t| cached_verdict(&t, &boot_id))
        {
            return v;
        }
    }
    let verdict = probe(Path::new(KVM_DEV), deadline);
    if !boot_id.is_empty() {
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir).and_then(|_| {
                crate::fsutil::write_atomic(cache, cache_text(&boot_id, &verdict).as_bytes())
            });
        }
    }
    verdict
}

/// Runs the test guest through `dev` and returns why it failed, if it did.
#[cfg(target_arch = "x86_64")]
pub fn probe(dev: &Path, deadline: Duration) -> Result<(), String> {
    super::kvm_guest::run(dev, deadline)
}

/// Other hosts: no test guest yet; a `/dev/kvm` that opens is trusted.
#[cfg(not(target_arch = "x86_64"))]
pub fn probe(dev: &Path, _deadline: Duration) -> Result<(), String> {
    match open_status(dev) {
        KvmStatus::Usable => Ok(()),
        KvmStatus::NoAccess(why) | KvmStatus::Broken(why) => Err(why),
        _ => Err(format!("{} is missing", dev.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_name_the_fix() {
        let dev = Path::new("/dev/kvm");
        let denied = open_failure(dev, &io::Error::from_raw_os_error(libc::EACCES));
        let KvmStatus::NoAccess(why) = denied else {
            panic!("{denied:?}")
        };
        for want in [
            "/dev/kvm",
            "usermod -aG kvm",
            r#"KERNEL=="kvm", GROUP="kvm", MODE="0666""#,
        ] {
            assert!(why.contains(want), "{want} not in {why}");
        }
        assert_eq!(
            open_failure(dev, &io::Error::from_raw_os_error(libc::ENOENT)),
            KvmStatus::Missing
        );
        assert!(matches!(
            open_failure(dev, &io::Error::from_raw_os_error(libc::EBUSY)),
            KvmStatus::NoAccess(w) if w.contains("cannot be opened")
        ));
        assert_eq!(
            open_status(Path::new("/nonexistent/kvm")),
            KvmStatus::Missing
        );
    }

    #[test]
    fn a_cached_verdict_counts_only_for_the_same_boot_and_probe() {
        let ok = cache_text("b1", &Ok(()));
        let bad = cache_text("b1", &Err("too slow".into()));
        assert_eq!(cached_verdict(&ok, "b1"), Some(Ok(())));
        assert_eq!(cached_verdict(&bad, "b1"), Some(Err("too slow".into())));
        assert_eq!(cached_verdict(&ok, "b2"), None, "another boot");
        let old = ok.replace(
            &format!("\"probe_version\":{PROBE_VERSION}"),
            "\"probe_version\":0",
        );
        assert_ne!(old, ok);
        assert_eq!(cached_verdict(&old, "b1"), None, "an older probe");
        for junk in ["", "{", "[]", "{\"ok\":true}"] {
            assert_eq!(cached_verdict(junk, "b1"), None, "{junk}");
        }
    }

    #[test]
    fn cache_location() {
        let cache = Path::new("/home/u/.cache/lvh");
        assert_eq!(
            cache_path(Some(Path::new("/run/user/1000")), cache),
            Path::new("/run/user/1000/lvh/kvm-probe.json")
        );
        assert_eq!(
            cache_path(None, cache),
            Path::new("/home/u/.cache/lvh/kvm-probe.json")
        );
        assert_eq!(
            cache_path(Some(Path::new("relative")), cache),
            Path::new("/home/u/.cache/lvh/kvm-probe.json")
        );
    }

    /// The probe runs the real cache round trip: the second call reads the
    /// first one's verdict (same boot) instead of probing again.
    #[test]
    fn the_verdict_is_cached() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("sub/kvm-probe.json");
        let boot = std::fs::read_to_string(BOOT_ID).unwrap();
        let first = cached_probe(&cache, PROBE_DEADLINE);
        let text = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(cached_verdict(&text, boot.trim()), Some(first.clone()));
        // A planted verdict is what the next call returns.
        std::fs::write(&cache, cache_text(boot.trim(), &Err("planted".into()))).unwrap();
        assert_eq!(cached_probe(&cache, PROBE_DEADLINE), Err("planted".into()));
    }
}
