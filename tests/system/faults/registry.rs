//! Registry faults between lvh and a real registry (Debian's docker-registry),
//! injected by a small HTTP proxy written here: a connection reset in the
//! middle of a blob, a truncated blob, a 500, and a blob whose bytes were
//! changed. The first three are retried (bounded) and the pull completes, or
//! fails clearly once the retries run out; a wrong digest is refused at once.
//! Never a corrupt file in `--dir` or in the OCI cache.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lvh::oci::{PullOptions, ResolveOptions};
use lvh::progress::NullReporter;

use crate::oci::registry::{test_bytes, write_file, Registry};
use crate::support::{assert_code, text};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Half the blob, then a TCP reset.
    Reset,
    /// The full headers (so the full Content-Length), half the body, a clean close.
    Truncate,
    /// 500 Internal Server Error instead of the blob.
    Status500,
    /// The blob with one byte changed.
    WrongDigest,
}

/// An HTTP proxy that injects `fault` into the first `times` blob downloads.
struct FaultProxy {
    addr: String,
    injected: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FaultProxy {
    fn start(target: &str, fault: Fault, times: u32) -> FaultProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let injected = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (inj, st, target) = (injected.clone(), stop.clone(), target.to_string());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (inj, target) = (inj.clone(), target.clone());
                        std::thread::spawn(move || serve(c, &target, fault, times, &inj));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            addr,
            injected,
            stop,
        }
    }

    fn injected(&self) -> u32 {
        self.injected.load(Ordering::Relaxed)
    }
}

