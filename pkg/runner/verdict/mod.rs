//! How a run ends, decided without QEMU, sockets or clocks: the command-mode
//! supervisor's decisions as a pure state machine ([`Watch`]): what the
//! channel threads reported so far ([`Event`]s, [`Watch::take`]) and what the
//! loop sees at each tick (QEMU's exit, a helper daemon's exit, output byte
//! counts, Ctrl-C, the time) give the next action: keep waiting, or stop with a [`Verdict`]. Beside it:
//! the splats (triage's crash reports, and taints: [`splat`]) and their
//! allowlist ([`allow`]), the run's outcome ([`outcome`]) and its JSON form
//! ([`result`]). The session moves bytes and
//! maps verdicts to outcomes and errors.

pub mod allow;
pub mod outcome;
pub mod result;
pub mod splat;

use std::time::{Duration, Instant};

use crate::runner::guest::ControlMsg;
use allow::{SplatMode, SplatPolicy};
use splat::Splat;

/// What the channel threads tell the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first bytes on the console: the kernel is alive.
    ConsoleAlive,
    /// A console line that says the kernel panicked.
    Panic(String),
    /// A console line from lvh's guest init saying what failed.
    GuestError(String),
    /// The kernel's release, from its `Linux version` banner.
    KernelRelease(String),
    /// A splat started on the console; its trace is still being printed.
    SplatBegan,
    /// A splat whose trace ended (or was cut by the end of the console).
    Splat(Splat),
    /// The console socket closed (QEMU exited).
    ConsoleClosed,
    Control(ControlMsg),
    ControlClosed,
    /// A command output stream closed.
    StreamClosed(&'static str),
}

/// After QEMU exits, how long to wait for the console and channels to drain.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// After a panic line, how long to let QEMU finish printing and exit.
pub const PANIC_SETTLE: Duration = Duration::from_secs(3);
/// After the command ended, how long output may stall before lvh gives up.
pub const OUTPUT_STALL: Duration = Duration::from_secs(30);
/// After the command ended, how long a splat still being printed may take to end.
pub const SPLAT_SETTLE: Duration = Duration::from_secs(3);

/// The deadlines of one run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// When QEMU started.
    pub start: Instant,
    /// The guest must start the command within this.
    pub boot_timeout: Duration,
    /// The command must end within this once started.
    pub timeout: Option<Duration>,
}

/// What the guest reported when the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitReport {
    pub status: i32,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// `/proc/sys/kernel/tainted` before and after the command, if readable.
    pub taint: Option<(u64, u64)>,
}

/// What the loop observes at one tick.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    pub now: Instant,
    /// QEMU's exit: whether it succeeded, and when lvh noticed.
    pub qemu_exit: Option<(bool, Instant)>,
    /// A helper daemon's exit (virtiofsd): whether it succeeded, and when
    /// lvh noticed (in the same poll as QEMU's, see [`daemon_failed_first`]).
    pub daemon_exit: Option<(bool, Instant)>,
    /// Command output bytes forwarded so far.
    pub out_bytes: u64,
    pub err_bytes: u64,
    pub cancelled: bool,
}

/// How a run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The command exited with this status, every byte arrived, no splat failed the run.
    Done(i32),
    /// Splats failed the run (see [`Watch::failing`]); the command's status, if it ended.
    Splat(Option<i32>),
    Interrupted,
    /// The command ended but a stream stopped short.
    Incomplete {
        stream: &'static str,
        got: u64,
        want: u64,
    },
    GuestError(String),
    Panic(String),
    /// QEMU exited unsuccessfully before the guest showed any life.
    QemuFailed,
    /// QEMU exited before the command finished.
    QemuExited,
    /// A helper daemon of the run (virtiofsd) exited while QEMU ran: the
    /// guest would wait on it forever.
    DaemonDied,
    NoSignOfLife,
    NotStarted,
    Timeout(Duration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Wait,
    Stop(Verdict),
}

/// A splat seen during the run and the allowlist entry that covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenSplat {
    pub splat: Splat,
    /// (1-based entry, reason) of the covering allowlist entry.
    pub allowed: Option<(usize, String)>,
}

