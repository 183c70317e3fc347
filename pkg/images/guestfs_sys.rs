//! libguestfs's C ABI, loaded at run time: `libguestfs.so.0` is opened with
//! `dlopen` (the `libloading` crate) the first time an appliance is needed, so
//! building lvh needs no libguestfs and commands that never start an appliance
//! (`lvh run`, `kernels`, pulls) run on machines without it. The struct layouts
//! are copied from `/usr/include/guestfs.h`; a unit test compiles a C program
//! against that header and compares sizes and field offsets.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

/// The library's soname, as Debian's `libguestfs0` package installs it.
pub const SONAME: &str = "libguestfs.so.0";
/// The Debian package that provides [`SONAME`].
pub const DEBIAN_PACKAGE: &str = "libguestfs0";

#[allow(non_camel_case_types)]
#[repr(C)]
pub struct guestfs_h {
    _private: [u8; 0],
}

/// `struct guestfs_add_drive_opts_argv`.
#[repr(C)]
pub struct AddDriveOpts {
    pub bitmask: u64,
    pub readonly: c_int,
    pub format: *const c_char,
    pub iface: *const c_char,
    pub name: *const c_char,
    pub label: *const c_char,
    pub protocol: *const c_char,
    pub server: *const *const c_char,
    pub username: *const c_char,
    pub secret: *const c_char,
    pub cachemode: *const c_char,
    pub discard: *const c_char,
    pub copyonread: c_int,
    pub blocksize: c_int,
}
pub const ADD_DRIVE_READONLY: u64 = 1 << 0;
pub const ADD_DRIVE_FORMAT: u64 = 1 << 1;
pub const ADD_DRIVE_CACHEMODE: u64 = 1 << 9;
pub const ADD_DRIVE_DISCARD: u64 = 1 << 10;

/// `struct guestfs_tar_in_opts_argv`.
#[repr(C)]
pub struct TarInOpts {
    pub bitmask: u64,
    pub compress: *const c_char,
    pub xattrs: c_int,
    pub selinux: c_int,
    pub acls: c_int,
}
pub const TAR_IN_COMPRESS: u64 = 1 << 0;
pub const TAR_IN_XATTRS: u64 = 1 << 1;

/// `struct guestfs_fstrim_argv`.
#[repr(C)]
pub struct FstrimOpts {
    pub bitmask: u64,
    pub offset: i64,
    pub length: i64,
    pub minimumfreeextent: i64,
}

/// `struct guestfs_statns`: 22 int64 fields, of which we read a few.
#[repr(C)]
pub struct StatNs {
    pub st_dev: i64,
    pub st_ino: i64,
    pub st_mode: i64,
    pub st_nlink: i64,
    pub st_uid: i64,
    pub st_gid: i64,
    pub st_rdev: i64,
    pub st_size: i64,
    pub _rest: [i64; 14],
}

/// `struct guestfs_statvfs`: 11 int64 fields.
#[repr(C)]
pub struct StatVfs {
    pub bsize: i64,
    pub frsize: i64,
    pub blocks: i64,
    pub _rest: [i64; 8],
}

pub type ErrorHandler = Option<unsafe extern "C" fn(*mut guestfs_h, *mut c_void, *const c_char)>;

/// `guestfs_event_callback`: handle, opaque, event, event handle, flags,
/// buffer and its length, array and its length.
pub type EventCallback = Option<
    unsafe extern "C" fn(
        *mut guestfs_h,
        *mut c_void,
        u64,
        c_int,
        c_int,
        *const c_char,
        usize,
        *const u64,
        usize,
    ),
>;
/// `GUESTFS_EVENT_APPLIANCE`: output on the appliance's console.
pub const EVENT_APPLIANCE: u64 = 0x0010;

type G = *mut guestfs_h;
type S = *const c_char;

/// `GUESTFS_CREATE_NO_CLOSE_ON_EXIT`: the handle is not put on libguestfs's
/// list of handles that its `atexit` handler closes.
pub const CREATE_NO_CLOSE_ON_EXIT: c_uint = 1 << 1;

