//! The action's pull, start and run steps with a stand-in `lvh` and `qemu-img`
//! that record their argv: which repository the kernel comes from, which
//! kernel wins, what `qemu-img resize` and `--cpu-kind` get. The same steps run
//! against the real lvh, a real registry and QEMU in the system tier
//! (tests/system/action); this tier pins the argv down without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::action::{env_name, REPO};

/// The stand-in lvh: logs its argv (one line per call) to $FAKE_LOG; `images
/// pull` writes and prints little-vm-helper-images' kind artifact files,
/// `kernels pull` writes a kernel, `run --dry-run` shows `-accel $FAKE_ACCEL`.
const FAKE_LVH: &str = r#"#!/bin/bash
echo "lvh $*" >>"$FAKE_LOG"
case "$1 $2" in
"images pull")
	shift 2; dir=""
	while [ $# -gt 0 ]; do case "$1" in --dir) dir="$2"; shift 2 ;; *) shift ;; esac; done
	mkdir -p "$dir/images"
	for f in $FAKE_IMAGES; do echo img >"$dir/images/$f"; echo zst >"$dir/images/$f.zst"; echo "$dir/images/$f"; echo "$dir/images/$f.zst"; done ;;
"kernels pull")
	tag="$3"; shift 3; dir="."
	while [ $# -gt 0 ]; do case "$1" in --dir) dir="$2"; shift 2 ;; *) shift ;; esac; done
	mkdir -p "$dir/$tag/boot"; echo k >"$dir/$tag/boot/vmlinuz-6.6.0"; echo "$dir/$tag" ;;
"run --help") echo "      --wait-ssh" ;;
"run --dry-run") echo "qemu-system-x86_64 -accel ${FAKE_ACCEL:-tcg} -cpu max" ;;
esac
exit 0
"#;

struct Fake {
    tmp: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for (name, text) in [
            ("lvh", FAKE_LVH),
            (
                "qemu-img",
                "#!/bin/bash\necho \"qemu-img $*\" >>\"$FAKE_LOG\"\n",
            ),
        ] {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fake { tmp }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn parent(&self) -> String {
        self.path("parent").display().to_string()
    }

    /// Runs scripts/action/<step>.sh with the inputs (by their action.yaml
    /// names) and other variables (upper case names) given.
    fn step(&self, step: &str, vars: &[(&str, &str)]) -> Output {
        let _ = std::fs::remove_file(self.path("log"));
        let mut c = Command::new("bash");
        c.arg(Path::new(REPO).join(format!("scripts/action/{step}.sh")))
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.path("bin").display()),
            )
            .env("FAKE_LOG", self.path("log"))
            .env("GITHUB_OUTPUT", self.path("output"))
            .env("LVH_CONSOLE_LOG", self.path("console.log"))
            .env_remove("LVH_BIN")
            .env(env_name("images-folder-parent"), self.parent())
            .env(env_name("image"), "kind")
            .env(env_name("image-version"), "5.10-main")
            .env(env_name("arch"), "amd64")
            .env(env_name("cpu"), "1")
            .env(env_name("mem"), "1G");
        for (k, v) in vars {
            let k = if k.chars().any(|c| c.is_ascii_uppercase()) {
                k.to_string()
            } else {
                env_name(k)
            };
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// The calls logged, less the `lvh run --help` that finds lvh on PATH.
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l != "lvh run --help")
            .map(String::from)
            .collect()
    }
}

fn ok(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "failed: {e}");
    e
}

