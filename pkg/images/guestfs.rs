//! A thin, safe binding to libguestfs's C library (`libguestfs.so.0`, loaded at
//! run time by `guestfs_sys`): the handful of `guestfs_*` calls the
//! image builder needs, behind a RAII [`Handle`] that closes (and shuts the
//! appliance down) on drop. Errors carry `guestfs_last_error`.
//!
//! Why not the `guestfs` crate: it is a 2019 snapshot of generated bindings that
//! is no longer published alongside libguestfs releases, and it links libguestfs
//! at build time; the dozen calls used here are easier to keep right by hand.
//!
//! The ownership rules every `unsafe` block below relies on:
//!
//! - **The handle.** [`Handle`] owns one `guestfs_h`, made by
//!   `guestfs_create_flags` with `NO_CLOSE_ON_EXIT` and closed exactly once,
//!   by `Drop`, on whichever thread owns the `Handle` then. It is `Send` and
//!   not `Sync`: every call takes `&mut self`, so one thread at a time uses it.
//!   libguestfs never closes it behind lvh's back (without the flag, its
//!   `atexit` handler would close handles another thread is still using).
//! - **Strings and arrays libguestfs returns.** A `char *` or struct that a
//!   call returns is malloc'd by libguestfs and owned by the caller: copied
//!   into Rust memory and freed once with `free` (strings, [`take_string`]) or
//!   the matching `guestfs_free_*` (structs), right after the call. The
//!   `guestfs_last_error` string belongs to the handle and is only copied.
//! - **Arguments.** Every pointer passed in (C strings, option structs, the
//!   backend settings array) is a Rust value that outlives the call;
//!   libguestfs copies what it keeps.
//! - **The event callback.** It is registered only inside
//!   [`Handle::with_console`] and deleted before that function returns, also
//!   when its body panics. libguestfs calls it only from inside a call on the
//!   handle, on the thread making that call (the one holding `&mut Handle`),
//!   so its `opaque` pointer (the [`ConsoleLines`] on `with_console`'s stack)
//!   is alive and not otherwise borrowed whenever it runs.
//! - **Threads that load the library** must finish exiting before the
//!   process does (see `guestfs_sys::api`).

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

// SAFETY: libguestfs allows a handle to be used from any thread as long as no
// two threads use it at once (its per-thread error data is looked up per call,
// under the handle's lock); every method takes `&mut self`, and `Handle` is
// not `Sync`, so moving it to another thread is all that can happen.
unsafe impl Send for Handle {}

fn cstr(s: &str) -> CString {
    // Interior NULs cannot come from JSON strings lvh accepts; replace defensively.
    CString::new(s.replace('\0', "")).expect("no NUL")
}

fn cpath(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes().to_vec()).unwrap_or_else(|_| cstr("/nonexistent"))
}