/// Reads up to the end of the HTTP head (`\r\n\r\n`).
pub(crate) fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// One request per connection (the answer says `Connection: close`):
/// forwarded to the registry with `Connection: close`, its answer read
/// whole, then passed on or broken.
fn serve(mut client: TcpStream, target: &str, fault: Fault, times: u32, injected: &AtomicU32) {
    client.set_nonblocking(false).unwrap();
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let forwarded: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let forwarded = forwarded.trim_end().to_string() + "\r\nConnection: close\r\n\r\n";
    let Ok(mut server) = TcpStream::connect(target) else {
        return;
    };
    server.write_all(forwarded.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = server.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    let (rhead, body) = resp.split_at(split);
    let rhead = String::from_utf8_lossy(rhead)
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\nConnection: close\r\n\r\n";
    let blob_get = request_line.starts_with("GET ")
        && request_line.contains("/blobs/sha256:")
        && rhead.starts_with("HTTP/1.1 200")
        && body.len() > 100_000;
    let inject = blob_get
        && injected
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < times).then_some(n + 1)
            })
            .is_ok();
    if !inject {
        let _ = client.write_all(rhead.as_bytes());
        let _ = client.write_all(body);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    match fault {
        Fault::Reset => {
            let _ = client.write_all(rhead.as_bytes());
            let _ = client.write_all(&body[..body.len() / 2]);
            // SO_LINGER 0: close with RST instead of FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a socket we own, with a live struct of the right size.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&client),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(client);
        }
        Fault::Truncate => {
            let _ = client.write_all(rhead.as_bytes());
            let _ = client.write_all(&body[..body.len() / 2]);
            let _ = client.shutdown(Shutdown::Both);
        }
        Fault::Status500 => {
            let _ = client.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = client.shutdown(Shutdown::Both);
        }
        Fault::WrongDigest => {
            let mut b = body.to_vec();
            let mid = b.len() / 2;
            b[mid] ^= 0x5a;
            let _ = client.write_all(rhead.as_bytes());
            let _ = client.write_all(&b);
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

/// Every name below `dir` that is not a lock file, recursively.
pub(super) fn files_under(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            v.extend(files_under(&e.path()));
        } else if !e.file_name().to_string_lossy().ends_with(".lock") {
            v.push(e.path().display().to_string());
        }
    }
    v
}

pub(super) fn pull(cache: &Path, reference: &str, dir: &Path) -> std::process::Output {
    crate::support::lvh()
        .args(["images", "pull", reference, "--dir", dir.to_str().unwrap()])
        .env("LVH_CACHE_DIR", cache)
        .output()
        .unwrap()
}

#[test]
fn registry_faults_are_retried_or_refused_and_never_leave_a_corrupt_file() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let data = test_bytes(4 << 20, 31);
    let img = t.path().join("base.qcow2");
    write_file(&img, &data);
    let o = crate::support::lvh()
        .args([
            "images",
            "push",
            img.to_str().unwrap(),
            &reg.reference("faults", "t"),
        ])
        .env("LVH_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_code(&o, 0);
    let mut figures = Vec::new();

    // Transient faults, twice each: retried, and the pull completes.
    for (i, fault) in [Fault::Reset, Fault::Truncate, Fault::Status500]
        .into_iter()
        .enumerate()
    {
        let proxy = FaultProxy::start(&reg.addr, fault, 2);
        let d = t.path().join(format!("ok-{i}"));
        let o = pull(&cache, &format!("{}/faults:t", proxy.addr), &d);
        assert_code(&o, 0);
        assert_eq!(proxy.injected(), 2, "{fault:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("retrying"),
            "{fault:?}: {}",
            text(&o)
        );
        assert!(std::fs::read(d.join("images/base.qcow2")).unwrap() == data);
        assert_eq!(
            files_under(&d),
            vec![d.join("images/base.qcow2").display().to_string()]
        );
        figures.push(format!("{fault:?} x2: retried, pulled (exit 0)"));
    }

    // A reset every time: the retries run out, a clear error, nothing written.
    let proxy = FaultProxy::start(&reg.addr, Fault::Reset, 100);
    let d = t.path().join("reset-always");
    let o = pull(&cache, &format!("{}/faults:t", proxy.addr), &d);
    assert_code(&o, 1);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("failed to pull") || e.contains("download failed"),
        "{e}"
    );
    assert_eq!(proxy.injected(), lvh::oci::RETRY_ATTEMPTS, "{e}");
    assert!(files_under(&d).is_empty(), "{:?}", files_under(&d));
    figures.push(format!(
        "Reset always: {} attempts, then exit 1",
        lvh::oci::RETRY_ATTEMPTS
    ));

    // Changed bytes: refused at the first attempt, never retried.
    let proxy = FaultProxy::start(&reg.addr, Fault::WrongDigest, 100);
    let d = t.path().join("bad-digest");
    let o = pull(&cache, &format!("{}/faults:t", proxy.addr), &d);
    assert_code(&o, 1);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(!e.contains("retrying"), "{e}");
    assert_eq!(proxy.injected(), 1);
    assert!(files_under(&d).is_empty(), "{:?}", files_under(&d));
    figures.push("WrongDigest: refused, no retry, exit 1".to_string());

    // The run cache (lvh run --image <ref>): the same rules, nothing corrupt cached.
    let opts = ResolveOptions {
        pull: PullOptions::for_arch(lvh::arch::Arch::Amd64),
        image_name: None,
    };
    let run_cache = t.path().join("run-cache");
    let bad = FaultProxy::start(&reg.addr, Fault::WrongDigest, 100);
    let e = lvh::oci::resolve_image_with(
        &format!("{}/faults:t", bad.addr),
        &opts,
        &run_cache,
        &NullReporter,
    )
    .unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    let images = run_cache.join("oci/images");
    assert!(
        files_under(&images).is_empty(),
        "{:?}",
        files_under(&images)
    );
    let flaky = FaultProxy::start(&reg.addr, Fault::Truncate, 2);
    let ok = lvh::oci::resolve_image_with(
        &format!("{}/faults:t", flaky.addr),
        &opts,
        &run_cache,
        &NullReporter,
    )
    .unwrap();
    assert!(std::fs::read(&ok.path).unwrap() == data);
    assert_eq!(flaky.injected(), 2);
    eprintln!("REGISTRY-FIGURES: {}", figures.join("; "));
}
