//! The image builder's appliance (libguestfs under TCG): a `run-command`'s
//! output reaches `lvh images build -v` while the command runs, not when it
//! ends, and a failing command's error carries its last lines. And the
//! libguestfs binding's ownership rules, held with the real library: a handle
//! moves between threads, the console callback lives exactly as long as
//! `with_console`, and the thread that loaded libguestfs has finished exiting
//! before lvh exits.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::fixtures::image::{root_image, ROOT_IMAGE};
use crate::support::{lvh, text};

/// A build directory whose `images/root.img` is the shared root fixture, with
/// one child image running `cmd`.
fn dir_with_command(cmd: &str) -> tempfile::TempDir {
    let root = root_image(Arch::host()).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("images")).unwrap();
    std::os::unix::fs::symlink(&root, d.path().join("images").join(ROOT_IMAGE)).unwrap();
    let config = serde_json::json!([{
        "name": "streamed.qcow2",
        "parent": ROOT_IMAGE,
        "actions": [{"comment": "", "op": {"Cmd": cmd}, "type": "run-command"}],
    }]);
    std::fs::write(d.path().join("images.json"), config.to_string()).unwrap();
    d
}

fn build(d: &tempfile::TempDir) -> std::process::Command {
    build_in(d.path())
}

fn build_in(dir: &std::path::Path) -> std::process::Command {
    let mut c = lvh();
    c.args(["images", "build", "-v", "--dir"])
        .arg(dir)
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    c
}

#[test]
fn a_commands_output_streams_while_it_runs() {
    // The gap between the two lines must show on lvh's side: were the output
    // returned only at the end, both would arrive together.
    let d = dir_with_command("echo lvh-early; echo lvh-stderr >&2; sleep 8; echo lvh-late");
    let mut child = build(&d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen: Vec<(String, Instant)> = Vec::new();
    let mut all = String::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        all.push_str(&line);
        all.push('\n');
        for want in ["lvh-early", "lvh-stderr", "lvh-late"] {
            if line.trim_start().starts_with('|') && line.ends_with(want) {
                seen.push((want.to_string(), Instant::now()));
            }
        }
    }
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}\n{all}");
    let at = |w: &str| {
        seen.iter()
            .find(|(n, _)| n == w)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("{w} was not shown as a line:\n{all}"))
    };
    at("lvh-stderr");
    let gap = at("lvh-late") - at("lvh-early");
    assert!(
        gap >= Duration::from_secs(4),
        "lvh-early came only {gap:?} before lvh-late:\n{all}"
    );
}

#[test]
fn a_failing_commands_error_ends_with_its_output() {
    let d = dir_with_command("for i in $(seq 1 100); do echo lvh-n-$i; done; exit 7");
    let o = build(&d).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // Every line streamed by; the error has the last ones only.
    assert!(
        err.contains("| lvh-n-1\n") && err.contains("| lvh-n-100"),
        "{}",
        text(&o)
    );
    let in_error: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim_start().starts_with('|'))
        .collect();
    assert!(
        in_error.iter().any(|l| l.contains("lvh-n-")),
        "{}",
        text(&o)
    );
    assert!(
        !in_error.iter().any(|l| l.ends_with("lvh-n-60")),
        "{}",
        text(&o)
    );
    assert!(!d.path().join("images/streamed.qcow2").exists());
}

/// An `LD_PRELOAD` shim: the thread-exit destructors libcrypto registers
/// (OpenSSL's per-thread cleanup, set up when libguestfs is loaded: libvirt ->
/// curl -> libssh2 -> OpenSSL) are made to take 300 ms, and an exit handler
/// registered before all others (so it runs after OpenSSL's) reports how many
/// had started and finished when the process exited.
const EXIT_RACE_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
typedef void (*dtor_t)(void *);
static dtor_t real[4];
static atomic_int wrapped, started, finished;
#define SLOW(i) static void slow##i(void *p) { atomic_fetch_add(&started, 1); \
    usleep(300000); real[i](p); atomic_fetch_add(&finished, 1); }
SLOW(0) SLOW(1) SLOW(2) SLOW(3)
static dtor_t slows[4] = { slow0, slow1, slow2, slow3 };
int pthread_key_create(pthread_key_t *k, dtor_t d) {
    static int (*next)(pthread_key_t *, dtor_t);
    if (!next) next = (int (*)(pthread_key_t *, dtor_t))dlsym(RTLD_NEXT, "pthread_key_create");
    Dl_info info;
    if (d && dladdr((void *)d, &info) && info.dli_fname && strstr(info.dli_fname, "libcrypto")) {
        int i = atomic_fetch_add(&wrapped, 1);
        if (i < 4) { real[i] = d; d = slows[i]; }
    }
    return next(k, d);
}
static void report(void) {
    fprintf(stderr, "exit-race-shim pid=%d wrapped=%d started=%d finished=%d\n",
            getpid(), atomic_load(&wrapped), atomic_load(&started), atomic_load(&finished));
}
__attribute__((constructor)) static void init(void) { atexit(report); }
"#;

