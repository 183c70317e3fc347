//! The QEMU session: one type ([`Session`]) that every run which supervises
//! QEMU uses (a command, the shell, saved VMs, bootable saves): QEMU started
//! from its configuration with its temporary files in the run directory
//! ([`rundir`]), its stderr kept, its exit and its helper daemon's
//! (virtiofsd) watched, the channels' events fed to a policy's decisions
//! ([`Session::supervise`]), and QEMU stopped at the end, whatever the reason
//! (SIGTERM, then SIGKILL after a grace period).
//! Each kind of run is a policy of it: [`command`], `debug::shell`,
//! `saved`; [`daemon`] covers the runs lvh does not supervise.

pub mod channel;
pub mod command;
pub mod config;
pub mod daemon;
pub mod memory;
pub mod pidfile;
pub mod qemu;
pub mod qmp;
pub mod rundir;
pub mod seed;
pub mod virtiofsd;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::arch::Arch;
use crate::cancel::CancelToken;
use crate::exec::{describe_status, Child, Cmd, Io};
use crate::progress::{self, Reporter};
use crate::runner::error::RunError;
use crate::runner::plan::accel::Accel;
use crate::runner::verdict::Event;
use channel::ConsoleTail;

/// How long QEMU gets to exit after SIGTERM at the end of a run.
pub const QEMU_GRACE: Duration = Duration::from_secs(5);
/// Stderr lines kept of QEMU and virtiofsd, for error messages.
const STDERR_LINES: usize = 15;
/// How long an error about a dead child waits for the rest of its stderr.
pub(crate) const STDERR_DRAIN: Duration = Duration::from_millis(500);

/// What every run shares: how to report, and whether to show QEMU's command.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub reporter: &'a dyn Reporter,
    /// Report the QEMU command line before starting it (`-v`).
    pub print_cmd: bool,
}

/// A running QEMU.
pub struct Session {
    child: Child,
    /// The command line, for errors.
    pub argv: String,
    stderr: StderrTail,
    /// When QEMU started.
    pub start: Instant,
    /// QEMU's exit, once seen, and when lvh noticed.
    exit: Option<(ExitStatus, Instant)>,
    /// virtiofsd, stopped after QEMU (fields drop in order).
    daemon: Option<virtiofsd::Daemon>,
    /// The daemon's exit, once seen, and when lvh noticed.
    daemon_exit: Option<(ExitStatus, Instant)>,
}

/// What the supervision loop sees at each tick.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub at: Instant,
    /// QEMU's exit and when lvh noticed it.
    pub qemu_exit: Option<(ExitStatus, Instant)>,
    /// The helper daemon's exit and when lvh noticed it (looked at just
    /// before QEMU, with the same time when both are seen in one poll).
    pub daemon_exit: Option<(ExitStatus, Instant)>,
    pub cancelled: bool,
}

impl Now {
    /// QEMU's exit as the verdict sees it: whether it succeeded, and when.
    pub fn qemu_ended(&self) -> Option<(bool, Instant)> {
        self.qemu_exit.map(|(st, at)| (st.success(), at))
    }

    /// The helper daemon's exit as the verdict sees it.
    pub fn daemon_ended(&self) -> Option<(bool, Instant)> {
        self.daemon_exit.map(|(st, at)| (st.success(), at))
    }
}

impl Session {
    /// Starts QEMU for `arch` with `argv`; its temporary files (the
    /// `snapshot=on` overlay) go to `tmp`.
    pub fn start(arch: Arch, argv: Vec<String>, tmp: &Path, ctx: Ctx) -> Result<Session, RunError> {
        let cmd = Cmd::new(arch.qemu_binary())
            .args(argv)
            .env("TMPDIR", tmp)
            .grace(QEMU_GRACE);
        if ctx.print_cmd {
            progress::info(ctx.reporter, format!("qemu command: {}", cmd.display()));
        }
        let start = Instant::now();
        let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
        let stderr = StderrTail::collect(child.take_stderr().expect("piped stderr"), "qemu");
        Ok(Session {
            child,
            argv: cmd.display(),
            stderr,
            start,
            exit: None,
            daemon: None,
            daemon_exit: None,
        })
    }

    /// Keeps `daemon` (started before QEMU) until the session ends.
    pub fn with_daemon(mut self, daemon: Option<virtiofsd::Daemon>) -> Session {
        self.daemon = daemon;
        self
    }

