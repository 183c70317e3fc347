//! `lvh::exec` against real processes: deadlines, grace periods, process groups,
//! error contents and output streaming.

use std::time::{Duration, Instant};

use lvh::cancel::CancelToken;
use lvh::exec::{Cmd, ExecError, Io};
use lvh::progress::RecordingReporter;

fn sh(script: &str) -> Cmd {
    Cmd::new("sh")
        .args(["-c", script])
        .cancel_token(CancelToken::new())
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_dead(pid: i32, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let start = Instant::now();
    let err = sh("trap '' TERM; echo ready; while :; do sleep 1; done")
        .timeout(Duration::from_millis(300))
        .grace(Duration::from_millis(700))
        .run(&RecordingReporter::default())
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    assert!(
        took >= Duration::from_millis(1000),
        "killed before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn dropping_a_spawned_child_kills_a_sigterm_ignoring_group() {
    let child = sh("trap '' TERM; while :; do sleep 1; done")
        .grace(Duration::from_millis(300))
        .spawn(Io::Null, Io::Null, Io::Null)
        .unwrap();
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(pid));
    let start = Instant::now();
    drop(child);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(
        wait_dead(pid, Duration::from_secs(2)),
        "leader {pid} survived"
    );
}

#[test]
fn a_deadline_fires_and_names_the_command() {
    let start = Instant::now();
    let err = Cmd::new("sleep")
        .arg("30")
        .cancel_token(CancelToken::new())
        .timeout(Duration::from_millis(200))
        .run(&RecordingReporter::default())
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    let msg = err.to_string();
    assert!(
        msg.contains("`sleep 30` did not finish within 0.2s"),
        "{msg}"
    );
}

#[test]
fn grandchildren_die_with_the_child_when_it_exits() {
    // The leader exits at once and leaves a background grandchild behind.
    let out = sh("sleep 300 & echo $!")
        .capture_stdout()
        .run(&RecordingReporter::default())
        .unwrap();
    let grandchild: i32 = out.stdout_str().parse().unwrap();
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)),
        "orphan {grandchild} left"
    );
}

#[test]
fn grandchildren_die_when_the_guard_is_dropped() {
    let mut child = sh("sleep 300 & echo $!; wait")
        .spawn(Io::Null, Io::Piped, Io::Null)
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.take_stdout().unwrap()),
        &mut line,
    )
    .unwrap();
    let grandchild: i32 = line.trim().parse().unwrap();
    assert!(alive(grandchild));
    drop(child);
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)),
        "orphan {grandchild} left"
    );
}

#[test]
fn grandchildren_die_on_timeout() {
    let rec = RecordingReporter::default();
    let err = sh("sleep 300 & echo $!; wait")
        .timeout(Duration::from_millis(300))
        .run(&rec)
        .unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }));
    let grandchild: i32 = rec.lines()[0].parse().unwrap();
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)),
        "orphan {grandchild} left"
    );
}

#[test]
fn a_failing_child_error_shows_argv_status_and_stderr_tail() {
    let err = sh("echo to-stdout; for i in 1 2 3 4 5; do echo err-$i >&2; done; exit 3")
        .tail_lines(3)
        .run(&RecordingReporter::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`sh -c 'echo to-stdout;"), "{msg}");
    assert!(msg.contains("exited with status 3"), "{msg}");
    assert!(msg.contains("err-3") && msg.contains("err-5"), "{msg}");
    assert!(!msg.contains("err-2"), "tail should be 3 lines: {msg}");
    assert_eq!(err.status().and_then(|s| s.code()), Some(3));
}

#[test]
fn a_child_killed_by_a_signal_says_so() {
    let err = sh("kill -KILL $$")
        .run(&RecordingReporter::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("killed by signal 9 (SIGKILL)"),
        "{err}"
    );
}

#[test]
fn lines_are_streamed_to_the_reporter_and_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let rec = RecordingReporter::default();
    sh("echo a; echo b >&2; printf c")
        .log_to(&log)
        .run(&rec)
        .unwrap();
    let mut lines = rec.lines();
    lines.sort();
    assert_eq!(lines, vec!["a", "b", "c"]);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("a\n") && logged.contains("b\n") && logged.contains('c'));
}

#[test]
fn captured_stdout_is_byte_exact_and_large_outputs_do_not_block() {
    let out = sh("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tail")
        .capture_stdout()
        .run(&RecordingReporter::default())
        .unwrap();
    assert_eq!(out.stdout.len(), 3_000_000 + 1 + 5);
}

#[test]
fn stdin_bytes_reach_the_child() {
    let out = Cmd::new("cat")
        .cancel_token(CancelToken::new())
        .input(lvh::exec::Input::Bytes(b"hello\n".to_vec()))
        .read()
        .unwrap();
    assert_eq!(out, "hello");
}

#[test]
fn cancelling_interrupts_a_run() {
    let token = CancelToken::new();
    let t2 = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        t2.cancel();
    });
    let start = Instant::now();
    let err = Cmd::new("sleep")
        .arg("30")
        .cancel_token(token)
        .run(&RecordingReporter::default())
        .unwrap_err();
    assert!(matches!(err, ExecError::Interrupted { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_missing_program_is_named() {
    let err = Cmd::new("lvh-no-such-tool")
        .run(&RecordingReporter::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`lvh-no-such-tool` was not found in PATH"),
        "{err}"
    );
}
