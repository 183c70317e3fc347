//! The host side of the guest channels: unix sockets lvh listens on before
//! QEMU starts (QEMU connects to them as a client), and one thread per socket
//! that forwards what arrives: command output byte-exact to its sink, control
//! lines parsed, console text watched for signs of life, panics, splats
//! ([`super::splat`]) and guest errors, kept as a tail for error messages and
//! copied to the log.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::guest::{self, ControlMsg, GUEST_ERROR_PREFIX};
use super::splat::{Splat, SplatParser};

/// What the channel threads tell the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first bytes on the console: the kernel is alive.
    ConsoleAlive,
    /// A console line that says the kernel panicked.
    Panic(String),
    /// A console line from lvh's guest script saying what failed.
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

/// Console text that means a kernel panic.
pub const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// Binds a listening socket for QEMU to connect to.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Waits for QEMU's connection, giving up when `stop` is set.
pub(crate) fn accept(l: &UnixListener, stop: &AtomicBool) -> Option<UnixStream> {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                return Some(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return None,
        }
    }
}

/// Bytes forwarded so far and whether the sink failed (e.g. a closed pipe).
#[derive(Debug, Default)]
pub struct StreamCount {
    pub bytes: AtomicU64,
    pub sink_failed: AtomicBool,
}

/// Forwards one command output stream to `sink`, byte-exact, as it arrives.
/// The count is updated after each chunk is written and flushed, so a count
/// that reached the guest's total means the sink has everything.
pub fn pump_stream(
    l: UnixListener,
    name: &'static str,
    mut sink: Box<dyn Write + Send>,
    count: Arc<StreamCount>,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) {
    std::thread::spawn(move || {
        if let Some(mut s) = accept(&l, &stop) {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !count.sink_failed.load(Ordering::SeqCst)
                            && (sink.write_all(&buf[..n]).is_err() || sink.flush().is_err())
                        {
                            // Keep draining so the guest never blocks on us.
                            count.sink_failed.store(true, Ordering::SeqCst);
                        }
                        count.bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let _ = tx.send(Event::StreamClosed(name));
    });
}

/// The host's end of the control port, for writing to the guest once QEMU connected.
pub type ControlWriter = Arc<Mutex<Option<UnixStream>>>;

/// Reads control lines from the guest; the returned writer talks back.
pub fn pump_control(l: UnixListener, stop: Arc<AtomicBool>, tx: Sender<Event>) -> ControlWriter {
    let writer: ControlWriter = Arc::new(Mutex::new(None));
    let w = writer.clone();
    std::thread::spawn(move || {
        if let Some(s) = accept(&l, &stop) {
            if let Ok(c) = s.try_clone() {
                *w.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
            }
            let mut r = BufReader::new(s);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(m) = guest::parse_control(&line) {
                            if tx.send(Event::Control(m)).is_err() {
                                return;
                            }
                        } else {
                            tracing::debug!(line = %line.trim_end(), "unknown control line");
                        }
                    }
                }
            }
        }
        let _ = tx.send(Event::ControlClosed);
    });
    writer
}

/// The last console lines, shared with the supervisor for error messages.
#[derive(Debug, Default)]
pub struct ConsoleTail {
    lines: Mutex<VecDeque<String>>,
    cap: usize,
}

