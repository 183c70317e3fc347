//! Saved VMs on disk (`--save-state NAME`, `--from-state NAME`): one directory
//! per state, `<dir>/states/NAME/`, holding
//!
//! - `disk.qcow2`: the root disk as the setup command left it, a qcow2 overlay
//!   whose backing file is the run's image (the image itself is never written);
//! - `ram` and `devices`: the stopped VM's memory and device state
//!   ([`super::layout`]; `memory` in states of earlier lvh versions);
//! - `state.json`: [`StateMeta`], what the VM was started from: the QEMU
//!   configuration a restore must repeat, the kernel's and the image's
//!   identity, the RAM's size and the device state's checksum, so a restore
//!   whose kernel or image changed, or whose files were damaged, is refused.
//!
//! A state is assembled in a hidden sibling directory and renamed into place
//! only when complete, so a failed save leaves no state behind. What a run
//! does with states rides in its plan as a [`StateOp`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::layout::{self, Layout};
use crate::runner::error::RunError;

/// What a run does with saved VMs.
#[derive(Clone, Debug)]
pub enum StateOp {
    /// `--save-state NAME`: save into `states/NAME` after the setup command.
    Save {
        states: PathBuf,
        name: String,
        /// A bootable image: the setup command runs over ssh (`saved::boot`).
        ssh: Option<Box<SshRun>>,
    },
    /// `--from-state NAME`: the state's directory and what it was saved from.
    Restore {
        dir: PathBuf,
        meta: Box<StateMeta>,
        /// A bootable image's state: the command runs over ssh (`saved::boot`).
        ssh: Option<Box<SshRun>>,
    },
}

impl StateOp {
    /// The ssh run of a bootable image's state, if it is one.
    pub fn ssh(&self) -> Option<&SshRun> {
        match self {
            StateOp::Save { ssh, .. } | StateOp::Restore { ssh, .. } => ssh.as_deref(),
        }
    }
}

/// A state run on a bootable image: the command and how to reach the guest.
#[derive(Clone, Debug)]
pub struct SshRun {
    pub cmd: Vec<String>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    /// The host port forwarded to guest port 22.
    pub port: u16,
    /// How long the boot may take until root logs in (`--ssh-timeout`).
    pub login_timeout: Duration,
    /// `--ssh-key`'s public keys, given to root beside lvh's own.
    pub user_keys: Option<String>,
}

/// The layout version of the states lvh saves (see [`Layout::of`]).
pub const VERSION: u32 = 2;
pub const DISK: &str = "disk.qcow2";
pub const META: &str = "state.json";

/// What a saved VM was started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    pub version: u32,
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    pub arch: String,
    pub accel: String,
    pub cpus: u32,
    /// QEMU's `-m` value.
    pub mem: String,
    pub cpu_kind: Option<String>,
    pub root_dev: String,
    pub kernel: PathBuf,
    pub kernel_sha256: String,
    /// The kernel file's identity when it was hashed: while it is the same,
    /// a restore need not hash the kernel again.
    #[serde(default)]
    pub kernel_id: Option<FileId>,
    pub image: PathBuf,
    pub image_format: String,
    pub image_id: FileId,
    /// Whether a `--host-mount` device was present (a restore needs one too).
    pub host_mount: bool,
    /// The setup command.
    pub setup: Vec<String>,
    /// Saved from a bootable image booted by its own init (no kernel of
    /// lvh's: `kernel` is empty); commands reach it over ssh with the key in
    /// the state's directory (`saved::boot`).
    #[serde(default)]
    pub booted: bool,
    /// The guest RAM's size in bytes: the size of the `ram` file (layout 2).
    #[serde(default)]
    pub ram_size: u64,
    /// The sha256 of the `devices` file (layout 2).
    #[serde(default)]
    pub devices_sha256: String,
    /// Which of lvh's inits serves the saved VM, and so how a restore sends
    /// it the command (states saved before there was a choice: the shell init).
    #[serde(default)]
    pub init: SavedInit,
}

/// The init that waits in a saved VM for the command of a restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedInit {
    /// `init.sh`'s serve script: the command as shell text.
    #[default]
    Shell,
    /// The static init: the command as plan records.
    Static,
}

impl StateMeta {
    /// How this state holds the VM, if this lvh reads it.
    pub fn layout(&self) -> Option<Layout> {
        Layout::of(self.version)
    }
}

/// A cheap identity of a (large) file: size, modification time and inode.
/// Any write to the image changes it; hashing gigabytes would cost more than
/// the restore saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

