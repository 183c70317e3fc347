//! Starting and supervising the VM. Command mode watches QEMU, the console
//! and the guest channel together and ends the run at the first of: the
//! command's exit (after every output byte arrived), a kernel panic, a
//! lockup splat, a guest that stays silent or never starts the command
//! before the boot deadline, QEMU exiting early, the command timeout, or
//! Ctrl-C; the decision is `verdict`'s, this module moves bytes. The private run
//! directory (sockets, control share, and QEMU's `snapshot=on` overlay via
//! `TMPDIR`) is removed when the run ends, whatever the reason.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::accel::Accel;
use super::allow::SplatPolicy;
use super::channel::{self, ConsoleTail, Event, StreamCount};
use super::plan::{Mode, RunPlan};
use super::qemu;
use super::splat::SplatKind;
use super::verdict::{Action, Limits, SeenSplat, Tick, Verdict, Watch};
use super::{gdb, guest, shell};
use super::{RunError, CONSOLE_TAIL_LINES};
use crate::cancel::CancelToken;
use crate::exec::{describe_status, Cmd, Io};
use crate::progress::{self, Reporter};

/// How often the supervisor polls QEMU, deadlines and Ctrl-C.
const TICK: Duration = Duration::from_millis(5);
/// How long QEMU gets to exit after SIGTERM at the end of a run.
pub(super) const QEMU_GRACE: Duration = Duration::from_secs(5);
/// QEMU stderr lines kept for error messages.
const QEMU_STDERR_LINES: usize = 15;

/// Where command output and the console go.
pub struct Sinks {
    pub stdout: Box<dyn Write + Send>,
    pub stderr: Box<dyn Write + Send>,
    /// A live copy of the console (`-v`).
    pub console: Option<Box<dyn Write + Send>>,
}

/// How a run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest command exited with this code.
    Command(i32),
    /// QEMU ran in the foreground and exited with this status.
    Exited(i32),
    /// QEMU daemonized with this pid (and ssh answered, if asked).
    Daemonized { pid: u32 },
}

/// Runs the plan. `print_cmd` reports the QEMU command line before starting.
/// Splats fail a command-mode run (`--splat fail` without an allowlist).
pub fn run(
    plan: &RunPlan,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    run_report(plan, &SplatPolicy::default(), sinks, reporter, print_cmd).result
}