    /// QEMU's exit status, once it exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, RunError> {
        self.poll_qemu(Instant::now())?;
        Ok(self.exit.map(|(st, _)| st))
    }

    fn poll_qemu(&mut self, at: Instant) -> Result<(), RunError> {
        if self.exit.is_none() {
            if let Some(st) = self
                .child
                .try_wait()
                .map_err(|e| RunError::io("wait for QEMU", e))?
            {
                self.exit = Some((st, at));
            }
        }
        Ok(())
    }

    /// One look at both children: the daemon first, so that a daemon which
    /// exited because QEMU did is seen with QEMU's exit, not before it.
    fn poll(&mut self) -> Result<(), RunError> {
        let at = Instant::now();
        if let (Some(d), None) = (self.daemon.as_mut(), self.daemon_exit) {
            if let Some(st) = d
                .try_wait()
                .map_err(|e| RunError::io(format!("wait for {}", virtiofsd::NAME), e))?
            {
                self.daemon_exit = Some((st, at));
            }
        }
        self.poll_qemu(at)
    }

    /// Whether QEMU still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.exited(), Ok(None))
    }

    /// QEMU's exit as a status text ("" while it runs).
    pub fn status_text(&self) -> String {
        self.exit
            .as_ref()
            .map(|(st, _)| describe_status(st))
            .unwrap_or_default()
    }

    /// QEMU's last stderr lines, without the note it prints when lvh stops it.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .into_iter()
            .filter(|l| !l.contains("terminating on signal"))
            .collect()
    }

    /// Stops QEMU: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&mut self) {
        let _ = self.child.terminate();
    }

    /// The supervision loop: every `tick` (or as soon as an event arrives)
    /// the queued events go to `take`, then `next` decides, from what it took
    /// and what the loop sees, whether the run ends (and how).
    pub fn supervise<T>(
        &mut self,
        rx: &Receiver<Event>,
        tick: Duration,
        mut take: impl FnMut(Event, Instant),
        mut next: impl FnMut(&Now) -> Option<T>,
    ) -> Result<T, RunError> {
        let cancel = CancelToken::global();
        loop {
            if let Ok(ev) = rx.recv_timeout(tick) {
                // Take every queued event before judging.
                for ev in std::iter::once(ev).chain(rx.try_iter()) {
                    tracing::debug!(elapsed = ?self.start.elapsed(), event = ?ev, "guest");
                    take(ev, Instant::now());
                }
            }
            self.poll()?;
            let now = Now {
                at: Instant::now(),
                qemu_exit: self.exit,
                daemon_exit: self.daemon_exit,
                cancelled: cancel.is_cancelled(),
            };
            if let Some(end) = next(&now) {
                return Ok(end);
            }
        }
    }

    /// QEMU exited with no sign of the guest at all: it could not start.
    pub fn failed(&self) -> RunError {
        RunError::QemuFailed {
            argv: self.argv.clone(),
            status: self.status_text(),
            stderr: self.stderr_lines(),
        }
    }

    /// The guest was silent until the boot deadline.
    pub fn no_sign_of_life(&self, after: Duration, accel: Accel) -> RunError {
        RunError::NoSignOfLife {
            after,
            accel: accel.to_string(),
            hint: no_life_hint(accel),
            stderr: self.stderr_lines(),
        }
    }

    /// The helper daemon exited while QEMU ran (see
    /// [`crate::runner::verdict::daemon_failed_first`]); `console` is the
    /// guest's last words.
    pub fn daemon_died(&self, console: Vec<String>) -> RunError {
        let (what, stderr) = match &self.daemon {
            Some(d) => (d.what(), d.stderr_lines(STDERR_DRAIN)),
            None => (virtiofsd::NAME.to_string(), vec![]),
        };
        RunError::DaemonDied {
            what,
            status: self
                .daemon_exit
                .map(|(st, _)| describe_status(&st))
                .unwrap_or_else(|| "exited".into()),
            stderr,
            console,
        }
    }

    /// QEMU exited before the guest finished; `console` is its last words.
    pub fn exited_early(&self, console: Vec<String>) -> RunError {
        RunError::QemuExited {
            status: self.status_text(),
            console,
            stderr: self.stderr_lines(),
        }
    }
}

/// The last lines of a child's stderr (QEMU's, virtiofsd's), kept by a
/// reader thread.
pub(crate) struct StderrTail {
    lines: Arc<ConsoleTail>,
    reader: JoinHandle<()>,
}

impl StderrTail {
    /// Starts keeping the last lines of `r`, logged as `target`'s.
    pub(crate) fn collect(r: impl std::io::Read + Send + 'static, target: &'static str) -> Self {
        let lines = Arc::new(ConsoleTail::new(STDERR_LINES));
        let t = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(child = target, "{line}");
                t.push(line);
            }
        });
        StderrTail { lines, reader }
    }

    /// The lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lines()
    }

    /// The lines once the stream ended (a dead child's last words), or
    /// those there are after `wait`.
    pub(crate) fn last_lines(&self, wait: Duration) -> Vec<String> {
        let end = Instant::now() + wait;
        while !self.reader.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.lines()
    }
}

/// What to try when a guest shows no sign of life.
pub fn no_life_hint(accel: Accel) -> String {
    match accel {
        Accel::Kvm => "KVM may not work on this machine: try --accel tcg (or LVH_ACCEL=tcg)".into(),
        Accel::Tcg => {
            "check that the kernel has a serial console for this arch, or raise --boot-timeout"
                .into()
        }
    }
}
