//! Turning `images build` options into a validated [`Plan`]: load and check
//! images.json (everything before anything is built), work out each image's
//! effective settings and cache key, and decide what to build and why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::cache::{self, KeyParts};
use super::config::{self, Format, ImageConf, Op, DEFAULT_IMAGE_SIZE, DEFAULT_MIRROR};
use super::error::ImagesError;
use super::forest::{Forest, ParentRef};
use crate::arch::Arch;
use crate::error::InvalidInput;

/// What the user asked for (built by the binary from its flags).
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The directory with images.json; images go to `<dir>/images`.
    pub dir: PathBuf,
    /// `-i` names; empty means all.
    pub images: Vec<String>,
    pub force_rebuild: bool,
    /// `--pkg-repo`: the suite for root images (over the image's own `suite`).
    pub pkg_repo: Option<String>,
    pub arch: Arch,
    /// Parallel image builds.
    pub jobs: usize,
    /// Write derived qcow2 images standalone instead of as overlays.
    pub flatten: bool,
}

/// An image's effective settings after defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub arch: Arch,
    pub format: Format,
    pub bootable: bool,
    /// Disk size in bytes: the config's, else the parent's (derived), else 8G.
    pub size: Option<u64>,
    pub flatten: bool,
    pub suite: String,
    pub mirror: String,
    pub variant: Option<String>,
}

/// What happens to one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Build {
        reason: String,
    },
    Cached,
    /// An image file lvh has no build record for (built by little-vm-helper,
    /// pulled, or copied in): used as it is, as little-vm-helper uses any
    /// existing image, unless `--force-rebuild` or a rebuilt parent says otherwise.
    Reused,
    /// Not selected with `-i` and not needed by a selected image.
    Unselected,
}

#[derive(Clone, Debug)]
pub struct PlanItem {
    pub index: usize,
    pub name: String,
    pub decision: Decision,
    pub parts: KeyParts,
    pub settings: Settings,
}

#[derive(Debug)]
pub struct Plan {
    pub dir: PathBuf,
    pub images_dir: PathBuf,
    pub forest: Forest,
    /// Parents before children.
    pub items: Vec<PlanItem>,
}

impl Plan {
    pub fn item(&self, index: usize) -> &PlanItem {
        self.items
            .iter()
            .find(|it| it.index == index)
            .expect("every image has an item")
    }

    pub fn conf(&self, item: &PlanItem) -> &ImageConf {
        &self.forest.confs[item.index]
    }

    pub fn image_path(&self, name: &str) -> PathBuf {
        self.images_dir.join(name)
    }

    pub fn to_build(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.decision, Decision::Build { .. }))
            .count()
    }
}

/// Reads and validates `<dir>/images.json` and returns the forest.
pub fn load(opts: &BuildOptions) -> Result<Forest, ImagesError> {
    let file = opts.dir.join(config::IMAGES_JSON);
    let text = std::fs::read_to_string(&file).map_err(|source| ImagesError::ReadConfig {
        path: file.clone(),
        source,
    })?;
    let confs = super::entry::parse(&file, &text)?;
    let images_dir = opts.dir.join("images");
    let forest = Forest::new(confs, |p| images_dir.join(p).is_file()).map_err(|e| {
        ImagesError::Invalid(
            InvalidInput {
                reason: e.to_string(),
                ..Default::default()
            }
            .in_file(&file),
        )
    })?;
    config::check_inputs(&file, &opts.dir, &forest.confs)?;
    check_arch(&file, &forest, opts.arch)?;
    if let Some(s) = &opts.pkg_repo {
        if s.is_empty() || s.contains(['/', ' ']) {
            return Err(ImagesError::Invalid(InvalidInput::value(
                "--pkg-repo",
                s,
                "not a Debian suite name (e.g. bookworm, trixie)",
            )));
        }
    }
    Ok(forest)
}

/// Whether this host can run binaries of `arch` (natively or through binfmt).
pub fn can_execute(arch: Arch) -> bool {
    arch.is_native() || binfmt_enabled(arch)
}

fn binfmt_enabled(arch: Arch) -> bool {
    let name = match arch {
        Arch::Amd64 => "qemu-x86_64",
        Arch::Arm64 => "qemu-aarch64",
    };
    std::fs::read_to_string(Path::new("/proc/sys/fs/binfmt_misc").join(name))
        .is_ok_and(|s| s.starts_with("enabled"))
}

