//! Starting and supervising the VM. Command mode watches QEMU, the console
//! and the guest channel together and ends the run at the first of: the
//! command's exit (after every output byte arrived), a kernel panic, a guest
//! that stays silent or never starts the command before the boot deadline,
//! QEMU exiting early, the command timeout, or Ctrl-C. The private run
//! directory (sockets, control share, and QEMU's `snapshot=on` overlay via
//! `TMPDIR`) is removed when the run ends, whatever the reason.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::accel::Accel;
use super::channel::{self, ConsoleTail, Event, StreamCount};
use super::guest::{self, ControlMsg};
use super::plan::{Mode, RunPlan};
use super::qemu;
use super::{RunError, CONSOLE_TAIL_LINES};
use crate::cancel::CancelToken;
use crate::exec::{describe_status, Cmd, Io};
use crate::progress::{self, Reporter};

/// How often the supervisor polls QEMU, deadlines and Ctrl-C.
const TICK: Duration = Duration::from_millis(5);
/// After QEMU exits, how long to wait for the console and channels to drain.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// After a panic line, how long to let QEMU finish printing and exit.
const PANIC_SETTLE: Duration = Duration::from_secs(3);
/// After the command ended, how long output may stall before lvh gives up.
const OUTPUT_STALL: Duration = Duration::from_secs(30);
/// How long QEMU gets to exit after SIGTERM at the end of a run.
const QEMU_GRACE: Duration = Duration::from_secs(5);
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
pub fn run(
    plan: &RunPlan,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    match &plan.mode {
        Mode::Command { cmd, timeout } => {
            run_command(plan, cmd, *timeout, sinks, reporter, print_cmd)
        }
        Mode::Interactive => run_interactive(plan, reporter, print_cmd),
        Mode::Daemon {
            ssh_port,
            ssh_timeout,
        } => run_daemon(plan, *ssh_port, *ssh_timeout, reporter, print_cmd),
    }
}

/// The QEMU command for `plan` with its private files in `run_dir`.
pub fn qemu_cmd(plan: &RunPlan, run_dir: &Path) -> Cmd {
    let cfg = plan.qemu_config(run_dir);
    Cmd::new(plan.arch.qemu_binary()).args(qemu::argv(&cfg))
}

fn run_dir() -> Result<tempfile::TempDir, RunError> {
    tempfile::Builder::new()
        .prefix("lvh-run-")
        .tempdir()
        .map_err(|e| RunError::io("create a run directory under $TMPDIR", e))
}

