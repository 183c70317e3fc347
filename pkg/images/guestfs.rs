//! A thin, safe binding to libguestfs's C library (`libguestfs.so.0`): the
//! handful of `guestfs_*` calls the image builder needs, behind a RAII [`Handle`]
//! that closes (and shuts the appliance down) on drop. Errors carry
//! `guestfs_last_error`.
//!
//! Why not the `guestfs` crate: it is a 2019 snapshot of generated bindings that
//! is no longer published alongside libguestfs releases; the dozen calls used
//! here are easier to keep right by hand.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

#[allow(non_camel_case_types)]
#[repr(C)]
struct guestfs_h {
    _private: [u8; 0],
}

#[repr(C)]
struct AddDriveOpts {
    bitmask: u64,
    readonly: c_int,
    format: *const c_char,
    iface: *const c_char,
    name: *const c_char,
    label: *const c_char,
    protocol: *const c_char,
    server: *const *const c_char,
    username: *const c_char,
    secret: *const c_char,
    cachemode: *const c_char,
    discard: *const c_char,
    copyonread: c_int,
    blocksize: c_int,
}
const ADD_DRIVE_READONLY: u64 = 1 << 0;
const ADD_DRIVE_FORMAT: u64 = 1 << 1;
const ADD_DRIVE_CACHEMODE: u64 = 1 << 9;
const ADD_DRIVE_DISCARD: u64 = 1 << 10;

#[repr(C)]
struct TarInOpts {
    bitmask: u64,
    compress: *const c_char,
    xattrs: c_int,
    selinux: c_int,
    acls: c_int,
}
const TAR_IN_COMPRESS: u64 = 1 << 0;
const TAR_IN_XATTRS: u64 = 1 << 1;

/// `struct guestfs_statns`: 22 int64 fields, of which we read a few.
#[repr(C)]
struct StatNs {
    st_dev: i64,
    st_ino: i64,
    st_mode: i64,
    st_nlink: i64,
    st_uid: i64,
    st_gid: i64,
    st_rdev: i64,
    st_size: i64,
    _rest: [i64; 14],
}

type ErrorHandler = Option<unsafe extern "C" fn(*mut guestfs_h, *mut c_void, *const c_char)>;

#[link(name = "guestfs")]
extern "C" {
    fn guestfs_create() -> *mut guestfs_h;
    fn guestfs_close(g: *mut guestfs_h);
    fn guestfs_last_error(g: *mut guestfs_h) -> *const c_char;
    fn guestfs_set_error_handler(g: *mut guestfs_h, cb: ErrorHandler, opaque: *mut c_void);
    fn guestfs_add_drive_opts_argv(
        g: *mut guestfs_h,
        filename: *const c_char,
        optargs: *const AddDriveOpts,
    ) -> c_int;
    fn guestfs_set_network(g: *mut guestfs_h, network: c_int) -> c_int;
    fn guestfs_set_memsize(g: *mut guestfs_h, memsize: c_int) -> c_int;
    fn guestfs_set_smp(g: *mut guestfs_h, smp: c_int) -> c_int;
    fn guestfs_launch(g: *mut guestfs_h) -> c_int;
    fn guestfs_shutdown(g: *mut guestfs_h) -> c_int;
    fn guestfs_mount(g: *mut guestfs_h, dev: *const c_char, mp: *const c_char) -> c_int;
    fn guestfs_umount_all(g: *mut guestfs_h) -> c_int;
    fn guestfs_e2fsck_f(g: *mut guestfs_h, dev: *const c_char) -> c_int;
    fn guestfs_resize2fs(g: *mut guestfs_h, dev: *const c_char) -> c_int;
    fn guestfs_sh(g: *mut guestfs_h, cmd: *const c_char) -> *mut c_char;
    fn guestfs_copy_in(g: *mut guestfs_h, local: *const c_char, remote: *const c_char) -> c_int;
    fn guestfs_upload(g: *mut guestfs_h, local: *const c_char, remote: *const c_char) -> c_int;
    fn guestfs_mkdir_p(g: *mut guestfs_h, path: *const c_char) -> c_int;
    fn guestfs_chmod(g: *mut guestfs_h, mode: c_int, path: *const c_char) -> c_int;
    fn guestfs_write(g: *mut guestfs_h, path: *const c_char, c: *const c_char, n: usize) -> c_int;
    fn guestfs_write_append(
        g: *mut guestfs_h,
        path: *const c_char,
        c: *const c_char,
        n: usize,
    ) -> c_int;
    fn guestfs_ln_sf(g: *mut guestfs_h, target: *const c_char, link: *const c_char) -> c_int;
    fn guestfs_tar_in_opts_argv(
        g: *mut guestfs_h,
        tarfile: *const c_char,
        dir: *const c_char,
        optargs: *const TarInOpts,
    ) -> c_int;
    fn guestfs_read_file(g: *mut guestfs_h, path: *const c_char, size: *mut usize) -> *mut c_char;
    fn guestfs_readlink(g: *mut guestfs_h, path: *const c_char) -> *mut c_char;
    fn guestfs_exists(g: *mut guestfs_h, path: *const c_char) -> c_int;
    fn guestfs_is_dir(g: *mut guestfs_h, path: *const c_char) -> c_int;
    fn guestfs_lstatns(g: *mut guestfs_h, path: *const c_char) -> *mut StatNs;
    fn guestfs_free_statns(s: *mut StatNs);
    fn guestfs_rm_f(g: *mut guestfs_h, path: *const c_char) -> c_int;
    fn guestfs_mv(g: *mut guestfs_h, src: *const c_char, dst: *const c_char) -> c_int;
    fn guestfs_extlinux(g: *mut guestfs_h, dir: *const c_char) -> c_int;
    fn guestfs_sync(g: *mut guestfs_h) -> c_int;
    fn guestfs_get_pid(g: *mut guestfs_h) -> c_int;
    fn guestfs_fstrim_argv(
        g: *mut guestfs_h,
        mp: *const c_char,
        optargs: *const FstrimOpts,
    ) -> c_int;
    fn guestfs_statvfs(g: *mut guestfs_h, path: *const c_char) -> *mut StatVfs;
    fn guestfs_free_statvfs(s: *mut StatVfs);
}

