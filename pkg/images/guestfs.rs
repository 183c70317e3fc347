//! A thin, safe binding to libguestfs's C library (`libguestfs.so.0`, loaded at
//! run time by `guestfs_sys`): the handful of `guestfs_*` calls the
//! image builder needs, behind a RAII [`Handle`] that closes (and shuts the
//! appliance down) on drop. Errors carry `guestfs_last_error`.
//!
//! Why not the `guestfs` crate: it is a 2019 snapshot of generated bindings that
//! is no longer published alongside libguestfs releases, and it links libguestfs
//! at build time; the dozen calls used here are easier to keep right by hand.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use super::appliance::ConsoleLines;
use super::guestfs_sys::{
    self as sys, guestfs_h, AddDriveOpts, Api, FstrimOpts, TarInOpts, ADD_DRIVE_CACHEMODE,
    ADD_DRIVE_DISCARD, ADD_DRIVE_FORMAT, ADD_DRIVE_READONLY, TAR_IN_COMPRESS, TAR_IN_XATTRS,
};

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
    api: &'static Api,
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
///
/// # Safety
/// `p` must be non-NULL and malloc'd: NUL-terminated when `len` is None, else at
/// least `len` bytes long; nobody may use it afterwards.
unsafe fn take_string(p: *mut c_char, len: Option<usize>) -> Vec<u8> {
    let v = match len {
        Some(n) => std::slice::from_raw_parts(p as *const u8, n).to_vec(),
        None => CStr::from_ptr(p).to_bytes().to_vec(),
    };
    libc::free(p as *mut c_void);
    v
}

impl Handle {
    /// A new handle with libguestfs's own stderr error printing turned off and
    /// lvh's backend defaults (see `guestfs_sys::backend_choice`). Loads
    /// `libguestfs.so.0` on first use; without it the error names the Debian
    /// package to install.
    pub fn new() -> Result<Handle, GuestfsError> {
        let api = sys::api().map_err(|e| GuestfsError {
            call: "load",
            args: sys::SONAME.into(),
            message: e.to_string(),
        })?;
        // SAFETY: plain constructor with no arguments; NULL is checked below.
        let g = unsafe { (api.create)() };
        if g.is_null() {
            return Err(GuestfsError {
                call: "create",
                args: String::new(),
                message: "could not create a libguestfs handle (see LIBGUESTFS_DEBUG=1)".into(),
            });
        }
        // SAFETY: g is a valid handle; a NULL handler disables printing, errors
        // stay queryable through guestfs_last_error.
        unsafe { (api.set_error_handler)(g, None, std::ptr::null_mut()) };
        let mut h = Handle { g, api };
        h.set_backend_defaults(sys::backend_choice_from_env())?;
        Ok(h)
    }

    /// Applies lvh's backend defaults to this handle only (the process
    /// environment is left alone; libguestfs already read it in create).
    fn set_backend_defaults(&mut self, c: sys::BackendChoice) -> Result<(), GuestfsError> {
        if let Some(b) = c.backend {
            let b = cstr(b);
            // SAFETY: g is valid; b lives until the call returns (libguestfs copies it).
            let rc = unsafe { (self.api.set_backend)(self.g, b.as_ptr()) };
            self.check(rc, "set_backend", b.to_string_lossy().into_owned())?;
        }
        if let Some(s) = c.settings {
            let s = cstr(s);
            let list = [s.as_ptr(), std::ptr::null()];
            // SAFETY: g is valid; list is a NULL-terminated array of C strings
            // that outlive the call (libguestfs copies them).
            let rc = unsafe { (self.api.set_backend_settings)(self.g, list.as_ptr()) };
            self.check(rc, "set_backend_settings", s.to_string_lossy().into_owned())?;
        }
        Ok(())
    }

    fn err(&self, call: &'static str, args: String) -> GuestfsError {
        // SAFETY: g is valid; the returned string is owned by the handle.
        let p = unsafe { (self.api.last_error)(self.g) };
        let message = if p.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: non-NULL, NUL-terminated, valid until the next call on g.
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
        let rc = unsafe { (self.api.add_drive_opts_argv)(self.g, p.as_ptr(), &opts) };
        self.check(rc, "add_drive", path.display().to_string())
    }

