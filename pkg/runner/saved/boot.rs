//! Saved VMs of bootable images (no `--kernel`: the image's own bootloader,
//! kernel and systemd boot it). lvh's init is not there to run a command, so
//! the commands go over ssh: `--save-state NAME -- SETUP` boots the image on
//! the state's qcow2 overlay with a fresh key pair of lvh's given to root as
//! the systemd credential `ssh.authorized_keys.root` (as `--ssh-key` does),
//! waits until root can log in on the port forwarded to guest port 22, runs
//! SETUP over ssh (then `sync`), and saves the stopped VM as command mode's
//! saves do (its RAM in the state's `ram` all along, its devices migrated). `--from-state NAME -- CMD` loads it
//! with `-incoming` on a throwaway overlay, continues it and runs CMD over a
//! new ssh connection with the state's key: the saved point is "booted, sshd
//! answering", so no boot. Output and exit code are ssh's (255 is also what
//! ssh returns when it cannot connect).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::layout;
use super::state::{self, StateMeta};
use super::state::{SshRun, StateOp};
use crate::cancel::CancelToken;
use crate::exec::{Cmd, Io};
use crate::progress::{self, NullReporter};
use crate::runner::error::RunError;
use crate::runner::guest::sh_quote;
use crate::runner::plan::decision::RunPlan;
use crate::runner::plan::sshkey;
use crate::runner::session::channel::{last_lines, Sinks};
use crate::runner::session::config::qemu_config;
use crate::runner::session::memory::MemoryBacking;
use crate::runner::session::qemu::{self, Console};
use crate::runner::session::rundir::{Endpoint, RunDir};
use crate::runner::session::{qmp, Ctx, Session};
use crate::runner::verdict::outcome::Outcome;

/// The private key of a booted state, in its directory (`.pub` beside it).
pub const SSH_KEY: &str = "ssh_key";
/// How long one ssh login attempt may take.
const LOGIN_ATTEMPT: Duration = Duration::from_secs(60);
/// The pause between login attempts while the guest boots.
const LOGIN_PAUSE: Duration = Duration::from_secs(1);
/// How long a restored VM may take to accept the command's ssh connection.
const RESTORE_LOGIN: u64 = 60;

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
    let mut m = super::meta_base(plan, name, setup)?;
    m.booted = true;
    Ok(m)
}

