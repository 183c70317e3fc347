//! Faults (issue 14): lvh SIGKILLed at random points of its commands
//! ([`kill`]), guests that die, hang or fill their disk ([`guest`]), a
//! registry that resets, truncates or corrupts ([`registry`]), and
//! shared helpers: a seeded random source whose seed is printed on failure
//! (`LVH_KILL_SEED` replays it) and a process-tree watcher that sees every
//! process lvh started and checks that none outlives it.

mod guest;
mod kill;
mod kill_kernels;
mod proxy;
pub(crate) mod registry;
mod registry_push;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long lvh's descendants may take to die after lvh is SIGKILLed (the
/// sentinel kills them at once; libguestfs' recovery process polls each second).
pub const LEFTOVER_DEADLINE: Duration = Duration::from_secs(20);

/// Kill points per command: `LVH_KILL_POINTS` (`make stress-kill` sets 20).
pub fn kill_points() -> usize {
    std::env::var("LVH_KILL_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// xorshift64*: enough randomness to spread kill points, replayable by seed.
pub struct Rng {
    pub seed: u64,
    x: u64,
}

impl Rng {
    /// Seeded from `LVH_KILL_SEED`, else from the clock.
    pub fn new() -> Rng {
        let seed = std::env::var("LVH_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        Rng { seed, x: seed | 1 }
    }

    pub fn next(&mut self) -> u64 {
        self.x ^= self.x >> 12;
        self.x ^= self.x << 25;
        self.x ^= self.x >> 27;
        self.x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next() % span)
    }
}

/// Prints the seed if the test fails while it is alive.
pub struct SeedOnPanic(pub u64, pub &'static str);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}: failed with LVH_KILL_SEED={} (set it to replay the same kill points)",
                self.1, self.0
            );
        }
    }
}

/// One process as /proc shows it.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot: tells a process from a reused pid.
    pub start: u64,
    pub comm: String,
    pub state: char,
}

fn stat(pid: u32) -> Option<Proc> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    Some(Proc {
        pid,
        comm: s[open + 1..close].to_string(),
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn all_procs() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter_map(stat)
                .collect()
        })
        .unwrap_or_default()
}

/// The descendants of `root` right now.
pub fn descendants(root: u32) -> Vec<Proc> {
    let procs = all_procs();
    let mut kids: HashMap<u32, Vec<&Proc>> = HashMap::new();
    for p in &procs {
        kids.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for k in kids.get(&p).into_iter().flatten() {
            out.push((*k).clone());
            todo.push(k.pid);
        }
    }
    out
}

/// Whether the process is still there (the same one: same start time; a
/// zombie counts as gone, it only waits to be reaped).
fn still_there(p: &Proc) -> bool {
    stat(p.pid).is_some_and(|now| now.start == p.start && now.state != 'Z')
}

