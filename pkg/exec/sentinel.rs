//! The sentinel: a small process that outlives lvh just long enough to SIGKILL
//! the child process groups lvh still had when it died without cleaning up
//! (SIGKILL, an abort).
//!
//! `PR_SET_PDEATHSIG` (set on every child by [`super::Cmd`]) only reaches the
//! direct child; what it started (make's compilers, mmdebstrap's apt and dpkg)
//! would run on, orphaned. So the binary re-executes itself once, lazily, as the
//! sentinel ([`ENV`] set), in its own process group and with one end of a socket
//! pair as stdin; lvh keeps the other end (close-on-exec, so no child holds it).
//! lvh tells the sentinel each group it starts (`+PGID`) and reaps (`-PGID`).
//! When lvh's end closes, however lvh ended, the sentinel SIGKILLs every group
//! still listed and exits. After a clean exit the list is empty.
//!
//! Only the binary arms it ([`init`]): library tests, which are not lvh, never
//! start a sentinel.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

/// Set in the sentinel's environment: the process is a sentinel, not a command.
pub const ENV: &str = "LVH_SENTINEL";

/// The executable to start as the sentinel, once [`init`] armed it.
static EXE: OnceLock<PathBuf> = OnceLock::new();

/// lvh's end of the link, started on the first registered group.
enum Link {
    NotStarted,
    Up(UnixStream),
    /// Could not start, or the sentinel is gone: PDEATHSIG is all there is.
    Down,
}

static LINK: Mutex<Link> = Mutex::new(Link::NotStarted);

/// Called first thing by the binary. In a sentinel process (see [`ENV`]) it
/// serves and exits; otherwise it arms starting one on the first child.
pub fn init() {
    if std::env::var_os(ENV).is_some() {
        serve();
    }
    // /proc/self/exe still works when the binary was replaced or deleted.
    let _ = EXE.set(PathBuf::from("/proc/self/exe"));
}

/// One message from lvh, applied to the list of live groups.
pub fn apply(line: &str, groups: &mut BTreeSet<i32>) {
    let line = line.trim();
    let (op, num) = line.split_at(line.len().min(1));
    let Ok(pgid) = num.parse::<i32>() else {
        return;
    };
    // 0, 1 and negative ids would make killpg hit lvh's caller or everything.
    if pgid <= 1 {
        return;
    }
    match op {
        "+" => {
            groups.insert(pgid);
        }
        "-" => {
            groups.remove(&pgid);
        }
        _ => {}
    }
}

/// The sentinel's life: follow the list until lvh's end closes, then kill
/// what is left. Never returns.
fn serve() -> ! {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: setting a signal to SIG_IGN has no handler to be unsafe in.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut groups = BTreeSet::new();
    let stdin = std::io::stdin();
    let mut r = BufReader::new(stdin.lock());
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => apply(&line, &mut groups),
        }
    }
    for pgid in groups {
        // SAFETY: plain syscall; pgid > 1 (see `apply`).
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    std::process::exit(0)
}

fn start(exe: &PathBuf) -> std::io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    std::process::Command::new(exe)
        .env(ENV, "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        // Its own group: a Ctrl-C at the terminal or a killpg of lvh's group
        // must not take it down before lvh's children.
        .process_group(0)
        .spawn()?;
    Ok(ours)
}

fn send(msg: String) {
    let Some(exe) = EXE.get() else {
        return;
    };
    let mut link = LINK.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*link, Link::NotStarted) {
        *link = match start(exe) {
            Ok(s) => Link::Up(s),
            Err(e) => {
                tracing::warn!("could not start the sentinel that kills children if lvh dies: {e}");
                Link::Down
            }
        };
    }
    if let Link::Up(s) = &*link {
        // MSG_NOSIGNAL: a dead sentinel must not kill lvh with SIGPIPE.
        // SAFETY: sending from a live buffer on a socket we own.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != msg.len() as isize {
            tracing::warn!("the sentinel is gone; children may outlive a killed lvh");
            *link = Link::Down;
        }
    }
}

/// A child process group was started: kill it if lvh dies.
pub(crate) fn watch(pgid: i32) {
    send(format!("+{pgid}\n"));
}

/// A child process group is reaped (or detached on purpose): leave it alone.
pub(crate) fn unwatch(pgid: i32) {
    send(format!("-{pgid}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_add_and_remove_groups() {
        let mut g = BTreeSet::new();
        for l in ["+100\n", "+200", "-100\n", "+300", "-999"] {
            apply(l, &mut g);
        }
        assert_eq!(g.into_iter().collect::<Vec<_>>(), vec![200, 300]);
    }

    #[test]
    fn dangerous_or_garbled_ids_are_ignored() {
        let mut g = BTreeSet::new();
        for l in ["+0", "+1", "+-5", "+", "", "x12", "+12a", "*7", "+ 9"] {
            apply(l, &mut g);
        }
        assert!(g.is_empty(), "{g:?}");
    }

    #[test]
    fn unarmed_library_sends_nothing() {
        // Library tests never call init(): watching must not start a process.
        watch(12345);
        unwatch(12345);
        assert!(matches!(
            *LINK.lock().unwrap_or_else(|e| e.into_inner()),
            Link::NotStarted
        ));
    }
}