/// Runs the plan with `policy` for splats; returns the outcome and what the
/// run found (times, splats, kernel release) for `--result-json`.
pub fn run_report(
    plan: &RunPlan,
    policy: &SplatPolicy,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> RunReport {
    let mut facts = RunFacts {
        cmdline: plan.kernel.is_some().then(|| plan.cmdline()),
        console_log: plan.console_log.clone(),
        ..Default::default()
    };
    if let Some(g) = &plan.gdb {
        let symbols = plan.kernel.as_deref().and_then(gdb::find_symbols);
        for line in gdb::announce(g, plan.kernel.as_deref(), symbols.as_ref()) {
            progress::info(reporter, line);
        }
    }
    let result = match &plan.mode {
        Mode::Command { cmd, timeout } => {
            let ran = match plan.state {
                Some(_) => {
                    super::saved::run(plan, cmd, *timeout, policy, sinks, reporter, print_cmd)
                }
                None => run_command(plan, cmd, *timeout, policy, sinks, reporter, print_cmd),
            };
            match ran {
                Ok((result, watch, ended)) => {
                    facts.boot_time = watch.boot_time();
                    facts.command_time = watch.command_time(ended);
                    facts.taint = watch.exit.and_then(|e| e.taint);
                    facts.kernel_release = watch.kernel_release.clone();
                    facts.splats = watch.splats;
                    result
                }
                Err(e) => Err(e),
            }
        }
        // A bootable image's saved VM: commands over ssh (`saved_boot`).
        Mode::Interactive if plan.state.as_ref().is_some_and(|s| s.ssh().is_some()) => {
            let op = plan.state.as_ref().expect("a state run");
            let ssh = op.ssh().expect("an ssh run");
            super::saved_boot::run(plan, op, ssh, sinks, reporter, print_cmd)
        }
        Mode::Interactive => run_interactive(plan, reporter, print_cmd),
        Mode::Shell(g) => shell::run_shell(plan, g, sinks, reporter, print_cmd),
        Mode::Daemon {
            ssh_port,
            ssh_timeout,
        } => run_daemon(plan, *ssh_port, *ssh_timeout, reporter, print_cmd),
    };
    RunReport { result, facts }
}

/// A command-mode run's private directory under `$TMPDIR`: `lvh-run-<pid>.XXXXXX`.
const RUN_DIR_BASE: &str = "lvh-run-";

/// The QEMU command for `plan` with its private files in `run_dir`.
pub fn qemu_cmd(plan: &RunPlan, run_dir: &Path) -> Cmd {
    let cfg = plan.qemu_config(run_dir);
    Cmd::new(plan.arch.qemu_binary()).args(qemu::argv(&cfg))
}

pub(crate) fn run_dir() -> Result<tempfile::TempDir, RunError> {
    // Run directories of lvh processes that were killed outright go first.
    crate::stale::sweep_owned(&std::env::temp_dir(), RUN_DIR_BASE);
    tempfile::Builder::new()
        .prefix(&crate::stale::owned_prefix(RUN_DIR_BASE))
        .tempdir()
        .map_err(|e| RunError::io("create a run directory under $TMPDIR", e))
}

/// Keeps the last lines of QEMU's stderr.
pub(crate) fn collect_stderr(
    r: impl std::io::Read + Send + 'static,
) -> Arc<Mutex<VecDeque<String>>> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let t = tail.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            tracing::debug!(target: "qemu", "{line}");
            let mut q = t.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() == QEMU_STDERR_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    });
    tail
}

/// QEMU's stderr lines, without the note it prints when lvh stops it.
pub(super) fn lines_of(t: &Mutex<VecDeque<String>>) -> Vec<String> {
    t.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| !l.contains("terminating on signal"))
        .cloned()
        .collect()
}

pub(super) fn no_life_hint(accel: Accel) -> String {
    match accel {
        Accel::Kvm => "KVM may not work on this machine: try --accel tcg (or LVH_ACCEL=tcg)".into(),
        Accel::Tcg => {
            "check that the kernel has a serial console for this arch, or raise --boot-timeout"
                .into()
        }
    }
}

/// The listening sockets and files of a command-mode run, made before QEMU starts.
pub(crate) struct Wiring {
    pub(crate) cfg: qemu::QemuConfig,
    console: std::os::unix::net::UnixListener,
    stdout: std::os::unix::net::UnixListener,
    stderr: std::os::unix::net::UnixListener,
    control: std::os::unix::net::UnixListener,
    log: Option<std::fs::File>,
}

/// The static init's initramfs for this run ([`super::initramfs`]).
fn write_initramfs(
    plan: &RunPlan,
    gcmd: &guest::GuestCommand,
    path: &Path,
) -> Result<(), RunError> {
    let root = plan
        .fast
        .initramfs
        .as_ref()
        .expect("a run with the static init");
    let bytes = super::initramfs::archive(plan.arch, gcmd, root)
        .ok_or_else(|| RunError::Invalid(format!("this lvh has no {} guest init", plan.arch)))?;
    std::fs::write(path, bytes).map_err(|e| RunError::io(format!("write {}", path.display()), e))
}

pub(crate) fn write_file(p: &Path, text: String) -> Result<(), RunError> {
    std::fs::write(p, text).map_err(|e| RunError::io(format!("write {}", p.display()), e))
}