impl ConsoleTail {
    pub fn new(cap: usize) -> Self {
        ConsoleTail {
            lines: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    pub fn push(&self, line: String) {
        let mut q = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == self.cap {
            q.pop_front();
        }
        q.push_back(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// What one console line means to the supervisor, if anything.
pub fn classify_console_line(line: &str) -> Option<Event> {
    if line.contains(PANIC_MARKER) {
        return Some(Event::Panic(line.trim().to_string()));
    }
    if let Some((_, rest)) = line.split_once("Linux version ") {
        if let Some(release) = rest.split_whitespace().next() {
            return Some(Event::KernelRelease(release.to_string()));
        }
    }
    // At the start only: the kernel echoes its command line, bootstrap included.
    line.trim_start()
        .strip_prefix(GUEST_ERROR_PREFIX)
        .map(|m| Event::GuestError(m.trim().to_string()))
}

/// Splits console bytes into lines (CR/LF tolerant), keeping the partial tail.
pub fn split_lines(pending: &mut Vec<u8>, chunk: &[u8]) -> Vec<String> {
    pending.extend_from_slice(chunk);
    let mut out = Vec::new();
    while let Some(i) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=i).collect();
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\n', '\r'])
            .trim_start_matches('\r')
            .to_string();
        out.push(text);
    }
    out
}

/// Feeds one console line to the splat parser and the line classifier.
fn watch_line(line: &str, splats: &mut SplatParser, tx: &Sender<Event>) {
    let was_open = splats.is_open();
    let done = splats.push(line);
    let ended = !done.is_empty();
    for s in done {
        let _ = tx.send(Event::Splat(s));
    }
    if splats.is_open() && (ended || !was_open) {
        let _ = tx.send(Event::SplatBegan);
    }
    if let Some(ev) = classify_console_line(line) {
        let _ = tx.send(ev);
    }
}

/// Watches the guest console: copies it to the log and echo sinks, keeps the
/// tail, and reports life, panics, splats and guest errors.
pub fn pump_console(
    l: UnixListener,
    mut log: Option<std::fs::File>,
    mut echo: Option<Box<dyn Write + Send>>,
    tail: Arc<ConsoleTail>,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) {
    std::thread::spawn(move || {
        if let Some(mut s) = accept(&l, &stop) {
            let mut buf = vec![0u8; 16 * 1024];
            let mut pending = Vec::new();
            let mut alive = false;
            let mut splats = SplatParser::new();
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                if !alive {
                    alive = true;
                    let _ = tx.send(Event::ConsoleAlive);
                }
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(&buf[..n]);
                }
                if let Some(e) = echo.as_mut() {
                    let _ = e.write_all(&buf[..n]);
                    let _ = e.flush();
                }
                for line in split_lines(&mut pending, &buf[..n]) {
                    watch_line(&line, &mut splats, &tx);
                    tail.push(line);
                }
            }
            if !pending.is_empty() {
                let line = String::from_utf8_lossy(&pending).trim().to_string();
                watch_line(&line, &mut splats, &tx);
                tail.push(line);
            }
            if let Some(s) = splats.finish() {
                let _ = tx.send(Event::Splat(s));
            }
        }
        let _ = tx.send(Event::ConsoleClosed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let mut p = Vec::new();
        assert!(split_lines(&mut p, b"Linux ver").is_empty());
        assert_eq!(
            split_lines(&mut p, b"sion 6.12\r\nnext\n\r\nx"),
            vec!["Linux version 6.12", "next", ""]
        );
        assert_eq!(p, b"x");
    }

    #[test]
    fn console_lines_that_matter() {
        assert_eq!(
            classify_console_line(
                "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\r"
            ),
            Some(Event::Panic(
                "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs".into()
            ))
        );
        assert_eq!(
            classify_console_line("lvh-guest: error: cannot mount the host directory at /host"),
            Some(Event::GuestError(
                "cannot mount the host directory at /host".into()
            ))
        );
        assert_eq!(
            classify_console_line("[    0.0] Linux version 6.12.57 (root@x) (gcc 12) #1"),
            Some(Event::KernelRelease("6.12.57".into()))
        );
        assert_eq!(classify_console_line("[    0.1] Run /bin/sh as init"), None);
        assert_eq!(
            classify_console_line(
                "Kernel command line: init=/bin/sh -- -c \"echo lvh-guest: error: x\""
            ),
            None
        );
    }

    #[test]
    fn splats_are_announced_when_they_begin_and_sent_when_they_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut p = SplatParser::new();
        for l in [
            "[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2",
            "[ 1.1] Call Trace:",
            "[ 1.2]  f+0x1/0x2",
            "[ 1.3] ---[ end trace 0000000000000000 ]---",
            "[ 2.0] watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:1]",
            "[ 3.0] Kernel panic - not syncing: softlockup: hung tasks",
        ] {
            watch_line(l, &mut p, &tx);
        }
        let evs: Vec<String> = rx
            .try_iter()
            .map(|e| match e {
                Event::Splat(s) => format!("splat {}", s.summary()),
                Event::SplatBegan => "began".into(),
                Event::Panic(_) => "panic".into(),
                e => format!("{e:?}"),
            })
            .collect();
        assert_eq!(
            evs,
            [
                "began",
                "splat warning in f",
                "began",
                "splat soft-lockup",
                "began",
                "panic"
            ]
        );
    }

    #[test]
    fn tail_is_bounded() {
        let t = ConsoleTail::new(2);
        for l in ["a", "b", "c"] {
            t.push(l.into());
        }
        assert_eq!(t.lines(), vec!["b", "c"]);
    }

    #[test]
    fn stream_pump_is_byte_exact_and_counts() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.sock");
        let l = listen(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let count = Arc::new(StreamCount::default());
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        pump_stream(
            l,
            "stdout",
            Box::new(Shared(out.clone())),
            count.clone(),
            Arc::new(AtomicBool::new(false)),
            tx,
        );
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all(&data).unwrap();
        drop(c);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Event::StreamClosed("stdout")
        );
        assert_eq!(count.bytes.load(Ordering::SeqCst), data.len() as u64);
        assert_eq!(*out.lock().unwrap(), data);
    }
}