/// The heap corruption once seen after `images build` printed its summary:
/// the worker thread that loaded libguestfs was still running OpenSSL's
/// thread-exit cleanup while the main thread, already past the build, ran
/// OpenSSL's exit handler, which frees the same per-thread state (a double
/// free). With the cleanup slowed down by the shim, lvh must still wait for it:
/// every such destructor that started has finished before lvh exits. (Before
/// the fix, lvh exited with started=1 finished=0.)
#[test]
fn the_thread_that_loaded_libguestfs_has_exited_before_lvh_exits() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("shim.c");
    let so = d.path().join("shim.so");
    std::fs::write(&src, EXIT_RACE_SHIM).unwrap();
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", text(&cc));
    // A derived image whose parent is any raw file: libguestfs is loaded (on
    // a build worker) as the appliance is set up, and an invalid appliance
    // size then ends the build before any launch, so this takes seconds.
    let dir = d.path().join("build");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("images/base.img"), vec![0u8; 1 << 20]).unwrap();
    let config = serde_json::json!([{
        "name": "child.img",
        "parent": "base.img",
        "actions": [{"op": {"Dir": "/x"}, "type": "mkdir"}],
    }]);
    std::fs::write(dir.join("images.json"), config.to_string()).unwrap();
    let child = build_in(&dir)
        .env("LD_PRELOAD", &so)
        .env("LVH_APPLIANCE_CPUS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("LVH_APPLIANCE_CPUS"), "{}", text(&o));
    let report = err
        .lines()
        .find(|l| l.starts_with(&format!("exit-race-shim pid={pid} ")))
        .unwrap_or_else(|| panic!("no report from lvh (pid {pid}):\n{}", text(&o)));
    let field = |name: &str| -> u32 {
        report
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    assert!(field("wrapped") >= 1, "OpenSSL was not set up: {report}");
    assert!(
        field("started") >= 1 && field("finished") == field("started"),
        "lvh exited while a thread's OpenSSL cleanup was unfinished: {report}\n{}",
        text(&o)
    );
}

/// The binding's rules with a real appliance: a handle made on one thread is
/// launched and used on a second and closed on a third; the console callback
/// delivers a command's console output to the sink of the `with_console` it
/// runs in, and after `with_console` ends (normally, or by a panic in its
/// body) nothing is delivered any more (a callback left registered would
/// write through a dangling pointer; ASan and valgrind runs see that).
#[test]
fn a_handle_moves_between_threads_and_its_console_callback_ends_with_with_console() {
    use lvh::images::guestfs::Handle;
    crate::support::require_guestfs_tcg_env();
    let root = root_image(Arch::host()).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    let overlay = d.path().join("o.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&root)
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(st.success());
    let h = std::thread::spawn(move || {
        let mut h = Handle::new().unwrap();
        h.add_drive(&overlay, "qcow2", false).unwrap();
        h
    })
    .join()
    .unwrap();
    let (h, inside, before_panic) = std::thread::spawn(move || {
        let mut h = h;
        h.launch().unwrap();
        h.mount("/dev/sda", "/").unwrap();
        let mut inside = Vec::new();
        h.with_console(&mut |l: &str| inside.push(l.to_string()), |h| {
            h.sh("echo lvh-inside > /dev/console; sleep 1")
        })
        .unwrap();
        let mut before_panic = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.with_console(&mut |l: &str| before_panic.push(l.to_string()), |h| {
                h.sh("echo lvh-before-panic > /dev/console; sleep 1")
                    .unwrap();
                panic!("the body panics");
            })
        }));
        assert!(r.is_err());
        // No callback is registered now: this output reaches no sink.
        h.sh("echo lvh-after > /dev/console; sleep 1").unwrap();
        (h, inside, before_panic)
    })
    .join()
    .unwrap();
    drop(h);
    assert!(
        inside.iter().any(|l| l.contains("lvh-inside")),
        "{inside:?}"
    );
    assert!(
        before_panic.iter().any(|l| l.contains("lvh-before-panic")),
        "{before_panic:?}"
    );
    for lines in [&inside, &before_panic] {
        assert!(!lines.iter().any(|l| l.contains("lvh-after")), "{lines:?}");
    }
}