/// Writes the control share (init script, fstab) and binds the sockets.
pub(crate) fn wire(
    plan: &RunPlan,
    gcmd: &guest::GuestCommand,
    dir: &Path,
) -> Result<Wiring, RunError> {
    let cfg = plan.qemu_config(dir);
    let ch = cfg.channel.clone().expect("command mode has a channel");
    if let Some(share) = &ch.share_dir {
        std::fs::create_dir(share)
            .map_err(|e| RunError::io(format!("create {}", share.display()), e))?;
        write_file(&share.join("init"), guest::init_script(gcmd))?;
        write_file(&share.join("fstab"), guest::fstab())?;
    }
    if let Some(path) = &cfg.initrd {
        write_initramfs(plan, gcmd, path)?;
    }
    let listen = |p: &Path| {
        channel::listen(p).map_err(|e| RunError::io(format!("listen on {}", p.display()), e))
    };
    let console_path = match &cfg.console {
        qemu::Console::Socket(p) => p.clone(),
        _ => unreachable!("command mode reads the console"),
    };
    let log = match &plan.console_log {
        Some(p) => Some(
            std::fs::File::create(p)
                .map_err(|e| RunError::io(format!("create console log {}", p.display()), e))?,
        ),
        None => None,
    };
    Ok(Wiring {
        console: listen(&console_path)?,
        stdout: listen(&ch.stdout_sock)?,
        stderr: listen(&ch.stderr_sock)?,
        control: listen(&ch.control_sock)?,
        log,
        cfg,
    })
}

/// Sets the stop flag when dropped, so the pump threads stop waiting for
/// connections that will never come once the run returns.
pub(super) struct StopOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The pump threads' shared state, as the supervisor sees it.
pub(crate) struct Pumps {
    pub(crate) control: channel::ControlWriter,
    pub(crate) rx: mpsc::Receiver<Event>,
    pub(crate) tail: Arc<ConsoleTail>,
    out: Arc<StreamCount>,
    err: Arc<StreamCount>,
    _stop: StopOnDrop,
}

pub(crate) fn start_pumps(w: Wiring, sinks: Sinks) -> Pumps {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let tail = Arc::new(ConsoleTail::new(CONSOLE_TAIL_LINES));
    let out = Arc::new(StreamCount::default());
    let err = Arc::new(StreamCount::default());
    let (s, t) = (stop.clone(), tx.clone());
    channel::pump_console(w.console, w.log, sinks.console, tail.clone(), s, t);
    let (s, t) = (stop.clone(), tx.clone());
    channel::pump_stream(w.stdout, "stdout", sinks.stdout, out.clone(), s, t);
    let (s, t) = (stop.clone(), tx.clone());
    channel::pump_stream(w.stderr, "stderr", sinks.stderr, err.clone(), s, t);
    let control = channel::pump_control(w.control, stop.clone(), tx);
    Pumps {
        control,
        rx,
        tail,
        out,
        err,
        _stop: StopOnDrop(stop),
    }
}

/// What a command-mode run found besides its outcome: for `--result-json`.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// From QEMU's start to the command's start.
    pub boot_time: Option<Duration>,
    pub command_time: Option<Duration>,
    pub splats: Vec<SeenSplat>,
    pub taint: Option<(u64, u64)>,
    pub kernel_release: Option<String>,
    pub cmdline: Option<String>,
    pub console_log: Option<std::path::PathBuf>,
}

/// A run's outcome and what it found.
#[derive(Debug)]
pub struct RunReport {
    pub result: Result<Outcome, RunError>,
    pub facts: RunFacts,
}

