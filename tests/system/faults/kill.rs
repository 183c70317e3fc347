//! SIGKILL of lvh at random points of `run` (boot and command), `images pull`,
//! `images push` and `images build` (appliance, filesystem step, rename):
//! afterwards no process lvh started remains, nothing partial looks complete,
//! and the same command run again completes with the same result and sweeps
//! what the killed one left. `LVH_KILL_POINTS` kill points per command
//! (default 3, 2 for the image build; `make stress-kill` runs 20), spread
//! uniformly over an uninterrupted run's duration; `LVH_KILL_SEED` replays.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use super::{kill_after, kill_points, names, partials_under, run, Rng, SeedOnPanic};
use crate::oci::registry::{test_bytes, write_file, Proxy, Registry};
use crate::support::{assert_code, text};

/// Prints a machine-readable line for the README's figures.
pub(super) fn figures(command: &str, tried: usize, killed: usize, children: usize) {
    eprintln!(
        "KILL-FIGURES {command}: {tried} kill points, {killed} killed mid-run \
         (the rest had finished), every rerun completed; up to {children} processes per run"
    );
}

#[test]
fn sigkill_during_run_boot_and_command() {
    let mut rng = Rng::new();
    let _seed = SeedOnPanic(rng.seed, "sigkill_during_run_boot_and_command");
    let tmp = tempfile::tempdir().unwrap();
    let mk = || {
        let mut c = crate::runner::lvh_run(
            Arch::Amd64,
            &["--", "sh", "-c", "echo start; sleep 2; echo end"],
        );
        c.env("TMPDIR", tmp.path());
        c
    };
    let t0 = Instant::now();
    let o = run(mk());
    let total = t0.elapsed();
    assert_code(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "start\nend\n");
    let (mut killed, mut most) = (0, 0);
    for i in 0..kill_points() {
        // A dead lvh's --gdb directory: swept by the rerun below, which has
        // no --gdb.
        std::fs::create_dir(tmp.path().join("lvh-gdb-999999999.dead")).unwrap();
        let delay = rng.between(Duration::from_millis(50), total);
        let what = format!("run, kill point {i} at {delay:?} of {total:?}");
        let k = kill_after(mk(), delay, &what);
        most = most.max(k.children_seen);
        if k.finished_first.is_none() {
            killed += 1;
        }
        let o = run(mk());
        assert_code(&o, 0);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "start\nend\n", "{what}");
        // The rerun swept the killed run's directory and removed its own.
        assert!(
            names(tmp.path()).is_empty(),
            "{what}: {:?}",
            names(tmp.path())
        );
    }
    figures("run", kill_points(), killed, most);
}

fn lvh_cached(cache: &Path, args: &[&str]) -> Command {
    let mut c = crate::support::lvh();
    c.args(args).env("LVH_CACHE_DIR", cache);
    c
}

#[test]
fn sigkill_during_images_push_and_pull() {
    let mut rng = Rng::new();
    let _seed = SeedOnPanic(rng.seed, "sigkill_during_images_push_and_pull");
    let reg = Registry::start();
    // Slow enough that a transfer takes seconds: room for kill points inside it.
    let slow = Proxy::start_slow(&reg.addr, 1 << 20);
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let data = test_bytes(8 << 20, 21);
    let img = t.path().join("base.qcow2");
    write_file(&img, &data);
    let slow_ref = format!("{}/root-images:kill", slow.addr);
    // A repository of its own per kill point: the registry then has none of
    // the blobs, so every push really uploads and the kill lands inside it.
    let push_to = |r: &str| lvh_cached(&cache, &["images", "push", img.to_str().unwrap(), r]);
    let push = || push_to(&slow_ref);
    let out = t.path().join("out");
    let pull = || {
        lvh_cached(
            &cache,
            &["images", "pull", &slow_ref, "--dir", out.to_str().unwrap()],
        )
    };

    let t0 = Instant::now();
    let o = run(push());
    let push_time = t0.elapsed();
    assert_code(&o, 0);
    let (mut killed, mut most) = (0, 0);
    for i in 0..kill_points() {
        let delay = rng.between(Duration::from_millis(50), push_time);
        let what = format!("images push, kill point {i} at {delay:?} of {push_time:?}");
        let fresh = format!("{}/root-images-{i}:kill", slow.addr);
        let k = kill_after(push_to(&fresh), delay, &what);
        most = most.max(k.children_seen);
        killed += usize::from(k.finished_first.is_none());
        let o = run(push_to(&fresh));
        assert!(o.status.success(), "{what}: rerun failed: {}", text(&o));
        let scratch = names(&cache.join("tmp"));
        assert!(scratch.is_empty(), "{what}: scratch left: {scratch:?}");
    }
    figures("images push", kill_points(), killed, most);

    let t0 = Instant::now();
    let o = run(pull());
    let pull_time = t0.elapsed();
    assert_code(&o, 0);
    assert!(std::fs::read(out.join("images/base.qcow2")).unwrap() == data);
    let (mut killed, mut most) = (0, 0);
    for i in 0..kill_points() {
        // Start from nothing so every kill point lands in a real download.
        std::fs::remove_dir_all(&out).unwrap();
        std::fs::remove_dir_all(cache.join("oci")).ok();
        let delay = rng.between(Duration::from_millis(50), pull_time);
        let what = format!("images pull, kill point {i} at {delay:?} of {pull_time:?}");
        let k = kill_after(pull(), delay, &what);
        most = most.max(k.children_seen);
        killed += usize::from(k.finished_first.is_none());
        // Nothing that looks complete unless it is.
        if let Ok(b) = std::fs::read(out.join("images/base.qcow2")) {
            assert!(b == data, "{what}: a partial image has the final name");
        }
        let o = run(pull());
        assert!(o.status.success(), "{what}: rerun failed: {}", text(&o));
        assert!(
            std::fs::read(out.join("images/base.qcow2")).unwrap() == data,
            "{what}"
        );
        let left: Vec<String> = partials_under(&out)
            .into_iter()
            .chain(partials_under(&cache))
            .collect();
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
    }
    figures("images pull", kill_points(), killed, most);
}

