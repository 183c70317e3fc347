//! The build pipeline: each image built at a temporary name and renamed into
//! place when complete, independent images in parallel (`--jobs`), failures
//! skipping only their descendants, and a summary (built/cached, size, time).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::{Format, ImageConf};
use super::customize::{self, Guest};
use super::error::ImagesError;
use super::forest::ParentRef;
use super::plan::{Decision, Plan, PlanItem};
use super::{cache, rootfs};
use crate::cancel::CancelToken;
use crate::fsutil::{remove_any, Lock, Partial};
use crate::progress::{Outcome, Reporter, Stage, Stream};
use crate::sched::{self, Skip, Status};

/// How one image ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageOutcome {
    Built,
    Cached,
    /// An existing image without lvh's build record, used as it is.
    Reused,
    Failed(String),
    /// Not built because an ancestor failed or the build was interrupted.
    Skipped(String),
    Unselected,
}

#[derive(Clone, Debug)]
pub struct ImageResult {
    pub name: String,
    pub outcome: ImageOutcome,
    /// Bytes allocated on disk (a qcow2 overlay counts only its delta).
    pub size_on_disk: Option<u64>,
    pub elapsed: Duration,
}

/// Every image's result, in build order.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub results: Vec<ImageResult>,
}

impl Summary {
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    ImageOutcome::Failed(_) | ImageOutcome::Skipped(_)
                )
            })
            .count()
    }

    pub fn succeeded(&self) -> usize {
        self.results
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    ImageOutcome::Built | ImageOutcome::Cached | ImageOutcome::Reused
                )
            })
            .count()
    }

    /// A plain-text table: image, result, size on disk, time.
    pub fn table(&self) -> String {
        let w = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!(
            "{:<w$}  {:<8}  {:>9}  {:>8}\n",
            "IMAGE", "RESULT", "ON DISK", "TIME"
        );
        for r in &self.results {
            let (what, note) = match &r.outcome {
                ImageOutcome::Built => ("built", String::new()),
                ImageOutcome::Cached => ("cached", String::new()),
                ImageOutcome::Reused => ("cached", "  reused: no build record".into()),
                ImageOutcome::Failed(e) => ("FAILED", format!("  {}", first_line(e))),
                ImageOutcome::Skipped(why) => ("skipped", format!("  {why}")),
                ImageOutcome::Unselected => ("-", String::new()),
            };
            let size = r.size_on_disk.map(human).unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "{:<w$}  {:<8}  {:>9}  {:>7.1}s{note}\n",
                r.name,
                what,
                size,
                r.elapsed.as_secs_f64()
            ));
        }
        s
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub use crate::bytesize::human;

/// Takes the lock on `<dir>/images` that keeps two builds from interleaving.
pub fn lock(dir: &Path) -> Result<Lock, ImagesError> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images)
        .map_err(|e| ImagesError::io(format!("cannot create {}", images.display()), e))?;
    Ok(Lock::acquire(
        &images.join(".lvh-images.lock"),
        &format!("images directory {}", images.display()),
        Duration::ZERO,
    )?)
}

/// A default for `--jobs`: one build per 4 GiB of available memory (an
/// appliance, apt and mkfs together), at most the CPU count, at least one.
pub fn default_jobs() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let avail_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(4, |kb| kb >> 20);
    cpus.min((avail_gib / 4) as usize).max(1)
}

/// The pid in a temporary name `.<image>.<what>-<pid>` of one of our images.
fn temp_owner(file_name: &str, images: &[&str]) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    images.iter().find_map(|image| {
        let (what, pid) = rest
            .strip_prefix(image)?
            .strip_prefix('.')?
            .rsplit_once('-')?;
        ["partial", "raw", "lvh-rootfs"]
            .contains(&what)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

/// Removes temporary files that builds killed outright (SIGKILL, power loss)
/// left behind: those whose owning process is gone.
fn clean_stale(plan: &Plan) {
    let names: Vec<&str> = plan.items.iter().map(|i| i.name.as_str()).collect();
    for dir in [plan.images_dir.clone(), scratch_dir(&plan.images_dir)] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = temp_owner(&n, &names) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    // Through TempPath's drop: a root tree a killed
                    // mmdebstrap left may still hold mounts (a bind of the
                    // host's /dev/shm); they go first, never recursed into.
                    drop(TempPath(e.path()));
                }
            }
        }
    }
}

