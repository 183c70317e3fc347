//! Which file system serves `--host-mount` to the guest: virtiofs (a
//! `virtiofsd` that lvh starts beside QEMU, several times faster than 9p on
//! trees of many small files) or 9p (QEMU's own server). `--host-mount-fs
//! auto` takes virtiofs where it can work and says in one line why not
//! otherwise. The choice is pure ([`decide`]); [`find_virtiofsd`] is the one
//! look for the daemon.
//!
//! virtiofsd does the guest's file operations with its own credentials, and
//! unlike QEMU's 9p server it cannot keep the guest's modes in extended
//! attributes. So virtiofsd never runs as root: a root lvh starts it as the
//! shared directory's owner ([`RunAs::Owner`]), so that the guest writes as
//! that user and has no power over device nodes or the setuid bit of a file
//! that is not the owner's; a directory owned by root itself is served over
//! 9p's mapped model instead. A virtiofsd started by a user that is not root
//! has that user's powers ([`RunAs::Caller`]). Either way its own seccomp
//! filter confines it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// `--host-mount-fs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsRequest {
    /// virtiofs when it works, else 9p (the default).
    #[default]
    Auto,
    Virtiofs,
    NineP,
}

impl FsRequest {
    pub const VALUES: &'static str = "auto, virtiofs, 9p";

    pub fn parse(s: &str) -> Option<FsRequest> {
        match s {
            "auto" => Some(FsRequest::Auto),
            "virtiofs" => Some(FsRequest::Virtiofs),
            "9p" => Some(FsRequest::NineP),
            _ => None,
        }
    }
}

/// Whose powers virtiofsd has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// lvh is root: the shared directory's owner and group.
    Owner { uid: u32, gid: u32 },
    /// lvh is not root: lvh's user.
    Caller,
}

/// A virtiofs host mount: the daemon and whose powers it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Virtiofs {
    pub daemon: PathBuf,
    pub run_as: RunAs,
}

/// What the choice depends on, besides the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsFacts {
    /// Where virtiofsd is, if anywhere ([`find_virtiofsd`]).
    pub virtiofsd: Option<PathBuf>,
    /// lvh (and so virtiofsd) runs as root.
    pub root: bool,
    /// The shared directory's owner and group.
    pub owner: (u32, u32),
    /// The owner can reach the directory and virtiofsd (every directory
    /// above it lets the owner through, see [`reaches`]).
    pub owner_reaches: bool,
    /// The kernel's `CONFIG_VIRTIO_FS` and `CONFIG_FUSE_FS` are both `y`;
    /// `None` when its configuration was not found.
    pub kernel_virtiofs: Option<bool>,
    /// Why the run cannot use virtiofs whatever the rest says (a saved VM,
    /// the image's own init), if so.
    pub mode_blocks: Option<&'static str>,
}

/// The file system that serves the host mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostFs {
    NineP,
    Virtiofs(Virtiofs),
}

/// How to get virtiofsd, for the error of an explicit `virtiofs` without it.
pub const INSTALL_HINT: &str = "install it with scripts/install-deps.sh or `cargo install --locked virtiofsd` (needs libcap-ng-dev and libseccomp-dev), or point LVH_VIRTIOFSD at it";

/// The environment variable that names the virtiofsd binary.
pub const ENV: &str = "LVH_VIRTIOFSD";
/// Where distributions install virtiofsd (it is not on `PATH` there).
pub const SYSTEM_PATHS: [&str; 2] = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

