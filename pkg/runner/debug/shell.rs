//! The interactive shell (`lvh run --kernel K --image I` at a terminal, or
//! `--shell`), a policy of the QEMU session: lvh's shell init (the shell
//! step of the guest's plan) starts a root login shell on the serial console, with the host mount at
//! `/host/<name of the host directory>` as its working directory and the host
//! terminal's size. lvh owns the terminal: raw mode ([`super::term`]), every
//! byte to the guest (Ctrl-C included), `Ctrl-A x` to leave, window size
//! changes sent over the control port, and the console shown from the moment
//! the shell starts (boot messages only with `-v` or in the console log).
//! Once the shell runs, only kernel errors and worse reach the console
//! (`steps::QUIET_LOGLEVEL`), unless `-v`: a late kernel notice does not land
//! in the middle of what the user types, and a panic still shows.
//! When the shell exits, the guest reports its status and lvh stops the VM and
//! exits with it. The decisions are [`ShellWatch::next`]'s, table-tested.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::term::{self, Escape, EscapeParser, RawMode, Resized};
use crate::progress;
use crate::runner::error::RunError;
use crate::runner::guest::steps::{self, ShellGuest, Terminal};
use crate::runner::guest::{shell_init, ControlMsg, HostMsg};
use crate::runner::plan::decision::RunPlan;
use crate::runner::session::channel::{self, ControlWriter, Sinks};
use crate::runner::session::rundir::RunDir;
use crate::runner::session::{config, qemu, virtiofsd, Ctx, Now, Session};
use crate::runner::verdict::outcome::Outcome;
use crate::runner::verdict::{daemon_failed_first, Event};

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
    /// virtiofsd exited while QEMU ran (the host mount is gone).
    DaemonDied,
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
    /// QEMU's exit (`panic=-1`): shell output may quote one. `daemon_died`:
    /// virtiofsd exited first (`verdict::daemon_failed_first`).
    pub fn next(
        &self,
        now: Instant,
        qemu_exited: bool,
        daemon_died: bool,
        cancelled: bool,
    ) -> Option<ShellEnd> {
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
        if daemon_died {
            return Some(ShellEnd::DaemonDied);
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

/// What a channel event means to a shell run.
fn shell_event(ev: Event) -> Option<ShellEvent> {
    match ev {
        Event::ConsoleAlive => Some(ShellEvent::Alive),
        Event::Panic(l) => Some(ShellEvent::Panic(l)),
        Event::GuestError(m) | Event::Control(ControlMsg::Error(m)) => {
            Some(ShellEvent::GuestError(m))
        }
        Event::Control(ControlMsg::Started) => Some(ShellEvent::Started),
        Event::Control(ControlMsg::Shell) => Some(ShellEvent::Shell),
        Event::Control(ControlMsg::Exit { status, .. }) => Some(ShellEvent::Exit(status)),
        _ => None,
    }
}

/// Terminal input to the console: held until the shell starts, filtered for
/// the escape; the end of a non-terminal input sends one Ctrl-D.
fn pump_stdin(
    console: ControlWriter,
    gate: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    left: Sender<()>,
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
                channel::send(&console, &std::mem::take(&mut held));
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
                channel::send(&console, &std::mem::take(&mut held));
            }
            if escape == Some(Escape::Exit) {
                let _ = left.send(());
                return;
            }
        }
    });
}

/// Sends the terminal's size to the guest's reader.
fn send_size(control: &ControlWriter) {
    if let Some(w) = term::window_size(std::io::stdin().as_fd()) {
        channel::send(
            control,
            &HostMsg::Winsz {
                rows: w.rows,
                cols: w.cols,
            }
            .encode(),
        );
    }
}

