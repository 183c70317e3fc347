//! How `--host-mount` is served to the guest, so that a guest (whose root
//! is untrusted) cannot make device nodes or setuid/setgid files on the
//! host through it. QEMU's 9p server does the guest's file operations with
//! QEMU's own credentials; when those are root, `security_model=none` lets
//! guest root `mknod` a block device or `chmod 4755` a file on the host.
//! So a root QEMU gets a *mapped* model: guest modes, owners and device
//! numbers are kept in extended attributes (`user.virtfs.*`,
//! `mapped-xattr`) or, on a file system without them, in
//! `.virtfs_metadata` directories (`mapped-file`); the host file stays a
//! plain file of mode [`HOST_FMODE`]. A QEMU that is not root has only its
//! user's powers, and keeps `none` (the guest's modes are the host's).
//! The choice is pure ([`decide`]); [`probe_xattrs`] is the one look at
//! the file system.

use std::path::Path;

/// The 9p security model of a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareModel {
    /// The guest's modes and owners are the host's (`none`).
    Passthrough,
    /// Guest metadata in `user.virtfs.*` extended attributes.
    MappedXattr,
    /// Guest metadata in `.virtfs_metadata` directories inside the share.
    MappedFile,
}

/// The host mode of a file the guest creates through a mapped share:
/// readable by the host user (test results, build outputs), never
/// executable, setuid or a device.
pub const HOST_FMODE: &str = "0644";
/// The host mode of a directory the guest creates through a mapped share.
pub const HOST_DMODE: &str = "0755";

impl ShareModel {
    /// QEMU's `-fsdev local` options for the model.
    pub fn fsdev_opts(self) -> String {
        match self {
            ShareModel::Passthrough => "security_model=none".into(),
            ShareModel::MappedXattr => {
                format!("security_model=mapped-xattr,fmode={HOST_FMODE},dmode={HOST_DMODE}")
            }
            ShareModel::MappedFile => {
                format!("security_model=mapped-file,fmode={HOST_FMODE},dmode={HOST_DMODE}")
            }
        }
    }
}

/// What the host mount's file system supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Xattrs {
    Supported,
    /// `user.*` extended attributes are not supported (tmpfs before Linux
    /// 6.6, NFS before 4.2, some FUSE file systems).
    Unsupported,
}

/// Whether the file system of `dir` takes `user.*` extended attributes:
/// reading one that is not there says "no such attribute" where they are
/// supported, "not supported" where not. Nothing is written.
pub fn probe_xattrs(dir: &Path) -> Xattrs {
    match rustix::fs::getxattr(dir, "user.lvh.probe", &mut [0u8; 0][..]) {
        Err(e) if e == rustix::io::Errno::NOTSUP => Xattrs::Unsupported,
        _ => Xattrs::Supported,
    }
}

/// The model for a share served by a QEMU running as root (`qemu_root`) on
/// a file system with or without `user.*` extended attributes.
pub fn decide(qemu_root: bool, xattrs: Xattrs) -> ShareModel {
    match (qemu_root, xattrs) {
        (false, _) => ShareModel::Passthrough,
        (true, Xattrs::Supported) => ShareModel::MappedXattr,
        (true, Xattrs::Unsupported) => ShareModel::MappedFile,
    }
}

/// What to tell the user about the host mount `dir` served with `model`.
pub fn warning(model: ShareModel, dir: &Path) -> Option<String> {
    (model == ShareModel::MappedFile).then(|| {
        format!(
            "--host-mount {}: the file system has no user extended attributes, so the guest's file modes and owners are kept in .virtfs_metadata directories inside it (lvh runs QEMU as root and never lets the guest set them on the host)",
            dir.display()
        )
    })
}

/// Whether QEMU, started by this process, runs as root.
pub fn qemu_is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_qemu_never_passes_modes_through() {
        use ShareModel::*;
        use Xattrs::*;
        for (root, x, want) in [
            (false, Supported, Passthrough),
            (false, Unsupported, Passthrough),
            (true, Supported, MappedXattr),
            (true, Unsupported, MappedFile),
        ] {
            assert_eq!(decide(root, x), want, "root={root} {x:?}");
        }
        assert_eq!(Passthrough.fsdev_opts(), "security_model=none");
        assert_eq!(
            MappedXattr.fsdev_opts(),
            "security_model=mapped-xattr,fmode=0644,dmode=0755"
        );
        assert_eq!(
            MappedFile.fsdev_opts(),
            "security_model=mapped-file,fmode=0644,dmode=0755"
        );
        assert_eq!(warning(MappedXattr, Path::new("/s")), None);
        assert!(warning(MappedFile, Path::new("/s"))
            .unwrap()
            .contains("--host-mount /s: the file system has no user extended attributes"));
    }

    #[test]
    fn the_probe_writes_nothing() {
        // The checkout is on a disk file system (ext4, xfs, btrfs): supported.
        let d = Path::new(env!("CARGO_MANIFEST_DIR"));
        let before = std::fs::metadata(d).unwrap();
        assert_eq!(probe_xattrs(d), Xattrs::Supported);
        let after = std::fs::metadata(d).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (before.ctime(), before.ctime_nsec()),
            (after.ctime(), after.ctime_nsec())
        );
        // /proc takes no user attributes.
        assert_eq!(probe_xattrs(Path::new("/proc/self")), Xattrs::Unsupported);
    }
}