/// Runs a save or restore of a bootable image (see the module doc).
pub fn run(
    plan: &RunPlan,
    op: &StateOp,
    s: &SshRun,
    sinks: Sinks,
    ctx: Ctx,
) -> Result<Outcome, RunError> {
    let dir = RunDir::new()?;
    let b = Booted {
        plan,
        s,
        ctx,
        dir: &dir,
    };
    match op {
        StateOp::Save { states, name, .. } => {
            let partial = state::Partial::new(states, name)?;
            let mut meta = meta_for(plan, name, &s.cmd)?;
            let disk = partial.dir.join(state::DISK);
            super::create_overlay(plan, &disk, ctx)?;
            let key = partial.dir.join(SSH_KEY);
            Cmd::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("lvh-state-{name}"))
                .arg("-f")
                .arg(&key)
                .run(ctx.reporter)?;
            let mut keys = std::fs::read_to_string(key.with_extension("pub"))
                .map_err(|e| RunError::io(format!("read {}.pub", key.display()), e))?;
            if let Some(k) = &s.user_keys {
                keys.push_str(k);
            }
            let mem = layout::save_memory(&partial.dir);
            let mut q = b.start(&disk, false, mem, &sshkey::credential_args(&keys))?;
            let boot = progress::Stage::start(
                ctx.reporter,
                format!(
                    "booting until root logs in over ssh on 127.0.0.1:{}",
                    s.port
                ),
            );
            b.wait_login(&mut q, &key)?;
            boot.finish(progress::Outcome::Done);
            let remote = remote_command(&s.cmd, s.cwd.as_deref(), true);
            let code = b.ssh(&mut q, &key, &remote, 10, sinks)?;
            if code != 0 {
                progress::warn(
                    ctx.reporter,
                    format!("the setup command exited with {code}: state {name:?} was not saved"),
                );
                q.session.stop();
                return Ok(Outcome::Command(code));
            }
            let stage = progress::Stage::start(ctx.reporter, "saving the VM".to_string());
            super::migrate_to(&Endpoint::Qmp.path_in(dir.path()), &partial.dir)?;
            stage.finish(progress::Outcome::Done);
            q.session.stop();
            super::record_files(&mut meta, &partial.dir)?;
            let path = partial.commit(&meta)?;
            progress::info(
                ctx.reporter,
                format!("saved the VM as {name:?} in {}", path.display()),
            );
            Ok(Outcome::Command(0))
        }
        StateOp::Restore {
            dir: state_dir,
            meta,
            ..
        } => {
            let incoming = super::Incoming::new(super::layout_of(meta)?, state_dir);
            let disk = state_dir.join(state::DISK);
            let mut q = b.start(&disk, true, incoming.memory.clone(), &incoming.args)?;
            let deadline = Instant::now() + plan.boot_timeout;
            let session = &mut q.session;
            let mut alive = || session.alive();
            let qmp_sock = Endpoint::Qmp.path_in(dir.path());
            if let Err(e) = super::resume(&qmp_sock, &incoming, deadline, &mut alive) {
                q.session.stop();
                return Err(super::load_failed(e, &q.session.stderr_lines()));
            }
            let remote = remote_command(&s.cmd, s.cwd.as_deref(), false);
            let code = b.ssh(
                &mut q,
                &state_dir.join(SSH_KEY),
                &remote,
                RESTORE_LOGIN,
                sinks,
            )?;
            q.session.stop();
            Ok(Outcome::Command(code))
        }
    }
}

/// A bootable image's state run: the plan, the ssh side, the run directory.
struct Booted<'a> {
    plan: &'a RunPlan,
    s: &'a SshRun,
    ctx: Ctx<'a>,
    dir: &'a RunDir,
}

/// QEMU with its console in a file.
struct Qemu {
    session: Session,
    console: PathBuf,
}

impl Booted<'_> {
    /// Starts QEMU on `disk` (written, or with `snapshot` on a throwaway
    /// overlay in the run directory) with its RAM in `memory`, the console
    /// in a file, QMP listening.
    fn start(
        &self,
        disk: &Path,
        snapshot: bool,
        memory: MemoryBacking,
        extra: &[String],
    ) -> Result<Qemu, RunError> {
        let mut cfg = qemu_config(self.plan, self.dir.path());
        cfg.memory = memory;
        let console = self
            .plan
            .console_log
            .clone()
            .unwrap_or_else(|| self.dir.path().join("console.log"));
        cfg.console = Console::File(console.clone());
        cfg.daemonize = None;
        cfg.image = disk.to_path_buf();
        cfg.image_format = crate::runner::plan::image::ImageFormat::Qcow2;
        cfg.snapshot = snapshot;
        cfg.extra
            .extend(qmp::qmp_args(&Endpoint::Qmp.path_in(self.dir.path())));
        cfg.extra.extend(extra.iter().cloned());
        let session = Session::start(self.plan.arch, qemu::argv(&cfg), self.dir.path(), self.ctx)?;
        Ok(Qemu { session, console })
    }

    fn exited(&self, q: &mut Qemu, when: &str) -> Option<RunError> {
        match q.session.exited() {
            Ok(None) => None,
            _ => Some(RunError::QemuExited {
                status: format!("{} {when}", q.session.status_text()),
                console: last_lines(&q.console),
                stderr: q.session.stderr_lines(),
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
            if crate::runner::session::daemon::ssh_answers(self.s.port)
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
                q.session.stop();
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
                q.session.stop();
                return Err(RunError::Interrupted);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = child.terminate();
                q.session.stop();
                return Err(RunError::CommandTimeout(
                    self.s.timeout.unwrap_or_default(),
                    last_lines(&q.console),
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
}