/// A copy of the cached root image fixture's directory with a child image
/// added to its images.json: building the child runs the copy, the libguestfs
/// appliance and the final rename, the root being cached.
/// Hidden names left in an images directory other than a finished image's
/// build record and the directory's lock: a build's temporary files.
fn hidden_leftovers(images: &Path) -> Vec<String> {
    names(images)
        .into_iter()
        .filter(|n| n.starts_with('.') && !n.ends_with(".lvh-build.json") && !n.ends_with(".lock"))
        .collect()
}

fn child_image_dir(dir: &Path) {
    let root =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let from = root.parent().unwrap().parent().unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("images.json")).unwrap()).unwrap();
    cfg.as_array_mut().unwrap().push(serde_json::json!({
        "name": "child.img",
        "parent": "root.img",
        "actions": [{"comment": "", "type": "run-command",
                     "op": {"Cmd": "echo killed-and-rebuilt > /etc/lvh-kill-test"}}],
    }));
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("images.json"), cfg.to_string()).unwrap();
    let rec = ".root.img.lvh-build.json";
    std::fs::copy(from.join("images").join(rec), dir.join("images").join(rec)).unwrap();
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(&root)
        .arg(dir.join("images/root.img"))
        .status()
        .unwrap();
    assert!(st.success());
}

fn build(dir: &Path) -> Command {
    let mut c = crate::support::lvh();
    c.args(["images", "build", "--dir"])
        .arg(dir)
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    c
}