/// Declares the table of entry points: one field per `guestfs_<name>`, each
/// resolved once when the library is loaded, and (for the signature test) the
/// Rust spelling of each one's argument and return types.
macro_rules! api {
    ($($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// The loaded library and its entry points (valid for the process's
        /// lifetime: the library is never unloaded).
        pub struct Api {
            /// `guestfs_create_flags (unsigned flags, ...)`, C-variadic.
            pub create_flags: unsafe extern "C" fn(c_uint, ...) -> G,
            $(pub $name: unsafe extern "C" fn($($arg),*) -> $ret,)*
            _lib: libloading::Library,
        }

        /// `(name, [argument types], return type)` of every table entry but
        /// the variadic `create_flags`, as written above.
        #[cfg(test)]
        const SIGNATURES: &[(&str, &[&str], &str)] = &[
            $((stringify!($name), &[$(stringify!($arg)),*], stringify!($ret)),)*
        ];

        impl Api {
            fn resolve(lib: libloading::Library) -> Result<Api, libloading::Error> {
                // SAFETY (every symbol below): the fn type declared here is the
                // symbol's C prototype in guestfs.h (the test
                // `entry_points_match_the_c_header` compiles each one against
                // the header); the copied fn pointer stays valid because the
                // library is kept in `_lib` and the `Api` lives in a static
                // that is never dropped, so it is never unloaded.
                let create_flags = unsafe {
                    *lib.get::<unsafe extern "C" fn(c_uint, ...) -> G>(b"guestfs_create_flags\0")?
                };
                $(
                    // SAFETY: as for create_flags above.
                    let $name = unsafe {
                        *lib.get::<unsafe extern "C" fn($($arg),*) -> $ret>(
                            concat!("guestfs_", stringify!($name), "\0").as_bytes(),
                        )?
                    };
                )*
                Ok(Api { create_flags, $($name,)* _lib: lib })
            }
        }
    };
}

api! {
    close: fn(G) -> ();
    last_error: fn(G) -> S;
    set_error_handler: fn(G, ErrorHandler, *mut c_void) -> ();
    set_event_callback: fn(G, EventCallback, u64, c_int, *mut c_void) -> c_int;
    delete_event_callback: fn(G, c_int) -> ();
    set_backend: fn(G, S) -> c_int;
    set_backend_settings: fn(G, *const *const c_char) -> c_int;
    add_drive_opts_argv: fn(G, S, *const AddDriveOpts) -> c_int;
    set_network: fn(G, c_int) -> c_int;
    set_memsize: fn(G, c_int) -> c_int;
    set_smp: fn(G, c_int) -> c_int;
    launch: fn(G) -> c_int;
    shutdown: fn(G) -> c_int;
    mount: fn(G, S, S) -> c_int;
    umount_all: fn(G) -> c_int;
    e2fsck_f: fn(G, S) -> c_int;
    resize2fs: fn(G, S) -> c_int;
    sh: fn(G, S) -> *mut c_char;
    copy_in: fn(G, S, S) -> c_int;
    upload: fn(G, S, S) -> c_int;
    mkdir_p: fn(G, S) -> c_int;
    chmod: fn(G, c_int, S) -> c_int;
    write: fn(G, S, S, usize) -> c_int;
    write_append: fn(G, S, S, usize) -> c_int;
    ln_sf: fn(G, S, S) -> c_int;
    tar_in_opts_argv: fn(G, S, S, *const TarInOpts) -> c_int;
    read_file: fn(G, S, *mut usize) -> *mut c_char;
    readlink: fn(G, S) -> *mut c_char;
    exists: fn(G, S) -> c_int;
    is_dir: fn(G, S) -> c_int;
    lstatns: fn(G, S) -> *mut StatNs;
    free_statns: fn(*mut StatNs) -> ();
    rm_f: fn(G, S) -> c_int;
    mv: fn(G, S, S) -> c_int;
    extlinux: fn(G, S) -> c_int;
    sync: fn(G) -> c_int;
    get_pid: fn(G) -> c_int;
    fstrim_argv: fn(G, S, *const FstrimOpts) -> c_int;
    statvfs: fn(G, S) -> *mut StatVfs;
    free_statvfs: fn(*mut StatVfs) -> ();
}

/// libguestfs could not be loaded: not installed, or too old for a symbol.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{reason}; lvh needs {SONAME} to customize images in a libguestfs appliance: \
     install the Debian package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE})"
)]
pub struct LoadError {
    pub reason: String,
}

