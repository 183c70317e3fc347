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
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"])
        .args(["-p", &port.to_string(), "root@127.0.0.1", command])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh")
}

/// Sends SIGTERM to `pid` (a daemonized QEMU); an error says it was gone.
pub fn terminate(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
}

/// The QEMU processes whose parent is `pid`.
pub fn qemu_children(pid: u32) -> Vec<u32> {
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
        let comm = &stat[stat.find('(').unwrap() + 1..close];
        let ppid: u32 = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if ppid == pid && comm.starts_with("qemu-system") {
            v.push(p);
        }
    }
    v
}