fn record_key(dir: &Path, name: &str) -> String {
    let p = dir.join("images").join(format!(".{name}.lvh-build.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["key"].as_str().unwrap().to_string()
}

#[test]
fn sigkill_during_images_build() {
    let mut rng = Rng::new();
    let _seed = SeedOnPanic(rng.seed, "sigkill_during_images_build");
    let t = tempfile::tempdir().unwrap();
    let (reference, dir) = (t.path().join("ref"), t.path().join("killed"));
    child_image_dir(&reference);
    child_image_dir(&dir);
    let t0 = Instant::now();
    let o = run(build(&reference));
    let total = t0.elapsed();
    assert_code(&o, 0);
    let want = record_key(&reference, "child.img");
    let points = std::env::var("LVH_KILL_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let (mut killed, mut most) = (0, 0);
    for i in 0..points {
        if i > 0 {
            // Build the child again from scratch for the next kill point.
            std::fs::remove_file(dir.join("images/child.img")).unwrap();
        }
        let delay = rng.between(Duration::from_millis(50), total);
        let what = format!("images build, kill point {i} at {delay:?} of {total:?}");
        let k = kill_after(build(&dir), delay, &what);
        most = most.max(k.children_seen);
        killed += usize::from(k.finished_first.is_none());
        let o = run(build(&dir));
        assert!(o.status.success(), "{what}: rerun failed: {}", text(&o));
        assert_eq!(record_key(&dir, "child.img"), want, "{what}");
        // A third run finds it finished: cached, nothing rebuilt.
        let o = run(build(&dir));
        assert!(o.status.success(), "{what}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("child.img: cached"),
            "{what}: {}",
            text(&o)
        );
        let hidden = hidden_leftovers(&dir.join("images"));
        assert!(hidden.is_empty(), "{what}: left behind: {hidden:?}");
    }
    figures("images build (child image)", points, killed, most);
}

/// A directory whose images.json holds one small root image: minbase, no
/// packages, no actions (mmdebstrap, `mkfs.ext4 -d`, the rename).
fn root_image_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!([{
        "name": "root.img",
        "image_size": "1G",
        "variant": "minbase",
        "suite": lvh::images::config::DEFAULT_SUITE,
    }]);
    std::fs::write(dir.join("images.json"), cfg.to_string()).unwrap();
}

#[test]
fn sigkill_during_root_image_mmdebstrap() {
    let mut rng = Rng::new();
    let _seed = SeedOnPanic(rng.seed, "sigkill_during_root_image_mmdebstrap");
    let t = tempfile::tempdir().unwrap();
    // lvh unpacks root trees in /dev/shm; a private directory there shows
    // exactly what a killed build leaves.
    let scratch = tempfile::Builder::new()
        .prefix("lvh-kill-test-")
        .tempdir_in("/dev/shm")
        .unwrap();
    // A private deb cache: the first build fills it, the others reuse it.
    let cache = t.path().join("cache");
    let mk = |dir: &Path| {
        let mut c = build(dir);
        c.env("LVH_CACHE_DIR", &cache)
            .env("LVH_SCRATCH_DIR", scratch.path());
        c
    };
    let (reference, dir) = (t.path().join("ref"), t.path().join("killed"));
    root_image_dir(&reference);
    root_image_dir(&dir);
    let o = run(mk(&reference));
    assert_code(&o, 0);
    let want = record_key(&reference, "root.img");
    let points = std::env::var("LVH_KILL_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let image = dir.join("images/root.img");
    let record = dir.join("images/.root.img.lvh-build.json");
    let mut most = 0;
    for i in 0..points {
        if i > 0 {
            std::fs::remove_file(&image).unwrap();
            std::fs::remove_file(&record).unwrap();
        }
        // 0-3 s after apt-get or dpkg first ran: inside mmdebstrap's work
        // (apt's download and unpack, dpkg's configure and maintainer scripts).
        let trigger = ["apt-get", "dpkg"][(rng.next() % 2) as usize];
        let delay = rng.between(Duration::ZERO, Duration::from_secs(3));
        let what = format!("images build, mmdebstrap, kill point {i}: {delay:?} after {trigger}");
        let k = super::kill_when(
            mk(&dir),
            |ps| ps.iter().any(|p| p.comm == trigger),
            delay,
            &what,
        );
        most = most.max(k.children_seen);
        assert!(k.finished_first.is_none(), "{what}: ended before the kill");
        assert!(
            k.at_kill.iter().any(|c| c == "mmdebstrap"),
            "{what}: mmdebstrap was not running at the kill: {:?}",
            k.at_kill
        );
        let left = super::procs_in(scratch.path());
        assert!(
            left.is_empty(),
            "{what}: running in the root tree: {left:?}"
        );
        let mounts = super::mounts_under(scratch.path());
        if !mounts.is_empty() {
            // Detach them before anything removes the tree (one is a bind of
            // the host's /dev/shm), then fail.
            for m in mounts.iter().rev() {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
            panic!("{what}: mounts left in the root tree: {mounts:?}");
        }
        assert!(!image.exists(), "{what}: a half root has the final name");
        assert!(!record.exists(), "{what}: a build record without an image");
        let o = run(mk(&dir));
        assert!(o.status.success(), "{what}: rerun failed: {}", text(&o));
        assert_eq!(record_key(&dir, "root.img"), want, "{what}");
        let o = run(mk(&dir));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("root.img: cached"),
            "{what}: {}",
            text(&o)
        );
        let hidden = hidden_leftovers(&dir.join("images"));
        assert!(hidden.is_empty(), "{what}: left behind: {hidden:?}");
        assert!(
            names(scratch.path()).is_empty(),
            "{what}: left in the scratch directory: {:?}",
            names(scratch.path())
        );
    }
    figures(
        "images build (root image, during mmdebstrap)",
        points,
        points,
        most,
    );
}