#[repr(C)]
struct FstrimOpts {
    bitmask: u64,
    offset: i64,
    length: i64,
    minimumfreeextent: i64,
}

/// `struct guestfs_statvfs`: 11 int64 fields.
#[repr(C)]
struct StatVfs {
    bsize: i64,
    frsize: i64,
    blocks: i64,
    _rest: [i64; 8],
}

/// A failed libguestfs call: which call, on what, and libguestfs's own message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("libguestfs {call}({args}) failed: {message}")]
pub struct GuestfsError {
    pub call: &'static str,
    pub args: String,
    pub message: String,
}

/// File metadata read through the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// A libguestfs handle. One handle drives one appliance; it is used from one
/// thread at a time (it is `Send`, not `Sync`).
pub struct Handle {
    g: *mut guestfs_h,
}

// SAFETY: a guestfs handle may move between threads as long as it is not used
// from two at once, which `&mut self` on every call guarantees.
unsafe impl Send for Handle {}

fn cstr(s: &str) -> CString {
    // Interior NULs cannot come from JSON strings lvh accepts; replace defensively.
    CString::new(s.replace('\0', "")).expect("no NUL")
}

fn cpath(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes().to_vec()).unwrap_or_else(|_| cstr("/nonexistent"))
}

/// Takes ownership of a malloc'd C string.
unsafe fn take_string(p: *mut c_char, len: Option<usize>) -> Vec<u8> {
    let v = match len {
        Some(n) => std::slice::from_raw_parts(p as *const u8, n).to_vec(),
        None => CStr::from_ptr(p).to_bytes().to_vec(),
    };
    libc::free(p as *mut c_void);
    v
}

impl Handle {
    /// A new handle with libguestfs's own stderr error printing turned off.
    pub fn new() -> Result<Handle, GuestfsError> {
        // SAFETY: plain constructor; NULL is checked.
        let g = unsafe { guestfs_create() };
        if g.is_null() {
            return Err(GuestfsError {
                call: "create",
                args: String::new(),
                message: "could not create a libguestfs handle (see LIBGUESTFS_DEBUG=1)".into(),
            });
        }
        // SAFETY: g is valid; a NULL handler disables printing, errors stay queryable.
        unsafe { guestfs_set_error_handler(g, None, std::ptr::null_mut()) };
        Ok(Handle { g })
    }

