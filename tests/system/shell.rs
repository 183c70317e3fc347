//! The interactive shell driven through a real pseudo-terminal: lvh runs as a
//! session leader with the pty as its controlling terminal, as in a terminal
//! emulator. Typed commands run in the guest on the host tree, the window size
//! reaches the guest (at start and on SIGWINCH), Ctrl-C goes to the guest,
//! `exit 3` ends lvh with 3, Ctrl-A x leaves, no QEMU is left behind and the
//! terminal's settings are back as they were. Kernel messages after the
//! shell starts stay off its console unless `-v`, and a panic is still caught.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lvh::arch::Arch;
use nix::sys::termios::{self, Termios};

use crate::runner::lvh_run;
use crate::support::{keep, qemu_children};

/// How long the guest may take to show the shell under TCG on a loaded machine.
const BOOT: Duration = Duration::from_secs(240);
/// How long one typed command may take to answer.
const ANSWER: Duration = Duration::from_secs(60);

/// lvh on a pty, and everything it wrote to the terminal so far.
struct Pty {
    master: OwnedFd,
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    /// Where the next `expect` starts looking.
    mark: usize,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `cmd` on a new pty of `rows` x `cols` as its controlling terminal.
    /// Also returns the settings before, and a slave descriptor to compare them on later.
    fn spawn(mut cmd: std::process::Command, rows: u16, cols: u16) -> (Pty, Termios, OwnedFd) {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).unwrap();
        let before = termios::tcgetattr(pty.slave.as_fd()).unwrap();
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start lvh on a pty");
        // Until EIO, once every slave copy is closed (lvh exited).
        let seen = keep(std::fs::File::from(pty.master.try_clone().unwrap()));
        let pty = Pty {
            master: pty.master,
            child,
            seen,
            mark: 0,
        };
        (pty, before, slave)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn send(&self, bytes: &[u8]) {
        nix::unistd::write(&self.master, bytes).unwrap();
    }