/// The reason virtiofs cannot serve the mount, if there is one.
fn obstacle(f: &FsFacts) -> Option<String> {
    if let Some(why) = f.mode_blocks {
        return Some(why.to_string());
    }
    if f.virtiofsd.is_none() {
        return Some(format!("virtiofsd was not found ({INSTALL_HINT})"));
    }
    match f.kernel_virtiofs {
        Some(true) => {}
        Some(false) => {
            return Some("the kernel lacks CONFIG_VIRTIO_FS=y and CONFIG_FUSE_FS=y".into())
        }
        None => {
            return Some(
                "the kernel's configuration was not found to check CONFIG_VIRTIO_FS".into(),
            )
        }
    }
    if f.root && f.owner.0 == 0 {
        return Some("lvh runs as root and the directory belongs to root: virtiofsd runs as the directory's owner, never as root (chown the directory to a user to use virtiofs)".into());
    }
    if f.root && !f.owner_reaches {
        return Some(format!(
            "virtiofsd runs as the directory's owner (uid {}), who cannot reach it or virtiofsd",
            f.owner.0
        ));
    }
    None
}

/// The file system for a host mount, and the one line to say when `auto`
/// fell back to 9p. An explicit `virtiofs` that cannot work is an error
/// (its reason).
pub fn decide(req: FsRequest, f: &FsFacts) -> Result<(HostFs, Option<String>), String> {
    if req == FsRequest::NineP {
        return Ok((HostFs::NineP, None));
    }
    match (obstacle(f), req) {
        (Some(why), FsRequest::Virtiofs) => Err(why),
        (Some(why), _) => Ok((HostFs::NineP, Some(format!("host mount over 9p: {why}")))),
        (None, _) => {
            let run_as = if f.root {
                RunAs::Owner {
                    uid: f.owner.0,
                    gid: f.owner.1,
                }
            } else {
                RunAs::Caller
            };
            let daemon = f.virtiofsd.clone().expect("checked by obstacle");
            Ok((HostFs::Virtiofs(Virtiofs { daemon, run_as }), None))
        }
    }
}

/// Whether user `uid` (group `gid`) may pass through every directory of
/// `dirs` (mode, owner, group of each): the search bit that applies to it.
pub fn reaches(uid: u32, gid: u32, dirs: &[(u32, u32, u32)]) -> bool {
    dirs.iter().all(|&(mode, owner, group)| {
        let bit = if owner == uid {
            0o100
        } else if group == gid {
            0o010
        } else {
            0o001
        };
        mode & bit != 0
    })
}

/// The modes, owners and groups of `path` and every directory above it
/// (for [`reaches`]); `None` when one cannot be read.
pub fn ancestors(path: &Path) -> Option<Vec<(u32, u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.mode(), m.uid(), m.gid()))
        })
        .collect()
}