#[test]
fn pull_uses_little_vm_helpers_folders_and_the_default_kernel_repository() {
    let f = Fake::new();
    let p = f.parent();
    let e = ok(&f.step(
        "pull",
        &[
            ("image-repo", "registry.example/lvh-images"),
            ("kernel-version", "6.6-main"),
            ("FAKE_IMAGES", "kind_5.10.qcow2"),
        ],
    ));
    let log = f.log();
    assert_eq!(
        log[0],
        format!("lvh images pull --cache registry.example/lvh-images/kind:5.10-main --dir {p}/images/amd64 --platform linux/amd64")
    );
    // image-repo does not move the kernel: lvh kernels pull's default repository.
    assert_eq!(
        log[1],
        format!("lvh kernels pull 6.6-main --dir {p}/kernels/amd64 --platform linux/amd64")
    );
    let out = std::fs::read_to_string(f.path("output")).unwrap();
    assert_eq!(
        out.trim(),
        format!("image-file={p}/images/amd64/images/kind_5.10.qcow2")
    );
    // The image's .zst is in the cache folder, under its own name.
    let cached = format!("{p}/images/amd64/cache/kind_5.10-main/kind_5.10.qcow2.zst");
    assert!(Path::new(&cached).is_file(), "{cached}\n{e}");
    assert!(!Path::new(&format!("{p}/images/amd64/images/kind_5.10.qcow2.zst")).exists());

    // kernel-repo moves it; with kernel-path too, kernel-version wins (said once).
    let e = ok(&f.step(
        "pull",
        &[
            ("image-version", "6.6-20250105.013256"),
            ("kernel-version", "6.6-main"),
            ("kernel-repo", "registry.example/k"),
            ("kernel-path", "/boot/vmlinuz-mine"),
            ("FAKE_IMAGES", "kind_6.6.qcow2"),
        ],
    ));
    assert_eq!(
        f.log()[1],
        format!("lvh kernels pull 6.6-main --repo registry.example/k --dir {p}/kernels/amd64 --platform linux/amd64")
    );
    assert_eq!(e.matches("::warning::").count(), 1, "{e}");
    assert!(
        e.contains("booting kernel-version '6.6-main'") && e.contains("kernel-path is ignored"),
        "{e}"
    );

    // An artifact whose images do not decide: fails naming the inputs.
    let o = f.step(
        "pull",
        &[
            ("image", "root-images"),
            ("FAKE_IMAGES", "base.qcow2 kind.qcow2"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("input image 'root-images', image-version '5.10-main'"),
        "{e}"
    );
}

#[test]
fn additional_disk_size_goes_to_qemu_img_as_it_is() {
    let f = Fake::new();
    let image = f.path("kind_5.10.qcow2");
    std::fs::write(&image, "img").unwrap();
    let image = image.display().to_string();
    for size in ["10G", "+10G"] {
        ok(&f.step(
            "start",
            &[
                ("LVH_IMAGE_FILE", &image),
                ("additional-disk-size", size),
                ("command-mode", "true"),
            ],
        ));
        assert_eq!(f.log(), [format!("qemu-img resize -q {image} {size}")]);
    }
    ok(&f.step(
        "start",
        &[("LVH_IMAGE_FILE", &image), ("command-mode", "true")],
    ));
    assert!(f.log().is_empty(), "{:?}", f.log());
}

#[test]
fn cpu_kind_is_passed_on_and_host_under_tcg_becomes_max_with_one_notice() {
    let f = Fake::new();
    let image = f.path("kind_5.10.qcow2");
    std::fs::write(&image, "img").unwrap();
    let image = image.display().to_string();
    let k = f.path("parent/kernels/amd64/6.6-main/boot");
    std::fs::create_dir_all(&k).unwrap();
    std::fs::write(k.join("vmlinuz-6.6.0"), "k").unwrap();
    // (cpu-kind, accelerator) -> --cpu-kind given, notice
    let cases = [
        ("host", "kvm", Some("host"), false),
        ("host", "tcg", None, true),
        ("max", "tcg", Some("max"), false),
        ("kvm64", "kvm", Some("kvm64"), false),
        ("", "kvm", None, false), // pwru's `cpu-kind: ''`
    ];
    for (kind, accel, want, notice) in cases {
        let e = ok(&f.step(
            "run",
            &[
                ("LVH_IMAGE_FILE", &image),
                ("command-mode", "true"),
                ("kernel-version", "6.6-main"),
                ("kernel-path", "/boot/vmlinuz-mine"),
                ("cpu-kind", kind),
                ("FAKE_ACCEL", accel),
                ("cmd", "true"),
            ],
        ));
        let run: Vec<String> = f
            .log()
            .into_iter()
            .filter(|l| l.starts_with("lvh run --image"))
            .collect();
        assert_eq!(run.len(), 1, "{:?}", f.log());
        let got = run[0]
            .split_once("--cpu-kind ")
            .map(|(_, r)| r.split(' ').next().unwrap().to_string());
        assert_eq!(
            got.as_deref(),
            want,
            "cpu-kind {kind:?} under {accel}: {}",
            run[0]
        );
        assert_eq!(e.matches("::notice::").count(), usize::from(notice), "{e}");
        if notice {
            assert!(e.contains("cpu-kind 'host' needs KVM"), "{e}");
        }
        // kernel-version's kernel, not kernel-path.
        assert!(
            run[0].contains("/kernels/amd64/6.6-main/boot/vmlinuz-6.6.0"),
            "{}",
            run[0]
        );
        assert!(!run[0].contains("vmlinuz-mine"), "{}", run[0]);
    }
}

#[test]
fn a_commit_is_built_with_cargo_from_the_actions_repository() {
    let f = Fake::new();
    let root = f.path("root");
    // The stand-in cargo logs its argv and leaves an lvh where --root says.
    std::fs::write(
        f.path("bin/cargo"),
        "#!/bin/bash\necho \"cargo $*\" >>\"$FAKE_LOG\"\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\nprintf '#!/bin/sh\\necho v0.1.0-3-gabc1234\\n' >\"$2/bin/lvh\"\nchmod +x \"$2/bin/lvh\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.path("bin/cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let github_path = f.path("github_path");
    let vars = [
        ("LVH_ACTION_INSTALL", "commit"),
        ("LVH_ACTION_VERSION", "abc1234"),
        ("LVH_ROOT", root.to_str().unwrap()),
        ("LVH_ACTION_REPOSITORY", "acme/lvh"),
        ("GITHUB_SERVER_URL", "https://github.example"),
        ("GITHUB_PATH", github_path.to_str().unwrap()),
    ];
    let e = ok(&f.step("install", &vars));
    assert_eq!(
        f.log(),
        [format!(
            "cargo install --locked --root {} --git https://github.example/acme/lvh --rev abc1234 lvh",
            root.display()
        )]
    );
    assert!(e.contains("v0.1.0-3-gabc1234"), "{e}");
    assert_eq!(
        std::fs::read_to_string(f.path("github_path"))
            .unwrap()
            .trim(),
        root.join("bin").display().to_string()
    );
    // Built once: the cached binary is used (actions/cache restores $LVH_ROOT).
    ok(&f.step("install", &vars));
    assert!(f.log().is_empty(), "{:?}", f.log());

    // Without cargo: an error saying what to do.
    std::fs::remove_file(f.path("bin/cargo")).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    let mut vars = vars.to_vec();
    vars.push(("PATH", "/usr/bin:/bin"));
    let o = f.step("install", &vars);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("lvh-version 'abc1234' is a commit: building it needs cargo"),
        "{e}"
    );
}
