//! Fuzz targets: every parser of outside input, each as a function of bytes
//! that must never panic, hang or break its promise. `tests/fuzz` drives them
//! (its committed corpus on every `make test`, mutations for a bounded time
//! in `make fuzz`); they live here because most parsers are crate-internal.
//!
//! The layer extractor's promise is checked after every input: nothing is
//! written outside the target, no device node or FIFO appears, and every
//! symlink it made resolves inside the target by name.

use std::path::{Path, PathBuf};

use crate::arch::Arch;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[Target] = &[
    Target {
        name: "images_json",
        run: images_json,
    },
    Target {
        name: "kernels_json",
        run: kernels_json,
    },
    Target {
        name: "kernel_url",
        run: kernel_url,
    },
    Target {
        name: "oci_reference",
        run: oci_reference,
    },
    Target {
        name: "oci_manifest",
        run: oci_manifest,
    },
    Target {
        name: "layer_tar",
        run: layer_tar,
    },
    Target {
        name: "guest_report",
        run: guest_report,
    },
    Target {
        name: "kernel_config",
        run: kernel_config,
    },
    Target {
        name: "crash_reports",
        run: crash_reports,
    },
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn images_json(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = crate::images::entry::parse_with_warnings(Path::new("images.json"), t);
    }
}

fn kernels_json(data: &[u8]) {
    if let Some(t) = text(data) {
        if let Ok((conf, _)) = crate::kernels::config::parse_with_warnings(t) {
            // What lvh writes back must read back the same.
            let again = crate::kernels::config::to_text(&conf);
            let back = crate::kernels::config::parse(&again)
                .unwrap_or_else(|e| panic!("kernels.json written by lvh does not parse: {e}"));
            assert_eq!(crate::kernels::config::to_text(&back), again);
        }
    }
}

fn kernel_url(data: &[u8]) {
    if let Some(t) = text(data) {
        if let Ok(u) = crate::kernels::url::parse(t) {
            let _ = u.shallow_source();
            let _ = crate::kernels::url::KernelUrl::absolutize(t, Path::new("/work"));
        }
    }
}

fn oci_reference(data: &[u8]) {
    if let Some(t) = text(data) {
        if let Ok(r) = crate::oci::reference::parse_reference(t) {
            let shown = crate::oci::reference::display(&r);
            let _ = crate::oci::reference::slug(&shown);
            let _ = crate::oci::reference::is_local_registry(r.registry());
        }
        let _ = crate::oci::ImageSource::parse(t, |_| false);
    }
}

fn oci_manifest(data: &[u8]) {
    if let Ok(m) = crate::oci::manifest::Manifest::parse(data, "fuzz") {
        let _ = m.is_index();
        if let Some(entries) = &m.manifests {
            for arch in [Arch::Amd64, Arch::Arm64] {
                let want = crate::oci::manifest::Platform::of(arch);
                let _ = crate::oci::manifest::select_platform(entries, &want, "fuzz");
            }
        }
    }
}

fn guest_report(data: &[u8]) {
    let mut pending = Vec::new();
    for chunk in data.chunks(7) {
        for line in crate::runner::session::channel::split_lines(&mut pending, chunk) {
            let _ = crate::runner::session::channel::classify_console_line(&line);
            let _ = crate::runner::guest::parse_control(&line);
        }
    }
    let _ = crate::runner::guest::parse_control(&String::from_utf8_lossy(data));
}

/// A console log: the line-fed detector and the whole-log parser agree, and
/// every report has a title, a 16-digit fingerprint and at most
/// `MAX_REPORT_LINES` lines.
fn crash_reports(data: &[u8]) {
    use crate::triage::{parse_log, Detector, MAX_REPORT_LINES};
    let text = String::from_utf8_lossy(data);
    let mut d = Detector::new();
    let mut fed = Vec::new();
    for l in text.lines() {
        fed.extend(d.push(l));
    }
    fed.extend(d.finish());
    fed.sort_by_key(|r| r.line);
    let whole = parse_log(&text);
    assert_eq!(fed, whole);
    for r in &whole {
        assert!(!r.title.is_empty());
        assert_eq!(r.fingerprint.len(), 16);
        assert!(!r.lines.is_empty() && r.lines.len() <= MAX_REPORT_LINES);
    }
}

fn kernel_config(data: &[u8]) {
    let c = crate::runner::plan::kcheck::parse(&String::from_utf8_lossy(data));
    for arch in [Arch::Amd64, Arch::Arm64] {
        let _ = crate::runner::plan::kcheck::missing(
            &c,
            &crate::runner::plan::kcheck::needs(
                arch,
                crate::runner::plan::options::RootDev::Vda,
                true,
            ),
        );
    }
    let _ = crate::runner::plan::kcheck::ikconfig(data);
}

/// The kernel version whose tree `layer_tar` extracts (`data/kernels/6.1/`).
pub const LAYER_VERSION: &str = "6.1";

fn layer_tar(data: &[u8]) {
    use crate::oci::extract::{extract_layer, Extraction, Want};
    // tmpfs when there is one: thousands of tiny trees a second.
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let target = root.path().join("t");
    std::fs::create_dir(&target).expect("target dir");
    for want in [
        Want::Kernel {
            version: LAYER_VERSION.into(),
        },
        Want::Images { keep_zst: true },
    ] {
        let mut out = Extraction::default();
        let _ = extract_layer(
            data,
            &target,
            &want,
            "fuzz",
            &mut out,
            &crate::oci::limits::Budget::default(),
        );
        let _ = crate::oci::extract::finish(&mut out, &target);
        check_contained(root.path(), &target);
    }
}

/// Panics when the extraction broke out of `target` (inside `root`).
fn check_contained(root: &Path, target: &Path) {
    let top: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(top, vec![target.to_path_buf()], "written beside the target");
    let mut stack = vec![target.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // Directories may have lost their owner's permissions (modes from the tar).
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let rel = p.strip_prefix(target).unwrap();
            if ft.is_symlink() {
                let link = std::fs::read_link(&p).unwrap();
                assert!(
                    crate::oci::extract::symlink_inside(rel, &link),
                    "symlink {} -> {} leaves the target",
                    rel.display(),
                    link.display()
                );
            } else if ft.is_dir() {
                stack.push(p);
            } else {
                assert!(
                    ft.is_file(),
                    "{} is neither file, dir nor symlink",
                    rel.display()
                );
            }
        }
    }
}