/// Where virtiofsd is: `LVH_VIRTIOFSD` if set (even when it is not there:
/// the user meant that one), else the first `virtiofsd` on `path`, else
/// distributions' places ([`SYSTEM_PATHS`]).
pub fn find_virtiofsd(env: Option<&OsStr>, path: Option<&OsStr>) -> Option<PathBuf> {
    let is_exe = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        let p = PathBuf::from(e);
        return is_exe(&p).then_some(p);
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("virtiofsd"))
        .chain(SYSTEM_PATHS.iter().map(PathBuf::from))
        .find(|p| is_exe(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> FsFacts {
        FsFacts {
            virtiofsd: Some("/usr/libexec/virtiofsd".into()),
            root: false,
            owner: (1000, 1000),
            owner_reaches: true,
            kernel_virtiofs: Some(true),
            mode_blocks: None,
        }
    }

    #[test]
    fn auto_takes_virtiofs_when_it_works_and_says_why_not() {
        let ok = decide(FsRequest::Auto, &facts()).unwrap();
        assert_eq!(
            ok,
            (
                HostFs::Virtiofs(Virtiofs {
                    daemon: "/usr/libexec/virtiofsd".into(),
                    run_as: RunAs::Caller
                }),
                None
            )
        );
        let mut root = facts();
        root.root = true;
        assert!(matches!(
            decide(FsRequest::Auto, &root).unwrap().0,
            HostFs::Virtiofs(Virtiofs {
                run_as: RunAs::Owner {
                    uid: 1000,
                    gid: 1000
                },
                ..
            })
        ));
        // Only a root lvh starts virtiofsd as someone else.
        let mut far = facts();
        far.owner_reaches = false;
        assert!(matches!(
            decide(FsRequest::Auto, &far).unwrap().0,
            HostFs::Virtiofs(_)
        ));
        type Edit = fn(&mut FsFacts);
        let cases: [(Edit, &str); 6] = [
            (
                |f| f.virtiofsd = None,
                "virtiofsd was not found (install it with",
            ),
            (
                |f| f.kernel_virtiofs = Some(false),
                "the kernel lacks CONFIG_VIRTIO_FS=y",
            ),
            (
                |f| f.kernel_virtiofs = None,
                "the kernel's configuration was not found",
            ),
            (
                |f| {
                    f.root = true;
                    f.owner = (0, 0)
                },
                "lvh runs as root and the directory belongs to root",
            ),
            (
                |f| {
                    f.root = true;
                    f.owner_reaches = false
                },
                "virtiofsd runs as the directory's owner (uid 1000), who cannot reach it",
            ),
            (
                |f| f.mode_blocks = Some("a saved VM keeps 9p"),
                "a saved VM keeps 9p",
            ),
        ];
        for (edit, why) in cases {
            let mut f = facts();
            edit(&mut f);
            let (fs, note) = decide(FsRequest::Auto, &f).unwrap();
            assert_eq!(fs, HostFs::NineP);
            let note = note.unwrap();
            assert!(
                note.starts_with("host mount over 9p: ") && note.contains(why),
                "{note}"
            );
            let err = decide(FsRequest::Virtiofs, &f).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert_eq!(decide(FsRequest::NineP, &f).unwrap(), (HostFs::NineP, None));
        }
        assert_eq!(
            decide(FsRequest::NineP, &facts()).unwrap(),
            (HostFs::NineP, None)
        );
    }

    #[test]
    fn the_owner_needs_the_search_bit_that_applies_to_it() {
        let (u, g) = (1000, 100);
        for (dirs, want) in [
            (vec![(0o755, 0, 0), (0o1777, 0, 0), (0o700, u, g)], true),
            (vec![(0o700, 0, 0), (0o755, u, g)], false),
            (vec![(0o750, 0, g), (0o700, u, 0)], true),
            (vec![(0o705, 0, g)], false),
            (vec![(0o601, u, 0)], false),
        ] {
            assert_eq!(reaches(u, g, &dirs), want, "{dirs:?}");
        }
        assert!(ancestors(Path::new("/nonexistent/x")).is_none());
        assert_eq!(ancestors(Path::new("/")).unwrap().len(), 1);
    }

    #[test]
    fn requests_parse() {
        assert_eq!(FsRequest::parse("auto"), Some(FsRequest::Auto));
        assert_eq!(FsRequest::parse("virtiofs"), Some(FsRequest::Virtiofs));
        assert_eq!(FsRequest::parse("9p"), Some(FsRequest::NineP));
        assert_eq!(FsRequest::parse("nfs"), None);
        assert_eq!(FsRequest::default(), FsRequest::Auto);
    }

    #[test]
    fn the_daemon_is_found_by_env_then_path() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("virtiofsd");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent".as_ref(), d.path()]).unwrap();
        assert_eq!(find_virtiofsd(None, Some(&path)), Some(exe.clone()));
        assert_eq!(
            find_virtiofsd(Some(exe.as_os_str()), Some("/nonexistent".as_ref())),
            Some(exe.clone())
        );
        // A named daemon that is not there is not replaced by another one.
        assert_eq!(
            find_virtiofsd(Some("/nonexistent/virtiofsd".as_ref()), Some(&path)),
            None
        );
        // Not executable: not a daemon.
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_virtiofsd(Some(exe.as_os_str()), None), None);
    }
}
