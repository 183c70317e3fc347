//! Saved VMs of bootable images (no `--kernel`: the image's own bootloader,
//! kernel and systemd boot it). lvh's init is not there to run a command, so
//! the commands go over ssh: `--save-state NAME -- SETUP` boots the image on
//! the state's qcow2 overlay with a fresh key pair of lvh's given to root as
//! the systemd credential `ssh.authorized_keys.root` (as `--ssh-key` does),
//! waits until root can log in on the port forwarded to guest port 22, runs
//! SETUP over ssh (then `sync`), and migrates the stopped VM to the state's
//! `memory` as command mode's saves do. `--from-state NAME -- CMD` loads it
//! with `-incoming` on a throwaway overlay, continues it and runs CMD over a
//! new ssh connection with the state's key: the saved point is "booted, sshd
//! answering", so no boot. Output and exit code are ssh's (255 is also what
//! ssh returns when it cannot connect).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::guest::sh_quote;
use super::image::ImageFormat;
use super::plan::{RunOptions, RunPlan};
use super::saved::{self, StateOp};
use super::state::{self, StateMeta};
use super::vm::{self, Outcome, Sinks};
use super::{ports, qemu, qmp, sshkey, RunError};
use crate::cancel::CancelToken;
use crate::exec::{Child, Cmd, Io};
use crate::progress::{self, NullReporter, Reporter};

/// The private key of a booted state, in its directory (`.pub` beside it).
pub const SSH_KEY: &str = "ssh_key";
/// How long one ssh login attempt may take.
const LOGIN_ATTEMPT: Duration = Duration::from_secs(60);
/// The pause between login attempts while the guest boots.
const LOGIN_PAUSE: Duration = Duration::from_secs(1);
/// How long a restored VM may take to accept the command's ssh connection.
const RESTORE_LOGIN: u64 = 60;

/// A state run on a bootable image: the command and how to reach the guest.
#[derive(Clone, Debug)]
pub struct SshRun {
    pub cmd: Vec<String>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    /// The host port forwarded to guest port 22.
    pub port: u16,
    /// How long the boot may take until root logs in (`--ssh-timeout`).
    pub login_timeout: Duration,
    /// `--ssh-key`'s public keys, given to root beside lvh's own.
    pub user_keys: Option<String>,
}

fn invalid(m: String) -> RunError {
    RunError::Invalid(m)
}

/// A free TCP port on 127.0.0.1 (the kernel's pick; free when asked).
fn free_port() -> Result<u16, RunError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RunError::io("find a free port for ssh", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RunError::io("find a free port for ssh", e))
}

/// Moves a bootable-image state run's command out of `o` (whose plan then
/// boots the image's own init) and forwards a host port to guest port 22
/// (the first `-p H:22`, else a free one).
pub fn prepare(o: &mut RunOptions, what: &str) -> Result<SshRun, RunError> {
    if o.cmd.is_empty() {
        return Err(invalid(format!(
            "{what} with a bootable image needs a command (-- CMD), run over ssh"
        )));
    }
    if o.host_mount.is_some() {
        return Err(invalid(format!(
            "{what} with a bootable image cannot use --host-mount: its own init does not mount it, and a mounted 9p share blocks saving"
        )));
    }
    if o.daemonize || o.persist || o.shell == Some(true) {
        return Err(invalid(format!(
            "{what} runs a command and returns: no --daemonize, --persist or --shell"
        )));
    }
    let fwd = ports::parse_all(&o.ports).map_err(|e| invalid(e.to_string()))?;
    let port = match fwd.iter().find(|p| p.guest_port == 22) {
        Some(p) => p.host_port,
        None => {
            let p = free_port()?;
            o.ports.push(format!("{p}:22"));
            p
        }
    };
    let user_keys = o
        .ssh_key
        .take()
        .map(|f| sshkey::read_public_keys(&f))
        .transpose()?;
    o.shell = Some(false);
    o.wait_ssh = false;
    Ok(SshRun {
        cmd: std::mem::take(&mut o.cmd),
        cwd: o.cwd.take(),
        timeout: o.timeout.take(),
        port,
        login_timeout: o.ssh_timeout,
        user_keys,
    })
}