/// The supervisor: moves events into the watch and asks it what to do.
pub(crate) fn supervise(
    child: &mut crate::exec::Child,
    pumps: &Pumps,
    watch: &mut Watch,
) -> Result<(Verdict, Option<ExitStatus>), RunError> {
    let cancel = CancelToken::global();
    let mut qemu: Option<(ExitStatus, Instant)> = None;
    loop {
        if let Ok(ev) = pumps.rx.recv_timeout(TICK) {
            // Take every queued event before judging.
            for ev in std::iter::once(ev).chain(pumps.rx.try_iter()) {
                tracing::debug!(elapsed = ?watch.limits.start.elapsed(), event = ?ev, "guest");
                watch.take(ev, Instant::now());
            }
        }
        let now = Instant::now();
        if qemu.is_none() {
            match child.try_wait() {
                Ok(Some(st)) => qemu = Some((st, now)),
                Ok(None) => {}
                Err(e) => return Err(RunError::io("wait for QEMU", e)),
            }
        }
        let tick = Tick {
            now,
            qemu_exit: qemu.map(|(st, at)| (st.success(), at)),
            out_bytes: pumps.out.bytes.load(Ordering::SeqCst),
            err_bytes: pumps.err.bytes.load(Ordering::SeqCst),
            cancelled: cancel.is_cancelled(),
        };
        if let Action::Stop(v) = watch.next(&tick) {
            return Ok((v, qemu.map(|(st, _)| st)));
        }
    }
}

/// Turns the verdict into the run's outcome or error.
pub(crate) fn conclude(
    verdict: Verdict,
    status: Option<ExitStatus>,
    watch: &Watch,
    plan: &RunPlan,
    argv: String,
    tail: &ConsoleTail,
    qemu_stderr: &Mutex<VecDeque<String>>,
) -> Result<Outcome, RunError> {
    let status = || status.as_ref().map(describe_status).unwrap_or_default();
    match verdict {
        Verdict::Done(code) => Ok(Outcome::Command(code)),
        Verdict::Splat(command_status) => Err(RunError::Splat {
            splats: watch.failing().into_iter().cloned().collect(),
            command_status,
        }),
        Verdict::Interrupted => Err(RunError::Interrupted),
        Verdict::Incomplete { stream, got, want } => {
            Err(RunError::Incomplete { stream, got, want })
        }
        Verdict::GuestError(msg) => Err(RunError::Guest(msg)),
        Verdict::Panic(line) => Err(RunError::KernelPanic {
            line,
            console: tail.lines(),
        }),
        Verdict::QemuFailed => Err(RunError::QemuFailed {
            argv,
            status: status(),
            stderr: lines_of(qemu_stderr),
        }),
        Verdict::QemuExited => Err(RunError::QemuExited {
            status: status(),
            console: tail.lines(),
            stderr: lines_of(qemu_stderr),
        }),
        Verdict::NoSignOfLife => Err(RunError::NoSignOfLife {
            after: plan.boot_timeout,
            accel: plan.accel.to_string(),
            hint: no_life_hint(plan.accel),
            stderr: lines_of(qemu_stderr),
        }),
        Verdict::NotStarted => Err(RunError::NotStarted {
            after: plan.boot_timeout,
            console: tail.lines(),
        }),
        Verdict::Timeout(t) => Err(RunError::CommandTimeout(t, tail.lines())),
    }
}

/// Warns about the splats that did not fail the run and notes the allowed ones.
pub(crate) fn report_splats(watch: &Watch, reporter: &dyn Reporter) {
    let failing = watch.failing().len();
    for s in &watch.splats {
        match &s.allowed {
            Some((entry, reason)) => progress::info(
                reporter,
                format!(
                    "kernel splat allowed by entry {entry} of {} ({reason}): {}",
                    watch
                        .policy
                        .allow_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    s.splat.summary()
                ),
            ),
            None if failing == 0 && s.splat.kind != SplatKind::Panic => progress::warn(
                reporter,
                format!(
                    "kernel splat: {}\n  {}",
                    s.splat.summary(),
                    s.splat.lines.join("\n  ")
                ),
            ),
            None => {}
        }
    }
}

