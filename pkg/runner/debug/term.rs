//! The host terminal of an interactive shell: raw mode that is restored on
//! every way out (drop, panic, `exit` after a second Ctrl-C: an `atexit`
//! handler), the window size, SIGWINCH, and the escape sequence that leaves
//! the shell ([`EscapeParser`], a pure byte filter).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use nix::sys::termios::{self, SetArg, Termios};

/// The escape prefix: Ctrl-A, as in QEMU's own console.
pub const ESCAPE_PREFIX: u8 = 0x01;
/// After the prefix: leave the shell (the VM is stopped).
pub const ESCAPE_EXIT: [u8; 2] = [b'x', b'X'];
/// How the escape is named in messages and the README.
pub const ESCAPE_HELP: &str = "Ctrl-A x leaves (the VM is stopped), Ctrl-A Ctrl-A sends Ctrl-A";

/// What the escape filter found in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Ctrl-A x: leave.
    Exit,
}

/// Splits terminal input into bytes for the guest and escape commands.
/// Ctrl-A x leaves; Ctrl-A Ctrl-A (or Ctrl-A a) sends one Ctrl-A; Ctrl-A
/// followed by anything else sends both bytes, so the guest's line editing
/// (Ctrl-A is "beginning of line" in bash) keeps working.
#[derive(Clone, Debug, Default)]
pub struct EscapeParser {
    pending: bool,
}

impl EscapeParser {
    /// Feeds input bytes; returns the bytes to send on, and the escape if one
    /// ended the chunk (input after it is dropped: the shell is being left).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, Option<Escape>) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    _ if ESCAPE_EXIT.contains(&b) => return (out, Some(Escape::Exit)),
                    ESCAPE_PREFIX | b'a' => out.push(ESCAPE_PREFIX),
                    _ => out.extend([ESCAPE_PREFIX, b]),
                }
            } else if b == ESCAPE_PREFIX {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        (out, None)
    }
}

/// A terminal size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

/// The window size of the terminal on `fd`, if it is one with a size.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WinSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass; the fd is borrowed and open.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    termios::tcgetattr(fd).is_ok()
}

/// The settings raw mode replaced, for the exit paths that skip `Drop`.
fn saved() -> &'static Mutex<Option<Termios>> {
    static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
    &SAVED
}

/// Puts the saved settings back on stdin, once (later calls find nothing).
fn restore_saved() {
    let t = saved().lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = t {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &t);
    }
}

extern "C" fn restore_at_exit() {
    restore_saved();
}

/// Installs, once per process, the panic hook and `atexit` handler that
/// restore the terminal when lvh panics or exits without unwinding (the
/// second Ctrl-C's `exit`).
fn install_exit_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            prev(info);
        }));
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(restore_at_exit);
        }
    });
}

/// Stdin in raw mode while this lives: no echo, no line editing, no signals
/// from Ctrl-C or Ctrl-Z (those bytes go to the guest), no output processing.
pub struct RawMode(());

impl RawMode {
    /// Switches stdin to raw mode; `None` if stdin is not a terminal.
    pub fn enter() -> std::io::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        let Ok(orig) = termios::tcgetattr(stdin.as_fd()) else {
            return Ok(None);
        };
        install_exit_hooks();
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        *saved().lock().unwrap_or_else(|e| e.into_inner()) = Some(orig);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).map_err(std::io::Error::from)?;
        Ok(Some(RawMode(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
    }
}

/// A flag raised on every SIGWINCH while this lives.
pub struct Resized {
    pub flag: Arc<AtomicBool>,
    id: signal_hook::SigId,
}

impl Resized {
    pub fn watch() -> std::io::Result<Resized> {
        let flag = Arc::new(AtomicBool::new(false));
        let id = signal_hook::flag::register(signal_hook::consts::SIGWINCH, flag.clone())?;
        Ok(Resized { flag, id })
    }

    /// Whether the window changed since the last call.
    pub fn take(&self) -> bool {
        self.flag.swap(false, Ordering::SeqCst)
    }
}

impl Drop for Resized {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences() {
        for (input, out, esc) in [
            (&b"ls\r"[..], &b"ls\r"[..], None),
            (b"\x01x", b"", Some(Escape::Exit)),
            (b"ab\x01Xcd", b"ab", Some(Escape::Exit)),
            (b"\x01\x01", b"\x01", None),
            (b"\x01a", b"\x01", None),
            (b"\x01e", b"\x01e", None),
            (b"\x03", b"\x03", None),
            (b"x", b"x", None),
        ] {
            let mut p = EscapeParser::default();
            assert_eq!(p.feed(input), (out.to_vec(), esc), "{input:?}");
        }
    }

    #[test]
    fn an_escape_split_across_reads() {
        let mut p = EscapeParser::default();
        assert_eq!(p.feed(b"echo\x01"), (b"echo".to_vec(), None));
        assert_eq!(p.feed(b"x"), (vec![], Some(Escape::Exit)));
        let mut p = EscapeParser::default();
        assert_eq!(p.feed(b"\x01"), (vec![], None));
        assert_eq!(p.feed(b"\x01"), (vec![1], None));
        assert_eq!(p.feed(b"x"), (b"x".to_vec(), None));
    }

    #[test]
    fn window_size_and_tty_of_a_pty() {
        let ws = libc::winsize {
            ws_row: 37,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        assert!(is_tty(pty.slave.as_fd()));
        assert_eq!(
            window_size(pty.slave.as_fd()),
            Some(WinSize {
                rows: 37,
                cols: 101
            })
        );
        let bare = nix::pty::openpty(None, None).unwrap();
        assert_eq!(window_size(bare.slave.as_fd()), None, "no size set");
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(!is_tty(r.as_fd()));
        assert_eq!(window_size(r.as_fd()), None);
    }
}
