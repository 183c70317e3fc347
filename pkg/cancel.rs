//! Ctrl-C handling shared by every long operation.
//!
//! The first SIGINT/SIGTERM/SIGHUP sets the global [`CancelToken`]: every wait in
//! [`crate::exec`] notices it, stops its child politely (SIGTERM, grace period,
//! SIGKILL) and returns an "interrupted" error, so callers unwind and their drop
//! guards remove temporary files. A second signal SIGKILLs every child process
//! group still registered and exits at once with [`crate::error::ExitCode::Interrupted`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A flag that says "stop what you are doing"; cheap to clone and to poll.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, independent token (for tests and scoped operations).
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide token that the signal handler sets.
    pub fn global() -> CancelToken {
        static GLOBAL: OnceLock<CancelToken> = OnceLock::new();
        GLOBAL.get_or_init(CancelToken::new).clone()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early (and returning true) if cancelled.
    pub fn sleep(&self, d: Duration) -> bool {
        let step = Duration::from_millis(20);
        let end = std::time::Instant::now() + d;
        loop {
            if self.is_cancelled() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep(step.min(end - now));
        }
    }
}

fn groups() -> &'static Mutex<HashSet<i32>> {
    static GROUPS: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    GROUPS.get_or_init(Default::default)
}

/// Keeps a child's process group on the list that a second Ctrl-C kills (and
/// that the [`crate::exec::sentinel`] kills if lvh dies without cleaning up).
#[derive(Debug)]
pub struct GroupRegistration(i32);

impl GroupRegistration {
    pub fn new(pgid: i32) -> Self {
        groups()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
        crate::exec::sentinel::watch(pgid);
        GroupRegistration(pgid)
    }
}

impl Drop for GroupRegistration {
    fn drop(&mut self) {
        groups()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
        crate::exec::sentinel::unwatch(self.0);
    }
}

static SIGNALS_SEEN: AtomicUsize = AtomicUsize::new(0);

/// Installs the two-stage interrupt handler. Call once, early, from the binary.
/// `on_first` runs (on the handler thread) when the first signal arrives, for a
/// message such as "stopping, press Ctrl-C again to kill".
pub fn install_handler(on_first: impl Fn() + Send + 'static) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("lvh-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if SIGNALS_SEEN.fetch_add(1, Ordering::SeqCst) == 0 {
                    CancelToken::global().cancel();
                    on_first();
                } else {
                    kill_all_groups();
                    exit_now(crate::error::ExitCode::Interrupted.code());
                }
            }
        })?;
    Ok(())
}

/// Ends the process at once, without its exit handlers: other threads may be
/// inside C libraries right now (a libguestfs call, OpenSSL), whose `atexit`
/// cleanup would free the state those threads are using. stdout is flushed
/// first; stderr is unbuffered.
fn exit_now(code: i32) -> ! {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: _exit only ends the process: no handler runs, nothing is freed,
    // so no other thread's state can be torn down under it.
    unsafe { libc::_exit(code) }
}

/// SIGKILLs every registered child process group.
pub fn kill_all_groups() {
    let list: Vec<i32> = groups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    for pgid in list {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sleep_wakes_when_cancelled() {
        let t = CancelToken::new();
        let t2 = t.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            t2.cancel();
        });
        let start = std::time::Instant::now();
        assert!(t.sleep(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(2));
        h.join().unwrap();
    }

    #[test]
    fn token_sleep_runs_out() {
        assert!(!CancelToken::new().sleep(Duration::from_millis(30)));
    }
}
