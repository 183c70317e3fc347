//! The interactive shell (`lvh run --kernel K --image I` at a terminal, or
//! `--shell`): lvh's init (the command channel of [`super::guest`]) starts a
//! root login shell on the serial console, with the host mount at
//! `/host/<name of the host directory>` as its working directory and the host
//! terminal's size. lvh owns the terminal: raw mode ([`super::term`]), every
//! byte to the guest (Ctrl-C included), `Ctrl-A x` to leave, window size
//! changes sent over the control port, and the console shown from the moment
//! the shell starts (boot messages only with `-v` or in the console log).
//! When the shell exits, the guest reports its status and lvh stops the VM and
//! exits with it. The decisions are [`ShellWatch::next`]'s, table-tested.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::channel::{self, ConsoleTail, Event as ConsoleEvent, StreamCount};
use super::guest::{self, ControlMsg};
use super::plan::RunPlan;
use super::qemu;
pub use super::shell_guest::*;
use super::term::{self, Escape, EscapeParser, RawMode, Resized};
use super::vm::{self, Outcome, Sinks};
use super::{RunError, CONSOLE_TAIL_LINES};
use crate::cancel::CancelToken;
use crate::exec::{Cmd, Io};
use crate::progress::{self, Reporter};

/// How often the supervisor looks at QEMU, the window size and Ctrl-C.
const TICK: Duration = Duration::from_millis(20);

/// What the pump threads tell the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellEvent {
    /// First console bytes.
    Alive,
    /// The guest script runs.
    Started,
    /// The shell is starting: show the console, send the input.
    Shell,
    /// The shell exited with this status.
    Exit(i32),
    /// lvh's guest script failed.
    GuestError(String),
    /// A console line that says the kernel panicked.
    Panic(String),
    /// The user typed the escape to leave.
    Left,
}

/// How a shell run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellEnd {
    Exit(i32),
    Left,
    GuestError(String),
    Panic(String),
    /// QEMU exited before the shell did (after the guest showed life).
    QemuExited,
    /// QEMU exited with no console output at all (it could not start).
    QemuFailed,
    NoSignOfLife,
    NotStarted,
    Interrupted,
}

/// What the supervisor knows; [`ShellWatch::next`] decides.
#[derive(Clone, Debug)]
pub struct ShellWatch {
    pub start: Instant,
    pub boot_timeout: Duration,
    pub alive: bool,
    pub shell: bool,
    pub exit: Option<i32>,
    pub error: Option<String>,
    pub panic: Option<String>,
    pub left: bool,
}

impl ShellWatch {
    pub fn new(start: Instant, boot_timeout: Duration) -> ShellWatch {
        ShellWatch {
            start,
            boot_timeout,
            alive: false,
            shell: false,
            exit: None,
            error: None,
            panic: None,
            left: false,
        }
    }

    pub fn take(&mut self, ev: ShellEvent) {
        match ev {
            ShellEvent::Alive | ShellEvent::Started => self.alive = true,
            ShellEvent::Shell => {
                self.alive = true;
                self.shell = true;
            }
            ShellEvent::Exit(c) => self.exit = self.exit.or(Some(c)),
            ShellEvent::GuestError(m) => self.error = self.error.take().or(Some(m)),
            ShellEvent::Panic(l) => self.panic = self.panic.take().or(Some(l)),
            ShellEvent::Left => self.left = true,
        }
    }

    /// The end of the run, if it has come. A panic line only ends it with
    /// QEMU's exit (`panic=-1`): shell output may quote one.
    pub fn next(&self, now: Instant, qemu_exited: bool, cancelled: bool) -> Option<ShellEnd> {
        if let Some(c) = self.exit {
            return Some(ShellEnd::Exit(c));
        }
        if self.left {
            return Some(ShellEnd::Left);
        }
        if let Some(m) = &self.error {
            return Some(ShellEnd::GuestError(m.clone()));
        }
        if cancelled {
            return Some(ShellEnd::Interrupted);
        }
        if qemu_exited {
            return Some(match (&self.panic, self.alive) {
                (Some(l), _) => ShellEnd::Panic(l.clone()),
                (None, true) => ShellEnd::QemuExited,
                (None, false) => ShellEnd::QemuFailed,
            });
        }
        if !self.shell && now.duration_since(self.start) >= self.boot_timeout {
            return Some(if self.alive {
                ShellEnd::NotStarted
            } else {
                ShellEnd::NoSignOfLife
            });
        }
        None
    }
}

/// One control line of a shell run.
fn parse_control(line: &str) -> Option<ShellEvent> {
    if line.trim_end() == SHELL_STARTED {
        return Some(ShellEvent::Shell);
    }
    match guest::parse_control(line)? {
        ControlMsg::Started => Some(ShellEvent::Started),
        ControlMsg::Exit { status, .. } => Some(ShellEvent::Exit(status)),
        ControlMsg::Error(m) => Some(ShellEvent::GuestError(m)),
        // Only a --save-state run's guest says it is saving.
        ControlMsg::Saving => None,
    }
}

/// A connected socket's write half, once QEMU has connected.
type Writer = Arc<Mutex<Option<UnixStream>>>;

