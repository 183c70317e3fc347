//! Kernel debugging with QEMU's gdbstub (`--gdb [PORT]`, `--gdb-wait`): the
//! QEMU arguments (the stub listens on 127.0.0.1 only), the kernel command
//! line addition (`nokaslr`, so vmlinux's addresses are the running ones), and
//! the exact `gdb` command to attach, with the `vmlinux` found beside a kernel
//! built by `lvh kernels build` and the kernel's own GDB scripts
//! (`CONFIG_GDB_SCRIPTS`) when it has them. Pure except [`find_symbols`],
//! which looks at the files beside the kernel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::Arch;
use crate::runner::guest::sh_quote;

/// The boot deadline when debugging and `--boot-timeout` was not given: a
/// guest stopped at a breakpoint (or waiting for `continue`) shows no life.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How many directories above the kernel image `vmlinux` is looked for:
/// `<tree>/arch/x86/boot/bzImage` is four below the tree,
/// `kernels/<name>/tar-install/boot/vmlinuz-*` three below `kernels/<name>`.
const SEARCH_DEPTH: usize = 4;

/// Where the gdbstub listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GdbListen {
    /// `--gdb PORT`: TCP on 127.0.0.1, which every local user can reach.
    Tcp(u16),
    /// A bare `--gdb`: a unix socket in a private directory made when the
    /// run starts ([`GdbStub::placed_in`]).
    Private,
    /// That socket, placed.
    Socket(PathBuf),
}

/// The gdbstub of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GdbStub {
    pub listen: GdbListen,
    /// `--gdb-wait`: the CPUs stay stopped until gdb says `continue` (`-S`).
    pub wait: bool,
}

/// The gdbstub's socket in its private directory.
pub const SOCKET: &str = "gdb.sock";

impl GdbStub {
    /// The stub with a private socket placed in `dir` (a 0700 directory).
    pub fn placed_in(&self, dir: &Path) -> GdbStub {
        let listen = match &self.listen {
            GdbListen::Private => GdbListen::Socket(dir.join(SOCKET)),
            other => other.clone(),
        };
        GdbStub {
            listen,
            wait: self.wait,
        }
    }

    /// What gdb's `target remote` takes: `127.0.0.1:PORT` or the socket's path.
    pub fn target(&self) -> String {
        match &self.listen {
            GdbListen::Tcp(port) => format!("127.0.0.1:{port}"),
            GdbListen::Private => format!("<private directory>/{SOCKET}"),
            GdbListen::Socket(p) => p.display().to_string(),
        }
    }
}

/// `-gdb tcp:127.0.0.1:PORT` or a unix socket server, and `-S` with `--gdb-wait`.
pub fn qemu_args(g: &GdbStub) -> Vec<String> {
    let mut v = match &g.listen {
        GdbListen::Tcp(port) => vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}")],
        GdbListen::Private | GdbListen::Socket(_) => vec![
            "-chardev".into(),
            format!(
                "socket,id=gdb,path={},server=on,wait=off",
                g.target().replace(',', ",,")
            ),
            "-gdb".into(),
            "chardev:gdb".into(),
        ],
    };
    if g.wait {
        v.push("-S".into());
    }
    v
}

/// What `--gdb` adds to the kernel command line: `nokaslr`, as (words
/// before `--append`, words at the very end). On amd64 only the decompressor
/// reads it; the kernel proper does not know it and would pass it to init as
/// an argument (`/bin/sh nokaslr -c ...` breaks lvh's init), so it goes last,
/// after the init arguments, where it becomes the init script's `$0`. On
/// arm64 the kernel consumes it as an early parameter, which stops at `--`.
pub fn cmdline_args(arch: Arch, gdb: bool) -> (Vec<String>, Vec<String>) {
    match (gdb, arch) {
        (false, _) => (vec![], vec![]),
        (true, Arch::Amd64) => (vec![], vec!["nokaslr".into()]),
        (true, Arch::Arm64) => (vec!["nokaslr".into()], vec![]),
    }
}