/// Builds every image the plan says to build, `jobs` at a time.
pub fn build(plan: &Plan, jobs: usize, reporter: &dyn Reporter) -> Summary {
    clean_stale(plan);
    let n = plan.items.len();
    let mut results: Vec<Option<ImageResult>> = vec![None; n];
    for (k, it) in plan.items.iter().enumerate() {
        match it.decision {
            Decision::Build { .. } => {}
            Decision::Cached => {
                Stage::start(reporter, format!("{}: cached", it.name)).finish(Outcome::Cached);
                results[k] = Some(result(plan, it, ImageOutcome::Cached, Duration::ZERO));
            }
            Decision::Reused => {
                Stage::start(reporter, format!("{}: reused: no build record", it.name))
                    .finish(Outcome::Cached);
                results[k] = Some(result(plan, it, ImageOutcome::Reused, Duration::ZERO));
            }
            Decision::Unselected => {
                results[k] = Some(ImageResult {
                    name: it.name.clone(),
                    outcome: ImageOutcome::Unselected,
                    size_on_disk: None,
                    elapsed: Duration::ZERO,
                })
            }
        }
    }
    let pos_of = |index: usize| plan.items.iter().position(|it| it.index == index);
    let parent_of: Vec<Option<usize>> = plan
        .items
        .iter()
        .map(|it| plan.forest.defined_parent(it.index).and_then(pos_of))
        .collect();
    let pending: Vec<bool> = results.iter().map(Option::is_none).collect();
    let cancel = CancelToken::global();
    let statuses = sched::run(&parent_of, &pending, jobs, &|| cancel.is_cancelled(), |k| {
        let it = &plan.items[k];
        let start = Instant::now();
        match build_one(plan, it, reporter) {
            Ok(()) => Ok(result(plan, it, ImageOutcome::Built, start.elapsed())),
            Err(e) => {
                let outcome = ImageOutcome::Failed(crate::error::error_chain(&e));
                Err(result(plan, it, outcome, start.elapsed()))
            }
        }
    });
    let results = results
        .into_iter()
        .zip(statuses)
        .zip(&plan.items)
        .map(|((before, status), it)| match status {
            Status::Succeeded(r) | Status::Failed(r) => r,
            Status::Skipped(Skip::Parent(p)) => {
                skipped(it, format!("parent {} was not built", plan.items[p].name))
            }
            Status::Skipped(Skip::Cancelled) => skipped(it, "interrupted".into()),
            Status::Skipped(Skip::Cycle) => skipped(it, "its parents form a cycle".into()),
            Status::NotRun => before.expect("every image not built has a result"),
        })
        .collect();
    Summary { results }
}

fn skipped(it: &PlanItem, why: String) -> ImageResult {
    ImageResult {
        name: it.name.clone(),
        outcome: ImageOutcome::Skipped(why),
        size_on_disk: None,
        elapsed: Duration::ZERO,
    }
}

fn result(plan: &Plan, it: &PlanItem, outcome: ImageOutcome, elapsed: Duration) -> ImageResult {
    ImageResult {
        name: it.name.clone(),
        size_on_disk: rootfs::size_on_disk(&plan.image_path(&it.name)),
        outcome,
        elapsed,
    }
}