/// Keeps the last lines of QEMU's stderr.
fn collect_stderr(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<VecDeque<String>>> {
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
fn lines_of(t: &Mutex<VecDeque<String>>) -> Vec<String> {
    t.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| !l.contains("terminating on signal"))
        .cloned()
        .collect()
}

fn no_life_hint(accel: Accel) -> String {
    match accel {
        Accel::Kvm => "KVM may not work on this machine: try --accel tcg (or LVH_ACCEL=tcg)".into(),
        Accel::Tcg => {
            "check that the kernel has a serial console for this arch, or raise --boot-timeout"
                .into()
        }
    }
}

/// State the supervisor builds from channel events.
#[derive(Default)]
struct Seen {
    alive: bool,
    started: Option<Instant>,
    exit: Option<(i32, u64, u64)>,
    exit_at: Option<Instant>,
    panic: Option<String>,
    panic_at: Option<Instant>,
    guest_error: Option<String>,
    console_closed: bool,
}

impl Seen {
    fn take(&mut self, ev: Event) {
        match ev {
            Event::ConsoleAlive => self.alive = true,
            Event::Panic(l) => {
                if self.panic.is_none() {
                    self.panic = Some(l);
                    self.panic_at = Some(Instant::now());
                }
            }
            Event::GuestError(m) => {
                self.guest_error.get_or_insert(m);
            }
            Event::ConsoleClosed => self.console_closed = true,
            Event::Control(ControlMsg::Started) => {
                self.alive = true;
                self.started.get_or_insert_with(Instant::now);
            }
            Event::Control(ControlMsg::Exit {
                status,
                stdout_bytes,
                stderr_bytes,
            }) => {
                self.exit = Some((status, stdout_bytes, stderr_bytes));
                self.exit_at = Some(Instant::now());
            }
            Event::Control(ControlMsg::Error(m)) => {
                self.guest_error.get_or_insert(m);
            }
            Event::ControlClosed | Event::StreamClosed(_) => {}
        }
    }
}

fn run_command(
    plan: &RunPlan,
    gcmd: &guest::GuestCommand,
    timeout: Option<Duration>,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    let dir = run_dir()?;
    let cfg = plan.qemu_config(dir.path());
    let ch = cfg.channel.clone().expect("command mode has a channel");
    std::fs::create_dir(&ch.share_dir)
        .map_err(|e| RunError::io(format!("create {}", ch.share_dir.display()), e))?;
    let init = ch.share_dir.join("init");
    std::fs::write(&init, guest::init_script(gcmd))
        .map_err(|e| RunError::io(format!("write {}", init.display()), e))?;
    let fstab = ch.share_dir.join("fstab");
    std::fs::write(&fstab, guest::fstab())
        .map_err(|e| RunError::io(format!("write {}", fstab.display()), e))?;
    let listen = |p: &Path| {
        channel::listen(p).map_err(|e| RunError::io(format!("listen on {}", p.display()), e))
    };
    let console_path = match &cfg.console {
        qemu::Console::Socket(p) => p.clone(),
        _ => unreachable!("command mode reads the console"),
    };
    let console_l = listen(&console_path)?;
    let out_l = listen(&ch.stdout_sock)?;
    let err_l = listen(&ch.stderr_sock)?;
    let ctl_l = listen(&ch.control_sock)?;
    let log = match &plan.console_log {
        Some(p) => Some(
            std::fs::File::create(p)
                .map_err(|e| RunError::io(format!("create console log {}", p.display()), e))?,
        ),
        None => None,
    };

    let cmd = Cmd::new(plan.arch.qemu_binary())
        .args(qemu::argv(&cfg))
        .env("TMPDIR", dir.path())
        .grace(QEMU_GRACE);
    if print_cmd {
        progress::info(reporter, format!("qemu command: {}", cmd.display()));
    }
    let start = Instant::now();
    let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
    let qemu_stderr = collect_stderr(child.take_stderr().expect("piped stderr"));

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let tail = Arc::new(ConsoleTail::new(CONSOLE_TAIL_LINES));
    let out_count = Arc::new(StreamCount::default());
    let err_count = Arc::new(StreamCount::default());
    channel::pump_console(
        console_l,
        log,
        sinks.console,
        tail.clone(),
        stop.clone(),
        tx.clone(),
    );
    channel::pump_stream(
        out_l,
        "stdout",
        sinks.stdout,
        out_count.clone(),
        stop.clone(),
        tx.clone(),
    );
    channel::pump_stream(
        err_l,
        "stderr",
        sinks.stderr,
        err_count.clone(),
        stop.clone(),
        tx.clone(),
    );
    channel::pump_control(ctl_l, stop.clone(), tx);
    // Stop waiting for connections that will never come once we return.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop = StopOnDrop(stop);

    let cancel = CancelToken::global();
    let mut seen = Seen::default();
    let mut last_progress = (0u64, Instant::now());
    let boot_deadline = start + plan.boot_timeout;
    let mut qemu_status: Option<ExitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(ev) => {
                tracing::debug!(elapsed = ?start.elapsed(), event = ?ev, "guest");
                seen.take(ev);
                // Handle every queued event before judging.
                while let Ok(ev) = rx.try_recv() {
                    tracing::debug!(elapsed = ?start.elapsed(), event = ?ev, "guest");
                    seen.take(ev);
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        let now = Instant::now();

        if qemu_status.is_none() {
            match child.try_wait() {
                Ok(Some(st)) => {
                    qemu_status = Some(st);
                    exited_at = Some(now);
                }
                Ok(None) => {}
                Err(e) => return Err(RunError::io("wait for QEMU", e)),
            }
        }

        if cancel.is_cancelled() {
            let _ = child.terminate();
            return Err(RunError::Interrupted);
        }

        if let Some((status, want_out, want_err)) = seen.exit {
            let got_out = out_count.bytes.load(Ordering::SeqCst);
            let got_err = err_count.bytes.load(Ordering::SeqCst);
            if got_out >= want_out && got_err >= want_err {
                let _ = child.terminate();
                tracing::debug!(elapsed = ?start.elapsed(), "guest command done");
                return Ok(Outcome::Command(status));
            }
            if got_out + got_err != last_progress.0 {
                last_progress = (got_out + got_err, now);
            }
            let stalled = now.duration_since(last_progress.1.max(seen.exit_at.unwrap_or(now)));
            if stalled > OUTPUT_STALL || exited_at.is_some_and(|t| now - t > DRAIN_AFTER_EXIT) {
                let _ = child.terminate();
                let (stream, got, want) = if got_out < want_out {
                    ("stdout", got_out, want_out)
                } else {
                    ("stderr", got_err, want_err)
                };
                return Err(RunError::Incomplete { stream, got, want });
            }
            continue;
        }

        if let Some(msg) = &seen.guest_error {
            // Let the console catch up so the tail shows the failure.
            std::thread::sleep(Duration::from_millis(100));
            let _ = child.terminate();
            return Err(RunError::Guest(msg.clone()));
        }

        if let Some(line) = &seen.panic {
            let settled = qemu_status.is_some() && seen.console_closed;
            if settled || seen.panic_at.is_some_and(|t| now - t > PANIC_SETTLE) {
                let _ = child.terminate();
                return Err(RunError::KernelPanic {
                    line: line.clone(),
                    console: tail.lines(),
                });
            }
            continue;
        }

        if let (Some(st), Some(t)) = (qemu_status, exited_at) {
            // Give the console a moment to deliver QEMU's last words.
            if !seen.console_closed && now - t < DRAIN_AFTER_EXIT {
                continue;
            }
            let stderr = lines_of(&qemu_stderr);
            if !seen.alive && !st.success() {
                return Err(RunError::QemuFailed {
                    argv: cmd.display(),
                    status: describe_status(&st),
                    stderr,
                });
            }
            return Err(RunError::QemuExited {
                status: describe_status(&st),
                console: tail.lines(),
                stderr,
            });
        }

        if seen.started.is_none() && now >= boot_deadline {
            let _ = child.terminate();
            if !seen.alive {
                return Err(RunError::NoSignOfLife {
                    after: plan.boot_timeout,
                    accel: plan.accel.to_string(),
                    hint: no_life_hint(plan.accel),
                    stderr: lines_of(&qemu_stderr),
                });
            }
            return Err(RunError::NotStarted {
                after: plan.boot_timeout,
                console: tail.lines(),
            });
        }

        if let (Some(t), Some(started)) = (timeout, seen.started) {
            if now - started >= t {
                let _ = child.terminate();
                return Err(RunError::CommandTimeout(t));
            }
        }
    }
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
    // it goes to the system temp dir, named after lvh's pid.
    let piddir = std::env::temp_dir();
    let mut cfg = plan.qemu_config(&piddir);
    let pidfile = piddir.join(format!("lvh-qemu-{}.pid", std::process::id()));
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

fn last_lines(p: &Path) -> Vec<String> {
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
    fn an_exit_report_is_kept_and_a_later_panic_noted() {
        let mut s = Seen::default();
        s.take(Event::Control(ControlMsg::Started));
        assert!(s.alive && s.started.is_some());
        s.take(Event::Control(ControlMsg::Exit {
            status: 3,
            stdout_bytes: 1,
            stderr_bytes: 2,
        }));
        s.take(Event::Panic(
            "Kernel panic - not syncing: Attempted to kill init!".into(),
        ));
        assert_eq!(s.exit, Some((3, 1, 2)));
        assert!(s.panic.is_some());
    }

    #[test]
    fn the_first_guest_error_wins() {
        let mut s = Seen::default();
        s.take(Event::GuestError("a".into()));
        s.take(Event::Control(ControlMsg::Error("b".into())));
        assert_eq!(s.guest_error.as_deref(), Some("a"));
    }

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
