//! A real registry for tests: Debian's `docker-registry` on 127.0.0.1 at a free
//! port, storing in a temp dir, stopped on drop; plus a byte-counting TCP proxy
//! that can cut connections after a budget, to interrupt pulls on purpose.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lvh::exec::{Child, Cmd, Io};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Registry {
    _child: Child,
    pub addr: String,
    pub storage: PathBuf,
    pub dir: tempfile::TempDir,
}

pub use super::free_port;

/// A bare `GET path` returning the status code, if the server answered.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// A registry whose config ends with `extra` YAML (e.g. an `auth:` section);
    /// `{dir}` in it stands for the registry's temp dir.
    pub fn start_with(extra: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        // Retry on the rare race where another process takes the port first.
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let cfg = dir.path().join("config.yml");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{}",
                    storage.display(),
                    extra.replace("{dir}", &dir.path().display().to_string())
                ),
            )
            .unwrap();
            let log = dir.path().join("registry.log");
            let mut child = Cmd::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .spawn(Io::Null, Io::File(log.clone()), Io::File(log.clone()))
                .expect("start docker-registry (Debian package docker-registry)");
            let end = Instant::now() + START_TIMEOUT;
            while Instant::now() < end {
                // 200, or 401 when the registry wants credentials.
                if matches!(http_status(&addr, "/v2/"), Some(200 | 401)) {
                    return Registry {
                        _child: child,
                        addr,
                        storage,
                        dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.terminate();
            eprintln!(
                "registry on {addr} did not come up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("docker-registry did not start");
    }

    /// `127.0.0.1:<port>/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// The stored file of a blob.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// Forwards connections to a target, counting bytes sent back to clients; when
/// `cut_after` is set, drops every connection once that many bytes went back.
pub struct Proxy {
    pub addr: String,
    pub bytes_to_client: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: &str, cut_after: Option<u64>) -> Proxy {
        Proxy::start_inner(target, cut_after, None)
    }

    /// A proxy that passes at most `bytes_per_sec` each way (uploads too, so a
    /// push takes seconds).
    pub fn start_slow(target: &str, bytes_per_sec: u64) -> Proxy {
        Proxy::start_inner(target, None, Some(bytes_per_sec))
    }

    fn start_inner(target: &str, cut_after: Option<u64>, rate: Option<u64>) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, target) = (counter.clone(), stop.clone(), target.to_string());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let (c2, client2, server2) = (
                            c.clone(),
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                        );
                        std::thread::spawn(move || pump(client2, server2, None, None, rate));
                        std::thread::spawn(move || pump(server, client, Some(c2), cut_after, rate));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            addr,
            bytes_to_client: counter,
            stop,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_to_client.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    count: Option<Arc<AtomicU64>>,
    cut_after: Option<u64>,
    rate: Option<u64>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut n = n;
        if let Some(c) = &count {
            let before = c.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(limit) = cut_after {
                if before + n as u64 > limit {
                    n = limit.saturating_sub(before) as usize;
                    let _ = to.write_all(&buf[..n]);
                    break;
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(r) = rate {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Deterministic test data: `len` bytes, pseudo-random with zero runs (so it
/// compresses somewhat and has holes, like a disk image).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // About a third of the bytes end up in zero runs.
        if (x >> 50) == 0 {
            v.extend(std::iter::repeat_n(0u8, 70_000.min(len - v.len())));
        } else {
            for b in x.to_le_bytes() {
                if v.len() < len {
                    // Small alphabet: compressible, like real file systems.
                    v.push(b & 0x0f);
                }
            }
        }
    }
    v
}

pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}