    fn err(&self, call: &'static str, args: String) -> GuestfsError {
        // SAFETY: g is valid; the returned string is owned by the handle.
        let p = unsafe { guestfs_last_error(self.g) };
        let message = if p.is_null() {
            "unknown error".to_string()
        } else {
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        GuestfsError {
            call,
            args,
            message,
        }
    }

    fn check(&self, rc: c_int, call: &'static str, args: String) -> Result<(), GuestfsError> {
        if rc == -1 {
            Err(self.err(call, args))
        } else {
            Ok(())
        }
    }

    /// Adds a disk image read-write (or read-only) in the given format.
    pub fn add_drive(
        &mut self,
        path: &Path,
        format: &str,
        readonly: bool,
    ) -> Result<(), GuestfsError> {
        let f = cstr(format);
        // unsafe cache mode: the image is private to this build and synced
        // before the handle closes, so skip the per-write flushes.
        let cache = cstr("unsafe");
        // discard lets fstrim give freed blocks back (a smaller qcow2 delta)
        let discard = cstr("besteffort");
        let opts = AddDriveOpts {
            bitmask: ADD_DRIVE_FORMAT
                | ADD_DRIVE_CACHEMODE
                | if readonly {
                    ADD_DRIVE_READONLY
                } else {
                    ADD_DRIVE_DISCARD
                },
            readonly: readonly as c_int,
            format: f.as_ptr(),
            iface: std::ptr::null(),
            name: std::ptr::null(),
            label: std::ptr::null(),
            protocol: std::ptr::null(),
            server: std::ptr::null(),
            username: std::ptr::null(),
            secret: std::ptr::null(),
            cachemode: cache.as_ptr(),
            discard: discard.as_ptr(),
            copyonread: 0,
            blocksize: 0,
        };
        let p = cpath(path);
        // SAFETY: all pointers live until the call returns; bitmask says which are set.
        let rc = unsafe { guestfs_add_drive_opts_argv(self.g, p.as_ptr(), &opts) };
        self.check(rc, "add_drive", path.display().to_string())
    }

    pub fn set_network(&mut self, on: bool) -> Result<(), GuestfsError> {
        let rc = unsafe { guestfs_set_network(self.g, on as c_int) };
        self.check(rc, "set_network", on.to_string())
    }

    pub fn set_memsize(&mut self, mib: u32) -> Result<(), GuestfsError> {
        let rc = unsafe { guestfs_set_memsize(self.g, mib as c_int) };
        self.check(rc, "set_memsize", mib.to_string())
    }

    pub fn set_smp(&mut self, n: u32) -> Result<(), GuestfsError> {
        let rc = unsafe { guestfs_set_smp(self.g, n as c_int) };
        self.check(rc, "set_smp", n.to_string())
    }

    /// Starts the appliance (about 10 s under TCG).
    pub fn launch(&mut self) -> Result<(), GuestfsError> {
        let rc = unsafe { guestfs_launch(self.g) };
        self.check(rc, "launch", String::new())
    }

    /// Discards the unused blocks of the filesystem mounted at `mountpoint`.
    pub fn fstrim(&mut self, mountpoint: &str) -> Result<(), GuestfsError> {
        let m = cstr(mountpoint);
        let opts = FstrimOpts {
            bitmask: 0,
            offset: 0,
            length: 0,
            minimumfreeextent: 0,
        };
        let rc = unsafe { guestfs_fstrim_argv(self.g, m.as_ptr(), &opts) };
        self.check(rc, "fstrim", mountpoint.into())
    }

    /// The size in bytes of the filesystem holding `path`.
    pub fn fs_size(&mut self, path: &str) -> Result<u64, GuestfsError> {
        let p = cstr(path);
        let s = unsafe { guestfs_statvfs(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.err("statvfs", path.into()));
        }
        // SAFETY: non-NULL result, freed right after reading.
        let size = unsafe {
            let r = &*s;
            let v = (r.frsize.max(r.bsize) as u64) * r.blocks as u64;
            guestfs_free_statvfs(s);
            v
        };
        Ok(size)
    }

    /// The appliance's QEMU process id (after [`Handle::launch`]).
    pub fn pid(&mut self) -> Option<i32> {
        let pid = unsafe { guestfs_get_pid(self.g) };
        (pid > 0).then_some(pid)
    }

    /// Unmounts, syncs and stops the appliance, reporting write-back errors.
    pub fn shutdown(&mut self) -> Result<(), GuestfsError> {
        let rc = unsafe { guestfs_umount_all(self.g) };
        self.check(rc, "umount_all", String::new())?;
        let rc = unsafe { guestfs_sync(self.g) };
        self.check(rc, "sync", String::new())?;
        let rc = unsafe { guestfs_shutdown(self.g) };
        self.check(rc, "shutdown", String::new())
    }

    pub fn mount(&mut self, dev: &str, mountpoint: &str) -> Result<(), GuestfsError> {
        let (d, m) = (cstr(dev), cstr(mountpoint));
        let rc = unsafe { guestfs_mount(self.g, d.as_ptr(), m.as_ptr()) };
        self.check(rc, "mount", format!("{dev}, {mountpoint}"))
    }

    /// `e2fsck -f` then `resize2fs` so the filesystem fills its (grown) device.
    pub fn grow_ext4(&mut self, dev: &str) -> Result<(), GuestfsError> {
        let d = cstr(dev);
        let rc = unsafe { guestfs_e2fsck_f(self.g, d.as_ptr()) };
        self.check(rc, "e2fsck_f", dev.into())?;
        let rc = unsafe { guestfs_resize2fs(self.g, d.as_ptr()) };
        self.check(rc, "resize2fs", dev.into())
    }

    /// Runs `/bin/sh -c cmd` chrooted into the mounted guest; returns stdout.
    /// On failure the error has the command's stderr.
    pub fn sh(&mut self, cmd: &str) -> Result<String, GuestfsError> {
        let c = cstr(cmd);
        let p = unsafe { guestfs_sh(self.g, c.as_ptr()) };
        if p.is_null() {
            return Err(self.err("sh", format!("{cmd:?}")));
        }
        Ok(String::from_utf8_lossy(&unsafe { take_string(p, None) }).into_owned())
    }

    /// Copies a host file or directory (recursively) into `remote_dir`.
    pub fn copy_in(&mut self, local: &Path, remote_dir: &str) -> Result<(), GuestfsError> {
        let (l, r) = (cpath(local), cstr(remote_dir));
        let rc = unsafe { guestfs_copy_in(self.g, l.as_ptr(), r.as_ptr()) };
        self.check(rc, "copy_in", format!("{}, {remote_dir}", local.display()))
    }

    pub fn upload(&mut self, local: &Path, remote: &str) -> Result<(), GuestfsError> {
        let (l, r) = (cpath(local), cstr(remote));
        let rc = unsafe { guestfs_upload(self.g, l.as_ptr(), r.as_ptr()) };
        self.check(rc, "upload", format!("{}, {remote}", local.display()))
    }

    pub fn mkdir_p(&mut self, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        let rc = unsafe { guestfs_mkdir_p(self.g, p.as_ptr()) };
        self.check(rc, "mkdir_p", path.into())
    }

    pub fn chmod(&mut self, mode: u32, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        let rc = unsafe { guestfs_chmod(self.g, mode as c_int, p.as_ptr()) };
        self.check(rc, "chmod", format!("{mode:o}, {path}"))
    }

    pub fn write(&mut self, path: &str, content: &[u8]) -> Result<(), GuestfsError> {
        let p = cstr(path);
        let rc = unsafe {
            guestfs_write(
                self.g,
                p.as_ptr(),
                content.as_ptr() as *const c_char,
                content.len(),
            )
        };
        self.check(rc, "write", path.into())
    }

    pub fn write_append(&mut self, path: &str, content: &[u8]) -> Result<(), GuestfsError> {
        let p = cstr(path);
        let rc = unsafe {
            guestfs_write_append(
                self.g,
                p.as_ptr(),
                content.as_ptr() as *const c_char,
                content.len(),
            )
        };
        self.check(rc, "write_append", path.into())
    }

    pub fn ln_sf(&mut self, target: &str, link: &str) -> Result<(), GuestfsError> {
        let (t, l) = (cstr(target), cstr(link));
        let rc = unsafe { guestfs_ln_sf(self.g, t.as_ptr(), l.as_ptr()) };
        self.check(rc, "ln_sf", format!("{target}, {link}"))
    }

    /// Unpacks a host tarball into `dir`; `compress` is None for plain tar or
    /// one of libguestfs's names (gzip, bzip2, xz, lzop, zstd).
    pub fn tar_in(
        &mut self,
        tarfile: &Path,
        dir: &str,
        compress: Option<&str>,
    ) -> Result<(), GuestfsError> {
        let (t, d) = (cpath(tarfile), cstr(dir));
        let c = compress.map(cstr);
        let opts = TarInOpts {
            bitmask: TAR_IN_XATTRS | if c.is_some() { TAR_IN_COMPRESS } else { 0 },
            compress: c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            xattrs: 1,
            selinux: 0,
            acls: 0,
        };
        let rc = unsafe { guestfs_tar_in_opts_argv(self.g, t.as_ptr(), d.as_ptr(), &opts) };
        self.check(rc, "tar_in", format!("{}, {dir}", tarfile.display()))
    }

    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, GuestfsError> {
        let p = cstr(path);
        let mut n = 0usize;
        let r = unsafe { guestfs_read_file(self.g, p.as_ptr(), &mut n) };
        if r.is_null() {
            return Err(self.err("read_file", path.into()));
        }
        Ok(unsafe { take_string(r, Some(n)) })
    }

    pub fn readlink(&mut self, path: &str) -> Result<String, GuestfsError> {
        let p = cstr(path);
        let r = unsafe { guestfs_readlink(self.g, p.as_ptr()) };
        if r.is_null() {
            return Err(self.err("readlink", path.into()));
        }
        Ok(String::from_utf8_lossy(&unsafe { take_string(r, None) }).into_owned())
    }

    fn bool_call(
        &mut self,
        f: unsafe extern "C" fn(*mut guestfs_h, *const c_char) -> c_int,
        call: &'static str,
        path: &str,
    ) -> Result<bool, GuestfsError> {
        let p = cstr(path);
        let rc = unsafe { f(self.g, p.as_ptr()) };
        if rc == -1 {
            return Err(self.err(call, path.into()));
        }
        Ok(rc != 0)
    }

    pub fn exists(&mut self, path: &str) -> Result<bool, GuestfsError> {
        self.bool_call(guestfs_exists, "exists", path)
    }

    pub fn is_dir(&mut self, path: &str) -> Result<bool, GuestfsError> {
        self.bool_call(guestfs_is_dir, "is_dir", path)
    }

    pub fn lstat(&mut self, path: &str) -> Result<Stat, GuestfsError> {
        let p = cstr(path);
        let s = unsafe { guestfs_lstatns(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.err("lstatns", path.into()));
        }
        // SAFETY: non-NULL result of lstatns, freed right after reading.
        let st = unsafe {
            let r = &*s;
            let st = Stat {
                mode: r.st_mode as u32,
                uid: r.st_uid as u32,
                gid: r.st_gid as u32,
                size: r.st_size as u64,
            };
            let _ = (r.st_dev, r.st_ino, r.st_nlink, r.st_rdev);
            guestfs_free_statns(s);
            st
        };
        Ok(st)
    }

    pub fn rm_f(&mut self, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        let rc = unsafe { guestfs_rm_f(self.g, p.as_ptr()) };
        self.check(rc, "rm_f", path.into())
    }

    pub fn mv(&mut self, src: &str, dst: &str) -> Result<(), GuestfsError> {
        let (s, d) = (cstr(src), cstr(dst));
        let rc = unsafe { guestfs_mv(self.g, s.as_ptr(), d.as_ptr()) };
        self.check(rc, "mv", format!("{src}, {dst}"))
    }

    /// Installs the SYSLINUX (extlinux) boot loader into the filesystem mounted
    /// at `dir` (for a whole-disk filesystem this is the disk's boot sector).
    pub fn extlinux(&mut self, dir: &str) -> Result<(), GuestfsError> {
        let d = cstr(dir);
        let rc = unsafe { guestfs_extlinux(self.g, d.as_ptr()) };
        self.check(rc, "extlinux", dir.into())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: g came from guestfs_create and is closed exactly once; close
        // kills the appliance if it is still running.
        unsafe { guestfs_close(self.g) };
    }
}

/// Sets the environment libguestfs needs on machines where KVM is unusable
/// (`LIBGUESTFS_BACKEND=direct`, `LIBGUESTFS_BACKEND_SETTINGS=force_tcg`) when
/// the user has not chosen: only when `/dev/kvm` cannot be opened or `LVH_ACCEL=tcg`.
/// Call before any thread starts (it changes the process environment).
pub fn default_env() {
    if std::env::var_os("LIBGUESTFS_BACKEND").is_none() {
        std::env::set_var("LIBGUESTFS_BACKEND", "direct");
    }
    let tcg = std::env::var("LVH_ACCEL").is_ok_and(|v| v == "tcg")
        || std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err();
    if tcg && std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_none() {
        std::env::set_var("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    }
}