/// The kernel's GDB helper scripts (`scripts/gdb`, loaded through
/// `vmlinux-gdb.py` beside vmlinux).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GdbScripts {
    /// The kernel was built without `CONFIG_GDB_SCRIPTS` (or has no `.config`).
    Absent,
    /// `vmlinux-gdb.py` is in the tree: gdb loads it once the tree is a safe path.
    Ready,
    /// `CONFIG_GDB_SCRIPTS=y` but `vmlinux-gdb.py` is missing.
    NotBuilt,
    /// `vmlinux-gdb.py` is there, but the tree is not one `lvh kernels
    /// build` built (it has no build record): a pulled or foreign tree's
    /// script would run inside gdb, so it is not made a safe path.
    Untrusted,
}

/// The build record `lvh kernels build` leaves in a tree it built (never
/// taken from a pulled artifact): what makes a tree's gdb scripts trusted.
const BUILD_RECORD: &str = "lvh-build.json";

/// The symbols of a kernel: its `vmlinux` and the build tree around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSymbols {
    pub vmlinux: PathBuf,
    pub tree: PathBuf,
    pub scripts: GdbScripts,
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Finds `vmlinux` for `kernel`: the kernel itself when it is an ELF
/// `vmlinux`, else the first `vmlinux` ELF file in one of the directories
/// above it (the build tree `lvh kernels build` leaves).
pub fn find_symbols(kernel: &Path) -> Option<KernelSymbols> {
    let vmlinux = if kernel.file_name().is_some_and(|n| n == "vmlinux") && is_elf(kernel) {
        kernel.to_path_buf()
    } else {
        kernel
            .ancestors()
            .skip(1)
            .take(SEARCH_DEPTH)
            .map(|d| d.join("vmlinux"))
            .find(|v| is_elf(v))?
    };
    let tree = vmlinux.parent()?.to_path_buf();
    let config = std::fs::read_to_string(tree.join(".config")).unwrap_or_default();
    let scripts = if !config.lines().any(|l| l.trim() == "CONFIG_GDB_SCRIPTS=y") {
        GdbScripts::Absent
    } else if tree.join("vmlinux-gdb.py").exists() {
        match tree.join(BUILD_RECORD).is_file() {
            true => GdbScripts::Ready,
            false => GdbScripts::Untrusted,
        }
    } else {
        GdbScripts::NotBuilt
    };
    Some(KernelSymbols {
        vmlinux,
        tree,
        scripts,
    })
}

/// The gdb command that attaches to the stub at `target`, as one shell line.
/// `-iex` (before the file is read) makes the tree an auto-load safe path, so
/// gdb loads `vmlinux-gdb.py` with the file (the kernel's `lx-*` commands).
pub fn gdb_argv(target: &str, symbols: Option<&KernelSymbols>) -> Vec<String> {
    let mut v = vec!["gdb".to_string()];
    if let Some(s) = symbols {
        if s.scripts == GdbScripts::Ready {
            v.push("-iex".into());
            v.push(format!("add-auto-load-safe-path {}", s.tree.display()));
        }
        v.push(s.vmlinux.display().to_string());
    }
    v.push("-ex".into());
    v.push(format!("target remote {target}"));
    v
}