/// Copies a string a libguestfs call returned into Rust memory and frees it.
///
/// # Safety
/// `p` is non-NULL and was malloc'd by libguestfs, which handed it to the
/// caller (a `char *` return value): NUL-terminated when `len` is None, else
/// at least `len` bytes long. It is freed here, once, with libc's `free`
/// (the allocator libguestfs used, not Rust's); nobody may use it afterwards.
unsafe fn take_string(p: *mut c_char, len: Option<usize>) -> Vec<u8> {
    // SAFETY: the caller's contract: p is valid for len bytes, or up to its NUL.
    let v = unsafe {
        match len {
            Some(n) => std::slice::from_raw_parts(p as *const u8, n).to_vec(),
            None => CStr::from_ptr(p).to_bytes().to_vec(),
        }
    };
    // SAFETY: the caller handed us the only reference to a malloc'd block.
    unsafe { libc::free(p as *mut c_void) };
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
        // SAFETY: a constructor taking only the flags (no variadic arguments
        // follow them); the handle it returns is owned by the `Handle` made
        // below, whose Drop closes it once. NULL is checked below.
        let g = unsafe { (api.create_flags)(sys::CREATE_NO_CLOSE_ON_EXIT) };
        if g.is_null() {
            return Err(GuestfsError {
                call: "create",
                args: String::new(),
                message: "could not create a libguestfs handle (see LIBGUESTFS_DEBUG=1)".into(),
            });
        }
        // SAFETY: g is live and owned here; a NULL handler (and NULL opaque)
        // means no callback at all: errors stay queryable through
        // guestfs_last_error and are never printed.
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
            // SAFETY: g is live and used through &mut self; b outlives the
            // call and libguestfs copies it.
            let rc = unsafe { (self.api.set_backend)(self.g, b.as_ptr()) };
            self.check(rc, "set_backend", b.to_string_lossy().into_owned())?;
        }
        if let Some(s) = c.settings {
            let s = cstr(s);
            let list = [s.as_ptr(), std::ptr::null()];
            // SAFETY: g is live and used through &mut self; list is a
            // NULL-terminated array of C strings that outlive the call
            // (libguestfs copies them).
            let rc = unsafe { (self.api.set_backend_settings)(self.g, list.as_ptr()) };
            self.check(rc, "set_backend_settings", s.to_string_lossy().into_owned())?;
        }
        Ok(())
    }

    fn err(&self, call: &'static str, args: String) -> GuestfsError {
        // SAFETY: g is live; called on the thread that made the failed call
        // (the error is kept per thread), with no call on g in between.
        let p = unsafe { (self.api.last_error)(self.g) };
        let message = if p.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: non-NULL and NUL-terminated; the handle owns it until its
            // next call, so it is copied at once and never freed here.
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
        // SAFETY: g is live and used through &mut self; opts and every string
        // it points to outlive the call (libguestfs copies them); the bitmask
        // says which fields are set.
        let rc = unsafe { (self.api.add_drive_opts_argv)(self.g, p.as_ptr(), &opts) };
        self.check(rc, "add_drive", path.display().to_string())
    }

    pub fn set_network(&mut self, on: bool) -> Result<(), GuestfsError> {
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.set_network)(self.g, on as c_int) };
        self.check(rc, "set_network", on.to_string())
    }

    pub fn set_memsize(&mut self, mib: u32) -> Result<(), GuestfsError> {
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.set_memsize)(self.g, mib as c_int) };
        self.check(rc, "set_memsize", mib.to_string())
    }

    pub fn set_smp(&mut self, n: u32) -> Result<(), GuestfsError> {
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
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
            // SAFETY: opaque is the ConsoleLines on with_console's stack: the
            // callback is registered after it is made and deleted before it
            // is dropped, and libguestfs calls back only from inside a call on
            // the handle, on the thread making it, while `body` holds the
            // only &mut Handle and nothing else borrows `lines`. buf has len
            // bytes that libguestfs owns for the duration of this call only,
            // so they are copied (line by line) before returning.
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
        // SAFETY: g is live and used through &mut self; the callback and its
        // opaque pointer (`lines`, declared before the guard below and so
        // dropped after it) are unregistered by that guard before this
        // function returns or unwinds. on_event never unwinds (it only copies
        // bytes into lines and calls the sink, which must not panic; a panic
        // there would abort, extern "C").
        let eh = unsafe {
            (self.api.set_event_callback)(self.g, Some(on_event), sys::EVENT_APPLIANCE, 0, opaque)
        };
        // Deletes the callback even when `body` unwinds.
        struct Unregister(*mut guestfs_h, &'static sys::Api, c_int);
        impl Drop for Unregister {
            fn drop(&mut self) {
                if self.2 >= 0 {
                    // SAFETY: the event handle set_event_callback returned on
                    // this g, which is still open (the Handle outlives this
                    // guard); deleted once.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.fstrim_argv)(self.g, m.as_ptr(), &opts) };
        self.check(rc, "fstrim", mountpoint.into())
    }

    /// The size in bytes of the filesystem holding `path`.
    pub fn fs_size(&mut self, path: &str) -> Result<u64, GuestfsError> {
        let p = cstr(path);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let s = unsafe { (self.api.statvfs)(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.err("statvfs", path.into()));
        }
        // SAFETY: a non-NULL struct the call handed to us: read, then freed
        // once with its own guestfs_free_statvfs, not used afterwards.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let pid = unsafe { (self.api.get_pid)(self.g) };
        (pid > 0).then_some(pid)
    }

    /// Unmounts, syncs and stops the appliance, reporting write-back errors.
    pub fn shutdown(&mut self) -> Result<(), GuestfsError> {
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.umount_all)(self.g) };
        self.check(rc, "umount_all", String::new())?;
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.sync)(self.g) };
        self.check(rc, "sync", String::new())?;
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.shutdown)(self.g) };
        self.check(rc, "shutdown", String::new())
    }

    pub fn mount(&mut self, dev: &str, mountpoint: &str) -> Result<(), GuestfsError> {
        let (d, m) = (cstr(dev), cstr(mountpoint));
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.mount)(self.g, d.as_ptr(), m.as_ptr()) };
        self.check(rc, "mount", format!("{dev}, {mountpoint}"))
    }

    /// `e2fsck -f` then `resize2fs` so the filesystem fills its (grown) device.
    pub fn grow_ext4(&mut self, dev: &str) -> Result<(), GuestfsError> {
        let d = cstr(dev);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.e2fsck_f)(self.g, d.as_ptr()) };
        self.check(rc, "e2fsck_f", dev.into())?;
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.resize2fs)(self.g, d.as_ptr()) };
        self.check(rc, "resize2fs", dev.into())
    }

    /// Runs `/bin/sh -c cmd` chrooted into the mounted guest; returns stdout.
    /// On failure the error has the command's stderr.
    pub fn sh(&mut self, cmd: &str) -> Result<String, GuestfsError> {
        let c = cstr(cmd);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let p = unsafe { (self.api.sh)(self.g, c.as_ptr()) };
        if p.is_null() {
            return Err(self.err("sh", format!("{cmd:?}")));
        }
        // SAFETY: a non-NULL string the call above handed to us (see take_string).
        Ok(String::from_utf8_lossy(&unsafe { take_string(p, None) }).into_owned())
    }

    /// Copies a host file or directory (recursively) into `remote_dir`.
    pub fn copy_in(&mut self, local: &Path, remote_dir: &str) -> Result<(), GuestfsError> {
        let (l, r) = (cpath(local), cstr(remote_dir));
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.copy_in)(self.g, l.as_ptr(), r.as_ptr()) };
        self.check(rc, "copy_in", format!("{}, {remote_dir}", local.display()))
    }

    pub fn upload(&mut self, local: &Path, remote: &str) -> Result<(), GuestfsError> {
        let (l, r) = (cpath(local), cstr(remote));
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.upload)(self.g, l.as_ptr(), r.as_ptr()) };
        self.check(rc, "upload", format!("{}, {remote}", local.display()))
    }

    pub fn mkdir_p(&mut self, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.mkdir_p)(self.g, p.as_ptr()) };
        self.check(rc, "mkdir_p", path.into())
    }

    pub fn chmod(&mut self, mode: u32, path: &str) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.chmod)(self.g, mode as c_int, p.as_ptr()) };
        self.check(rc, "chmod", format!("{mode:o}, {path}"))
    }

    pub fn write(&mut self, path: &str, content: &[u8]) -> Result<(), GuestfsError> {
        let p = cstr(path);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.tar_in_opts_argv)(self.g, t.as_ptr(), d.as_ptr(), &opts) };
        self.check(rc, "tar_in", format!("{}, {dir}", tarfile.display()))
    }

    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, GuestfsError> {
        let p = cstr(path);
        let mut n = 0usize;
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let r = unsafe { (self.api.read_file)(self.g, p.as_ptr(), &mut n) };
        if r.is_null() {
            return Err(self.err("read_file", path.into()));
        }
        // SAFETY: a non-NULL string the call above handed to us (see take_string).
        Ok(unsafe { take_string(r, Some(n)) })
    }

    pub fn readlink(&mut self, path: &str) -> Result<String, GuestfsError> {
        let p = cstr(path);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let r = unsafe { (self.api.readlink)(self.g, p.as_ptr()) };
        if r.is_null() {
            return Err(self.err("readlink", path.into()));
        }
        // SAFETY: a non-NULL string the call above handed to us (see take_string).
        Ok(String::from_utf8_lossy(&unsafe { take_string(r, None) }).into_owned())
    }

    fn bool_call(
        &mut self,
        f: unsafe extern "C" fn(*mut guestfs_h, *const c_char) -> c_int,
        call: &'static str,
        path: &str,
    ) -> Result<bool, GuestfsError> {
        let p = cstr(path);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let s = unsafe { (self.api.lstatns)(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.err("lstatns", path.into()));
        }
        // SAFETY: a non-NULL struct the call handed to us: read, then freed
        // once with its own guestfs_free_statns, not used afterwards.
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
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.rm_f)(self.g, p.as_ptr()) };
        self.check(rc, "rm_f", path.into())
    }

    pub fn mv(&mut self, src: &str, dst: &str) -> Result<(), GuestfsError> {
        let (s, d) = (cstr(src), cstr(dst));
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.mv)(self.g, s.as_ptr(), d.as_ptr()) };
        self.check(rc, "mv", format!("{src}, {dst}"))
    }

    /// Installs the SYSLINUX (extlinux) boot loader into the filesystem mounted
    /// at `dir` (for a whole-disk filesystem this is the disk's boot sector).
    pub fn extlinux(&mut self, dir: &str) -> Result<(), GuestfsError> {
        let d = cstr(dir);
        // SAFETY: see the module doc: g is live and only this thread is in it (&mut self); the arguments outlive the call.
        let rc = unsafe { (self.api.extlinux)(self.g, d.as_ptr()) };
        self.check(rc, "extlinux", dir.into())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: g came from guestfs_create_flags, is owned by this Handle
        // alone and is closed here exactly once, on the thread that owns the
        // Handle (no other thread can be inside a call on it: &mut self);
        // with NO_CLOSE_ON_EXIT libguestfs's exit handler never closes it too.
        // Closing kills the appliance if it still runs and frees every
        // error and event record of the handle.
        unsafe { (self.api.close)(self.g) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// take_string's rule: it copies and frees with libc's free, once. A
    /// block from libc's malloc (as libguestfs's returns are) round-trips,
    /// embedded NULs and all when the length is given (read_file).
    #[test]
    fn returned_strings_are_copied_then_freed_with_libc() {
        for (bytes, len) in [
            (&b"hello\0"[..], None),
            (&b"a\0b\0c"[..], Some(5)),
            (&b"\0"[..], None),
        ] {
            // SAFETY: a fresh malloc'd block of bytes.len() bytes, filled below
            // and handed to take_string, which frees it.
            let p = unsafe {
                let p = libc::malloc(bytes.len()) as *mut c_char;
                assert!(!p.is_null());
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), p as *mut u8, bytes.len());
                p
            };
            // SAFETY: p as described above; not used after this call.
            let got = unsafe { take_string(p, len) };
            let want = match len {
                Some(n) => &bytes[..n],
                None => &bytes[..bytes.iter().position(|&b| b == 0).unwrap()],
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn handles_move_between_threads_but_are_not_shared() {
        fn send<T: Send>() {}
        send::<Handle>();
        // `Handle: !Sync` is what keeps two threads out of one handle; a
        // compile-time check of a negative bound needs a trick:
        trait AmbiguousIfSync<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfSync<()> for T {}
        impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
        // Compiles only while Handle is not Sync (else the call is ambiguous).
        <Handle as AmbiguousIfSync<_>>::some_item();
    }
}