fn send(w: &Writer, bytes: &[u8]) {
    if let Some(s) = w.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = s.write_all(bytes);
    }
}

/// The console: log, `-v` copy, the tail, and the terminal once the shell runs.
struct ConsolePump {
    log: Option<std::fs::File>,
    verbose: Option<Box<dyn Write + Send>>,
    out: Box<dyn Write + Send>,
    gate: Arc<AtomicBool>,
    tail: Arc<ConsoleTail>,
}

fn pump_console(
    l: std::os::unix::net::UnixListener,
    mut p: ConsolePump,
    writer: Writer,
    stop: Arc<AtomicBool>,
    tx: Sender<ShellEvent>,
) {
    std::thread::spawn(move || {
        let Some(mut s) = channel::accept(&l, &stop) else {
            return;
        };
        *writer.lock().unwrap_or_else(|e| e.into_inner()) = s.try_clone().ok();
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending = Vec::new();
        let mut alive = false;
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let b = &buf[..n];
            if !alive {
                alive = true;
                let _ = tx.send(ShellEvent::Alive);
            }
            if let Some(f) = p.log.as_mut() {
                let _ = f.write_all(b);
            }
            if let Some(v) = p.verbose.as_mut() {
                let _ = v.write_all(b).and_then(|_| v.flush());
            } else if p.gate.load(Ordering::SeqCst) {
                let _ = p.out.write_all(b).and_then(|_| p.out.flush());
            }
            for line in channel::split_lines(&mut pending, b) {
                match channel::classify_console_line(&line) {
                    Some(ConsoleEvent::Panic(l)) => {
                        let _ = tx.send(ShellEvent::Panic(l));
                    }
                    Some(ConsoleEvent::GuestError(m)) => {
                        let _ = tx.send(ShellEvent::GuestError(m));
                    }
                    _ => {}
                }
                p.tail.push(line);
            }
        }
    });
}

fn pump_control(
    l: std::os::unix::net::UnixListener,
    writer: Writer,
    gate: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tx: Sender<ShellEvent>,
) {
    std::thread::spawn(move || {
        let Some(s) = channel::accept(&l, &stop) else {
            return;
        };
        *writer.lock().unwrap_or_else(|e| e.into_inner()) = s.try_clone().ok();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        while matches!(std::io::BufRead::read_line(&mut r, &mut line), Ok(n) if n > 0) {
            if let Some(ev) = parse_control(&line) {
                if ev == ShellEvent::Shell {
                    gate.store(true, Ordering::SeqCst);
                }
                let _ = tx.send(ev);
            }
            line.clear();
        }
    });
}

/// Terminal input to the console: held until the shell starts, filtered for
/// the escape; the end of a non-terminal input sends one Ctrl-D.
fn pump_stdin(
    console: Writer,
    gate: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tx: Sender<ShellEvent>,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let mut esc = EscapeParser::default();
        let mut held: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        let mut eof = false;
        while !stop.load(Ordering::SeqCst) {
            if gate.load(Ordering::SeqCst) && !held.is_empty() {
                send(&console, &std::mem::take(&mut held));
            }
            if eof {
                std::thread::sleep(TICK);
                continue;
            }
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            if !matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(n) if n > 0) {
                continue;
            }
            let n = match nix::unistd::read(fd, &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            };
            let (bytes, escape) = if n == 0 {
                eof = true;
                (vec![0x04], None)
            } else {
                esc.feed(&buf[..n])
            };
            held.extend(bytes);
            if gate.load(Ordering::SeqCst) {
                send(&console, &std::mem::take(&mut held));
            }
            if escape == Some(Escape::Exit) {
                let _ = tx.send(ShellEvent::Left);
                return;
            }
        }
    });
}