/// A temporary path beside the images that is removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(images_dir: &Path, name: &str, what: &str) -> TempPath {
        let p = images_dir.join(format!(".{name}.{what}-{}", std::process::id()));
        let _ = remove_any(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        // A killed mmdebstrap can leave /proc, /sys or device bind mounts in
        // its tree: detach them first, and never recurse into a mount.
        let mounts = mounts_under(&self.0);
        for m in &mounts {
            let _ = crate::exec::Cmd::new("umount")
                .args(["-l"])
                .arg(m)
                .timeout(Duration::from_secs(30))
                .run(&crate::progress::NullReporter);
        }
        if !mounts.is_empty() && !mounts_under(&self.0).is_empty() {
            tracing::warn!("not removing {}: it still has mounts", self.0.display());
            return;
        }
        let _ = remove_any(&self.0);
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // /proc/self/mounts escapes spaces and the like as octal (\040)
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    out
}

/// Where root trees are unpacked before `mkfs.ext4 -d`: `$LVH_SCRATCH_DIR`, else
/// `/dev/shm` when it has room (unpacking and removing a tree in memory is much
/// faster than on disk), else beside the images.
fn scratch_dir(images_dir: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("LVH_SCRATCH_DIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    let room = nix::sys::statvfs::statvfs(shm)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0);
    if room >= SCRATCH_MIN_FREE && nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok()
    {
        shm.to_owned()
    } else {
        images_dir.to_owned()
    }
}

/// The free memory-backed space needed to unpack a root tree in /dev/shm.
const SCRATCH_MIN_FREE: u64 = 8 << 30;

fn check_cancel() -> Result<(), ImagesError> {
    if CancelToken::global().is_cancelled() {
        Err(ImagesError::Interrupted)
    } else {
        Ok(())
    }
}

/// Builds one image at a temporary path and renames it into place.
fn build_one(plan: &Plan, it: &PlanItem, reporter: &dyn Reporter) -> Result<(), ImagesError> {
    let stage = Stage::start(reporter, it.name.clone());
    let conf = plan.conf(it);
    let dir = &plan.images_dir;
    cache::remove_record(dir, &it.name).map_err(|e| {
        ImagesError::io(format!("cannot remove the build record of {}", it.name), e)
    })?;
    let final_path = plan.image_path(&it.name);
    let partial = Partial::new(&final_path)
        .map_err(|e| ImagesError::io(format!("cannot prepare {}", final_path.display()), e))?;
    match plan.forest.parent(it.index) {
        ParentRef::None => build_root(plan, it, conf, partial.path(), &stage)?,
        ParentRef::Defined(_) | ParentRef::External(_) => {
            build_derived(plan, it, conf, partial.path(), &stage)?
        }
    }
    check_cancel()?;
    partial
        .commit()
        .map_err(|e| ImagesError::io(format!("cannot rename into {}", final_path.display()), e))?;
    cache::write_record(dir, &it.name, &it.parts)
        .map_err(|e| ImagesError::io(format!("cannot write the build record of {}", it.name), e))?;
    stage.finish(Outcome::Done);
    Ok(())
}

fn build_root(
    plan: &Plan,
    it: &PlanItem,
    conf: &ImageConf,
    out: &Path,
    stage: &Stage,
) -> Result<(), ImagesError> {
    let s = &it.settings;
    let tree = TempPath::new(&scratch_dir(&plan.images_dir), &it.name, "lvh-rootfs");
    let st = stage.child(format!("{}: mmdebstrap {} ({})", it.name, s.suite, s.arch));
    let debs = rootfs::deb_cache_dir(s);
    rootfs::mmdebstrap_cmd(s, &conf.packages, &tree.0, debs.as_deref())
        .stage(st.id())
        .run(stage.reporter())
        .map_err(|e| ImagesError::step(&it.name, "mmdebstrap", e))?;
    st.finish(Outcome::Done);
    check_cancel()?;
    if s.bootable {
        rootfs::write_boot_files(&tree.0, s.arch)
            .map_err(|e| ImagesError::step(&it.name, "writing boot files", e))?;
    }
    let raw_tmp;
    let raw: &Path = match s.format {
        Format::Raw => out,
        Format::Qcow2 => {
            raw_tmp = TempPath::new(&plan.images_dir, &it.name, "raw");
            &raw_tmp.0
        }
    };
    let st = stage.child(format!("{}: filesystem (mkfs.ext4 -d)", it.name));
    rootfs::make_ext4(
        &tree.0,
        raw,
        s.size.unwrap_or(super::config::DEFAULT_IMAGE_SIZE),
        &st,
    )
    .map_err(|e| ImagesError::step(&it.name, "creating the filesystem", e))?;
    st.finish(Outcome::Done);
    drop(tree);
    check_cancel()?;
    if !conf.actions.is_empty() || s.bootable {
        customize_image(plan, it, conf, raw, Format::Raw, &[], false, stage)?;
    }
    if s.format == Format::Qcow2 {
        let st = stage.child(format!("{}: qcow2", it.name));
        rootfs::convert_cmd(raw, "raw", out, "qcow2")
            .stage(st.id())
            .run(stage.reporter())
            .map_err(|e| ImagesError::step(&it.name, "qemu-img convert", e))?;
        st.finish(Outcome::Done);
    }
    Ok(())
}

fn build_derived(
    plan: &Plan,
    it: &PlanItem,
    conf: &ImageConf,
    out: &Path,
    stage: &Stage,
) -> Result<(), ImagesError> {
    let s = &it.settings;
    let parent = conf.parent.as_deref().expect("derived");
    let parent_path = plan.image_path(parent);
    let pfmt = Format::from_name(parent).as_str();
    let parent_size = rootfs::virtual_size(&parent_path, pfmt)
        .map_err(|e| ImagesError::step(&it.name, format!("reading parent {parent}"), e))?;
    let grow = match s.size {
        Some(sz) if sz < parent_size => {
            return Err(ImagesError::step(
                &it.name,
                "sizing",
                format!(
                "image_size {} is smaller than parent {parent}'s {} (images can grow, not shrink)",
                human(sz),
                human(parent_size)
            ),
            ))
        }
        Some(sz) if sz > parent_size => Some(sz),
        _ => None,
    };
    let st = stage.child(format!("{}: from {parent}", it.name));
    let run = |c: crate::exec::Cmd, what: &str| {
        c.stage(st.id())
            .run(stage.reporter())
            .map(|_| ())
            .map_err(|e| ImagesError::step(&it.name, what.to_string(), e))
    };
    match (s.format, s.flatten) {
        (Format::Qcow2, false) => run(
            rootfs::overlay_cmd(parent, pfmt, out, grow),
            "qemu-img create",
        )?,
        (Format::Qcow2, true) => {
            run(
                rootfs::convert_cmd(&parent_path, pfmt, out, "qcow2"),
                "qemu-img convert",
            )?;
            if let Some(sz) = grow {
                run(rootfs::resize_cmd(out, "qcow2", sz), "qemu-img resize")?;
            }
        }
        (Format::Raw, _) => {
            if pfmt == "raw" {
                run(rootfs::copy_cmd(&parent_path, out), "copying the parent")?;
            } else {
                run(
                    rootfs::convert_cmd(&parent_path, pfmt, out, "raw"),
                    "qemu-img convert",
                )?;
            }
            if let Some(sz) = grow {
                run(rootfs::resize_cmd(out, "raw", sz), "qemu-img resize")?;
            }
        }
    }
    st.finish(Outcome::Done);
    check_cancel()?;
    if !conf.packages.is_empty() || !conf.actions.is_empty() || grow.is_some() {
        customize_image(
            plan,
            it,
            conf,
            out,
            s.format,
            &conf.packages,
            grow.is_some(),
            stage,
        )?;
    }
    Ok(())
}

/// One appliance launch for all of an image's packages and actions.
#[allow(clippy::too_many_arguments)]
fn customize_image(
    plan: &Plan,
    it: &PlanItem,
    conf: &ImageConf,
    image: &Path,
    format: Format,
    packages: &[String],
    grow: bool,
    stage: &Stage,
) -> Result<(), ImagesError> {
    let name = &it.name;
    let network = customize::needs_network(packages, &conf.actions);
    let st = stage.child(format!("{name}: appliance start"));
    let mut g = Guest::open(image, format.as_str(), network, grow)
        .map_err(|e| ImagesError::step(name, "starting the libguestfs appliance", e))?;
    st.finish(Outcome::Done);
    if !packages.is_empty() {
        check_cancel()?;
        let st = stage.child(format!("{name}: apt-get install {}", packages.join(" ")));
        g.install_packages(packages, &mut |l| st.line(Stream::Stdout, l))
            .map_err(|e| ImagesError::step(name, "installing packages", e))?;
        st.finish(Outcome::Done);
    }
    for (j, a) in conf.actions.iter().enumerate() {
        check_cancel()?;
        let label = if a.comment.is_empty() {
            format!("{name}: action {j}: {}", a.op.type_name())
        } else {
            format!("{name}: action {j}: {} ({})", a.op.type_name(), a.comment)
        };
        let st = stage.child(label);
        g.apply(&plan.dir, &a.op, &mut |l| st.line(Stream::Stdout, l))
            .map_err(|e| {
                ImagesError::step(name, format!("actions[{j}] ({})", a.op.type_name()), e)
            })?;
        st.finish(Outcome::Done);
    }
    if it.settings.bootable {
        let st = stage.child(format!("{name}: boot loader (extlinux)"));
        g.handle()
            .extlinux("/boot/extlinux")
            .map_err(|e| ImagesError::step(name, "installing extlinux", e))?;
        st.finish(Outcome::Done);
    }
    g.close()
        .map_err(|e| ImagesError::step(name, "closing the appliance", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_table() {
        let r = |name: &str, outcome| ImageResult {
            name: name.into(),
            outcome,
            size_on_disk: Some(1 << 20),
            elapsed: Duration::from_millis(1500),
        };
        let s = Summary {
            results: vec![
                r("a.img", ImageOutcome::Built),
                r("b.img", ImageOutcome::Cached),
                r("e.qcow2", ImageOutcome::Reused),
                r("c.qcow2", ImageOutcome::Failed("boom\nmore".into())),
                r(
                    "d.qcow2",
                    ImageOutcome::Skipped("parent c.qcow2 was not built".into()),
                ),
            ],
        };
        assert_eq!((s.succeeded(), s.failed()), (3, 2));
        let t = s.table();
        assert!(t.contains("a.img    built          1.0M      1.5s"), "{t}");
        assert!(
            t.contains("FAILED") && t.contains("boom") && !t.contains("more"),
            "{t}"
        );
        assert!(t.contains("parent c.qcow2 was not built"), "{t}");
        assert!(
            t.contains("e.qcow2  cached         1.0M      1.5s  reused: no build record"),
            "{t}"
        );
    }

    #[test]
    fn temporary_names() {
        let names = ["a.img", "a.img.x"];
        for (n, want) in [
            (".a.img.partial-12", Some(12)),
            (".a.img.raw-7", Some(7)),
            (".a.img.lvh-rootfs-99", Some(99)),
            (".a.img.x.partial-5", Some(5)),
            (".a.img.lvh-build.json", None),
            (".b.img.partial-12", None),
            ("a.img", None),
            (".a.img.partial-x", None),
        ] {
            assert_eq!(temp_owner(n, &names), want, "{n}");
        }
    }

    #[test]
    fn mounts_are_found_under_a_dir() {
        assert!(mounts_under(Path::new("/")).contains(&PathBuf::from("/")));
        let d = tempfile::tempdir().unwrap();
        assert!(mounts_under(d.path()).is_empty());
    }

    #[test]
    fn jobs_default_is_at_least_one() {
        assert!(default_jobs() >= 1);
    }
}