/// ssh's arguments to run `remote` as root on the forwarded `port` with
/// `key` only: no user configuration, agent or known-hosts file (each
/// restore is the same guest, each save a new one), never a prompt.
pub fn ssh_args(key: &Path, port: u16, connect_timeout: u64, remote: &str) -> Vec<String> {
    let mut v: Vec<String> = vec!["-F".into(), "/dev/null".into(), "-T".into()];
    for o in [
        "BatchMode=yes".to_string(),
        "IdentitiesOnly=yes".into(),
        "IdentityAgent=none".into(),
        "StrictHostKeyChecking=no".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "LogLevel=ERROR".into(),
        format!("ConnectTimeout={connect_timeout}"),
    ] {
        v.push("-o".into());
        v.push(o);
    }
    v.push("-i".into());
    v.push(key.to_string_lossy().into_owned());
    v.push("-p".into());
    v.push(port.to_string());
    v.push("root@127.0.0.1".into());
    v.push("--".into());
    v.push(remote.into());
    v
}

/// The shell text ssh runs: change to `cwd` (default `/root`, as command
/// mode), run the argv exactly (each word quoted); `sync` after it (a save:
/// the disk overlay must hold what SETUP wrote) keeps its status.
pub fn remote_command(argv: &[String], cwd: Option<&str>, sync: bool) -> String {
    let dir = sh_quote(cwd.unwrap_or("/root"));
    let words: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    if sync {
        format!(
            "cd {dir} 2>/dev/null || cd /; {}; lvh_s=$?; sync; exit $lvh_s",
            words.join(" ")
        )
    } else {
        format!("cd {dir} 2>/dev/null || cd /; exec {}", words.join(" "))
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
fn code_of(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// The metadata of a state saved from a bootable image.
fn meta_for(plan: &RunPlan, name: &str, setup: &[String]) -> Result<StateMeta, RunError> {
    let mut m = saved::meta_base(plan, name, setup)?;
    m.booted = true;
    Ok(m)
}

/// Runs a save or restore of a bootable image (see the module doc).
pub(crate) fn run(
    plan: &RunPlan,
    op: &StateOp,
    s: &SshRun,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    let run_dir = vm::run_dir()?;
    let ctx = Session {
        plan,
        s,
        reporter,
        run_dir: run_dir.path(),
    };
    match op {
        StateOp::Save { states, name, .. } => {
            let partial = state::Partial::new(states, name)?;
            let meta = meta_for(plan, name, &s.cmd)?;
            let disk = partial.dir.join(state::DISK);
            saved::create_overlay(plan, &disk, reporter)?;
            let key = partial.dir.join(SSH_KEY);
            Cmd::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("lvh-state-{name}"))
                .arg("-f")
                .arg(&key)
                .run(reporter)?;
            let mut keys = std::fs::read_to_string(key.with_extension("pub"))
                .map_err(|e| RunError::io(format!("read {}.pub", key.display()), e))?;
            if let Some(k) = &s.user_keys {
                keys.push_str(k);
            }
            let mut qemu = ctx.start(&disk, false, &sshkey::credential_args(&keys), print_cmd)?;
            let boot = progress::Stage::start(
                reporter,
                format!(
                    "booting until root logs in over ssh on 127.0.0.1:{}",
                    s.port
                ),
            );
            ctx.wait_login(&mut qemu, &key)?;
            boot.finish(progress::Outcome::Done);
            let remote = remote_command(&s.cmd, s.cwd.as_deref(), true);
            let code = ctx.ssh(&mut qemu, &key, &remote, 10, sinks)?;
            if code != 0 {
                progress::warn(
                    reporter,
                    format!("the setup command exited with {code}: state {name:?} was not saved"),
                );
                let _ = qemu.child.terminate();
                return Ok(Outcome::Command(code));
            }
            let stage = progress::Stage::start(reporter, "saving the VM".to_string());
            saved::migrate_to(&ctx.qmp_sock(), &partial.dir.join(state::MEMORY))?;
            stage.finish(progress::Outcome::Done);
            let _ = qemu.child.terminate();
            let path = partial.commit(&meta)?;
            progress::info(
                reporter,
                format!("saved the VM as {name:?} in {}", path.display()),
            );
            Ok(Outcome::Command(0))
        }
        StateOp::Restore { dir, .. } => {
            let memory = dir.join(state::MEMORY);
            let incoming = vec![
                "-incoming".to_string(),
                format!("exec:cat {}", sh_quote(&memory.to_string_lossy())),
            ];
            let mut qemu = ctx.start(&dir.join(state::DISK), true, &incoming, print_cmd)?;
            let deadline = Instant::now() + plan.boot_timeout;
            let child = &mut qemu.child;
            let mut alive = || matches!(child.try_wait(), Ok(None));
            if let Err(e) = saved::resume(&ctx.qmp_sock(), deadline, &mut alive) {
                let _ = qemu.child.terminate();
                return Err(RunError::Setup(format!(
                    "could not load the saved VM: {e}{}",
                    saved::qemu_lines(&qemu.stderr)
                )));
            }
            let remote = remote_command(&s.cmd, s.cwd.as_deref(), false);
            let code = ctx.ssh(&mut qemu, &dir.join(SSH_KEY), &remote, RESTORE_LOGIN, sinks)?;
            let _ = qemu.child.terminate();
            Ok(Outcome::Command(code))
        }
    }
}

struct Session<'a> {
    plan: &'a RunPlan,
    s: &'a SshRun,
    reporter: &'a dyn Reporter,
    run_dir: &'a Path,
}

struct Qemu {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    console: std::path::PathBuf,
}

impl Session<'_> {
    fn qmp_sock(&self) -> std::path::PathBuf {
        self.run_dir.join("qmp.sock")
    }

    /// Starts QEMU on `disk` (written, or with `snapshot` on a throwaway
    /// overlay in the run directory), the console in a file, QMP listening.
    fn start(
        &self,
        disk: &Path,
        snapshot: bool,
        extra: &[String],
        print_cmd: bool,
    ) -> Result<Qemu, RunError> {
        let mut cfg = self.plan.qemu_config(self.run_dir);
        let console = self
            .plan
            .console_log
            .clone()
            .unwrap_or_else(|| self.run_dir.join("console.log"));
        cfg.console = qemu::Console::File(console.clone());
        cfg.daemonize = None;
        cfg.image = disk.to_path_buf();
        cfg.image_format = ImageFormat::Qcow2;
        cfg.snapshot = snapshot;
        cfg.extra.extend(qmp::qmp_args(&self.qmp_sock()));
        cfg.extra.extend(extra.iter().cloned());
        let cmd = Cmd::new(self.plan.arch.qemu_binary())
            .args(qemu::argv(&cfg))
            .env("TMPDIR", self.run_dir)
            .grace(vm::QEMU_GRACE);
        if print_cmd {
            progress::info(self.reporter, format!("qemu command: {}", cmd.display()));
        }
        let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
        let stderr = vm::collect_stderr(child.take_stderr().expect("piped stderr"));
        Ok(Qemu {
            child,
            stderr,
            console,
        })
    }

    fn exited(&self, q: &mut Qemu, when: &str) -> Option<RunError> {
        match q.child.try_wait() {
            Ok(None) => None,
            st => Some(RunError::QemuExited {
                status: format!(
                    "{} {when}",
                    st.ok()
                        .flatten()
                        .map(|s| crate::exec::describe_status(&s))
                        .unwrap_or_default()
                ),
                console: vm::last_lines(&q.console),
                stderr: vm::lines_of(&q.stderr),
            }),
        }
    }

    /// Waits until root logs in with `key` (sshd answering is not enough:
    /// the key must be in place).
    fn wait_login(&self, q: &mut Qemu, key: &Path) -> Result<(), RunError> {
        let deadline = Instant::now() + self.s.login_timeout;
        let cancel = CancelToken::global();
        let probe = Cmd::new("ssh")
            .args(ssh_args(key, self.s.port, 10, "true"))
            .timeout(LOGIN_ATTEMPT)
            .allow_failure();
        loop {
            if vm::ssh_answers(self.s.port)
                && probe.run(&NullReporter).is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            if let Some(e) = self.exited(q, "while waiting for ssh") {
                return Err(e);
            }
            if cancel.is_cancelled() {
                return Err(RunError::Interrupted);
            }
            if Instant::now() >= deadline {
                let _ = q.child.terminate();
                return Err(RunError::Setup(format!(
                    "root could not log in over ssh on 127.0.0.1:{} within {}s (--ssh-timeout): a bootable image's state needs sshd, networking (e.g. DHCP) and systemd 252 or later, and an image that has its own /root/.ssh/authorized_keys keeps it instead of lvh's key; the console is in {}",
                    self.s.port,
                    self.s.login_timeout.as_secs(),
                    q.console.display()
                )));
            }
            cancel.sleep(LOGIN_PAUSE);
        }
    }

    /// Runs `remote` over ssh, its output into `sinks`, and returns its exit
    /// code; `--timeout` and Ctrl-C stop it (and the VM).
    fn ssh(
        &self,
        q: &mut Qemu,
        key: &Path,
        remote: &str,
        connect_timeout: u64,
        sinks: Sinks,
    ) -> Result<i32, RunError> {
        let cmd = Cmd::new("ssh").args(ssh_args(key, self.s.port, connect_timeout, remote));
        let mut child = cmd.spawn(Io::Null, Io::Piped, Io::Piped)?;
        let out = copy(child.take_stdout().expect("piped"), sinks.stdout);
        let err = copy(child.take_stderr().expect("piped"), sinks.stderr);
        let cancel = CancelToken::global();
        let deadline = self.s.timeout.map(|t| Instant::now() + t);
        let status = loop {
            let st = child
                .wait_until(Some(Instant::now() + Duration::from_millis(50)), &cancel)
                .map_err(|e| RunError::io("wait for ssh", e))?;
            if let Some(st) = st {
                break st;
            }
            if cancel.is_cancelled() {
                let _ = child.terminate();
                let _ = q.child.terminate();
                return Err(RunError::Interrupted);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = child.terminate();
                let _ = q.child.terminate();
                return Err(RunError::CommandTimeout(
                    self.s.timeout.unwrap_or_default(),
                    vm::last_lines(&q.console),
                ));
            }
            if let Some(e) = self.exited(q, "while the command ran over ssh") {
                let _ = child.terminate();
                return Err(e);
            }
        };
        let _ = out.join();
        let _ = err.join();
        Ok(code_of(status))
    }
}

