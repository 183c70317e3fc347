//! Toolchains, the compiler cache and build records through lvh's real build
//! path, on a stand-in tree that really compiles (gcc, clang-19, ccache; a
//! few seconds per build): the cache serves what it should and nothing it
//! should not (another toolchain, config or flags), a cache pushed to a real
//! registry and pulled into an empty directory serves the rebuild, records
//! say what was built and `--reproduce` builds it again, and bad toolchains,
//! make variables or options are refused before anything is built.

use std::path::{Path, PathBuf};
use std::process::Output;

use lvh::kernels::record::BuildRecord;

use crate::oci::registry::Registry;
use crate::support::fixtures::fake_kernel::{
    compiling_build, fake_kernel, git, ADD_ARGS, BUILD_ARGS,
};
use crate::support::{assert_code, lvh, text};

/// A kernels directory `<root>/d` with kernel `f`, the compiling stand-in tree.
fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = fake_kernel(root);
    compiling_build(&src);
    ok(&run(
        root,
        &[
            "kernels",
            "init",
            "--dir",
            "d",
            "--config-groups",
            "namespaces",
        ],
    ));
    ok(&run(root, &ADD_ARGS));
    t
}

fn run(root: &Path, args: &[&str]) -> Output {
    lvh()
        .args(args)
        .current_dir(root)
        .env("CCACHE_DIR", root.join("cache"))
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_code(o, 0);
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `kernels build f` with `extra` flags; the record it wrote.
#[track_caller]
fn build(root: &Path, extra: &[&str]) -> BuildRecord {
    let mut args = BUILD_ARGS.to_vec();
    args.extend(extra);
    let o = run(root, &args);
    ok(&o);
    let image = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(Path::new(&image).is_file(), "{}", text(&o));
    BuildRecord::read(&tree(root).join("lvh-build.json")).unwrap()
}

fn tree(root: &Path) -> PathBuf {
    root.join("d/kernels/f")
}

/// What `make clean` does to the stand-in: the objects go.
fn clean(root: &Path) {
    for o in ["a.o", "b.o"] {
        let _ = std::fs::remove_file(tree(root).join(o));
    }
}

/// (hits, misses) of a record's cache use.
fn hits(r: &BuildRecord) -> (u64, u64) {
    let c = r.cache.as_ref().expect("the build used the cache");
    (c.stats.hits, c.stats.misses)
}

fn set_opts(root: &Path, opts: serde_json::Value) {
    let f = root.join("d/kernels.json");
    let mut conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    conf["kernels"][0]["opts"] = opts;
    std::fs::write(&f, serde_json::to_string_pretty(&conf).unwrap()).unwrap();
}

#[test]
fn the_cache_serves_the_same_build_and_nothing_else() {
    let t = setup();
    let root = t.path();
    let r = build(root, &[]);
    assert_eq!(hits(&r), (0, 2));
    assert_eq!(r.toolchain, "gcc");
    assert_eq!(r.warnings, 1, "the #warning of a.c");
    assert_eq!(r.cache.as_ref().unwrap().dir, root.join("cache"));
    assert_eq!(
        r.commit.as_deref(),
        Some(git(&tree(root), &["rev-parse", "HEAD"]).as_str())
    );
    assert!(!r.modified);
    assert_eq!(r.env["KBUILD_BUILD_USER"], "lvh");
    assert!(
        r.env["KBUILD_BUILD_TIMESTAMP"].contains("UTC"),
        "{:?}",
        r.env
    );

    // After a clean, every compile comes from the cache, warnings replayed.
    clean(root);
    let r = build(root, &[]);
    assert_eq!(hits(&r), (2, 0));
    assert_eq!(r.warnings, 1);
    let o = run(root, &["kernels", "list", "--dir", "d", "-o", "wide"]);
    ok(&o);
    let cols: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .trim()
        .split('\t')
        .map(str::to_string)
        .collect();
    assert_eq!(cols[0], "f");
    assert_eq!(cols[3..5], ["gcc", "6.12.0-fake"]);
    assert_eq!(
        cols[6..],
        [
            format!("{:.1}s", r.duration_secs),
            "1".into(),
            "100%".into()
        ]
    );

    // Another compiler never reuses gcc's objects; back on gcc, they are there.
    clean(root);
    let r = build(root, &["--toolchain", "clang-19"]);
    assert_eq!((r.toolchain.as_str(), hits(&r)), ("llvm-19", (0, 2)));
    assert!(
        r.make_vars.contains(&"LLVM=-19".to_string()),
        "{:?}",
        r.make_vars
    );
    clean(root);
    let r = build(root, &[]);
    assert_eq!((r.toolchain.as_str(), hits(&r)), ("gcc", (2, 0)));

    // Other compiler flags miss.
    clean(root);
    let r = build(root, &["--make-var", "KCFLAGS=-O2"]);
    assert_eq!(hits(&r), (0, 2));
    assert_eq!(r.user_make_vars[0].to_string(), "KCFLAGS=-O2");

    // Another config: the object whose code depends on it misses, the one
    // whose code does not is served (its preprocessed text is the same).
    set_opts(root, serde_json::json!([["--enable", "CONFIG_EXTRA"]]));
    let stderr = ok(&run(root, &BUILD_ARGS));
    assert!(
        stderr.contains("1 of 2 compiles from the cache (50.0%)"),
        "{stderr}"
    );

    // --cache off: no cache, and make rebuilds nothing it need not.
    let r = build(root, &["--cache", "off"]);
    assert_eq!(r.cache, None);
}

#[test]
fn a_cache_pushed_and_pulled_through_a_registry_serves_the_rebuild() {
    let t = setup();
    let root = t.path();
    let reg = Registry::start();
    let reference = reg.reference("kernel-cache", "f-gcc");
    assert_eq!(hits(&build(root, &[])), (0, 2));
    let o = run(root, &["kernels", "cache", "push", &reference]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("@sha256:"),
        "{}",
        text(&o)
    );

    std::fs::remove_dir_all(root.join("cache")).unwrap();
    let o = run(root, &["kernels", "cache", "pull", &reference]);
    let stderr = ok(&o);
    assert!(stderr.contains("entries added"), "{stderr}");
    // Only ccache's entries travel: no stats, no configuration.
    assert!(!root.join("cache/ccache.conf").exists());
    clean(root);
    let r = build(root, &[]);
    assert_eq!(hits(&r), (2, 0));
    assert_eq!(r.cache.unwrap().hit_rate, Some(1.0));

    // Pulling again keeps what is there; an empty cache cannot be pushed.
    let stderr = ok(&run(root, &["kernels", "cache", "pull", &reference]));
    assert!(stderr.contains("0 entries added"), "{stderr}");
    let o = run(
        root,
        &[
            "kernels",
            "cache",
            "push",
            &reference,
            "--cache-dir",
            "nothing",
        ],
    );
    assert_code(&o, 3);
    assert!(text(&o).contains("no such directory"), "{}", text(&o));
}

#[test]
fn reproduce_builds_the_recorded_thing_again() {
    let t = setup();
    let root = t.path();
    let first = build(
        root,
        &["--toolchain", "llvm-19", "--make-var", "KCFLAGS=-O1"],
    );
    let saved = root.join("record.json");
    std::fs::copy(tree(root).join("lvh-build.json"), &saved).unwrap();
    // Another build changes the tree's objects and record.
    let other = build(root, &[]);
    assert_ne!(other.image_sha256, first.image_sha256);

    let o = run(
        root,
        &[
            "kernels",
            "build",
            "--dir",
            "d",
            "--reproduce",
            saved.to_str().unwrap(),
        ],
    );
    let stderr = ok(&o);
    assert!(stderr.contains("the image is identical"), "{stderr}");
    let again = BuildRecord::read(&tree(root).join("lvh-build.json")).unwrap();
    assert_eq!(again.toolchain, "llvm-19");
    assert_eq!(again.make_vars, first.make_vars);
    assert_eq!(again.config_sha256, first.config_sha256);

    // From another commit, it refuses and says what to check out.
    std::fs::write(root.join("fake/b.c"), "int b(int x) { return x * 4; }\n").unwrap();
    git(&root.join("fake"), &["commit", "-q", "-am", "b"]);
    ok(&run(root, &["kernels", "fetch", "f", "--dir", "d"]));
    let o = run(
        root,
        &[
            "kernels",
            "build",
            "--dir",
            "d",
            "--reproduce",
            saved.to_str().unwrap(),
        ],
    );
    assert_code(&o, 3);
    let e = text(&o);
    assert!(
        e.contains("checkout") && e.contains(first.commit.as_deref().unwrap()),
        "{e}"
    );
}

#[test]
fn bad_toolchains_make_vars_and_options_are_refused_before_building() {
    let t = setup();
    let root = t.path();
    let refused = |args: &[&str], code: i32, want: &str| {
        let mut a = BUILD_ARGS.to_vec();
        a.extend(args);
        let o = run(root, &a);
        assert_code(&o, code);
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
        assert!(!tree(root).join("tar-install").exists(), "{args:?}");
        assert!(!tree(root).join("lvh-build.json").exists(), "{args:?}");
        assert!(!tree(root).join("a.o").exists(), "{args:?}");
    };
    refused(
        &["--toolchain", "gcc-99"],
        3,
        "`gcc-99` is not installed: install the Debian package gcc-99",
    );
    refused(
        &["--toolchain", "llvm-42"],
        3,
        "install the Debian packages clang-42 lld-42 llvm-42",
    );
    refused(&["--toolchain", "icc"], 2, "unknown toolchain \"icc\"");
    refused(&["--make-var", "KCFALGS=-O2"], 2, "did you mean KCFLAGS?");
    refused(
        &["--make-var", "ARCH=arm64"],
        2,
        "ARCH is set by lvh: use --arch",
    );
    refused(&["--cache", "on", "--toolchain", "gcc-99"], 3, "gcc-99");

    // An option that needs clang, in a gcc build: refused naming the fix.
    std::fs::write(
        tree(root).join("Kconfig"),
        "config FORCED_OFF\n\tbool \"needs clang\"\n\tdepends on CC_IS_CLANG\n",
    )
    .unwrap();
    set_opts(root, serde_json::json!([["--enable", "CONFIG_FORCED_OFF"]]));
    refused(
        &[],
        3,
        "CONFIG_FORCED_OFF needs clang/LLVM (depends on CC_IS_CLANG)",
    );
    refused(&[], 3, "build with --toolchain llvm");
    // ... and the next build configures again instead of taking it for done.
    set_opts(root, serde_json::json!([]));
    let r = build(root, &[]);
    assert_eq!(r.toolchain, "gcc");
}

#[test]
fn the_actions_kernel_cache_input_pulls_a_cache_for_later_builds() {
    let t = setup();
    let root = t.path();
    let reg = Registry::start();
    let reference = reg.reference("kernel-cache", "f");
    build(root, &[]);
    ok(&run(root, &["kernels", "cache", "push", &reference]));
    let step = |input: &str, cache: &Path| {
        std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/action/kernel-cache.sh"))
            .env("INPUT_KERNEL_CACHE", input)
            .env("LVH_BIN", env!("CARGO_BIN_EXE_lvh"))
            .env("CCACHE_DIR", cache)
            .env("CI", "true")
            .output()
            .unwrap()
    };
    let cache = root.join("job-cache");
    let o = step(&reference, &cache);
    assert_code(&o, 0);
    clean(root);
    let o = lvh()
        .args(BUILD_ARGS)
        .current_dir(root)
        .env("CCACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(
        text(&o).contains("2 of 2 compiles from the cache"),
        "{}",
        text(&o)
    );
    // The first run of a job has no cache yet: a warning, not a failure.
    let o = step(&reg.reference("kernel-cache", "none-yet"), &root.join("c2"));
    assert_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("::warning::"),
        "{}",
        text(&o)
    );
    // Without the input the step does nothing.
    let o = step("", &root.join("c3"));
    assert_code(&o, 0);
    assert!(!root.join("c3").exists());
}