/// Runs a shell: boots with lvh's init, hands the terminal to the guest
/// shell, and returns its exit status.
pub fn run_shell(
    plan: &RunPlan,
    g: &ShellGuest,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Result<Outcome, RunError> {
    let stdin = std::io::stdin();
    let tty = term::is_tty(stdin.as_fd());
    let info = TermInfo::new(
        std::env::var("TERM").ok().as_deref(),
        tty,
        term::window_size(stdin.as_fd()),
    );
    let dir = vm::run_dir()?;
    let cfg = plan.qemu_config(dir.path());
    let ch = cfg.channel.clone().expect("shell mode has a channel");
    let share = ch.share_dir.expect("the shell init has a control share");
    let io = |what: &str, p: &Path, e| RunError::io(format!("{what} {}", p.display()), e);
    std::fs::create_dir(&share).map_err(|e| io("create", &share, e))?;
    for (name, text) in [
        ("init", shell_script(g, plan.arch.console(), &info)),
        ("fstab", guest::fstab()),
    ] {
        let p = share.join(name);
        std::fs::write(&p, text).map_err(|e| io("write", &p, e))?;
    }
    let listen = |p: &Path| channel::listen(p).map_err(|e| io("listen on", p, e));
    let qemu::Console::Socket(console_sock) = &cfg.console else {
        unreachable!("shell mode reads the console")
    };
    let console_l = listen(console_sock)?;
    let control_l = listen(&ch.control_sock)?;
    let (out_l, err_l) = (listen(&ch.stdout_sock)?, listen(&ch.stderr_sock)?);
    let log = match &plan.console_log {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| io("create console log", p, e))?),
        None => None,
    };
    let cmd = Cmd::new(plan.arch.qemu_binary())
        .args(qemu::argv(&cfg))
        .env("TMPDIR", dir.path())
        .grace(vm::QEMU_GRACE);
    if print_cmd {
        progress::info(reporter, format!("qemu command: {}", cmd.display()));
    }
    if tty {
        progress::info(reporter, format!("shell: {}", term::ESCAPE_HELP));
    }
    let start = Instant::now();
    let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
    let qemu_stderr = vm::collect_stderr(child.take_stderr().expect("piped stderr"));

    let stop = Arc::new(AtomicBool::new(false));
    let _stop = vm::StopOnDrop(stop.clone());
    let gate = Arc::new(AtomicBool::new(false));
    let tail = Arc::new(ConsoleTail::new(CONSOLE_TAIL_LINES));
    let (console_w, control_w): (Writer, Writer) = Default::default();
    let (tx, rx) = mpsc::channel();
    let pump = ConsolePump {
        log,
        verbose: sinks.console,
        out: sinks.stdout,
        gate: gate.clone(),
        tail: tail.clone(),
    };
    pump_console(console_l, pump, console_w.clone(), stop.clone(), tx.clone());
    pump_control(
        control_l,
        control_w.clone(),
        gate.clone(),
        stop.clone(),
        tx.clone(),
    );
    let (dtx, _drx) = mpsc::channel();
    for (l, name) in [(out_l, "stdout"), (err_l, "stderr")] {
        let count = Arc::new(StreamCount::default());
        channel::pump_stream(
            l,
            name,
            Box::new(std::io::sink()),
            count,
            stop.clone(),
            dtx.clone(),
        );
    }
    let raw = if tty {
        RawMode::enter().map_err(|e| RunError::io("put the terminal in raw mode", e))?
    } else {
        None
    };
    let resized = Resized::watch().map_err(|e| RunError::io("watch SIGWINCH", e))?;
    pump_stdin(console_w, gate, stop.clone(), tx);

    let cancel = CancelToken::global();
    let mut watch = ShellWatch::new(start, plan.boot_timeout);
    let mut qemu_status = None;
    let end = loop {
        if let Ok(ev) = rx.recv_timeout(TICK) {
            for ev in std::iter::once(ev).chain(rx.try_iter()) {
                let shell_now = ev == ShellEvent::Shell;
                watch.take(ev);
                if shell_now && tty {
                    // The window may have changed during the boot.
                    resized.take();
                    if let Some(w) = term::window_size(std::io::stdin().as_fd()) {
                        send(&control_w, winsz_line(w).as_bytes());
                    }
                }
            }
        }
        if watch.shell && resized.take() {
            if let Some(w) = term::window_size(std::io::stdin().as_fd()) {
                send(&control_w, winsz_line(w).as_bytes());
            }
        }
        if qemu_status.is_none() {
            qemu_status = child
                .try_wait()
                .map_err(|e| RunError::io("wait for QEMU", e))?;
        }
        if let Some(end) = watch.next(Instant::now(), qemu_status.is_some(), cancel.is_cancelled())
        {
            break end;
        }
    };
    stop.store(true, Ordering::SeqCst);
    let _ = child.terminate();
    drop(raw);
    if tty && watch.shell {
        // The guest's last line may not end the line on the host terminal.
        let _ = std::io::stderr().write_all(b"\n");
    }
    let status = || {
        qemu_status
            .as_ref()
            .map(crate::exec::describe_status)
            .unwrap_or_default()
    };
    match end {
        ShellEnd::Exit(code) => Ok(Outcome::Command(code)),
        ShellEnd::Left => {
            progress::info(reporter, "left the shell (Ctrl-A x)");
            Err(RunError::Interrupted)
        }
        ShellEnd::Interrupted => Err(RunError::Interrupted),
        ShellEnd::GuestError(m) => Err(RunError::Guest(m)),
        ShellEnd::Panic(line) => Err(RunError::KernelPanic {
            line,
            console: tail.lines(),
        }),
        ShellEnd::QemuExited => Err(RunError::QemuExited {
            status: status(),
            console: tail.lines(),
            stderr: vm::lines_of(&qemu_stderr),
        }),
        ShellEnd::QemuFailed => Err(RunError::QemuFailed {
            argv: cmd.display(),
            status: status(),
            stderr: vm::lines_of(&qemu_stderr),
        }),
        ShellEnd::NoSignOfLife => Err(RunError::NoSignOfLife {
            after: plan.boot_timeout,
            accel: plan.accel.to_string(),
            hint: vm::no_life_hint(plan.accel),
            stderr: vm::lines_of(&qemu_stderr),
        }),
        ShellEnd::NotStarted => Err(RunError::NotStarted {
            after: plan.boot_timeout,
            console: tail.lines(),
        }),
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
