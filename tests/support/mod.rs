//! The test support every tier shares (each includes this module as
//! `support`): the built binary, exit-code assertions that show both streams,
//! a free loopback port, QEMU processes, ssh; the cached fixtures
//! ([`fixtures`]) and a real registry ([`registry`]).

#![allow(dead_code)]

pub mod fixtures;
pub mod registry;

use std::process::{Command, Output};

/// `lvh` as cargo built it, with a predictable environment: plain progress
/// lines (`CI`), no log filter from the caller.
pub fn lvh() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.env("CI", "true").env_remove("LVH_LOG");
    c
}

/// Keeps everything `r` gives until its end or an error (a pty's EIO once
/// the other side closed), for a test to look at while the writer runs.
pub fn keep(
    mut r: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// An output's status and both streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts the exit code and shows both streams when it is wrong.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// `lvh run --image IMAGE --daemonize -p PORT:22 --wait-ssh --mem 1G` under
/// TCG with stdin closed: a bootable image left running, ssh answering on
/// 127.0.0.1:PORT when it returns (callers add `--ssh-timeout`, keys, ...).
pub fn daemon_ssh(image: &std::path::Path, port: u16) -> Command {
    let mut c = lvh();
    c.arg("run")
        .arg("--image")
        .arg(image)
        .args(["--daemonize", "-p", &format!("{port}:22"), "--wait-ssh"])
        .args(["--mem", "1G"])
        .env("LVH_ACCEL", "tcg")
        .stdin(std::process::Stdio::null());
    c
}

/// The pid of a daemonized QEMU, from lvh's `running as pid N` line on stderr.
pub fn daemon_pid(stderr: &str) -> u32 {
    let at = stderr.find("running as pid ").expect("pid in output") + "running as pid ".len();
    stderr[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs `command` as root over ssh on 127.0.0.1:`port` with the private `key`,
/// without asking anything (no host key check, batch mode).
pub fn ssh_root(key: &std::path::Path, port: u16, command: &str) -> Output {
    ssh_as("root", key, port, command)
}

/// Runs `command` over ssh as `user` on 127.0.0.1:`port` with `key`.
pub fn ssh_as(user: &str, key: &std::path::Path, port: u16, command: &str) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"])
        .args([
            "-p",
            &port.to_string(),
            &format!("{user}@127.0.0.1"),
            command,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh")
}

/// Waits up to 20 s for process `pid` to be gone; false if it is still there.
pub fn gone_within_20s(pid: u32) -> bool {
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    for _ in 0..200 {
        if !proc.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    !proc.exists()
}

/// Sends SIGTERM to `pid` (a daemonized QEMU); an error says it was gone.
pub fn terminate(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
}

/// A server process listening on a loopback port, stopped on drop with its
/// whole process group (wrappers such as `git daemon` start the real server
/// as a child).
pub struct Server {
    child: std::process::Child,
    /// `<scheme>://127.0.0.1:<port>`.
    pub url: String,
}

impl Server {
    /// Starts `cmd`, which listens on 127.0.0.1:`port`, and waits until it does.
    pub fn start(mut cmd: Command, scheme: &str, port: u16) -> Server {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let s = Server {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{cmd:?} did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// `dir` served over HTTP on 127.0.0.1 (`python3 -m http.server`).
pub fn http_server(dir: &std::path::Path) -> Server {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir);
    Server::start(cmd, "http", port)
}

/// The release target name of this machine (`uname -m`), as install.sh picks it.
pub fn release_target() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-gnu",
        "aarch64" => "aarch64-unknown-linux-gnu",
        a => panic!("no release target for {a}"),
    }
}

/// `sh scripts/install.sh` with `env`, its output and how long it took.
pub fn install_sh(env: &[(&str, &str)]) -> (Output, std::time::Duration) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh");
    let mut c = Command::new("sh");
    c.arg(script).stdin(std::process::Stdio::null());
    for v in ["LVH_VERSION", "LVH_INSTALL_URL", "LVH_INSTALL_DIR"] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    let start = std::time::Instant::now();
    let out = c.output().expect("run sh scripts/install.sh");
    (out, start.elapsed())
}

/// Checks that this test process was started with the environment that makes
/// libguestfs use TCG here (the Makefile exports it). Tests never set it
/// themselves: `set_var` while another test thread is inside libguestfs
/// (which reads the environment with C's `getenv`) is a data race on the
/// environment block.
pub fn require_guestfs_tcg_env() {
    assert!(
        std::env::var("LIBGUESTFS_BACKEND_SETTINGS").is_ok_and(|v| v.contains("force_tcg"))
            || std::env::var("LVH_ACCEL").as_deref() == Ok("tcg"),
        "run the system tests with LVH_ACCEL=tcg LIBGUESTFS_BACKEND=direct \
         LIBGUESTFS_BACKEND_SETTINGS=force_tcg (the Makefile exports them)"
    );
}

/// The QEMU processes whose parent is `pid`.
pub fn qemu_children(pid: u32) -> Vec<u32> {
    children(pid, "qemu-system")
}

/// The processes whose parent is `pid` and whose name starts with `comm`.
pub fn children(pid: u32, comm: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = &stat[stat.find('(').unwrap() + 1..close];
        let ppid: u32 = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if ppid == pid && name.starts_with(comm) {
            v.push(p);
        }
    }
    v
}
