//! The guard of a running child: its own process group, stopped (SIGTERM,
//! grace period, SIGKILL) and reaped when the guard is dropped.

use std::io;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::cancel::{CancelToken, GroupRegistration};

/// How often waits poll the child, the deadline and the cancel token.
pub(super) const POLL: Duration = Duration::from_millis(10);

/// A running child in its own process group. Dropping it stops the whole group
/// (SIGTERM, grace period, SIGKILL) unless it was [`Child::detach`]ed.
#[derive(Debug)]
pub struct Child {
    pub(super) inner: std::process::Child,
    pub(super) argv: String,
    pub(super) grace: Duration,
    pub(super) status: Option<ExitStatus>,
    pub(super) detached: bool,
    pub(super) _reg: GroupRegistration,
}

impl Child {
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    pub fn argv(&self) -> &str {
        &self.argv
    }

    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.inner.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// The exit status if the child has exited (reaps it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.inner.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits for exit until `deadline`, returning `None` if it passed or `cancel` was set.
    pub fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        cancel: &CancelToken,
    ) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if cancel.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `sig` to the child's whole process group (errors such as "no such
    /// group" are ignored: the group is already gone).
    pub fn kill_group(&self, sig: Signal) {
        let _ = killpg(Pid::from_raw(self.inner.id() as i32), sig);
    }

    /// Stops the group politely, then forcefully after the grace period, and reaps the child.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.try_wait()? {
            self.kill_group(Signal::SIGKILL);
            return Ok(st);
        }
        self.kill_group(Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        // Most children are gone within milliseconds of SIGTERM: look early
        // and often first, then every POLL.
        let mut pause = Duration::from_millis(1);
        while Instant::now() < deadline {
            if let Some(st) = self.try_wait()? {
                self.kill_group(Signal::SIGKILL);
                return Ok(st);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(POLL);
        }
        tracing::debug!(argv = %self.argv, "grace period over, sending SIGKILL");
        self.kill_group(Signal::SIGKILL);
        let st = self.inner.wait()?;
        self.status = Some(st);
        Ok(st)
    }

    /// Leaves the child running after the guard is gone (for `--daemonize`).
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.detached {
            let _ = self.terminate();
        }
    }
}
