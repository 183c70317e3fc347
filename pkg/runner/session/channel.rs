//! The host side of the guest channels: unix sockets lvh listens on before
//! QEMU starts (QEMU connects to them as a client), and one thread per socket
//! that forwards what arrives: command output byte-exact to its sink, control
//! lines parsed, console text watched for signs of life, panics, splats
//! (`verdict::splat`) and guest errors, kept as a tail for error messages,
//! copied to the log and, for the shell, to the terminal. [`start`] runs
//! them all for a session.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::runner::guest::{self, ControlMsg, GUEST_ERROR_PREFIX};
use crate::runner::verdict::splat::Splat;
use crate::runner::verdict::Event;
use crate::triage::Detector;

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
/// `shell` opens when the guest says its shell starts (set here, at once,
/// so that no console byte after it is held back).
pub fn pump_control(
    l: UnixListener,
    shell: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) -> ControlWriter {
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
                            if m == ControlMsg::Shell {
                                shell.store(true, Ordering::SeqCst);
                            }
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

/// Feeds one console line to the crash report detector (triage's, the one
/// `lvh triage` uses) and the line classifier.
fn watch_line(line: &str, splats: &mut Detector, tx: &Sender<Event>) {
    let was_open = splats.is_open();
    let done = splats.push(line);
    let ended = !done.is_empty();
    for r in done {
        let _ = tx.send(Event::Splat(Splat::from(r)));
    }
    if splats.is_open() && (ended || !was_open) {
        let _ = tx.send(Event::SplatBegan);
    }
    if let Some(ev) = classify_console_line(line) {
        let _ = tx.send(ev);
    }
}

/// Where the console goes.
pub struct ConsoleSinks {
    pub log: Option<std::fs::File>,
    /// A live copy of everything (`-v`).
    pub echo: Option<Box<dyn Write + Send>>,
    /// The shell's terminal, from the moment the shell starts (the flag),
    /// unless `echo` shows it all.
    pub terminal: Option<(Arc<AtomicBool>, Box<dyn Write + Send>)>,
}

/// Watches the guest console: copies it to the log and echo sinks, keeps the
/// tail, and reports life, panics, splats and guest errors. The returned
/// writer types into the console once QEMU connected.
pub fn pump_console(
    l: UnixListener,
    sinks: ConsoleSinks,
    tail: Arc<ConsoleTail>,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) -> ControlWriter {
    let writer: ControlWriter = Arc::new(Mutex::new(None));
    let w = writer.clone();
    let ConsoleSinks {
        mut log,
        mut echo,
        mut terminal,
    } = sinks;
    std::thread::spawn(move || {
        if let Some(mut s) = accept(&l, &stop) {
            *w.lock().unwrap_or_else(|e| e.into_inner()) = s.try_clone().ok();
            let mut buf = vec![0u8; 16 * 1024];
            let mut pending = Vec::new();
            let mut alive = false;
            let mut splats = Detector::new();
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
                } else if let Some((open, t)) = terminal.as_mut() {
                    if open.load(Ordering::SeqCst) {
                        let _ = t.write_all(&buf[..n]).and_then(|_| t.flush());
                    }
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
            for r in splats.finish() {
                let _ = tx.send(Event::Splat(Splat::from(r)));
            }
        }
        let _ = tx.send(Event::ConsoleClosed);
    });
    writer
}

/// Where a session's channels go.
pub struct Sinks {
    pub stdout: Box<dyn Write + Send>,
    pub stderr: Box<dyn Write + Send>,
    /// A live copy of the console (`-v`).
    pub console: Option<Box<dyn Write + Send>>,
}

/// The listening sockets of a session's channels, bound before QEMU starts.
pub struct Listeners {
    pub console: UnixListener,
    pub stdout: UnixListener,
    pub stderr: UnixListener,
    pub control: UnixListener,
}

/// Sets the stop flag when dropped, so the pump threads stop waiting for
/// connections that will never come once the run returns.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The pump threads of a session, as the supervisor sees them.
pub struct Pumps {
    /// Writes to the guest's control port.
    pub control: ControlWriter,
    /// Types into the guest's console.
    pub console: ControlWriter,
    pub rx: std::sync::mpsc::Receiver<Event>,
    pub tail: Arc<ConsoleTail>,
    pub out: Arc<StreamCount>,
    pub err: Arc<StreamCount>,
    /// Open once the guest's shell started.
    pub shell: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    _stop: StopOnDrop,
}

/// Starts one pump per socket: the console to its log (and `-v` copy, and
/// with `shell` to `sinks.stdout` once the shell starts), the streams to
/// their sinks, control lines parsed.
pub fn start(l: Listeners, log: Option<std::fs::File>, sinks: Sinks, shell: bool) -> Pumps {
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let tail = Arc::new(ConsoleTail::new(crate::runner::error::CONSOLE_TAIL_LINES));
    let out = Arc::new(StreamCount::default());
    let err = Arc::new(StreamCount::default());
    let (stdout, stderr, terminal): (Box<dyn Write + Send>, Box<dyn Write + Send>, _) = if shell {
        (
            Box::new(io::sink()),
            Box::new(io::sink()),
            Some((open.clone(), sinks.stdout)),
        )
    } else {
        (sinks.stdout, sinks.stderr, None)
    };
    let console_sinks = ConsoleSinks {
        log,
        echo: sinks.console,
        terminal,
    };
    let console = pump_console(
        l.console,
        console_sinks,
        tail.clone(),
        stop.clone(),
        tx.clone(),
    );
    pump_stream(
        l.stdout,
        "stdout",
        stdout,
        out.clone(),
        stop.clone(),
        tx.clone(),
    );
    pump_stream(
        l.stderr,
        "stderr",
        stderr,
        err.clone(),
        stop.clone(),
        tx.clone(),
    );
    let control = pump_control(l.control, open.clone(), stop.clone(), tx);
    Pumps {
        control,
        console,
        rx,
        tail,
        out,
        err,
        shell: open,
        stop: stop.clone(),
        _stop: StopOnDrop(stop),
    }
}

/// Sends bytes through a writer once its peer connected; dropped otherwise.
pub fn send(w: &ControlWriter, bytes: &[u8]) -> bool {
    match w.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(s) => s.write_all(bytes).is_ok(),
        None => false,
    }
}

/// The last [`crate::runner::error::CONSOLE_TAIL_LINES`] lines of a console log file.
pub fn last_lines(p: &Path) -> Vec<String> {
    let text = std::fs::read(p).unwrap_or_default();
    let mut pending = Vec::new();
    let mut lines = split_lines(&mut pending, &text);
    let n = lines
        .len()
        .saturating_sub(crate::runner::error::CONSOLE_TAIL_LINES);
    lines.drain(..n);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_a_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let text: String = (0..40).map(|i| format!("line {i}\r\n")).collect();
        std::fs::write(&p, text).unwrap();
        let l = last_lines(&p);
        assert_eq!(l.len(), crate::runner::error::CONSOLE_TAIL_LINES);
        assert_eq!(l.last().unwrap(), "line 39");
    }

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
        let mut p = Detector::new();
        for l in [
            "[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2",
            "[ 1.1] Call Trace:",
            "[ 1.2]  f+0x1/0x2",
            "[ 1.3] ---[ end trace 0000000000000000 ]---",
            "[ 2.0] watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:1]",
            "[ 2.1] Call Trace:",
            "[ 2.2]  <TASK>",
            "[ 2.3]  spin+0x1/0x2",
            "[ 2.4]  </TASK>",
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
                "splat soft-lockup in spin",
                // the panic a report caused is no report of its own
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