/// Runs a shell: boots with lvh's init, hands the terminal to the guest
/// shell, and returns its exit status.
pub fn run_shell(
    plan: &RunPlan,
    g: &ShellGuest,
    sinks: Sinks,
    ctx: Ctx,
) -> Result<Outcome, RunError> {
    let stdin = std::io::stdin();
    let tty = term::is_tty(stdin.as_fd());
    let terminal = Terminal::new(
        std::env::var("TERM").ok().as_deref(),
        tty,
        term::window_size(stdin.as_fd()).map(|w| (w.rows, w.cols)),
    );
    let dir = RunDir::new()?;
    // Without -v (no console sink), kernel messages stay off the shell.
    let quiet = sinks.console.is_none();
    let f = shell_init::render(&steps::shell(g, plan.arch.console(), &terminal, quiet));
    dir.write_share(&[
        (shell_init::INIT_FILE, f.init.as_bytes()),
        (shell_init::FSTAB_FILE, f.fstab.as_bytes()),
    ])?;
    let mut cfg = config::qemu_config(plan, dir.path());
    let (listeners, log) = dir.channels(plan.console_log.as_deref())?;
    let daemon = virtiofsd::start(&mut cfg, plan.virtiofs())?;
    let mut session =
        Session::start(plan.arch, qemu::argv(&cfg), dir.path(), ctx)?.with_daemon(daemon);
    if tty {
        progress::info(ctx.reporter, format!("shell: {}", term::ESCAPE_HELP));
    }
    let pumps = channel::start(listeners, log, sinks, true);
    let raw = if tty {
        RawMode::enter().map_err(|e| RunError::io("put the terminal in raw mode", e))?
    } else {
        None
    };
    let resized = Resized::watch().map_err(|e| RunError::io("watch SIGWINCH", e))?;
    let (left_tx, left_rx) = mpsc::channel();
    pump_stdin(
        pumps.console.clone(),
        pumps.shell.clone(),
        pumps.stop.clone(),
        left_tx,
    );
    let watch = RefCell::new(ShellWatch::new(session.start, plan.boot_timeout));
    let end = session.supervise(
        &pumps.rx,
        TICK,
        |ev, _| {
            let Some(ev) = shell_event(ev) else { return };
            let shell_now = ev == ShellEvent::Shell;
            watch.borrow_mut().take(ev);
            if shell_now && tty {
                // The window may have changed during the boot.
                resized.take();
                send_size(&pumps.control);
            }
        },
        |now: &Now| {
            let mut w = watch.borrow_mut();
            if left_rx.try_recv().is_ok() {
                w.take(ShellEvent::Left);
            }
            if w.shell && resized.take() {
                send_size(&pumps.control);
            }
            let daemon_died = daemon_failed_first(now.daemon_ended(), now.qemu_ended());
            w.next(now.at, now.qemu_exit.is_some(), daemon_died, now.cancelled)
        },
    )?;
    pumps.stop.store(true, Ordering::SeqCst);
    session.stop();
    drop(raw);
    if tty && watch.borrow().shell {
        // The guest's last line may not end the line on the host terminal.
        let _ = std::io::stderr().write_all(b"\n");
    }
    let tail = &pumps.tail;
    match end {
        ShellEnd::Exit(code) => Ok(Outcome::Command(code)),
        ShellEnd::Left => {
            progress::info(ctx.reporter, "left the shell (Ctrl-A x)");
            Err(RunError::Interrupted)
        }
        ShellEnd::Interrupted => Err(RunError::Interrupted),
        ShellEnd::GuestError(m) => Err(RunError::Guest(m)),
        ShellEnd::Panic(line) => Err(RunError::KernelPanic {
            line,
            console: tail.lines(),
        }),
        ShellEnd::QemuExited => Err(session.exited_early(tail.lines())),
        ShellEnd::QemuFailed => Err(session.failed()),
        ShellEnd::DaemonDied => Err(session.daemon_died(tail.lines())),
        ShellEnd::NoSignOfLife => Err(session.no_sign_of_life(plan.boot_timeout, plan.accel)),
        ShellEnd::NotStarted => Err(RunError::NotStarted {
            after: plan.boot_timeout,
            console: tail.lines(),
        }),
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