impl FileId {
    pub fn of(p: &Path) -> Result<FileId, RunError> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p)
            .map_err(|e| RunError::io(format!("read the metadata of {}", p.display()), e))?;
        Ok(FileId {
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            inode: m.ino(),
        })
    }
}

pub use super::layout::sha256_file;

/// `<dir>/states`.
pub fn states_dir(dir: &Path) -> PathBuf {
    dir.join("states")
}

/// A state name (given with `flag`): a plain file name of letters, digits,
/// `.`, `_` and `-`.
pub fn check_name(flag: &str, name: &str) -> Result<(), RunError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RunError::invalid(
            flag,
            name,
            "invalid state name: expected up to 64 letters, digits, '.', '_' or '-', not starting with '.'",
        ))
    }
}

/// Why a saved state cannot be restored as it is now, if it cannot: the
/// kernel's checksum or the image's identity differ from the saved ones.
pub fn changed(meta: &StateMeta, kernel_sha256: &str, image_id: Option<FileId>) -> Option<String> {
    if meta.layout().is_none() {
        return Some(format!(
            "it was saved by another lvh (layout {}, this lvh reads layouts 1 and {VERSION})",
            meta.version
        ));
    }
    if kernel_sha256 != meta.kernel_sha256 {
        return Some(format!(
            "the kernel {} changed since it was saved",
            meta.kernel.display()
        ));
    }
    match image_id {
        None => Some(format!("the image {} is gone", meta.image.display())),
        Some(id) if id != meta.image_id => Some(format!(
            "the image {} changed since it was saved",
            meta.image.display()
        )),
        Some(_) => None,
    }
}

/// Loads state `name` from `states` and checks that its kernel and image are
/// unchanged. Returns the state's directory and metadata.
pub fn load(states: &Path, name: &str) -> Result<(PathBuf, StateMeta), RunError> {
    check_name("--from-state", name)?;
    let dir = states.join(name);
    let meta_path = dir.join(META);
    let text = match std::fs::read_to_string(&meta_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RunError::invalid(
                "--from-state",
                name,
                format!(
                    "no saved state {name:?} in {} (see --list-states)",
                    states.display()
                ),
            ))
        }
        Err(e) => return Err(RunError::io(format!("read {}", meta_path.display()), e)),
    };
    let meta: StateMeta = serde_json::from_str(&text).map_err(|e| {
        RunError::Invalid(
            crate::error::InvalidInput {
                reason: format!("not a saved state: {e}"),
                ..Default::default()
            }
            .in_file(&meta_path),
        )
    })?;
    let kernel_sum = if meta.booted || !meta.kernel.is_file() {
        String::new()
    } else if same_file(meta.kernel_id, FileId::of(&meta.kernel).ok()) {
        meta.kernel_sha256.clone()
    } else {
        sha256_file(&meta.kernel)?
    };
    let why = changed(&meta, &kernel_sum, FileId::of(&meta.image).ok()).or_else(|| {
        let l = meta.layout()?;
        let recorded = layout::Recorded {
            ram_size: meta.ram_size,
            mem: &meta.mem,
            devices_sha256: &meta.devices_sha256,
        };
        layout::problem(recorded, l, &dir, &layout::observe(l, &dir))
    });
    if let Some(why) = why {
        return Err(RunError::invalid(
            "--from-state",
            name,
            format!("cannot restore state {name:?}: {why}; save it again (--save-state {name})"),
        ));
    }
    Ok((dir, meta))
}

/// Whether a file's identity now is the one recorded (unknown is not).
pub fn same_file(recorded: Option<FileId>, now: Option<FileId>) -> bool {
    recorded.is_some() && recorded == now
}

/// Every state in `states` (a broken one as an error line), sorted by name.
pub fn list(states: &Path) -> Vec<Result<StateMeta, String>> {
    let Ok(rd) = std::fs::read_dir(states) else {
        return vec![];
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let p = states.join(&n).join(META);
            std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                .map_err(|e| format!("{n}: unreadable ({}: {e})", p.display()))
        })
        .collect()
}

/// One line of `--list-states`.
pub fn describe(m: &StateMeta) -> String {
    format!(
        "{}\t{}\t{} {}\tkernel {}\timage {}\tsetup: {}",
        m.name,
        m.created,
        m.arch,
        m.mem,
        if m.booted {
            "(the image's own, over ssh)".to_string()
        } else {
            m.kernel.display().to_string()
        },
        m.image.display(),
        m.setup.join(" ")
    )
}