/// Copies a pipe into a sink until its end, flushing as bytes arrive.
fn copy(
    mut r: impl Read + Send + 'static,
    mut w: Box<dyn Write + Send>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || w.write_all(&buf[..n]).and_then(|_| w.flush()).is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_commands_quote_every_word_and_keep_the_status() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (a, cwd, sync, want) in [
            (
                argv(&["true"]),
                None,
                false,
                "cd /root 2>/dev/null || cd /; exec true",
            ),
            (
                argv(&["sh", "-c", "echo it's; exit 3"]),
                Some("/tmp/a b"),
                false,
                r"cd '/tmp/a b' 2>/dev/null || cd /; exec sh -c 'echo it'\''s; exit 3'",
            ),
            (
                argv(&["touch", "/x"]),
                None,
                true,
                "cd /root 2>/dev/null || cd /; touch /x; lvh_s=$?; sync; exit $lvh_s",
            ),
        ] {
            assert_eq!(remote_command(&a, cwd, sync), want);
        }
    }

    #[test]
    fn ssh_uses_only_the_states_key_and_never_prompts() {
        let a = ssh_args(Path::new("/s/ssh_key"), 2022, 10, "exec true");
        let s = a.join(" ");
        assert!(s.starts_with("-F /dev/null -T -o BatchMode=yes"), "{s}");
        for o in [
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "UserKnownHostsFile=/dev/null",
            "ConnectTimeout=10",
        ] {
            assert!(a.contains(&o.to_string()), "{o}: {s}");
        }
        assert!(
            s.ends_with("-i /s/ssh_key -p 2022 root@127.0.0.1 -- exec true"),
            "{s}"
        );
    }

    fn opts(cmd: &[&str], ports: &[&str]) -> RunOptions {
        let d = tempfile::tempdir().unwrap();
        RunOptions {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
            kernel: None,
            ..crate::runner::plan::tests::options(d.path())
        }
    }

    #[test]
    fn prepare_moves_the_command_out_and_forwards_ssh() {
        let mut o = opts(&["true"], &["8080:80", "2299:22"]);
        let s = prepare(&mut o, "--save-state").unwrap();
        assert_eq!(s.cmd, ["true"]);
        assert_eq!(s.port, 2299);
        assert!(o.cmd.is_empty());
        assert_eq!(o.shell, Some(false));
        assert_eq!(o.ports.len(), 2);
        let mut o = opts(&["true"], &[]);
        let s = prepare(&mut o, "--save-state").unwrap();
        assert_eq!(o.ports, [format!("{}:22", s.port)]);
        for (mut o, want) in [
            (opts(&[], &[]), "needs a command"),
            (
                RunOptions {
                    host_mount: Some("/x".into()),
                    ..opts(&["true"], &[])
                },
                "cannot use --host-mount",
            ),
            (
                RunOptions {
                    persist: true,
                    ..opts(&["true"], &[])
                },
                "no --daemonize, --persist",
            ),
        ] {
            let e = prepare(&mut o, "--from-state").unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("--from-state"), "{e}");
        }
    }
}