fn run_command(
    plan: &RunPlan,
    gcmd: &guest::GuestCommand,
    timeout: Option<Duration>,
    policy: &SplatPolicy,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<(Result<Outcome, RunError>, Watch, Instant), RunError> {
    let dir = run_dir()?;
    let wiring = wire(plan, gcmd, dir.path())?;
    let cmd = Cmd::new(plan.arch.qemu_binary())
        .args(qemu::argv(&wiring.cfg))
        .env("TMPDIR", dir.path())
        .grace(QEMU_GRACE);
    if print_cmd {
        progress::info(reporter, format!("qemu command: {}", cmd.display()));
    }
    let start = Instant::now();
    let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
    let qemu_stderr = collect_stderr(child.take_stderr().expect("piped stderr"));
    let pumps = start_pumps(wiring, sinks);
    let limits = Limits {
        start,
        boot_timeout: plan.boot_timeout,
        timeout,
    };
    let mut watch = Watch::new(limits, policy.clone());
    let (verdict, status) = supervise(&mut child, &pumps, &mut watch)?;
    let ended = Instant::now();
    tracing::debug!(elapsed = ?start.elapsed(), ?verdict, "run ends");
    if matches!(verdict, Verdict::GuestError(_)) {
        // Let the console catch up so the tail shows the failure.
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.terminate();
    report_splats(&watch, reporter);
    let argv = cmd.display();
    let result = conclude(
        verdict,
        status,
        &watch,
        plan,
        argv,
        &pumps.tail,
        &qemu_stderr,
    );
    Ok((result, watch, ended))
}

/// Without a command and in the foreground: lvh becomes QEMU (as
/// little-vm-helper does), so the terminal, Ctrl-A X and the exit status are
/// QEMU's. The `snapshot=on` overlay is QEMU's temporary file.
fn run_interactive(
    plan: &RunPlan,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    let cmd = qemu_cmd(plan, &std::env::temp_dir());
    if print_cmd {
        progress::info(reporter, format!("qemu command: {}", cmd.display()));
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
fn run_daemon(
    plan: &RunPlan,
    ssh_port: Option<u16>,
    ssh_timeout: Duration,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    // The pid file must outlive lvh (it is how the VM is found and stopped):
    // it goes to the system temp dir, named after lvh's pid. Those of QEMUs
    // killed from outside are removed here, by the next daemonized run.
    let piddir = std::env::temp_dir();
    super::pidfile::sweep(&piddir);
    let mut cfg = plan.qemu_config(&piddir);
    let pidfile = super::pidfile::path(&piddir, std::process::id());
    cfg.daemonize = Some(pidfile.clone());
    let cmd = Cmd::new(plan.arch.qemu_binary())
        .args(qemu::argv(&cfg))
        .die_with_parent(false)
        .timeout(plan.boot_timeout);
    if print_cmd {
        progress::info(reporter, format!("qemu command: {}", cmd.display()));
    }
    cmd.run(reporter)?;
    let pid = read_pid(&pidfile).ok_or_else(|| {
        RunError::Setup(format!(
            "QEMU daemonized but its pid file {} is unreadable",
            pidfile.display()
        ))
    })?;
    progress::info(
        reporter,
        format!(
            "QEMU is running as pid {pid} (pid file {})",
            pidfile.display()
        ),
    );
    let Some(port) = ssh_port else {
        return Ok(Outcome::Daemonized { pid });
    };
    let stage = progress::Stage::start(reporter, format!("waiting for ssh on 127.0.0.1:{port}"));
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

pub(crate) fn last_lines(p: &Path) -> Vec<String> {
    let text = std::fs::read(p).unwrap_or_default();
    let mut pending = Vec::new();
    let mut lines = channel::split_lines(&mut pending, &text);
    let n = lines.len().saturating_sub(CONSOLE_TAIL_LINES);
    lines.drain(..n);
    lines
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

    #[test]
    fn last_lines_of_a_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let text: String = (0..40).map(|i| format!("line {i}\r\n")).collect();
        std::fs::write(&p, text).unwrap();
        let l = last_lines(&p);
        assert_eq!(l.len(), CONSOLE_TAIL_LINES);
        assert_eq!(l.last().unwrap(), "line 39");
    }
}
