//! Customizing an image through libguestfs: one handle and one appliance launch
//! per image for its packages and all its actions, with network when a step
//! runs programs in the guest.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::cancel::CancelToken;

use super::appliance;
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
///
/// It signals through a pidfd opened right after launch, while QEMU is
/// libguestfs's child and not yet reaped (libguestfs reaps it only in
/// shutdown or close, on the thread that owns the handle, which is the thread
/// opening the pidfd). Once reaped, the pidfd names a dead process and the
/// kill fails with ESRCH: it can never reach another process that got the
/// recycled pid. The thread is stopped and joined on drop.
struct CancelWatch {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Option<std::io::Result<()>>>>,
}

/// How often the watch looks at the cancel token.
const WATCH_POLL: Duration = Duration::from_millis(100);

impl CancelWatch {
    fn start(pid: i32, cancel: CancelToken) -> std::io::Result<CancelWatch> {
        use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
        let pid = Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("no pid"))?;
        let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lvh-appliance-watch".into())
            .spawn(move || loop {
                match stopped.recv_timeout(WATCH_POLL) {
                    Err(mpsc::RecvTimeoutError::Timeout) if cancel.is_cancelled() => {
                        return Some(pidfd_send_signal(&pidfd, Signal::KILL).map_err(Into::into));
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return None,
                }
            })?;
        Ok(CancelWatch {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the watch; says whether it sent the kill, and how that went.
    fn stop(&mut self) -> Option<std::io::Result<()>> {
        drop(self.stop.take());
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.stop();
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
        // One vCPU under TCG (measured faster), the host's CPUs with KVM
        // (see appliance.rs and the README's numbers).
        let (cpus, mem) = appliance::size(
            std::env::var(appliance::ENV_CPUS).ok().as_deref(),
            std::env::var(appliance::ENV_MEM).ok().as_deref(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            appliance::tcg(
                std::env::var("LIBGUESTFS_BACKEND_SETTINGS").ok().as_deref(),
                std::path::Path::new("/dev/kvm").exists(),
            ),
            appliance::host_available_mib(),
        )
        .map_err(|message| GuestfsError {
            call: "set_smp/set_memsize",
            args: String::new(),
            message,
        })?;
        h.set_smp(cpus)?;
        h.set_memsize(mem)?;
        h.launch()?;
        let watch = h.pid().and_then(|pid| {
            CancelWatch::start(pid, CancelToken::global())
                .map_err(|e| {
                    tracing::warn!("Ctrl-C cannot stop the appliance (pid {pid}) at once: {e}")
                })
                .ok()
        });
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

    /// Runs a shell command in the guest, with the host's proxy settings as
    /// virt-customize passes them; its output goes to `out` line by line while
    /// it runs, and the error has the last lines of it.
    pub fn run(&mut self, cmd: &str, out: &mut dyn FnMut(&str)) -> Result<(), GuestfsError> {
        let proxy = proxy_exports(|k| std::env::var(k).ok());
        let script = appliance::teed(&format!("{GUEST_ENV} {proxy}{cmd}"));
        self.h.with_console(out, |h| h.sh(&script)).map(drop)
    }

    /// apt-get update + install in the guest, then drops the downloaded debs.
    /// The package lists stay, as virt-customize leaves them: a later step's
    /// `apt-get install` without `update` works (images.json files rely on it).
    pub fn install_packages(
        &mut self,
        packages: &[String],
        out: &mut dyn FnMut(&str),
    ) -> Result<(), GuestfsError> {
        self.run(
            &format!(
                "apt-get -q update && apt-get -q -y -o Dpkg::Options::=--force-confnew install {} && \
                 apt-get clean",
                packages.join(" ")
            ),
            out,
        )
    }

    /// Applies one action; host paths are relative to `dir`; a command's
    /// output goes to `out`.
    pub fn apply(
        &mut self,
        dir: &Path,
        op: &Op,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), GuestfsError> {
        let h = &mut self.h;
        match op {
            Op::RunCommand { cmd } => {
                self.run(cmd, out)?;
            }
            Op::CopyIn {
                local_path,
                remote_dir,
            } => {
                h.mkdir_p(remote_dir)?;
                h.copy_in(&config::resolve(dir, local_path), remote_dir)?;
            }
            Op::SetHostname { hostname } => self.set_hostname(hostname)?,
            Op::Mkdir { dir: d } => h.mkdir_p(d)?,
            Op::Upload { file, dest } => self.upload(&config::resolve(dir, file), dest)?,
            Op::Chmod { mode, file } => h.chmod(mode.bits, file)?,
            Op::AppendLine { file, line } => self.append_line(file, line)?,
            Op::Link { target, link } => h.ln_sf(target, link)?,
            Op::InstallKernel { kernel_install_dir } => {
                self.install_kernel(&config::resolve(dir, kernel_install_dir))?
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

    /// What virt-customize does on Debian: writes /etc/hostname and renames the
    /// old name's entries in /etc/hosts.
    fn set_hostname(&mut self, hostname: &str) -> Result<(), GuestfsError> {
        let h = &mut self.h;
        let old = if h.exists("/etc/hostname")? {
            let t = h.read_file("/etc/hostname")?;
            String::from_utf8_lossy(&t).trim().to_string()
        } else {
            String::new()
        };
        h.write("/etc/hostname", format!("{hostname}\n").as_bytes())?;
        if !old.is_empty() && h.exists("/etc/hosts")? && !h.is_dir("/etc/hosts")? {
            let hosts = String::from_utf8_lossy(&h.read_file("/etc/hosts")?).into_owned();
            if let Some(new) = rename_in_hosts(&hosts, &old, hostname) {
                h.write("/etc/hosts", new.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Uploads `local` to `dest` (into it when it is a directory) with the
    /// local file's permission bits.
    fn upload(&mut self, local: &Path, dest: &str) -> Result<(), GuestfsError> {
        use std::os::unix::fs::PermissionsExt;
        let h = &mut self.h;
        let mode = std::fs::metadata(local)
            .map_err(|e| GuestfsError {
                call: "upload",
                args: local.display().to_string(),
                message: e.to_string(),
            })?
            .permissions()
            .mode()
            & 0o7777;
        let target = if h.is_dir(dest)? {
            upload_target(dest, local)
        } else {
            dest.to_string()
        };
        h.upload(local, &target)?;
        h.chmod(mode, &target)
    }

    /// Appends `line` to `file`, first ending an unterminated last line.
    fn append_line(&mut self, file: &str, line: &str) -> Result<(), GuestfsError> {
        let h = &mut self.h;
        let mut add = Vec::new();
        if h.exists(file)? {
            let cur = h.read_file(file)?;
            if !cur.is_empty() && !cur.ends_with(b"\n") {
                add.push(b'\n');
            }
        }
        add.extend_from_slice(line.as_bytes());
        add.push(b'\n');
        h.write_append(file, &add)
    }

    /// Copies an install tree's `boot/` and `lib/modules/` in and points
    /// `/vmlinuz` at its kernel.
    fn install_kernel(&mut self, tree: &Path) -> Result<(), GuestfsError> {
        let h = &mut self.h;
        let vmlinuz = config::find_vmlinuz(tree).map_err(|message| GuestfsError {
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
        h.ln_sf(&format!("/{vmlinuz}"), "/vmlinuz")
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

/// The proxy variables virt-customize passes from the host to commands it runs
/// in the guest, as `export` statements.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
];

/// `export http_proxy=...;` for each proxy variable `env` has (empty if none).
pub fn proxy_exports(env: impl Fn(&str) -> Option<String>) -> String {
    let mut s = String::new();
    for k in PROXY_VARS {
        if let Some(v) = env(k) {
            s.push_str(&format!("export {k}='{}';", v.replace('\'', r"'\''")));
        }
    }
    s
}

/// `/etc/hosts` with every host name field equal to `old` renamed to `new`
/// (addresses and comments untouched, spacing kept), or None when no field is
/// `old`: what virt-customize's `--hostname` does through Augeas.
pub fn rename_in_hosts(hosts: &str, old: &str, new: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(hosts.len() + new.len());
    for line in hosts.split_inclusive('\n') {
        let (data, comment) = match line.find('#') {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let mut field = 0;
        let mut rest = data;
        while !rest.is_empty() {
            let ws = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..ws]);
            rest = &rest[ws..];
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            if field > 0 && word == old {
                out.push_str(new);
                changed = true;
            } else {
                out.push_str(word);
            }
            if !word.is_empty() {
                field += 1;
            }
            rest = &rest[end..];
        }
        out.push_str(comment);
    }
    changed.then_some(out)
}

/// Where an upload into the guest directory `dest` goes: `dest/<file name>`.
pub fn upload_target(dest: &str, local: &Path) -> String {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{}/{name}", dest.trim_end_matches('/'))
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
    fn hostname_renames_the_old_name_in_etc_hosts() {
        let hosts = "127.0.0.1\tlocalhost\n127.0.1.1\tbuildhost buildhost.local\n# buildhost here\n::1 localhost ip6-localhost buildhost # buildhost\n";
        assert_eq!(
            rename_in_hosts(hosts, "buildhost", "kind-6.6").unwrap(),
            "127.0.0.1\tlocalhost\n127.0.1.1\tkind-6.6 buildhost.local\n# buildhost here\n::1 localhost ip6-localhost kind-6.6 # buildhost\n"
        );
        // addresses are not names; no match, no change
        assert_eq!(rename_in_hosts("buildhost x\n", "buildhost", "y"), None);
        assert_eq!(rename_in_hosts(hosts, "other", "y"), None);
        assert_eq!(rename_in_hosts("", "a", "b"), None);
        // no trailing newline
        assert_eq!(
            rename_in_hosts("127.0.1.1 a", "a", "b").unwrap(),
            "127.0.1.1 b"
        );
    }

    #[test]
    fn proxies_are_passed_like_virt_customize() {
        let env = |k: &str| match k {
            "http_proxy" => Some("http://p:3128".to_string()),
            "NO_PROXY" => Some("localhost,.local".to_string()),
            "HTTPS_PROXY" => Some("http://a b".to_string()),
            "ftp_proxy" => Some("it's".to_string()),
            _ => None,
        };
        assert_eq!(
            proxy_exports(env),
            "export http_proxy='http://p:3128';export ftp_proxy='it'\\''s';export HTTPS_PROXY='http://a b';export NO_PROXY='localhost,.local';"
        );
        assert_eq!(proxy_exports(|_| None), "");
    }

    #[test]
    fn uploads_into_a_directory_keep_the_file_name() {
        assert_eq!(
            upload_target("/etc/", Path::new("d/key.pub")),
            "/etc/key.pub"
        );
        assert_eq!(upload_target("/root", Path::new("/x/f")), "/root/f");
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

    /// The watch kills the process it was started for when cancelled, within
    /// its poll, and is joined when dropped.
    #[test]
    fn cancel_kills_the_appliance_process() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let token = CancelToken::new();
        let mut w = CancelWatch::start(child.id() as i32, token.clone()).unwrap();
        let t0 = std::time::Instant::now();
        token.cancel();
        let st = child.wait().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert!(matches!(w.stop(), Some(Ok(()))));
    }

    /// Once the process is reaped its pid may belong to anyone: the kill goes
    /// to the pidfd's dead process (ESRCH), never to a pid number.
    #[test]
    fn a_reaped_appliance_is_never_signalled_by_pid() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let token = CancelToken::new();
        let mut w = CancelWatch::start(child.id() as i32, token.clone()).unwrap();
        child.wait().unwrap();
        token.cancel();
        std::thread::sleep(WATCH_POLL * 3);
        let r = w.stop().expect("the watch saw the cancel");
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn a_stopped_watch_sends_nothing() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let token = CancelToken::new();
        let w = CancelWatch::start(child.id() as i32, token.clone()).unwrap();
        drop(w);
        token.cancel();
        std::thread::sleep(WATCH_POLL * 3);
        assert!(
            child.try_wait().unwrap().is_none(),
            "killed after its watch stopped"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
