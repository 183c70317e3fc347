//! The NoCloud seed drive of `--cloud-init`: a small FAT file system
//! labelled `cidata` holding `meta-data`, `user-data` and `vendor-data`,
//! made in memory ([`fat_image`]) and handed to QEMU as an inherited file
//! descriptor of a memfd ([`SeedFd`]), read-only. No file is written
//! anywhere, so nothing is left behind when lvh becomes QEMU or QEMU runs
//! on as a daemon, and no other user can read the seed (it may hold
//! secrets).

use std::io::{Cursor, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::runner::error::RunError;

/// The volume label cloud-init's NoCloud source looks for.
pub const LABEL: &[u8; 11] = b"CIDATA     ";
/// The smallest seed (FAT12 needs a few hundred sectors to be sensible).
const MIN_SIZE: usize = 1 << 20;

/// A FAT image holding `files` at its root, labelled `cidata`.
pub fn fat_image(files: &[(&str, &[u8])]) -> Result<Vec<u8>, RunError> {
    let payload: usize = files.iter().map(|(_, b)| b.len()).sum();
    // Room for the data, cluster slack and the FATs, rounded to a sector.
    let size = MIN_SIZE.max(payload * 2 + (256 << 10)).div_ceil(512) * 512;
    let err = |e: std::io::Error| RunError::io("write the cloud-init seed", e);
    let mut disk = Cursor::new(vec![0u8; size]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new().volume_label(*LABEL),
    )
    .map_err(err)?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).map_err(err)?;
        for (name, bytes) in files {
            let mut f = fs.root_dir().create_file(name).map_err(err)?;
            f.truncate().map_err(err)?;
            f.write_all(bytes).map_err(err)?;
            f.flush().map_err(err)?;
        }
        fs.unmount().map_err(err)?;
    }
    Ok(disk.into_inner())
}

/// The seed in a memfd, open read-only on a descriptor QEMU inherits.
#[derive(Debug)]
pub struct SeedFd(OwnedFd);

impl SeedFd {
    /// Writes `image` into a new memfd and opens it read-only without
    /// close-on-exec (the only descriptor lvh hands to QEMU this way).
    pub fn new(image: &[u8]) -> Result<SeedFd, RunError> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let err =
            |what: &str, e: std::io::Error| RunError::io(format!("{what} the cloud-init seed"), e);
        let rw = memfd_create(c"lvh-cidata", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| err("make", e.into()))?;
        let mut f = std::fs::File::from(rw);
        f.write_all(image).map_err(|e| err("write", e))?;
        // QEMU opens `/dev/fdset/N` read-only and takes the set's descriptor
        // whose access mode matches, so the inherited one is O_RDONLY.
        let ro = std::fs::File::open(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .map_err(|e| err("reopen", e))?;
        let fd = OwnedFd::from(ro);
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| err("pass on", e.into()))?;
        Ok(SeedFd(fd))
    }

    /// The descriptor number QEMU's `-add-fd` names.
    pub fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_image_is_fat_labelled_cidata_with_the_files() {
        let big = vec![b'x'; 3 << 20];
        let img = fat_image(&[
            ("meta-data", b"instance-id: x\n"),
            ("user-data", b"#cloud-config\n"),
            ("vendor-data", &big),
        ])
        .unwrap();
        assert_eq!(img.len() % 512, 0);
        let fs = fatfs::FileSystem::new(Cursor::new(img), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "CIDATA");
        let mut s = String::new();
        fs.root_dir()
            .open_file("user-data")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "#cloud-config\n");
        let mut v = vec![];
        fs.root_dir()
            .open_file("vendor-data")
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        assert_eq!(v.len(), big.len());
    }

    #[test]
    fn blkid_sees_the_label_cloud_init_looks_for() {
        let img = fat_image(&[("meta-data", b"instance-id: x\n")]).unwrap();
        let seed = SeedFd::new(&img).unwrap();
        let path = format!("/proc/self/fd/{}", seed.raw());
        // Read back through the inherited descriptor: read-only, same bytes.
        let mut back = vec![];
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, img);
        let flags = nix::fcntl::fcntl(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(seed.raw()) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0, "QEMU inherits it");
        let ours = format!("/proc/{}/fd/{}", std::process::id(), seed.raw());
        let out = std::process::Command::new("blkid")
            .args(["-p", "-o", "export", &ours])
            .output()
            .expect("blkid (util-linux) runs");
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("LABEL=CIDATA"), "{s}");
        assert!(s.contains("TYPE=vfat"), "{s}");
    }
}