/// What lvh tells the user when a run starts with `--gdb`: the gdb line
/// first, then notes about what is missing.
pub fn announce(
    g: &GdbStub,
    kernel: Option<&Path>,
    symbols: Option<&KernelSymbols>,
) -> Vec<String> {
    let target = g.target();
    let line: Vec<String> = gdb_argv(&target, symbols)
        .iter()
        .map(|a| sh_quote(a))
        .collect();
    let mut v = vec![format!(
        "gdbstub on {target}; attach with: {}",
        line.join(" ")
    )];
    match (kernel, symbols) {
        (None, _) => v.push(
            "no --kernel: the image's bootloader sets the kernel command line, so lvh cannot add nokaslr there; give gdb the image kernel's vmlinux (and boot it with nokaslr) for symbols".into(),
        ),
        (Some(k), None) => v.push(format!(
            "no vmlinux found beside {} (or up to {SEARCH_DEPTH} directories above it): gdb will have no kernel symbols; pass the build tree's vmlinux to gdb",
            k.display()
        )),
        (Some(_), Some(s)) if s.scripts == GdbScripts::Untrusted => v.push(format!(
            "{} was not built by `lvh kernels build`, so lvh does not let gdb run its vmlinux-gdb.py; if you trust the tree, add -iex {} to the gdb command for the lx-* commands",
            s.tree.display(),
            sh_quote(&format!("add-auto-load-safe-path {}", s.tree.display()))
        )),
        (Some(_), Some(s)) if s.scripts == GdbScripts::NotBuilt => v.push(format!(
            "{} has CONFIG_GDB_SCRIPTS=y but no vmlinux-gdb.py: run `make scripts_gdb` there for the lx-* commands",
            s.tree.display()
        )),
        _ => {}
    }
    if g.wait {
        v.push(
            "--gdb-wait: the guest is stopped at its first instruction until gdb says `continue`"
                .into(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0";

    #[test]
    fn qemu_args_listen_on_loopback_only() {
        let private = GdbStub {
            listen: GdbListen::Private,
            wait: false,
        };
        for (g, want) in [
            (
                GdbStub {
                    listen: GdbListen::Tcp(1234),
                    wait: false,
                },
                "-gdb tcp:127.0.0.1:1234",
            ),
            (
                GdbStub {
                    listen: GdbListen::Tcp(5555),
                    wait: true,
                },
                "-gdb tcp:127.0.0.1:5555 -S",
            ),
            (
                private.placed_in(Path::new("/r/a,b")),
                "-chardev socket,id=gdb,path=/r/a,,b/gdb.sock,server=on,wait=off -gdb chardev:gdb",
            ),
        ] {
            assert_eq!(qemu_args(&g).join(" "), want);
        }
        // A TCP stub stays where it is.
        let tcp = GdbStub {
            listen: GdbListen::Tcp(1),
            wait: true,
        };
        assert_eq!(tcp.placed_in(Path::new("/r")), tcp);
        let none: Vec<String> = vec![];
        assert_eq!(
            cmdline_args(Arch::Amd64, false),
            (none.clone(), none.clone())
        );
        assert_eq!(
            cmdline_args(Arch::Amd64, true),
            (none.clone(), vec!["nokaslr".to_string()])
        );
        assert_eq!(
            cmdline_args(Arch::Arm64, true),
            (vec!["nokaslr".to_string()], none)
        );
    }

    /// A build tree: `vmlinux`, the boot image, optionally `.config` and the
    /// gdb scripts link, and the install tree.
    fn tree(config: Option<&str>, gdb_py: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        std::fs::create_dir_all(t.join("arch/x86/boot")).unwrap();
        std::fs::create_dir_all(t.join("tar-install/boot")).unwrap();
        std::fs::write(t.join("vmlinux"), ELF).unwrap();
        std::fs::write(t.join("arch/x86/boot/bzImage"), b"MZ").unwrap();
        std::fs::write(t.join("tar-install/boot/vmlinuz-6.12.0"), b"MZ").unwrap();
        if let Some(c) = config {
            std::fs::write(t.join(".config"), c).unwrap();
        }
        if gdb_py {
            std::fs::write(t.join("vmlinux-gdb.py"), "").unwrap();
        }
        d
    }

    #[test]
    fn vmlinux_is_found_from_the_kernel_path() {
        let d = tree(Some("CONFIG_X=y\n# CONFIG_GDB_SCRIPTS is not set\n"), false);
        let t = d.path();
        for kernel in [
            t.join("arch/x86/boot/bzImage"),
            t.join("tar-install/boot/vmlinuz-6.12.0"),
            t.join("vmlinux"),
        ] {
            let s = find_symbols(&kernel).unwrap_or_else(|| panic!("{}", kernel.display()));
            assert_eq!(s.vmlinux, t.join("vmlinux"));
            assert_eq!(s.tree, t);
            assert_eq!(s.scripts, GdbScripts::Absent);
        }
        // Not an ELF file: not symbols.
        std::fs::write(t.join("vmlinux"), b"not elf").unwrap();
        assert_eq!(find_symbols(&t.join("arch/x86/boot/bzImage")), None);
        // Too far above the kernel.
        let deep = tree(None, false);
        let k = deep.path().join("a/b/c/d/e/bzImage");
        std::fs::create_dir_all(k.parent().unwrap()).unwrap();
        std::fs::write(&k, b"MZ").unwrap();
        assert_eq!(find_symbols(&k), None);
    }

    #[test]
    fn gdb_scripts_per_config() {
        let y = Some("CONFIG_GDB_SCRIPTS=y\n");
        for (config, py, record, want) in [
            (None, false, false, GdbScripts::Absent),
            (y, true, true, GdbScripts::Ready),
            // A pulled or foreign tree: its script is not trusted.
            (y, true, false, GdbScripts::Untrusted),
            (y, false, true, GdbScripts::NotBuilt),
            (
                Some("# CONFIG_GDB_SCRIPTS is not set\n"),
                true,
                true,
                GdbScripts::Absent,
            ),
        ] {
            let d = tree(config, py);
            if record {
                std::fs::write(d.path().join(BUILD_RECORD), "{}").unwrap();
            }
            let s = find_symbols(&d.path().join("arch/x86/boot/bzImage")).unwrap();
            assert_eq!(s.scripts, want, "{config:?} {py}");
        }
    }

    #[test]
    fn the_gdb_line() {
        let sym = |scripts| KernelSymbols {
            vmlinux: "/src/linux/vmlinux".into(),
            tree: "/src/linux".into(),
            scripts,
        };
        let g = GdbStub {
            listen: GdbListen::Tcp(1234),
            wait: false,
        };
        for (symbols, want) in [
            (
                Some(sym(GdbScripts::Absent)),
                "gdb /src/linux/vmlinux -ex 'target remote 127.0.0.1:1234'",
            ),
            (
                Some(sym(GdbScripts::Ready)),
                "gdb -iex 'add-auto-load-safe-path /src/linux' /src/linux/vmlinux -ex 'target remote 127.0.0.1:1234'",
            ),
            (None, "gdb -ex 'target remote 127.0.0.1:1234'"),
        ] {
            let a = announce(&g, Some(Path::new("/k/bzImage")), symbols.as_ref());
            assert_eq!(
                a[0],
                format!("gdbstub on 127.0.0.1:1234; attach with: {want}")
            );
        }
        let notes = |g: &GdbStub, k: Option<&str>, s: Option<KernelSymbols>| {
            announce(g, k.map(Path::new), s.as_ref())[1..].join("\n")
        };
        assert_eq!(notes(&g, Some("/k"), Some(sym(GdbScripts::Ready))), "");
        // An untrusted tree: no safe path in the line, a note on how to add it.
        let a = announce(&g, Some(Path::new("/k")), Some(&sym(GdbScripts::Untrusted)));
        assert!(!a[0].contains("auto-load"), "{a:?}");
        assert!(
            a[1].contains("/src/linux was not built by `lvh kernels build`")
                && a[1].contains("-iex 'add-auto-load-safe-path /src/linux'"),
            "{a:?}"
        );
        assert!(notes(&g, Some("/k/bzImage"), None).contains("no vmlinux found beside /k/bzImage"));
        assert!(notes(&g, Some("/k"), Some(sym(GdbScripts::NotBuilt))).contains("make scripts_gdb"));
        assert!(notes(&g, None, None).contains("cannot add nokaslr"));
        let w = GdbStub {
            listen: GdbListen::Tcp(9),
            wait: true,
        };
        assert!(notes(&w, Some("/k"), Some(sym(GdbScripts::Absent))).contains("--gdb-wait"));
        // A path with a space stays one word.
        let spaced = KernelSymbols {
            vmlinux: "/my src/vmlinux".into(),
            tree: "/my src".into(),
            scripts: GdbScripts::Absent,
        };
        assert!(announce(&g, Some(Path::new("/k")), Some(&spaced))[0]
            .contains("gdb '/my src/vmlinux' -ex"));
    }
}