    pub fn set_network(&mut self, on: bool) -> Result<(), GuestfsError> {
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.set_network)(self.g, on as c_int) };
        self.check(rc, "set_network", on.to_string())
    }

    pub fn set_memsize(&mut self, mib: u32) -> Result<(), GuestfsError> {
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.set_memsize)(self.g, mib as c_int) };
        self.check(rc, "set_memsize", mib.to_string())
    }

    pub fn set_smp(&mut self, n: u32) -> Result<(), GuestfsError> {
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.set_smp)(self.g, n as c_int) };
        self.check(rc, "set_smp", n.to_string())
    }

    /// Runs `body` with the appliance's console output going to `sink` line by
    /// line (see [`super::appliance::ConsoleLines`]).
    pub fn with_console<R>(
        &mut self,
        sink: &mut dyn FnMut(&str),
        body: impl FnOnce(&mut Handle) -> R,
    ) -> R {
        unsafe extern "C" fn on_event(
            _g: *mut guestfs_h,
            opaque: *mut c_void,
            _event: u64,
            _handle: c_int,
            _flags: c_int,
            buf: *const c_char,
            len: usize,
            _array: *const u64,
            _array_len: usize,
        ) {
            if opaque.is_null() || buf.is_null() {
                return;
            }
            // SAFETY: opaque is the ConsoleLines below, alive and not otherwise
            // borrowed while a call on the handle runs (the only time
            // libguestfs calls back); buf has len bytes for this call.
            let (lines, bytes) = unsafe {
                (
                    &mut *(opaque as *mut ConsoleLines),
                    std::slice::from_raw_parts(buf as *const u8, len),
                )
            };
            lines.push(bytes);
        }
        let mut lines = ConsoleLines::new(sink);
        let opaque = &mut lines as *mut ConsoleLines as *mut c_void;
        // SAFETY: g is valid; the callback is deleted below, before `lines` goes away.
        let eh = unsafe {
            (self.api.set_event_callback)(self.g, Some(on_event), sys::EVENT_APPLIANCE, 0, opaque)
        };
        // Deletes the callback even when `body` unwinds.
        struct Unregister(*mut guestfs_h, &'static sys::Api, c_int);
        impl Drop for Unregister {
            fn drop(&mut self) {
                if self.2 >= 0 {
                    // SAFETY: the event handle set_event_callback returned on this g.
                    unsafe { (self.1.delete_event_callback)(self.0, self.2) };
                }
            }
        }
        let guard = Unregister(self.g, self.api, eh);
        let r = body(self);
        drop(guard);
        lines.flush();
        r
    }

    /// Starts the appliance (about 10 s under TCG).
    pub fn launch(&mut self) -> Result<(), GuestfsError> {
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.launch)(self.g) };
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
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.fstrim_argv)(self.g, m.as_ptr(), &opts) };
        self.check(rc, "fstrim", mountpoint.into())
    }

    /// The size in bytes of the filesystem holding `path`.
    pub fn fs_size(&mut self, path: &str) -> Result<u64, GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let s = unsafe { (self.api.statvfs)(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.err("statvfs", path.into()));
        }
        // SAFETY: non-NULL result, freed right after reading.
        let size = unsafe {
            let r = &*s;
            let v = (r.frsize.max(r.bsize) as u64) * r.blocks as u64;
            (self.api.free_statvfs)(s);
            v
        };
        Ok(size)
    }

    /// The appliance's QEMU process id (after [`Handle::launch`]).
    pub fn pid(&mut self) -> Option<i32> {
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let pid = unsafe { (self.api.get_pid)(self.g) };
        (pid > 0).then_some(pid)
    }

    /// Unmounts, syncs and stops the appliance, reporting write-back errors.
    pub fn shutdown(&mut self) -> Result<(), GuestfsError> {
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.umount_all)(self.g) };
        self.check(rc, "umount_all", String::new())?;
        let rc = unsafe { (self.api.sync)(self.g) };
        self.check(rc, "sync", String::new())?;
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.shutdown)(self.g) };
        self.check(rc, "shutdown", String::new())
    }

    pub fn mount(&mut self, dev: &str, mountpoint: &str) -> Result<(), GuestfsError> {
        let (d, m) = (cstr(dev), cstr(mountpoint));
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.mount)(self.g, d.as_ptr(), m.as_ptr()) };
        self.check(rc, "mount", format!("{dev}, {mountpoint}"))
    }

    /// `e2fsck -f` then `resize2fs` so the filesystem fills its (grown) device.
    pub fn grow_ext4(&mut self, dev: &str) -> Result<(), GuestfsError> {
        let d = cstr(dev);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.e2fsck_f)(self.g, d.as_ptr()) };
        self.check(rc, "e2fsck_f", dev.into())?;
        let rc = unsafe { (self.api.resize2fs)(self.g, d.as_ptr()) };
        self.check(rc, "resize2fs", dev.into())
    }

    /// Runs `/bin/sh -c cmd` chrooted into the mounted guest; returns stdout.
    /// On failure the error has the command's stderr.
    pub fn sh(&mut self, cmd: &str) -> Result<String, GuestfsError> {
        let c = cstr(cmd);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let p = unsafe { (self.api.sh)(self.g, c.as_ptr()) };
        if p.is_null() {
            return Err(self.err("sh", format!("{cmd:?}")));
        }
        // SAFETY: non-NULL malloc'd result of the call above, owned by us and freed once there.
        Ok(String::from_utf8_lossy(&unsafe { take_string(p, None) }).into_owned())
    }

    /// Copies a host file or directory (recursively) into `remote_dir`.
    pub fn copy_in(&mut self, local: &Path, remote_dir: &str) -> Result<(), GuestfsError> {
        let (l, r) = (cpath(local), cstr(remote_dir));
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.copy_in)(self.g, l.as_ptr(), r.as_ptr()) };
        self.check(rc, "copy_in", format!("{}, {remote_dir}", local.display()))
    }

    pub fn upload(&mut self, local: &Path, remote: &str) -> Result<(), GuestfsError> {
        let (l, r) = (cpath(local), cstr(remote));
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.upload)(self.g, l.as_ptr(), r.as_ptr()) };
        self.check(rc, "upload", format!("{}, {remote}", local.display()))
    }

    pub fn mkdir_p(&mut self, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.mkdir_p)(self.g, p.as_ptr()) };
        self.check(rc, "mkdir_p", path.into())
    }

    pub fn chmod(&mut self, mode: u32, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.chmod)(self.g, mode as c_int, p.as_ptr()) };
        self.check(rc, "chmod", format!("{mode:o}, {path}"))
    }

    pub fn write(&mut self, path: &str, content: &[u8]) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe {
            (self.api.write)(
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
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe {
            (self.api.write_append)(
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
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.ln_sf)(self.g, t.as_ptr(), l.as_ptr()) };
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
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.tar_in_opts_argv)(self.g, t.as_ptr(), d.as_ptr(), &opts) };
        self.check(rc, "tar_in", format!("{}, {dir}", tarfile.display()))
    }

    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, GuestfsError> {
        let p = cstr(path);
        let mut n = 0usize;
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let r = unsafe { (self.api.read_file)(self.g, p.as_ptr(), &mut n) };
        if r.is_null() {
            return Err(self.err("read_file", path.into()));
        }
        // SAFETY: non-NULL malloc'd result of the call above, owned by us and freed once there.
        Ok(unsafe { take_string(r, Some(n)) })
    }

    pub fn readlink(&mut self, path: &str) -> Result<String, GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let r = unsafe { (self.api.readlink)(self.g, p.as_ptr()) };
        if r.is_null() {
            return Err(self.err("readlink", path.into()));
        }
        // SAFETY: non-NULL malloc'd result of the call above, owned by us and freed once there.
        Ok(String::from_utf8_lossy(&unsafe { take_string(r, None) }).into_owned())
    }

    fn bool_call(
        &mut self,
        f: unsafe extern "C" fn(*mut guestfs_h, *const c_char) -> c_int,
        call: &'static str,
        path: &str,
    ) -> Result<bool, GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { f(self.g, p.as_ptr()) };
        if rc == -1 {
            return Err(self.err(call, path.into()));
        }
        Ok(rc != 0)
    }

    pub fn exists(&mut self, path: &str) -> Result<bool, GuestfsError> {
        self.bool_call(self.api.exists, "exists", path)
    }

    pub fn is_dir(&mut self, path: &str) -> Result<bool, GuestfsError> {
        self.bool_call(self.api.is_dir, "is_dir", path)
    }

    pub fn lstat(&mut self, path: &str) -> Result<Stat, GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let s = unsafe { (self.api.lstatns)(self.g, p.as_ptr()) };
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
            (self.api.free_statns)(s);
            st
        };
        Ok(st)
    }

    pub fn rm_f(&mut self, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.rm_f)(self.g, p.as_ptr()) };
        self.check(rc, "rm_f", path.into())
    }

    pub fn mv(&mut self, src: &str, dst: &str) -> Result<(), GuestfsError> {
        let (s, d) = (cstr(src), cstr(dst));
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.mv)(self.g, s.as_ptr(), d.as_ptr()) };
        self.check(rc, "mv", format!("{src}, {dst}"))
    }

    /// Installs the SYSLINUX (extlinux) boot loader into the filesystem mounted
    /// at `dir` (for a whole-disk filesystem this is the disk's boot sector).
    pub fn extlinux(&mut self, dir: &str) -> Result<(), GuestfsError> {
        let d = cstr(dir);
        // SAFETY: self.g is a live handle, used only through &mut self; every pointer argument outlives the call.
        let rc = unsafe { (self.api.extlinux)(self.g, d.as_ptr()) };
        self.check(rc, "extlinux", dir.into())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: g came from guestfs_create and is closed exactly once; close
        // kills the appliance if it is still running.
        unsafe { (self.api.close)(self.g) };
    }
}