/// The process-wide library, loaded on first use. A failure is remembered:
/// the library does not appear while lvh runs.
pub fn api() -> Result<&'static Api, LoadError> {
    static API: OnceLock<Result<Api, LoadError>> = OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: loading runs the ELF constructors of libguestfs and of what
        // it links (libvirt -> curl -> libssh2 -> OpenSSL): they set up their
        // globals, and OpenSSL per-thread state on this thread, whose
        // thread-exit destructor frees it. OpenSSL's exit handler frees the
        // same state, so this thread must finish exiting before the process
        // does: it is the main thread or a joined one (`sched::run` joins its
        // workers explicitly; `appliance.rs`'s system test holds lvh to it).
        // Loaded once, never unloaded (the `Api` lives in this static).
        let lib = unsafe { libloading::Library::new(SONAME) }.map_err(|e| LoadError {
            reason: e.to_string(),
        })?;
        Api::resolve(lib).map_err(|e| LoadError {
            reason: e.to_string(),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The backend lvh asks a new handle for where the user chose none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendChoice {
    /// `guestfs_set_backend` (when `LIBGUESTFS_BACKEND` is unset): `direct`,
    /// QEMU run by libguestfs itself instead of through libvirt.
    pub backend: Option<&'static str>,
    /// `guestfs_set_backend_settings` (when `LIBGUESTFS_BACKEND_SETTINGS` is
    /// unset): `force_tcg` when KVM is not to be used.
    pub settings: Option<&'static str>,
}

/// What to set on a handle: `direct` unless the user set a backend, and
/// `force_tcg` when `LVH_ACCEL=tcg` or `/dev/kvm` does not open (`kvm_opens`
/// is only asked when it matters), unless the user set backend settings.
/// libguestfs itself reads both variables when the handle is created.
pub fn backend_choice(
    backend_env: bool,
    settings_env: bool,
    lvh_accel: Option<&str>,
    kvm_opens: impl FnOnce() -> bool,
) -> BackendChoice {
    let tcg = !settings_env && (lvh_accel == Some("tcg") || !kvm_opens());
    BackendChoice {
        backend: (!backend_env).then_some("direct"),
        settings: tcg.then_some("force_tcg"),
    }
}

/// [`backend_choice`] for this process's environment and `/dev/kvm`.
pub fn backend_choice_from_env() -> BackendChoice {
    let accel = std::env::var("LVH_ACCEL").ok();
    backend_choice(
        std::env::var_os("LIBGUESTFS_BACKEND").is_some(),
        std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_some(),
        accel.as_deref(),
        || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn backend_choice_table() {
        // (backend_env, settings_env, LVH_ACCEL, kvm opens) -> (backend, settings)
        let d = Some("direct");
        let t = Some("force_tcg");
        for (be, se, accel, kvm, want) in [
            (false, false, None, true, (d, None)),
            (false, false, None, false, (d, t)),
            (false, false, Some("tcg"), true, (d, t)),
            (false, false, Some("kvm"), true, (d, None)),
            (true, false, None, false, (None, t)),
            (false, true, Some("tcg"), false, (d, None)),
            (true, true, Some("tcg"), false, (None, None)),
        ] {
            let got = backend_choice(be, se, accel, || kvm);
            assert_eq!(
                (got.backend, got.settings),
                want,
                "{be} {se} {accel:?} {kvm}"
            );
        }
    }

    #[test]
    fn kvm_is_not_probed_when_tcg_is_asked_for() {
        let c = backend_choice(false, false, Some("tcg"), || panic!("probed /dev/kvm"));
        assert_eq!(c.settings, Some("force_tcg"));
        let c = backend_choice(false, true, None, || panic!("probed /dev/kvm"));
        assert_eq!(c.settings, None);
    }

    #[test]
    fn load_error_names_the_debian_package() {
        let e = LoadError {
            reason: "libguestfs.so.0: cannot open shared object file".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("libguestfs0") && s.contains(SONAME) && s.contains("cannot open"),
            "{s}"
        );
    }

    /// A struct's C name, size and (field, offset) pairs.
    type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

    /// Each struct's layout as Rust lays it out.
    fn rust_layouts() -> Vec<Layout> {
        macro_rules! layout {
            ($c:literal, $t:ty, [$($f:ident),*]) => {
                ($c, size_of::<$t>(), vec![$((stringify!($f), offset_of!($t, $f))),*])
            };
        }
        vec![
            layout!(
                "guestfs_add_drive_opts_argv",
                AddDriveOpts,
                [
                    bitmask, readonly, format, iface, name, label, protocol, server, username,
                    secret, cachemode, discard, copyonread, blocksize
                ]
            ),
            layout!(
                "guestfs_tar_in_opts_argv",
                TarInOpts,
                [bitmask, compress, xattrs, selinux, acls]
            ),
            layout!(
                "guestfs_fstrim_argv",
                FstrimOpts,
                [bitmask, offset, length, minimumfreeextent]
            ),
            layout!(
                "guestfs_statns",
                StatNs,
                [st_dev, st_ino, st_mode, st_nlink, st_uid, st_gid, st_rdev, st_size]
            ),
            layout!("guestfs_statvfs", StatVfs, [bsize, frsize, blocks]),
        ]
    }

    /// A C program printing the same table from guestfs.h.
    fn c_program(layouts: &[Layout]) -> String {
        let mut s = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include <guestfs.h>\nint main(void) {\n",
        );
        for (name, _, fields) in layouts {
            s.push_str(&format!(
                "  printf(\"{name} size %zu\\n\", sizeof(struct {name}));\n"
            ));
            for (f, _) in fields {
                s.push_str(&format!(
                    "  printf(\"{name}.{f} %zu\\n\", offsetof(struct {name}, {f}));\n"
                ));
            }
        }
        s.push_str("  return 0;\n}\n");
        s
    }

    /// The hand-copied layouts match `/usr/include/guestfs.h`. Without the
    /// header (libguestfs-dev) plain `cargo test` reports this test as ignored
    /// (build.rs); under `LVH_SYSTEM_TESTS=1` (the Makefile) it is required.
    #[test]
    #[cfg_attr(
        lvh_no_guestfs_h,
        ignore = "needs /usr/include/guestfs.h (Debian package libguestfs-dev)"
    )]
    fn struct_layouts_match_the_c_header() {
        let header = std::path::Path::new("/usr/include/guestfs.h");
        assert!(
            header.exists(),
            "{} is missing: install libguestfs-dev (scripts/install-deps.sh)",
            header.display()
        );
        let layouts = rust_layouts();
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("layout.c");
        let bin = d.path().join("layout");
        std::fs::write(&src, c_program(&layouts)).unwrap();
        let cc = std::process::Command::new("cc")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("run cc");
        assert!(
            cc.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = std::process::Command::new(&bin).output().unwrap();
        assert!(out.status.success());
        let mut want = String::new();
        for (name, size, fields) in &layouts {
            want.push_str(&format!("{name} size {size}\n"));
            for (f, off) in fields {
                want.push_str(&format!("{name}.{f} {off}\n"));
            }
        }
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }

    /// The C type each Rust spelling in the `api!` table stands for.
    fn c_type(rust: &str) -> &'static str {
        match rust {
            "G" => "guestfs_h *",
            "S" => "const char *",
            "()" => "void",
            "c_int" => "int",
            "u64" => "uint64_t",
            "usize" => "size_t",
            "*mut usize" => "size_t *",
            "*mut c_void" => "void *",
            "*mut c_char" => "char *",
            "*const *const c_char" => "char *const *",
            "ErrorHandler" => "guestfs_error_handler_cb",
            "EventCallback" => "guestfs_event_callback",
            "*const AddDriveOpts" => "const struct guestfs_add_drive_opts_argv *",
            "*const TarInOpts" => "const struct guestfs_tar_in_opts_argv *",
            "*const FstrimOpts" => "const struct guestfs_fstrim_argv *",
            "*mut StatNs" => "struct guestfs_statns *",
            "*mut StatVfs" => "struct guestfs_statvfs *",
            other => panic!("no C type for the Rust spelling {other:?}: add it here"),
        }
    }

    /// A C file that assigns every `guestfs_*` function lvh resolves to a
    /// pointer of the type lvh calls it through; a mismatch is a compile error.
    fn c_signature_check() -> String {
        let mut s = String::from(
            "#include <stdint.h>\n#include <stddef.h>\n#include <guestfs.h>\n\
             guestfs_h *(*const check_create_flags)(unsigned, ...) = guestfs_create_flags;\n",
        );
        for (name, args, ret) in SIGNATURES {
            let args: Vec<&str> = args.iter().map(|a| c_type(a)).collect();
            s.push_str(&format!(
                "{} (*const check_{name})({}) = guestfs_{name};\n",
                c_type(ret),
                args.join(", ")
            ));
        }
        s
    }

    /// Each entry point's Rust type is its C prototype: calling one through a
    /// wrong type (an argument too few, a `size_t` taken as `int`) would
    /// corrupt memory silently, so a mismatch must not compile.
    #[test]
    #[cfg_attr(
        lvh_no_guestfs_h,
        ignore = "needs /usr/include/guestfs.h (Debian package libguestfs-dev)"
    )]
    fn entry_points_match_the_c_header() {
        assert!(SIGNATURES.len() >= 40, "{}", SIGNATURES.len());
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("sig.c");
        std::fs::write(&src, c_signature_check()).unwrap();
        let cc = std::process::Command::new("cc")
            .args([
                "-c",
                "-Werror=incompatible-pointer-types",
                "-Wno-deprecated-declarations",
                "-o",
            ])
            .arg(d.path().join("sig.o"))
            .arg(&src)
            .output()
            .expect("run cc");
        assert!(
            cc.status.success(),
            "an entry point's type differs from guestfs.h:\n{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        // The check itself bites: a wrong type is refused.
        std::fs::write(
            &src,
            "#include <guestfs.h>\nint (*const bad)(guestfs_h *, int) = guestfs_mount;\n",
        )
        .unwrap();
        let cc = std::process::Command::new("cc")
            .args([
                "-c",
                "-Werror=incompatible-pointer-types",
                "-Wno-deprecated-declarations",
                "-o",
            ])
            .arg(d.path().join("bad.o"))
            .arg(&src)
            .output()
            .unwrap();
        assert!(!cc.status.success());
    }
}