/// Samples lvh's process tree every few milliseconds, keeping every process
/// it ever saw, until stopped.
pub struct TreeWatch {
    seen: Arc<Mutex<HashMap<(u32, u64), Proc>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TreeWatch {
    pub fn start(root: u32) -> TreeWatch {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let now = descendants(root);
                let mut m = s.lock().unwrap();
                for p in now {
                    m.insert((p.pid, p.start), p);
                }
                drop(m);
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        TreeWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every process seen so far.
    pub fn now(&self) -> Vec<Proc> {
        self.seen.lock().unwrap().values().cloned().collect()
    }

    /// Stops sampling; returns every process seen.
    pub fn finish(mut self) -> Vec<Proc> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().values().cloned().collect()
    }
}

/// Waits until none of `procs` is alive; returns those still alive after
/// [`LEFTOVER_DEADLINE`] (and SIGKILLs them so the next test starts clean).
pub fn survivors(procs: &[Proc]) -> Vec<Proc> {
    let end = Instant::now() + LEFTOVER_DEADLINE;
    loop {
        let left: Vec<Proc> = procs.iter().filter(|p| still_there(p)).cloned().collect();
        if left.is_empty() {
            return left;
        }
        if Instant::now() >= end {
            for p in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What happened to one command that was to be killed.
pub struct Killed {
    /// The command ended by itself before the kill point.
    pub finished_first: Option<Output>,
    /// How many processes lvh had started (itself excluded).
    pub children_seen: usize,
    /// The names of lvh's descendants alive at the kill.
    pub at_kill: Vec<String>,
}

/// Starts `cmd`, SIGKILLs lvh after `delay` (unless it ended before), and
/// asserts that every process it started is gone within [`LEFTOVER_DEADLINE`].
#[track_caller]
pub fn kill_after(cmd: Command, delay: Duration, what: &str) -> Killed {
    kill_when(cmd, |_| true, delay, what)
}

/// Like [`kill_after`], the `delay` counted from the first moment `armed`
/// holds for the processes lvh started so far (e.g. one named `dpkg` ran).
#[track_caller]
pub fn kill_when(
    mut cmd: Command,
    armed: impl Fn(&[Proc]) -> bool,
    delay: Duration,
    what: &str,
) -> Killed {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lvh");
    let watch = TreeWatch::start(child.id());
    // Drained as it comes: a full pipe would stop lvh, not the test.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out_thread = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err_thread = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let mut end = None;
    while end.is_none_or(|e| Instant::now() < e) {
        if end.is_none() && armed(&watch.now()) {
            end = Some(Instant::now() + delay);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return finished_first(status, watch.finish(), out_thread, err_thread, what);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let at_kill: Vec<String> = descendants(child.id())
        .into_iter()
        .map(|p| p.comm)
        .collect();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let seen = watch.finish();
    if std::os::unix::process::ExitStatusExt::signal(&status).is_none() {
        // lvh exited between the last poll and the kill: the kill hit a
        // zombie, so this point counts as "finished first".
        return finished_first(status, seen, out_thread, err_thread, what);
    }
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{what}"
    );
    let left = survivors(&seen);
    assert!(
        left.is_empty(),
        "{what}: SIGKILL of lvh after {delay:?} left {} of its {} processes running: {:?} (alive at the kill: {at_kill:?})",
        left.len(),
        seen.len(),
        left.iter()
            .map(|p| format!("{} {}", p.pid, p.comm))
            .collect::<Vec<_>>()
    );
    Killed {
        finished_first: None,
        children_seen: seen.len(),
        at_kill,
    }
}

/// The [`Killed`] of a command that ended by itself before the kill point.
#[track_caller]
fn finished_first(
    status: std::process::ExitStatus,
    seen: Vec<Proc>,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
    what: &str,
) -> Killed {
    let out = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(
        survivors(&seen).is_empty(),
        "{what}: processes outlived an lvh that exited"
    );
    Killed {
        finished_first: Some(out),
        children_seen: seen.len(),
        at_kill: Vec::new(),
    }
}

/// Runs `cmd` to the end and returns its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run lvh")
}

/// The names in `dir` (none if it is missing), sorted.
pub fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Processes whose working directory or root is at or below `dir` (a kernel
/// tree's compilers, a chroot's apt and dpkg), as `pid comm`.
pub fn procs_in(dir: &Path) -> Vec<String> {
    all_procs()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            ["cwd", "root"].iter().any(|l| {
                std::fs::read_link(format!("/proc/{}/{l}", p.pid)).is_ok_and(|t| t.starts_with(dir))
            })
        })
        .map(|p| format!("{} {}", p.pid, p.comm))
        .collect()
}

/// Mount points at or below `dir` in this mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Every file, symlink and directory below `dir` by relative path: a file's
/// bytes, a symlink's target, `<dir>` for a directory. Empty if `dir` is missing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(base, &p, out);
            } else if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, target.display().to_string().into_bytes());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every `.partial-*` name below `dir`.
pub fn partials_under(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return v;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.contains(".partial-") {
            v.push(e.path().display().to_string());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            v.extend(partials_under(&e.path()));
        }
    }
    v
}
