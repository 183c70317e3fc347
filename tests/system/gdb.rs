//! Kernel debugging: `lvh run --gdb PORT --gdb-wait` on the fixture kernel,
//! Debian's gdb attached in batch mode with the command line lvh printed, a
//! hardware breakpoint on the kernel function the guest command triggers
//! (`sync(2)` -> `ksys_sync`), hit, then the guest runs on and lvh exits
//! with the command's code.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::runner::lvh_run;
use crate::support::free_port;

/// The function `sync` reaches in the kernel (fs/sync.c).
const FUNCTION: &str = "ksys_sync";

/// Splits the printed gdb line into words (it quotes with single quotes only).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

#[test]
fn gdb_stops_the_kernel_at_a_breakpoint_the_command_hits() {
    breakpoint(None);
}

#[test]
fn gdb_on_a_tcp_port_works_and_is_warned_about() {
    breakpoint(Some(free_port()));
}

/// Runs the breakpoint scenario with a bare `--gdb` (`port` None: a private
/// socket) or `--gdb PORT`.
fn breakpoint(port: Option<u16>) {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let vmlinux = kernel.image.ancestors().nth(4).unwrap().join("vmlinux");
    assert!(vmlinux.is_file(), "{} is missing", vmlinux.display());
    let port_arg = port.map(|p| p.to_string());
    let gdb_args: Vec<&str> = std::iter::once("--gdb")
        .chain(port_arg.as_deref())
        .collect();
    let mut child = lvh_run(
        Arch::Amd64,
        &[
            &gdb_args[..],
            &[
                "--gdb-wait",
                "--",
                "sh",
                "-c",
                "grep -o nokaslr /proc/cmdline; sync; echo synced; exit 7",
            ],
        ]
        .concat(),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // lvh prints the gdb command before QEMU starts.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut printed = Vec::new();
    let attach = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "lvh said no gdb line: {printed:?}"
        );
        printed.push(line.clone());
        if let Some((_, cmd)) = line.trim_end().split_once("attach with: ") {
            break cmd.to_string();
        }
    };
    let words = shell_words(&attach);
    let target = match port {
        Some(p) => format!("127.0.0.1:{p}"),
        None => words[3]
            .strip_prefix("target remote ")
            .filter(|t| t.ends_with("/gdb.sock"))
            .unwrap_or_else(|| panic!("no private socket in {attach}"))
            .to_string(),
    };
    assert_eq!(
        words,
        [
            "gdb".to_string(),
            vmlinux.display().to_string(),
            "-ex".into(),
            format!("target remote {target}")
        ],
        "{attach}"
    );
    let warned = printed.iter().any(|l| l.contains("any local user"));
    assert_eq!(warned, port.is_some(), "{printed:?}");
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });

    // The printed command, in batch mode, with the breakpoint and its checks.
    // `target remote` is retried until QEMU listens (it starts after the line).
    let end = Instant::now() + Duration::from_secs(120);
    let gdb = loop {
        let o = Command::new(&words[0])
            .args(["-nx", "-batch", "-ex", "set pagination off"])
            .args(&words[1..])
            .args(["-ex", &format!("hbreak {FUNCTION}")])
            .args(["-ex", "continue"])
            .args(["-ex", "info registers rip"])
            .args(["-ex", "delete", "-ex", "detach"])
            .stdin(Stdio::null())
            .output()
            .expect("run gdb (Debian package gdb)");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let not_yet = err.contains("Connection refused") || err.contains("No such file");
        if not_yet && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        break o;
    };
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&gdb.stdout),
        String::from_utf8_lossy(&gdb.stderr)
    );
    assert!(
        out.contains("Hardware assisted breakpoint 1 at 0x"),
        "{out}"
    );
    assert!(
        out.contains("Breakpoint 1, ") && out.contains(FUNCTION),
        "the breakpoint was not hit:\n{out}"
    );
    assert!(
        out.contains(&format!("<{FUNCTION}")),
        "rip not in {FUNCTION}:\n{out}"
    );

    let o = child.wait_with_output().unwrap();
    let err = rest.join().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}\n{err}", printed.concat());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "nokaslr\nsynced\n");
}

#[test]
fn words_of_the_printed_line() {
    assert_eq!(
        shell_words("gdb '/a b/vmlinux' -ex 'target remote 127.0.0.1:1'"),
        ["gdb", "/a b/vmlinux", "-ex", "target remote 127.0.0.1:1"]
    );
}
