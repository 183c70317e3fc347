//! The runs lvh does not supervise: without a command in the foreground lvh
//! becomes QEMU ([`run_interactive`], as little-vm-helper does), and
//! `--daemonize` leaves QEMU running in the background ([`run_daemon`]),
//! optionally until ssh answers.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::seed::{self, SeedFd};
use super::{config, pidfile, qemu, rundir, Ctx};
use crate::cancel::CancelToken;
use crate::exec::Cmd;
use crate::progress;
use crate::runner::error::RunError;
use crate::runner::plan::decision::RunPlan;
use crate::runner::session::channel::last_lines;
use crate::runner::verdict::outcome::Outcome;

/// The QEMU command for `plan` with its private files in `run_dir`.
pub fn qemu_cmd(plan: &RunPlan, run_dir: &Path) -> Cmd {
    let cfg = config::qemu_config(plan, run_dir);
    Cmd::new(plan.arch.qemu_binary()).args(qemu::argv(&cfg))
}

/// `--cloud-init`'s seed, in memory on a descriptor QEMU inherits.
fn seed(plan: &RunPlan) -> Result<Option<SeedFd>, RunError> {
    let Some(ci) = &plan.cloud_init else {
        return Ok(None);
    };
    SeedFd::new(&seed::fat_image(&ci.files())?).map(Some)
}

/// Without a command and in the foreground: lvh becomes QEMU (as
/// little-vm-helper does), so the terminal, Ctrl-A X and the exit status are
/// QEMU's. The `snapshot=on` overlay is QEMU's temporary file.
pub fn run_interactive(plan: &RunPlan, ctx: Ctx) -> Result<Outcome, RunError> {
    // QEMU opens the console log; lvh makes it first, safely.
    if let Some(log) = &plan.console_log {
        rundir::open_console_log(log)?;
    }
    let seed = seed(plan)?;
    let mut cfg = config::qemu_config(plan, &std::env::temp_dir());
    cfg.seed_fd = seed.as_ref().map(SeedFd::raw);
    let cmd = Cmd::new(plan.arch.qemu_binary()).args(qemu::argv(&cfg));
    if ctx.print_cmd {
        progress::info(ctx.reporter, format!("qemu command: {}", cmd.display()));
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(cmd.program())
        .args(cmd.get_args())
        .exec();
    Err(RunError::io(
        format!("start {}", plan.arch.qemu_binary()),
        err,
    ))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether an ssh server answers on `port` (its banner starts with `SSH-`).
pub fn ssh_answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    matches!(BufReader::new(s).read_line(&mut line), Ok(n) if n > 0) && line.starts_with("SSH-")
}

fn kill_pid(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// `--daemonize`: QEMU detaches once initialized; with `--wait-ssh` lvh
/// returns only when ssh answers (and stops the VM if it never does).
pub fn run_daemon(
    plan: &RunPlan,
    ssh_port: Option<u16>,
    ssh_timeout: Duration,
    ctx: Ctx,
) -> Result<Outcome, RunError> {
    // The pid file must outlive lvh (it is how the VM is found and stopped):
    // it goes to the system temp dir, named after lvh's pid. Those of QEMUs
    // killed from outside are removed here, by the next daemonized run.
    let piddir = std::env::temp_dir();
    pidfile::sweep(&piddir);
    let mut cfg = config::qemu_config(plan, &piddir);
    let pidfile = pidfile::path(&piddir, std::process::id());
    cfg.daemonize = Some(pidfile.clone());
    let seed = seed(plan)?;
    cfg.seed_fd = seed.as_ref().map(SeedFd::raw);
    if let Some(log) = &plan.console_log {
        rundir::open_console_log(log)?;
    }
    // lvh makes the pid file (new, 0600, not through a planted symlink);
    // QEMU fills it in.
    pidfile::create(&pidfile).map_err(|e| {
        let what = match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                " (something is already there: lvh neither writes through it nor removes it)"
            }
            _ => "",
        };
        RunError::io(
            format!("create the pid file {}{what}", pidfile.display()),
            e,
        )
    })?;
    let cmd = Cmd::new(plan.arch.qemu_binary())
        .args(qemu::argv(&cfg))
        .die_with_parent(false)
        .timeout(plan.boot_timeout);
    if ctx.print_cmd {
        progress::info(ctx.reporter, format!("qemu command: {}", cmd.display()));
    }
    if let Err(e) = cmd.run(ctx.reporter) {
        let _ = std::fs::remove_file(&pidfile);
        return Err(e.into());
    }
    let pid = read_pid(&pidfile).ok_or_else(|| {
        RunError::Setup(format!(
            "QEMU daemonized but its pid file {} is unreadable",
            pidfile.display()
        ))
    })?;
    progress::info(
        ctx.reporter,
        format!(
            "QEMU is running as pid {pid} (pid file {})",
            pidfile.display()
        ),
    );
    let Some(port) = ssh_port else {
        return Ok(Outcome::Daemonized { pid });
    };
    let stage =
        progress::Stage::start(ctx.reporter, format!("waiting for ssh on 127.0.0.1:{port}"));
    let deadline = Instant::now() + ssh_timeout;
    let cancel = CancelToken::global();
    loop {
        if ssh_answers(port) {
            stage.finish(progress::Outcome::Done);
            return Ok(Outcome::Daemonized { pid });
        }
        if !alive(pid) {
            let _ = std::fs::remove_file(&pidfile);
            return Err(RunError::QemuExited {
                status: "while waiting for ssh".into(),
                console: plan
                    .console_log
                    .as_deref()
                    .map(last_lines)
                    .unwrap_or_default(),
                stderr: vec![],
            });
        }
        if cancel.is_cancelled() {
            kill_pid(pid);
            let _ = std::fs::remove_file(&pidfile);
            return Err(RunError::Interrupted);
        }
        if Instant::now() >= deadline {
            kill_pid(pid);
            let _ = std::fs::remove_file(&pidfile);
            return Err(RunError::SshTimeout {
                port,
                after: ssh_timeout,
                console_log: plan.console_log.clone(),
            });
        }
        cancel.sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_answers_on_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(!ssh_answers(port));
    }
}