/// Removes state `name`.
pub fn remove(states: &Path, name: &str) -> Result<(), RunError> {
    check_name("--remove-state", name)?;
    let dir = states.join(name);
    if !dir.join(META).is_file() {
        return Err(RunError::invalid(
            "--remove-state",
            name,
            format!("no saved state {name:?} in {}", states.display()),
        ));
    }
    std::fs::remove_dir_all(&dir).map_err(|e| RunError::io(format!("remove {}", dir.display()), e))
}

/// A state being assembled: `states/.NAME.partial-PID`, removed on drop
/// unless [`Partial::commit`] renamed it into place.
pub struct Partial {
    pub dir: PathBuf,
    name: String,
    states: PathBuf,
    done: bool,
}

impl Partial {
    pub fn new(states: &Path, name: &str) -> Result<Partial, RunError> {
        check_name("--save-state", name)?;
        std::fs::create_dir_all(states)
            .map_err(|e| RunError::io(format!("create {}", states.display()), e))?;
        let dir = states.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // 0700: the saved memory holds the guest's secrets.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| RunError::io(format!("create {}", dir.display()), e))?;
        Ok(Partial {
            dir,
            name: name.to_string(),
            states: states.to_path_buf(),
            done: false,
        })
    }

    /// Writes the metadata and renames the directory to `states/NAME`,
    /// replacing an older state of that name.
    pub fn commit(mut self, meta: &StateMeta) -> Result<PathBuf, RunError> {
        let text = serde_json::to_string_pretty(meta).expect("state metadata serializes");
        let meta_path = self.dir.join(META);
        std::fs::write(&meta_path, text + "\n")
            .map_err(|e| RunError::io(format!("write {}", meta_path.display()), e))?;
        let target = self.states.join(&self.name);
        let old = self
            .states
            .join(format!(".{}.old-{}", self.name, std::process::id()));
        let had_old = target.exists();
        if had_old {
            std::fs::rename(&target, &old)
                .map_err(|e| RunError::io(format!("move {} aside", target.display()), e))?;
        }
        std::fs::rename(&self.dir, &target).map_err(|e| {
            RunError::io(
                format!("rename {} to {}", self.dir.display(), target.display()),
                e,
            )
        })?;
        self.done = true;
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(target)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> StateMeta {
        StateMeta {
            version: VERSION,
            name: name.into(),
            created: 1,
            arch: "amd64".into(),
            accel: "tcg".into(),
            cpus: 2,
            mem: "512M".into(),
            cpu_kind: None,
            root_dev: "vda".into(),
            kernel: "/k/bzImage".into(),
            kernel_sha256: "aa".into(),
            kernel_id: None,
            image: "/i/root.img".into(),
            image_format: "raw".into(),
            image_id: FileId {
                size: 10,
                mtime_ns: 5,
                inode: 7,
            },
            host_mount: false,
            setup: vec!["true".into()],
            booted: false,
            ram_size: 0,
            devices_sha256: String::new(),
            init: SavedInit::Shell,
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "bpf-next_1.2", "X"] {
            check_name("--save-state", ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(65)] {
            let e = check_name("--save-state", bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--save-state {bad:?}: invalid state name")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn states_of_an_earlier_lvh_still_read() {
        assert_eq!(Layout::of(VERSION), Some(Layout::Mapped));
        let mut v = serde_json::to_value(meta("s")).unwrap();
        for k in ["ram_size", "devices_sha256", "kernel_id"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v["version"] = serde_json::json!(1);
        let old: StateMeta = serde_json::from_value(v).unwrap();
        assert_eq!(old.layout(), Some(Layout::Streamed));
    }

    #[test]
    fn a_recorded_identity_spares_the_hash() {
        let id = FileId {
            size: 1,
            mtime_ns: 2,
            inode: 3,
        };
        let other = FileId { size: 2, ..id };
        assert!(same_file(Some(id), Some(id)));
        assert!(!same_file(Some(id), Some(other)));
        assert!(!same_file(Some(id), None));
        assert!(!same_file(None, None), "an older state has none: hash");
    }

    #[test]
    fn a_changed_kernel_or_image_is_refused() {
        let m = meta("s");
        assert_eq!(changed(&m, "aa", Some(m.image_id)), None);
        let e = changed(&m, "bb", Some(m.image_id)).unwrap();
        assert!(e.contains("the kernel /k/bzImage changed"), "{e}");
        let mut id = m.image_id;
        id.mtime_ns += 1;
        assert!(changed(&m, "aa", Some(id))
            .unwrap()
            .contains("the image /i/root.img changed"));
        assert!(changed(&m, "aa", None).unwrap().contains("is gone"));
        let mut old = m.clone();
        old.version = 0;
        assert!(changed(&old, "aa", Some(m.image_id))
            .unwrap()
            .contains("another lvh"));
    }

    #[test]
    fn commit_is_atomic_replaces_and_lists() {
        let d = tempfile::tempdir().unwrap();
        let states = states_dir(d.path());
        {
            let p = Partial::new(&states, "s").unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p.dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "a state is private");
            std::fs::write(p.dir.join(layout::RAM), "half").unwrap();
            // dropped without commit: nothing left
        }
        assert!(list(&states).is_empty());
        assert_eq!(std::fs::read_dir(&states).unwrap().count(), 0);
        for n in 0..2 {
            let p = Partial::new(&states, "s").unwrap();
            std::fs::write(p.dir.join(layout::RAM), format!("v{n}")).unwrap();
            let mut m = meta("s");
            m.created = n;
            p.commit(&m).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(states.join("s").join(layout::RAM)).unwrap(),
            "v1"
        );
        std::fs::create_dir(states.join("broken")).unwrap();
        let l = list(&states);
        assert_eq!(l.len(), 2);
        assert!(l[0].as_ref().unwrap_err().starts_with("broken: unreadable"));
        assert_eq!(l[1].as_ref().unwrap().created, 1);
        assert_eq!(
            std::fs::read_dir(&states).unwrap().count(),
            2,
            "no leftovers"
        );
        let e = load(&states, "nope").unwrap_err().to_string();
        assert!(e.contains("no saved state \"nope\""), "{e}");
        remove(&states, "s").unwrap();
        assert!(remove(&states, "s").is_err());
    }

    #[test]
    fn load_checks_the_kernel_and_the_image() {
        let d = tempfile::tempdir().unwrap();
        let states = states_dir(d.path());
        let kernel = d.path().join("bzImage");
        let image = d.path().join("root.img");
        std::fs::write(&kernel, "k1").unwrap();
        std::fs::write(&image, "i").unwrap();
        let mut m = meta("s");
        m.kernel = kernel.clone();
        m.kernel_sha256 = sha256_file(&kernel).unwrap();
        m.kernel_id = Some(FileId::of(&kernel).unwrap());
        m.image = image.clone();
        m.image_id = FileId::of(&image).unwrap();
        m.ram_size = 4096;
        let p = Partial::new(&states, "s").unwrap();
        std::fs::write(p.dir.join(layout::RAM), [0u8; 4096]).unwrap();
        std::fs::write(p.dir.join(layout::DEVICES), "dev").unwrap();
        m.devices_sha256 = sha256_file(&p.dir.join(layout::DEVICES)).unwrap();
        p.commit(&m).unwrap();
        assert_eq!(load(&states, "s").unwrap().1, m);
        // The same content under another identity (touched, copied back) is
        // still the kernel the state was saved with.
        std::fs::write(&kernel, "k1").unwrap();
        load(&states, "s").unwrap();
        std::fs::write(&kernel, "k2").unwrap();
        let e = load(&states, "s").unwrap_err().to_string();
        assert!(e.contains("cannot restore state \"s\": the kernel"), "{e}");
        std::fs::write(&kernel, "k1").unwrap();
        // A damaged device state is refused, naming the file.
        std::fs::write(states.join("s").join(layout::DEVICES), "deW").unwrap();
        let e = load(&states, "s").unwrap_err().to_string();
        assert!(
            e.contains("its device state") && e.contains("corrupted"),
            "{e}"
        );
        // A bootable image's state has no kernel of lvh's; its image still counts.
        let mut b = meta("b");
        b.version = 1;
        b.booted = true;
        b.kernel = PathBuf::new();
        b.kernel_sha256 = String::new();
        b.image = image.clone();
        b.image_id = FileId::of(&image).unwrap();
        let p = Partial::new(&states, "b").unwrap();
        std::fs::write(p.dir.join(layout::MEMORY), "stream").unwrap();
        p.commit(&b).unwrap();
        assert_eq!(load(&states, "b").unwrap().1, b);
        assert!(describe(&b).contains("kernel (the image's own, over ssh)"));
        std::fs::write(&image, "i2").unwrap();
        let e = load(&states, "b").unwrap_err().to_string();
        assert!(e.contains("the image") && e.contains("changed"), "{e}");
    }
}