    /// Waits until `want` appears after the mark; moves the mark past it.
    #[track_caller]
    fn expect(&mut self, want: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let all = self.text();
            if let Some(i) = all.get(self.mark..).and_then(|t| t.find(want)) {
                self.mark += i + want.len();
                return;
            }
            if self.child.try_wait().unwrap().is_some() {
                // What lvh wrote last may still be on its way through the pty.
                std::thread::sleep(Duration::from_millis(500));
                if self
                    .text()
                    .get(self.mark..)
                    .is_some_and(|t| t.contains(want))
                {
                    continue;
                }
            }
            if Instant::now() > end || self.child.try_wait().unwrap().is_some() {
                panic!("{want:?} did not appear within {within:?}; the terminal showed:\n{all}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for lvh to exit and returns its code.
    #[track_caller]
    fn wait(&mut self, within: Duration) -> i32 {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("lvh did not exit; the terminal showed:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        // SAFETY: TIOCSWINSZ on our own pty master; the kernel sends SIGWINCH
        // to the terminal's foreground process group (lvh).
        let r = unsafe {
            libc::ioctl(
                self.master.as_raw_fd(),
                libc::TIOCSWINSZ,
                &winsize(rows, cols),
            )
        };
        assert_eq!(r, 0);
    }
}

/// The terminal settings lvh changes in raw mode are back as they were.
#[track_caller]
fn assert_restored(before: &Termios, pty: &Pty, slave: &OwnedFd) {
    let after = termios::tcgetattr(slave.as_fd()).unwrap();
    assert_eq!(after.local_flags, before.local_flags, "{}", pty.text());
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
}

#[test]
fn a_shell_on_the_host_tree_through_a_pty() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("hosttree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("hello.txt"), "from-the-host\n").unwrap();
    let mut cmd = lvh_run(
        Arch::Amd64,
        &["--shell", "--host-mount", tree.to_str().unwrap()],
    );
    cmd.env("TERM", "xterm");
    let (mut pty, before, slave) = Pty::spawn(cmd, 37, 101);
    pty.expect("Ctrl-A x leaves", Duration::from_secs(30));
    pty.expect("# ", BOOT);
    let qemu = qemu_children(pty.child.id());
    assert_eq!(qemu.len(), 1, "{qemu:?}");

    pty.send(b"echo out-$((6*7)) size=$(stty size) pwd=$(pwd) term=$TERM; cat hello.txt\r");
    pty.expect("out-42 size=37 101 pwd=/host term=xterm", ANSWER);
    pty.expect("from-the-host", ANSWER);
    // The boot is not shown (only with -v or in the console log), the shell is.
    assert!(!pty.text().contains("Linux version"), "{}", pty.text());

    // The guest writes to the host tree.
    pty.send(b"echo from-the-guest >guest.txt; sync; echo written-$((2+3))\r");
    pty.expect("written-5", ANSWER);
    assert_eq!(
        std::fs::read_to_string(tree.join("guest.txt")).unwrap(),
        "from-the-guest\n"
    );

    // A new window size reaches the guest (SIGWINCH -> control port -> stty).
    pty.resize(50, 132);
    let end = Instant::now() + ANSWER;
    loop {
        pty.send(b"echo size-$(stty size | tr ' ' x)\r");
        std::thread::sleep(Duration::from_secs(1));
        if pty.text()[pty.mark..].contains("size-50x132") {
            break;
        }
        assert!(Instant::now() < end, "no resize:\n{}", pty.text());
    }

    // Ctrl-C stops the guest's foreground job, not lvh.
    pty.send(b"sleep 600\r");
    std::thread::sleep(Duration::from_secs(2));
    pty.send(b"\x03");
    pty.send(b"echo after-$((1+1))\r");
    pty.expect("after-2", ANSWER);
    assert!(pty.child.try_wait().unwrap().is_none(), "Ctrl-C ended lvh");

    pty.send(b"exit 3\r");
    assert_eq!(pty.wait(ANSWER), 3, "{}", pty.text());
    assert!(
        !std::path::Path::new(&format!("/proc/{}", qemu[0])).exists(),
        "QEMU {} outlived lvh",
        qemu[0]
    );
    assert_restored(&before, &pty, &slave);
}

#[test]
fn ctrl_a_x_leaves_the_shell_and_stops_the_vm() {
    let (mut pty, before, slave) = Pty::spawn(lvh_run(Arch::Amd64, &["--shell"]), 24, 80);
    pty.expect("# ", BOOT);
    let qemu = qemu_children(pty.child.id());
    assert_eq!(qemu.len(), 1, "{qemu:?}");
    // Ctrl-A Ctrl-A sends one Ctrl-A (bash: start of line), so this runs
    // `echo x$((40+2))`.
    pty.send(b"+2))\x01\x01echo x$((40\r");
    pty.expect("x42", ANSWER);
    pty.send(b"\x01x");
    assert_eq!(pty.wait(ANSWER), 130, "{}", pty.text());
    pty.expect("left the shell (Ctrl-A x)", Duration::from_secs(5));
    assert!(
        !std::path::Path::new(&format!("/proc/{}", qemu[0])).exists(),
        "QEMU {} outlived lvh",
        qemu[0]
    );
    assert_restored(&before, &pty, &slave);
}

#[test]
fn a_shell_reads_a_pipe_without_a_terminal() {
    // --shell with stdin a pipe: no raw mode, the end of input is Ctrl-D.
    let o = piped_shell(&[], "echo piped-$((3*3))\nexit 5\n");
    crate::support::assert_code(&o, 5);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("piped-9"),
        "{}",
        crate::support::text(&o)
    );
}

/// `lvh run [extra] --shell` with `input` on a pipe as its stdin.
pub(crate) fn piped_shell(extra: &[&str], input: &str) -> std::process::Output {
    let mut args = extra.to_vec();
    args.push("--shell");
    let mut child = lvh_run(Arch::Amd64, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn kernel_messages_after_the_shell_starts_show_only_with_v() {
    // The marker is put together in the guest: the echoed input does not hold it.
    let input = "m=lvh-quiet; echo \"<4>$m-kmsg\" >/dev/kmsg; sleep 1; \
                 dmesg | grep -c \"$m-kmsg\"; echo done-$((2+2))\nexit 0\n";
    for (extra, shown) in [(&[][..], false), (&["-v"][..], true)] {
        let o = piped_shell(extra, input);
        crate::support::assert_code(&o, 0);
        let all = crate::support::text(&o);
        // The message is in the kernel's log either way.
        assert!(all.contains("\n1\r\n") || all.contains("\n1\n"), "{all}");
        assert!(all.contains("done-4"), "{all}");
        assert_eq!(all.contains("lvh-quiet-kmsg"), shown, "{extra:?}: {all}");
    }
}

#[test]
fn a_panic_in_a_quiet_shell_is_still_caught() {
    let o = piped_shell(
        &[],
        "echo PANIC >/sys/kernel/debug/provoke-crash/DIRECT\nsleep 30\nexit 0\n",
    );
    crate::support::assert_code(&o, 241);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the guest kernel panicked") && err.contains("dumptest"),
        "{}",
        crate::support::text(&o)
    );
}
