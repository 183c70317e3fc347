//! Customizing an image through libguestfs: one handle and one appliance launch
//! per image for its packages and all its actions, with network when a step
//! runs programs in the guest.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cancel::CancelToken;

use super::config::{self, Action, Op};
use super::guestfs::{GuestfsError, Handle};

/// The DNS server of the libguestfs appliance's user-mode network
/// (`-netdev user,net=169.254.0.0/16`).
const APPLIANCE_DNS: &str = "169.254.2.3";

/// Environment for programs run in the guest.
const GUEST_ENV: &str = "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
     HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive;";

/// A launched appliance with the image's filesystem mounted at `/`.
pub struct Guest {
    h: Handle,
    network: bool,
    _watch: Option<CancelWatch>,
}

/// Kills the appliance's QEMU when lvh is interrupted, so a long guest command
/// (libguestfs calls cannot be cancelled) ends at once with an error and the
/// build unwinds and cleans up.
struct CancelWatch {
    done: Arc<AtomicBool>,
}

impl CancelWatch {
    fn start(pid: i32) -> CancelWatch {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let cancel = CancelToken::global();
            while !d.load(Ordering::SeqCst) {
                if cancel.is_cancelled() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        CancelWatch { done }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Whether the steps run programs in the guest (and so need network).
pub fn needs_network(packages: &[String], actions: &[Action]) -> bool {
    !packages.is_empty()
        || actions
            .iter()
            .any(|a| matches!(a.op, Op::RunCommand { .. }))
}

impl Guest {
    /// Adds `image`, launches the appliance, grows the filesystem to the disk
    /// when `grow` (after the disk itself was grown), and mounts it.
    pub fn open(
        image: &Path,
        format: &str,
        network: bool,
        grow: bool,
    ) -> Result<Guest, GuestfsError> {
        let mut h = Handle::new()?;
        h.add_drive(image, format, false)?;
        h.set_network(network)?;
        h.launch()?;
        let watch = h.pid().map(CancelWatch::start);
        if grow {
            h.grow_ext4("/dev/sda")?;
        }
        h.mount("/dev/sda", "/")?;
        let mut g = Guest {
            h,
            network,
            _watch: watch,
        };
        if network {
            g.setup_dns()?;
        }
        Ok(g)
    }

    pub fn handle(&mut self) -> &mut Handle {
        &mut self.h
    }

    fn setup_dns(&mut self) -> Result<(), GuestfsError> {
        self.h.sh(&format!(
            "if [ -e /etc/resolv.conf ] || [ -L /etc/resolv.conf ]; then \
               mv -f /etc/resolv.conf /etc/resolv.conf.lvh-saved; fi; \
             echo 'nameserver {APPLIANCE_DNS}' > /etc/resolv.conf"
        ))?;
        Ok(())
    }

    fn restore_dns(&mut self) -> Result<(), GuestfsError> {
        self.h.sh("rm -f /etc/resolv.conf; \
             if [ -e /etc/resolv.conf.lvh-saved ] || [ -L /etc/resolv.conf.lvh-saved ]; then \
               mv -f /etc/resolv.conf.lvh-saved /etc/resolv.conf; fi")?;
        Ok(())
    }

    /// Runs a shell command in the guest; the error has its stderr.
    pub fn run(&mut self, cmd: &str) -> Result<String, GuestfsError> {
        self.h.sh(&format!("{GUEST_ENV} {cmd}"))
    }

    /// apt-get update + install in the guest, then drops the downloaded debs.
    pub fn install_packages(&mut self, packages: &[String]) -> Result<(), GuestfsError> {
        self.run(&format!(
            "apt-get -q update && apt-get -q -y -o Dpkg::Options::=--force-confnew install {} && \
             apt-get clean && rm -rf /var/lib/apt/lists/*",
            packages.join(" ")
        ))?;
        Ok(())
    }

    /// Applies one action; host paths are relative to `dir`.
    pub fn apply(&mut self, dir: &Path, op: &Op) -> Result<(), GuestfsError> {
        let h = &mut self.h;
        match op {
            Op::RunCommand { cmd } => {
                self.run(cmd)?;
            }
            Op::CopyIn {
                local_path,
                remote_dir,
            } => {
                h.mkdir_p(remote_dir)?;
                h.copy_in(&config::resolve(dir, local_path), remote_dir)?;
            }
            Op::SetHostname { hostname } => {
                h.write("/etc/hostname", format!("{hostname}\n").as_bytes())?;
            }
            Op::Mkdir { dir: d } => h.mkdir_p(d)?,
            Op::Upload { file, dest } => h.upload(&config::resolve(dir, file), dest)?,
            Op::Chmod { permissions, file } => {
                let mode = config::parse_mode(permissions).expect("validated");
                h.chmod(mode, file)?;
            }
            Op::AppendLine { file, line } => {
                let mut add = Vec::new();
                if h.exists(file)? {
                    let cur = h.read_file(file)?;
                    if !cur.is_empty() && !cur.ends_with(b"\n") {
                        add.push(b'\n');
                    }
                }
                add.extend_from_slice(line.as_bytes());
                add.push(b'\n');
                h.write_append(file, &add)?;
            }
            Op::Link { target, link } => h.ln_sf(target, link)?,
            Op::InstallKernel { kernel_install_dir } => {
                let tree = config::resolve(dir, kernel_install_dir);
                let vmlinuz = config::find_vmlinuz(&tree).map_err(|message| GuestfsError {
                    call: "install-kernel",
                    args: tree.display().to_string(),
                    message,
                })?;
                h.copy_in(&tree.join("boot"), "/")?;
                if tree.join("lib/modules").is_dir() {
                    // /lib is a symlink to usr/lib on merged-/usr systems
                    if !h.exists("/lib")? {
                        h.mkdir_p("/lib")?;
                    }
                    h.copy_in(&tree.join("lib/modules"), "/lib/")?;
                }
                h.ln_sf(&format!("/{vmlinuz}"), "/vmlinuz")?;
            }
            Op::TarIn {
                tar_file,
                remote_dir,
            } => {
                h.mkdir_p(remote_dir)?;
                h.tar_in(
                    &config::resolve(dir, tar_file),
                    remote_dir,
                    compression(tar_file),
                )?;
            }
        }
        Ok(())
    }

    /// Restores the guest's resolv.conf, unmounts, syncs and stops the appliance.
    pub fn close(mut self) -> Result<(), GuestfsError> {
        if self.network {
            self.restore_dns()?;
        }
        self.h.fstrim("/")?;
        self.h.shutdown()
    }
}

/// The compression libguestfs should undo for a tarball, from its name.
pub fn compression(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    [
        (".tar.gz", "gzip"),
        (".tgz", "gzip"),
        (".tar.bz2", "bzip2"),
        (".tar.xz", "xz"),
        (".tar.zst", "zstd"),
        (".tar.lzo", "lzop"),
    ]
    .iter()
    .find(|(ext, _)| n.ends_with(ext))
    .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_compression_from_name() {
        for (n, want) in [
            ("a.tar", None),
            ("a.tar.gz", Some("gzip")),
            ("A.TGZ", Some("gzip")),
            ("a.tar.xz", Some("xz")),
            ("a.tar.zst", Some("zstd")),
        ] {
            assert_eq!(compression(n), want, "{n}");
        }
    }

    #[test]
    fn network_only_when_programs_run() {
        let a = |op| Action {
            comment: String::new(),
            op,
        };
        assert!(!needs_network(&[], &[a(Op::Mkdir { dir: "/x".into() })]));
        assert!(needs_network(&["vim".into()], &[]));
        assert!(needs_network(
            &[],
            &[a(Op::RunCommand { cmd: "true".into() })]
        ));
    }
}