/// Everything the channel threads reported, and the run's rules.
#[derive(Debug)]
pub struct Watch {
    pub limits: Limits,
    pub policy: SplatPolicy,
    pub alive: bool,
    pub started: Option<Instant>,
    pub exit: Option<ExitReport>,
    pub exit_at: Option<Instant>,
    pub panic: Option<String>,
    panic_at: Option<Instant>,
    pub guest_error: Option<String>,
    pub console_closed: bool,
    pub kernel_release: Option<String>,
    /// Splats in the order they completed (the taint splat last).
    pub splats: Vec<SeenSplat>,
    /// A splat has started on the console and its trace has not ended.
    splat_open: bool,
    taint_checked: bool,
    /// Output bytes at the last change, and when it changed.
    progress: (u64, Option<Instant>),
}

impl Watch {
    pub fn new(limits: Limits, policy: SplatPolicy) -> Watch {
        Watch {
            limits,
            policy,
            alive: false,
            started: None,
            exit: None,
            exit_at: None,
            panic: None,
            panic_at: None,
            guest_error: None,
            console_closed: false,
            kernel_release: None,
            splats: Vec::new(),
            splat_open: false,
            taint_checked: false,
            progress: (0, None),
        }
    }

    /// Records one event from the channel threads, arrived at `now`.
    pub fn take(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::ConsoleAlive => self.alive = true,
            Event::Panic(l) => {
                if self.panic.is_none() {
                    self.panic = Some(l);
                    self.panic_at = Some(now);
                }
            }
            Event::GuestError(m) | Event::Control(ControlMsg::Error(m)) => {
                self.guest_error.get_or_insert(m);
            }
            Event::ConsoleClosed => {
                self.console_closed = true;
                self.splat_open = false;
            }
            Event::KernelRelease(r) => {
                self.kernel_release.get_or_insert(r);
            }
            Event::SplatBegan => self.splat_open = self.policy.mode != SplatMode::Off,
            Event::Splat(s) => {
                self.splat_open = false;
                self.add_splat(s);
            }
            Event::Control(ControlMsg::Started) => {
                self.alive = true;
                self.started.get_or_insert(now);
            }
            Event::Control(ControlMsg::Exit {
                status,
                stdout_bytes,
                stderr_bytes,
                taint,
            }) => {
                self.exit = Some(ExitReport {
                    status,
                    stdout_bytes,
                    stderr_bytes,
                    taint,
                });
                self.exit_at = Some(now);
            }
            Event::ControlClosed
            | Event::StreamClosed(_)
            | Event::Control(ControlMsg::Saving | ControlMsg::Shell) => {}
        }
    }

    fn add_splat(&mut self, splat: Splat) {
        if self.policy.mode == SplatMode::Off {
            return;
        }
        let allowed = self
            .policy
            .allowed_by(&splat)
            .map(|e| (e.index, e.reason.clone()));
        self.splats.push(SeenSplat { splat, allowed });
    }

    /// The splats that fail the run: not allowed, in `--splat fail` mode. A
    /// panic is not among them (it has its own verdict and exit code), nor
    /// an OOM kill.
    pub fn failing(&self) -> Vec<&Splat> {
        if self.policy.mode != SplatMode::Fail {
            return vec![];
        }
        self.splats
            .iter()
            .filter(|s| s.allowed.is_none() && s.splat.kind.fails_run())
            .map(|s| &s.splat)
            .collect()
    }

    /// A taint that appeared during the command counts as a splat when the
    /// console showed none (a splat explains its own taint).
    fn check_taint(&mut self) {
        if self.taint_checked {
            return;
        }
        self.taint_checked = true;
        let Some((before, after)) = self.exit.and_then(|e| e.taint) else {
            return;
        };
        if self.splats.is_empty() {
            if let Some(s) = splat::taint_splat(before, after) {
                self.add_splat(s);
            }
        }
    }

    /// The next action at `t`.
    pub fn next(&mut self, t: &Tick) -> Action {
        let got = t.out_bytes + t.err_bytes;
        if self.progress.1.is_none() || got != self.progress.0 {
            self.progress = (got, Some(t.now));
        }
        if t.cancelled {
            return Action::Stop(Verdict::Interrupted);
        }
        if let Some(e) = self.exit {
            return self.after_exit(e, t);
        }
        if let Some(msg) = &self.guest_error {
            return Action::Stop(Verdict::GuestError(msg.clone()));
        }
        if let Some(line) = &self.panic {
            let settled = t.qemu_exit.is_some() && self.console_closed;
            if settled || self.panic_at.is_some_and(|p| t.now - p > PANIC_SETTLE) {
                return Action::Stop(Verdict::Panic(line.clone()));
            }
            return Action::Wait;
        }
        // A stuck CPU or task may keep the command from ever ending.
        if self.failing().iter().any(|s| s.kind.is_stuck()) {
            return Action::Stop(Verdict::Splat(None));
        }
        if daemon_failed_first(t.daemon_exit, t.qemu_exit) {
            return Action::Stop(Verdict::DaemonDied);
        }
        if let Some((ok, at)) = t.qemu_exit {
            // Give the console a moment to deliver QEMU's last words.
            if !self.console_closed && t.now - at < DRAIN_AFTER_EXIT {
                return Action::Wait;
            }
            if !self.alive && !ok {
                return Action::Stop(Verdict::QemuFailed);
            }
            return Action::Stop(Verdict::QemuExited);
        }
        if self.started.is_none() && t.now >= self.limits.start + self.limits.boot_timeout {
            return Action::Stop(if self.alive {
                Verdict::NotStarted
            } else {
                Verdict::NoSignOfLife
            });
        }
        if let (Some(limit), Some(started)) = (self.limits.timeout, self.started) {
            if t.now - started >= limit {
                return Action::Stop(Verdict::Timeout(limit));
            }
        }
        Action::Wait
    }

    fn after_exit(&mut self, e: ExitReport, t: &Tick) -> Action {
        let exit_at = self.exit_at.unwrap_or(t.now);
        if t.out_bytes >= e.stdout_bytes && t.err_bytes >= e.stderr_bytes {
            // A splat the command caused may still be printing.
            if self.splat_open && t.now - exit_at < SPLAT_SETTLE && !self.console_closed {
                return Action::Wait;
            }
            if self.policy.mode != SplatMode::Off {
                self.check_taint();
            }
            if self.failing().is_empty() {
                return Action::Stop(Verdict::Done(e.status));
            }
            return Action::Stop(Verdict::Splat(Some(e.status)));
        }
        let last = self.progress.1.unwrap_or(t.now).max(exit_at);
        let drained = t
            .qemu_exit
            .is_some_and(|(_, at)| t.now - at > DRAIN_AFTER_EXIT);
        if t.now - last > OUTPUT_STALL || drained {
            let (stream, got, want) = if t.out_bytes < e.stdout_bytes {
                ("stdout", t.out_bytes, e.stdout_bytes)
            } else {
                ("stderr", t.err_bytes, e.stderr_bytes)
            };
            return Action::Stop(Verdict::Incomplete { stream, got, want });
        }
        Action::Wait
    }

    /// Time from QEMU's start to the command's start.
    pub fn boot_time(&self) -> Option<Duration> {
        self.started.map(|s| s - self.limits.start)
    }

    /// Time the command ran (until `end` if it did not report its exit).
    pub fn command_time(&self, end: Instant) -> Option<Duration> {
        let s = self.started?;
        Some(self.exit_at.unwrap_or(end).saturating_duration_since(s))
    }
}

/// Whether a helper daemon's exit ends the run as its own failure, from
/// both exits (success, when noticed; lvh looks at the daemon first and
/// stamps both with the poll's time). It does while QEMU runs, and when lvh
/// saw it before QEMU's exit. Seen together, QEMU's exit explains a daemon
/// that ended cleanly (virtiofsd exits when QEMU hangs up), not one that
/// failed or was killed. Seen after QEMU's, it is QEMU's story.
pub fn daemon_failed_first(daemon: Option<(bool, Instant)>, qemu: Option<(bool, Instant)>) -> bool {
    match (daemon, qemu) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some((ok, d)), Some((_, q))) => d < q || (d == q && !ok),
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
