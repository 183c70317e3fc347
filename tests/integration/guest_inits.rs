//! No silent guest-init fallback: build.rs's guest-init job (the very code,
//! `pkg/runner/guest/build_init.rs`, compiled into a small driver) refuses
//! with `LVH_REQUIRE_GUEST_INITS=1` to build without the arm64 cross
//! compiler, naming its Debian package; without it, it records the init as
//! missing and warns, naming the package. `lvh version -v` says which inits
//! this lvh has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{assert_code, lvh_in, stdout};

/// The build job as a program: `build_init::build()` under cargo's variables.
fn driver(dir: &Path) -> PathBuf {
    let src = dir.join("driver.rs");
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/runner/guest/build_init.rs");
    std::fs::write(
        &src,
        format!("#[path = {job:?}]\nmod build_init;\nfn main() {{ build_init::build(); }}\n"),
    )
    .unwrap();
    let bin = dir.join("driver");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let o = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    bin
}

/// Runs the job for an amd64 host whose arm64 cross compiler is missing.
fn build(driver: &Path, out: &Path, require: bool) -> Output {
    let mut c = Command::new(driver);
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OUT_DIR", out)
        .env("CARGO_CFG_TARGET_ARCH", "x86_64")
        // Only the arm64 compiler is under test: the amd64 one "succeeds".
        .env("LVH_GUEST_CC_AMD64", "true")
        .env("LVH_GUEST_CC_ARM64", "/nonexistent/aarch64-linux-gnu-gcc")
        .env_remove("LVH_REQUIRE_GUEST_INITS");
    if require {
        c.env("LVH_REQUIRE_GUEST_INITS", "1");
    }
    c.output().expect("run the build job")
}

#[test]
fn a_missing_cross_compiler_fails_a_required_build_and_is_recorded_otherwise() {
    let d = tempfile::tempdir().unwrap();
    let driver = driver(d.path());

    let out = d.path().join("required");
    std::fs::create_dir(&out).unwrap();
    let o = build(&driver, &out, true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("the aarch64 guest init cannot be built")
            && err.contains("install the Debian package gcc-aarch64-linux-gnu")
            && err.contains("LVH_REQUIRE_GUEST_INITS=1"),
        "{err}"
    );

    let out = d.path().join("plain");
    std::fs::create_dir(&out).unwrap();
    let o = build(&driver, &out, false);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("cargo::warning=no aarch64 guest init")
            && said.contains("install the Debian package gcc-aarch64-linux-gnu"),
        "{said}"
    );
    let rs = std::fs::read_to_string(out.join("guest_init.rs")).unwrap();
    assert!(
        rs.contains("pub const ARM64: Option<&[u8]> = None;"),
        "{rs}"
    );
    assert!(
        rs.contains("pub const AMD64: Option<&[u8]> = Some("),
        "{rs}"
    );
}

#[test]
fn version_verbose_lists_the_guest_inits() {
    let d = tempfile::tempdir().unwrap();
    let out = lvh_in(d.path(), &["version", "-v"]);
    assert_code(&out, 0);
    let s = stdout(&out);
    let line = s
        .lines()
        .find(|l| l.starts_with("guest inits: "))
        .unwrap_or_else(|| panic!("{s}"));
    for arch in ["amd64", "arm64"] {
        assert!(
            line.contains(&format!("{arch} embedded"))
                || line.contains(&format!("{arch} missing (install ")),
            "{line}"
        );
    }
    let plain = stdout(&lvh_in(d.path(), &["version"]));
    assert!(!plain.contains("guest inits"), "{plain}");
}
