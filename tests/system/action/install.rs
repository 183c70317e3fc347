//! The action installs lvh from a release, not with a compiler: from a local
//! release server (`LVH_INSTALL_URL`), checked against SHA256SUMS, cached with
//! actions/cache, nothing at all when an lvh is on PATH already, and the
//! release it is pinned to when lvh-version is little-vm-helper's.

use std::path::Path;
use std::time::{Duration, Instant};

use super::release::{release_dir, tag, Server};
use super::workflow::{last, stderr_of, Job};
use crate::support::assert_code;

/// The budget from the action's start to `lvh version` (a warm local server).
const INSTALL_BUDGET: Duration = Duration::from_secs(10);

fn job(store: &Path, server: &Server, inputs: &[(&str, &str)]) -> Job {
    let mut base = vec![("test-name", "install"), ("cmd", "true")];
    base.extend_from_slice(inputs);
    let mut j = Job::new(&base, store);
    j.env.insert("LVH_INSTALL_URL".into(), server.url.clone());
    j
}

fn installed(j: &Job) -> std::path::PathBuf {
    j.path("tool-cache")
        .join("lvh")
        .join(tag())
        .join(std::env::consts::ARCH)
        .join("bin/lvh")
}

#[test]
fn action_installs_the_pinned_release_from_a_warm_server_in_seconds() {
    let server = Server::start(release_dir());
    let store = tempfile::tempdir().unwrap();
    // Warm: the server answers and the files are in the page cache.
    let sums = format!("{}/{}/SHA256SUMS", server.url, tag());
    let st = std::process::Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", &sums])
        .status()
        .unwrap();
    assert!(st.success());
    for e in std::fs::read_dir(release_dir().join(tag())).unwrap() {
        std::fs::read(e.unwrap().path()).unwrap();
    }

    let mut j = job(store.path(), &server, &[]);
    let start = Instant::now();
    let ran = j.run_until("install");
    let took = start.elapsed();
    let o = last(&ran);
    assert_code(o, 0);
    let e = String::from_utf8_lossy(&o.stderr);
    eprintln!("action start to `lvh version`: {:.2} s", took.as_secs_f64());
    assert!(
        took <= INSTALL_BUDGET,
        "install took {took:?} (budget {INSTALL_BUDGET:?})"
    );
    assert_eq!(j.outputs["lvh-setup"]["lvh-install"], "release");
    assert_eq!(j.outputs["lvh-setup"]["lvh-version"], tag());
    let bin = installed(&j);
    assert!(bin.is_file(), "{} missing\n{e}", bin.display());
    // The version printed is the installed binary's.
    let v = std::process::Command::new(&bin)
        .arg("version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&v.stdout).trim().to_string();
    assert!(!v.is_empty() && e.contains(&v), "{v:?} not in:\n{e}");
    assert_eq!(j.path_prefix, [bin.parent().unwrap().display().to_string()]);
    let got = server.requests();
    assert!(
        got.iter().any(|r| r.ends_with(".tar.gz")) && got.iter().any(|r| r.ends_with("SHA256SUMS")),
        "{got:?}"
    );
    assert!(!e.contains("cargo"), "{e}");

    // The next job restores lvh from actions/cache: no download.
    let saved = j.post();
    assert!(
        saved
            .iter()
            .any(|k| k.starts_with("lvh-cli-") && k.ends_with(&tag())),
        "{saved:?}"
    );
    // A fresh runner: the same tool cache folder, empty.
    let tool_cache = j.path("tool-cache");
    std::fs::remove_dir_all(&tool_cache).unwrap();
    std::fs::create_dir_all(&tool_cache).unwrap();
    let before = server.requests().len();
    let mut j2 = job(store.path(), &server, &[]);
    j2.env
        .insert("RUNNER_TOOL_CACHE".into(), tool_cache.display().to_string());
    let ran = j2.run_until("install");
    assert_code(last(&ran), 0);
    assert!(installed(&j).is_file(), "not restored");
    assert_eq!(server.requests().len(), before, "{:?}", server.requests());
    assert!(
        stderr_of(&ran).contains("using cached"),
        "{}",
        stderr_of(&ran)
    );
}

#[test]
fn little_vm_helpers_lvh_version_gets_a_warning_and_the_pinned_release() {
    let server = Server::start(release_dir());
    let store = tempfile::tempdir().unwrap();
    // cilium's lvh-kind action passes v0.0.25, pwru v0.0.27, little-vm-helper's default is v0.0.30.
    for v in ["v0.0.25", "v0.0.30"] {
        let mut j = job(store.path(), &server, &[("lvh-version", v)]);
        let ran = j.run_until("install");
        assert_code(last(&ran), 0);
        let e = stderr_of(&ran);
        assert!(
            e.contains(&format!(
                "::warning::lvh-action: lvh-version '{v}' is not an lvh release"
            )),
            "{e}"
        );
        assert!(installed(&j).is_file(), "{e}");
    }
    // A release that does not exist: a warning, and the pinned one.
    let mut j = job(store.path(), &server, &[("lvh-version", "v9.9.9")]);
    let ran = j.run_until("install");
    assert_code(last(&ran), 0);
    let e = stderr_of(&ran);
    assert!(
        e.contains("lvh-version 'v9.9.9': no such lvh release") && e.contains(&tag()),
        "{e}"
    );
}

#[test]
fn a_tarball_that_does_not_match_its_checksum_installs_nothing() {
    let bad = tempfile::tempdir().unwrap();
    let rel = bad.path().join(tag());
    std::fs::create_dir_all(&rel).unwrap();
    for e in std::fs::read_dir(release_dir().join(tag())).unwrap() {
        let e = e.unwrap();
        let mut bytes = std::fs::read(e.path()).unwrap();
        if e.file_name().to_string_lossy().ends_with(".tar.gz") {
            let n = bytes.len();
            bytes[n / 2] ^= 0xff;
        }
        std::fs::write(rel.join(e.file_name()), bytes).unwrap();
    }
    let server = Server::start(bad.path());
    let store = tempfile::tempdir().unwrap();
    let mut j = job(store.path(), &server, &[]);
    let ran = j.run_until("install");
    assert_code(last(&ran), 1);
    let e = stderr_of(&ran);
    assert!(e.contains("does not match SHA256SUMS"), "{e}");
    assert!(!installed(&j).exists(), "installed anyway");
    assert!(j.path_prefix.is_empty(), "{:?}", j.path_prefix);
}

#[test]
fn an_lvh_on_path_means_nothing_is_installed() {
    let server = Server::start(release_dir());
    let store = tempfile::tempdir().unwrap();
    let mut j = job(store.path(), &server, &[]);
    let pre = j.path("preinstalled");
    std::fs::create_dir_all(&pre).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lvh"), pre.join("lvh")).unwrap();
    let path = format!("{}:{}", pre.display(), j.env["PATH"]);
    j.env.insert("PATH".into(), path);
    let start = Instant::now();
    let ran = j.run_until("install");
    assert_code(last(&ran), 0);
    eprintln!(
        "action start to `lvh version`, lvh on PATH: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(j.outputs["lvh-setup"]["lvh-install"], "skip");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(!j.path("tool-cache/lvh").join(tag()).exists());
    // The lvh-cli cache step did not run either.
    let cache = ran
        .iter()
        .find(|r| r.step == "Load lvh from GitHub cache")
        .unwrap();
    assert!(cache.output.is_none());
    assert!(stderr_of(&ran).contains(&format!("using {}", pre.join("lvh").display())));

    // little-vm-helper's lvh on PATH is not this one: lvh is installed ahead of it.
    let mut j = job(store.path(), &server, &[]);
    let fake = j.path("go-lvh");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("lvh"), "#!/bin/sh\necho v0.0.30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("lvh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), j.env["PATH"]);
    j.env.insert("PATH".into(), path);
    let ran = j.run_until("install");
    assert_code(last(&ran), 0);
    assert!(
        stderr_of(&ran).contains("is not this lvh"),
        "{}",
        stderr_of(&ran)
    );
    assert!(installed(&j).is_file());
}