/// Foreign-architecture limits, checked before anything is built.
fn check_arch(file: &Path, forest: &Forest, arch: Arch) -> Result<(), ImagesError> {
    if arch.is_native() {
        return Ok(());
    }
    let e = |c: &ImageConf, msg: String| {
        ImagesError::Invalid(InvalidInput::value("image", &c.name, msg).in_file(format!(
            "{}:{}:{}",
            file.display(),
            c.pos.line,
            c.pos.col
        )))
    };
    let why = format!(
        "the libguestfs appliance runs {} binaries only, so it cannot run the image's {arch} programs",
        Arch::host()
    );
    for c in &forest.confs {
        if c.bootable == Some(true) {
            return Err(e(
                c,
                format!("bootable {arch} images are not supported (boot them with --kernel)"),
            ));
        }
        if c.parent.is_some() && !c.packages.is_empty() {
            return Err(e(
                c,
                format!("installing packages into a derived {arch} image is not supported: {why}"),
            ));
        }
        if let Some(j) = c
            .actions
            .iter()
            .position(|a| matches!(a.op, Op::RunCommand { .. }))
        {
            return Err(e(
                c,
                format!("actions[{j}] (run-command) cannot run in an {arch} image: {why}"),
            ));
        }
        if c.parent.is_none() && !binfmt_enabled(arch) {
            return Err(e(
                c,
                format!(
                    "building an {arch} root image needs qemu-user-static with binfmt_misc \
                     (/proc/sys/fs/binfmt_misc/{} is missing or disabled; install qemu-user-static \
                     binfmt-support and mount binfmt_misc)",
                    match arch {
                        Arch::Amd64 => "qemu-x86_64",
                        Arch::Arm64 => "qemu-aarch64",
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn settings(opts: &BuildOptions, forest: &Forest, i: usize, parent: Option<&Settings>) -> Settings {
    let c = &forest.confs[i];
    let root = c.parent.is_none();
    Settings {
        arch: opts.arch,
        format: c.format(),
        // little-vm-helper: bootable by default on amd64
        bootable: root && c.bootable.unwrap_or(opts.arch == Arch::Amd64),
        size: c.image_size.as_ref().map(|(_, b)| *b).or(if root {
            Some(DEFAULT_IMAGE_SIZE)
        } else {
            None
        }),
        // A child of an image that images.json does not build (pulled, or
        // built elsewhere) is written standalone: such parents are deleted
        // once the child is built (little-vm-helper-images' kind Dockerfile
        // does `rm *.qcow2`), which would leave an overlay without its backing file.
        flatten: c.flatten.unwrap_or(opts.flatten)
            || matches!(forest.parent(i), ParentRef::External(_)),
        suite: match (&opts.pkg_repo, &c.suite, parent) {
            (_, _, Some(p)) => p.suite.clone(),
            (Some(s), _, None) => s.clone(),
            (None, Some(s), None) => s.clone(),
            (None, None, None) => config::DEFAULT_SUITE.to_string(),
        },
        mirror: match parent {
            Some(p) => p.mirror.clone(),
            None => c.mirror.clone().unwrap_or_else(|| DEFAULT_MIRROR.into()),
        },
        variant: c.variant.clone(),
    }
}

fn key_parts(
    dir: &Path,
    conf: &ImageConf,
    s: &Settings,
    parent_key: String,
) -> Result<KeyParts, ImagesError> {
    let mut inputs = Vec::new();
    for a in &conf.actions {
        for input in a.op.host_inputs() {
            let p = config::resolve(dir, input);
            let d = cache::digest_path(&p).map_err(|source| {
                if source.kind() == std::io::ErrorKind::Interrupted {
                    ImagesError::Interrupted
                } else {
                    ImagesError::ReadInput {
                        image: conf.name.clone(),
                        path: p.clone(),
                        source,
                    }
                }
            })?;
            inputs.push(format!("{input}={d}"));
        }
    }
    let wire = serde_json::to_string(&conf.to_wire()).expect("serializable");
    Ok(KeyParts {
        config: format!(
            "{wire} bootable={} size={:?} flatten={} format={}",
            s.bootable,
            s.size,
            s.flatten,
            s.format.as_str()
        ),
        base: if conf.parent.is_none() {
            format!(
                "suite={} mirror={} arch={} variant={:?}",
                s.suite, s.mirror, s.arch, s.variant
            )
        } else {
            format!("arch={}", s.arch)
        },
        parent: parent_key,
        inputs: inputs.join("\n"),
    })
}

/// The key of an image that is not defined in images.json but exists on disk.
fn external_key(images_dir: &Path, name: &str) -> String {
    if let Some(r) = cache::read_record(images_dir, name) {
        return r.key;
    }
    let md = std::fs::metadata(images_dir.join(name)).ok();
    let mtime = md
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "external {name} size={} mtime={mtime}",
        md.map(|m| m.len()).unwrap_or(0)
    )
}

/// Decides, for every image in build order, whether to build it (and why).
pub fn plan(opts: &BuildOptions, forest: Forest) -> Result<Plan, ImagesError> {
    let images_dir = opts.dir.join("images");
    let selected = forest.select(&opts.images).map_err(|e| {
        ImagesError::Invalid(InvalidInput {
            reason: e.to_string(),
            ..Default::default()
        })
    })?;
    let needed: BTreeSet<usize> = selected
        .iter()
        .flat_map(|&i| forest.ancestors(i))
        .filter(|i| !selected.contains(i))
        .collect();
    let mut items: Vec<PlanItem> = Vec::with_capacity(forest.len());
    for i in forest.order() {
        let conf = &forest.confs[i];
        let parent_item = forest.defined_parent(i).map(|p| {
            items
                .iter()
                .find(|it| it.index == p)
                .expect("parents first")
        });
        let s = settings(opts, &forest, i, parent_item.map(|p| &p.settings));
        let parent_key = match forest.parent(i) {
            ParentRef::None => String::new(),
            ParentRef::Defined(_) => parent_item.expect("defined").parts.key(),
            ParentRef::External(p) => external_key(&images_dir, p),
        };
        let parts = key_parts(&opts.dir, conf, &s, parent_key)?;
        let exists = images_dir.join(&conf.name).is_file();
        let record = cache::read_record(&images_dir, &conf.name);
        let stale = cache::stale_reason(exists, record.as_ref(), &parts);
        let parent_rebuilt = parent_item.filter(|p| matches!(p.decision, Decision::Build { .. }));
        let decision = if selected.contains(&i) || needed.contains(&i) {
            let forced = opts.force_rebuild && selected.contains(&i);
            match (forced, parent_rebuilt, stale) {
                (true, _, _) => Decision::Build {
                    reason: "--force-rebuild".into(),
                },
                (false, _, Some(r)) if !exists => Decision::Build { reason: r },
                (false, None, Some(_)) if record.is_none() => Decision::Reused,
                (false, Some(p), _) => Decision::Build {
                    reason: format!("parent {} is rebuilt", p.name),
                },
                (false, None, Some(r)) if needed.contains(&i) => Decision::Build {
                    reason: format!("ancestor of a selected image, {r}"),
                },
                (false, None, Some(r)) => Decision::Build { reason: r },
                (false, None, None) => Decision::Cached,
            }
        } else {
            Decision::Unselected
        };
        items.push(PlanItem {
            index: i,
            name: conf.name.clone(),
            decision,
            parts,
            settings: s,
        });
    }
    Ok(Plan {
        dir: opts.dir.clone(),
        images_dir,
        forest,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, images: &[&str], force: bool) -> BuildOptions {
        BuildOptions {
            dir: dir.to_owned(),
            images: images.iter().map(|s| s.to_string()).collect(),
            force_rebuild: force,
            pkg_repo: None,
            arch: Arch::host(),
            jobs: 1,
            flatten: false,
        }
    }

    fn decisions(p: &Plan) -> Vec<(String, String)> {
        p.items
            .iter()
            .map(|it| {
                let d = match &it.decision {
                    Decision::Build { reason } => format!("build: {reason}"),
                    Decision::Cached => "cached".into(),
                    Decision::Reused => "reused".into(),
                    Decision::Unselected => "-".into(),
                };
                (it.name.clone(), d)
            })
            .collect()
    }

    /// Pretends every image was built with the plan's keys.
    fn mark_built(p: &Plan) {
        std::fs::create_dir_all(&p.images_dir).unwrap();
        for it in &p.items {
            std::fs::write(p.images_dir.join(&it.name), b"img").unwrap();
            cache::write_record(&p.images_dir, &it.name, &it.parts).unwrap();
        }
    }

    #[test]
    fn decisions_follow_cache_selection_and_parents() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), b"1").unwrap();
        std::fs::write(
            d.path().join("images.json"),
            r#"[{"name":"a.img","bootable":false},
                {"name":"b.qcow2","parent":"a.img","actions":[{"op":{"File":"in.txt","Dest":"/x"},"type":"upload"}]},
                {"name":"c.qcow2","parent":"b.qcow2"},
                {"name":"other.img","bootable":false}]"#,
        )
        .unwrap();
        let o = opts(d.path(), &[], false);
        let p = plan(&o, load(&o).unwrap()).unwrap();
        assert!(decisions(&p)
            .iter()
            .all(|(_, d)| d == "build: not built yet"));
        mark_built(&p);
        let p = plan(&o, load(&o).unwrap()).unwrap();
        assert!(
            decisions(&p).iter().all(|(_, d)| d == "cached"),
            "{:?}",
            decisions(&p)
        );

        // an input file changes: b and (through its parent key) c rebuild
        std::fs::write(d.path().join("in.txt"), b"2").unwrap();
        let p = plan(&o, load(&o).unwrap()).unwrap();
        assert_eq!(
            decisions(&p),
            [
                ("a.img".into(), "cached".into()),
                ("other.img".into(), "cached".into()),
                ("b.qcow2".into(), "build: input files changed".into()),
                ("c.qcow2".into(), "build: parent b.qcow2 is rebuilt".into()),
            ]
        );
        mark_built(&p);

        // -i c: only c; forced; ancestors stay cached
        let o2 = opts(d.path(), &["c.qcow2"], true);
        let p = plan(&o2, load(&o2).unwrap()).unwrap();
        let dec = decisions(&p);
        assert_eq!(dec[0].1, "cached");
        assert_eq!(dec[1].1, "-");
        assert_eq!(dec[3].1, "build: --force-rebuild");

        // -i c with a missing ancestor: the ancestor is built too
        std::fs::remove_file(d.path().join("images/a.img")).unwrap();
        let o3 = opts(d.path(), &["c.qcow2"], false);
        let p = plan(&o3, load(&o3).unwrap()).unwrap();
        let dec = decisions(&p);
        assert_eq!(dec[0].1, "build: not built yet");
        assert_eq!(dec[2].1, "build: parent a.img is rebuilt");
        assert_eq!(dec[3].1, "build: parent b.qcow2 is rebuilt");
    }

    /// Images without lvh's build record (little-vm-helper's, pulled ones) are
    /// reused as they are, as little-vm-helper does; --force-rebuild and a
    /// rebuilt parent still rebuild them.
    #[test]
    fn images_without_a_build_record_are_reused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("images.json"),
            r#"[{"name":"a.img","bootable":false},
                {"name":"b.qcow2","parent":"a.img"},
                {"name":"c.qcow2","parent":"b.qcow2"}]"#,
        )
        .unwrap();
        let images = d.path().join("images");
        std::fs::create_dir(&images).unwrap();
        for n in ["a.img", "b.qcow2"] {
            std::fs::write(images.join(n), b"made by little-vm-helper").unwrap();
        }
        let o = opts(d.path(), &[], false);
        let p = plan(&o, load(&o).unwrap()).unwrap();
        assert_eq!(
            decisions(&p),
            [
                ("a.img".into(), "reused".into()),
                ("b.qcow2".into(), "reused".into()),
                ("c.qcow2".into(), "build: not built yet".into()),
            ]
        );
        // -i b --force-rebuild: b rebuilds, its child follows
        let o = opts(d.path(), &["b.qcow2", "c.qcow2"], true);
        let p = plan(&o, load(&o).unwrap()).unwrap();
        let dec = decisions(&p);
        assert_eq!(dec[0].1, "reused");
        assert_eq!(dec[1].1, "build: --force-rebuild");
        assert_eq!(dec[2].1, "build: --force-rebuild");
        let o = opts(d.path(), &["c.qcow2"], false);
        std::fs::remove_file(images.join("a.img")).unwrap();
        let p = plan(&o, load(&o).unwrap()).unwrap();
        let dec = decisions(&p);
        assert_eq!(dec[0].1, "build: not built yet");
        assert_eq!(dec[1].1, "build: parent a.img is rebuilt");
        // a record that does not match still rebuilds (lvh's own image, changed config)
        let o = opts(d.path(), &[], false);
        let p = plan(&o, load(&o).unwrap()).unwrap();
        mark_built(&p);
        let mut stale = p.items[0].parts.clone();
        stale.config.push('x');
        cache::write_record(&images, "a.img", &stale).unwrap();
        let p = plan(&o, load(&o).unwrap()).unwrap();
        assert_eq!(decisions(&p)[0].1, "build: config entry changed");
    }

    /// A child of a parent images.json does not build is written standalone;
    /// inside the forest overlays stay the default.
    #[test]
    fn children_of_outside_parents_are_standalone() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("images")).unwrap();
        std::fs::write(d.path().join("images/kind.qcow2"), b"pulled").unwrap();
        std::fs::write(
            d.path().join("images.json"),
            r#"[{"name":"kind_x.qcow2","parent":"kind.qcow2"},
                {"name":"a.qcow2","bootable":false},
                {"name":"b.qcow2","parent":"a.qcow2"},
                {"name":"k2.qcow2","parent":"kind.qcow2","flatten":false}]"#,
        )
        .unwrap();
        let o = opts(d.path(), &[], false);
        let p = plan(&o, load(&o).unwrap()).unwrap();
        let flat = |n: &str| {
            p.items
                .iter()
                .find(|it| it.name == n)
                .unwrap()
                .settings
                .flatten
        };
        assert!(flat("kind_x.qcow2"));
        assert!(!flat("b.qcow2"));
        // an explicit "flatten": false does not make an overlay on a parent that may go away
        assert!(flat("k2.qcow2"));
    }

    #[test]
    fn foreign_arch_limits_are_checked_up_front() {
        let foreign = match Arch::host() {
            Arch::Amd64 => Arch::Arm64,
            Arch::Arm64 => Arch::Amd64,
        };
        for (config, want) in [
            (
                r#"[{"name":"c","parent":"ext.img","packages":["vim"]}]"#,
                "installing packages into a derived",
            ),
            (
                r#"[{"name":"c","parent":"ext.img","actions":[{"op":{"Cmd":"true"},"type":"run-command"}]}]"#,
                "actions[0] (run-command) cannot run in an",
            ),
            (r#"[{"name":"r","bootable":true}]"#, "bootable"),
        ] {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join("images")).unwrap();
            std::fs::write(d.path().join("images/ext.img"), b"").unwrap();
            std::fs::write(d.path().join("images.json"), config).unwrap();
            let mut o = opts(d.path(), &[], false);
            o.arch = foreign;
            let e = load(&o).unwrap_err().to_string();
            assert!(e.contains(want), "{config}: {e}");
            assert!(e.contains(foreign.as_str()), "{e}");
        }
        // file actions work in foreign images
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("images")).unwrap();
        std::fs::write(d.path().join("images/ext.img"), b"").unwrap();
        std::fs::write(
            d.path().join("images.json"),
            r#"[{"name":"c","parent":"ext.img","actions":[{"op":{"Dir":"/x"},"type":"mkdir"}]}]"#,
        )
        .unwrap();
        let mut o = opts(d.path(), &[], false);
        o.arch = foreign;
        load(&o).unwrap();
    }

    #[test]
    fn settings_defaults_and_overrides() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("images.json"),
            r#"[{"name":"a.img","suite":"trixie"},{"name":"b.qcow2","parent":"a.img","image_size":"20G","flatten":true}]"#,
        )
        .unwrap();
        let mut o = opts(d.path(), &[], false);
        o.arch = Arch::Amd64;
        let p = plan(&o, load(&o).unwrap()).unwrap();
        let (a, b) = (&p.items[0].settings, &p.items[1].settings);
        assert_eq!(a.suite, "trixie");
        assert_eq!(a.size, Some(DEFAULT_IMAGE_SIZE));
        assert!(a.bootable && !b.bootable);
        assert_eq!(b.size, Some(20 << 30));
        assert!(b.flatten);
        o.pkg_repo = Some("bookworm".into());
        let p = plan(&o, load(&o).unwrap()).unwrap();
        assert_eq!(p.items[0].settings.suite, "bookworm");
        assert_eq!(p.items[1].settings.suite, "bookworm");
    }
}
