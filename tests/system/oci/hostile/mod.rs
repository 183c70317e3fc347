//! A hostile registry on 127.0.0.1, written here: it answers the OCI
//! distribution API with whatever a test gives it (valid manifests and blobs
//! that carry an attack, or answers that misbehave: a manifest of hundreds of
//! megabytes, a blob far larger than its descriptor says, a body that trickles
//! a byte every few seconds), and counts what it sent. The tests are the
//! attacks; each is refused or neutralised, within its cap, and a pull stops
//! within a second of SIGTERM. Peak memory is measured with `/usr/bin/time`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::layout::{digest, gzip};
use crate::faults::registry::read_head;

/// What the registry sends for one path.
#[derive(Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `fill`, with a Content-Length or chunked.
    Generated {
        len: u64,
        fill: u8,
        declare_length: bool,
    },
    /// A JSON manifest of about `len` bytes (a long annotation), chunked.
    HugeJson {
        len: u64,
    },
    /// The headers, then these bytes one at a time, `every` apart.
    Trickle {
        bytes: Vec<u8>,
        every: Duration,
    },
}

pub struct Hostile {
    pub addr: String,
    routes: Arc<Mutex<HashMap<String, (String, Body)>>>,
    /// Body bytes sent, all requests together.
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Hostile {
    pub fn start() -> Hostile {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let routes: Arc<Mutex<HashMap<String, (String, Body)>>> = Default::default();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (routes.clone(), sent.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (r, s, st) = (r.clone(), s.clone(), st.clone());
                        std::thread::spawn(move || serve(c, &r, &s, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hostile {
            addr,
            routes,
            sent,
            stop,
        }
    }

    pub fn route(&self, path: &str, content_type: &str, body: Body) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), (content_type.to_string(), body));
    }

    /// Serves `bytes` as the blob of `repo` named by their digest; returns
    /// the descriptor a manifest would list (with `size` as declared).
    pub fn blob(&self, repo: &str, media_type: &str, bytes: Vec<u8>) -> serde_json::Value {
        let d = digest(&bytes);
        let size = bytes.len();
        self.route(
            &format!("/v2/{repo}/blobs/{d}"),
            "application/octet-stream",
            Body::Bytes(bytes),
        );
        json!({"mediaType": media_type, "digest": d, "size": size})
    }

    /// An image of `layers` (already compressed, with their media type)
    /// under `repo:tag`.
    pub fn image(&self, repo: &str, tag: &str, layers: Vec<serde_json::Value>) {
        let config = self.blob(
            repo,
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        );
        let m = json!({
            "schemaVersion": 2,
            "mediaType": super::layout::MANIFEST,
            "config": config,
            "layers": layers,
        });
        self.route(
            &format!("/v2/{repo}/manifests/{tag}"),
            super::layout::MANIFEST,
            Body::Bytes(serde_json::to_vec(&m).unwrap()),
        );
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

fn serve(
    mut c: TcpStream,
    routes: &Mutex<HashMap<String, (String, Body)>>,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    c.set_nonblocking(false).unwrap();
    let Some(head) = read_head(&mut c) else {
        return;
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = path.split('?').next().unwrap_or("/").to_string();
    if path == "/v2/" || path == "/v2" {
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        return;
    }
    let Some((ct, body)) = routes.lock().unwrap().get(&path).cloned() else {
        let msg = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#;
        let _ = write!(
            c,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            msg.len()
        );
        let _ = c.write_all(msg);
        return;
    };
    let count = |n: usize| sent.fetch_add(n as u64, Ordering::Relaxed);
    match body {
        Body::Bytes(b) => {
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            if c.write_all(&b).is_ok() {
                count(b.len());
            }
        }
        Body::Generated {
            len,
            fill,
            declare_length,
        } => {
            let framing = if declare_length {
                format!("Content-Length: {len}")
            } else {
                "Transfer-Encoding: chunked".to_string()
            };
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\n{framing}\r\nConnection: close\r\n\r\n"
            );
            let buf = vec![fill; 64 << 10];
            let mut left = len;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                let n = left.min(buf.len() as u64) as usize;
                let ok = if declare_length {
                    c.write_all(&buf[..n])
                } else {
                    write!(c, "{n:x}\r\n")
                        .and_then(|_| c.write_all(&buf[..n]))
                        .and_then(|_| c.write_all(b"\r\n"))
                };
                if ok.is_err() {
                    return;
                }
                count(n);
                left -= n as u64;
            }
            if !declare_length {
                let _ = c.write_all(b"0\r\n\r\n");
            }
        }
        Body::HugeJson { len } => {
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            let start = br#"{"schemaVersion":2,"layers":[],"annotations":{"x":""#;
            let mut chunk = |b: &[u8]| {
                write!(c, "{:x}\r\n", b.len())
                    .and_then(|_| c.write_all(b))
                    .and_then(|_| c.write_all(b"\r\n"))
                    .map(|_| count(b.len()))
            };
            if chunk(start).is_err() {
                return;
            }
            let fill = vec![b'A'; 64 << 10];
            let mut left = len;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                if chunk(&fill).is_err() {
                    return;
                }
                left = left.saturating_sub(fill.len() as u64);
            }
            let _ = chunk(br#""}}"#);
            let _ = c.write_all(b"0\r\n\r\n");
        }
        Body::Trickle { bytes, every } => {
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            for b in bytes {
                if stop.load(Ordering::Relaxed) || c.write_all(&[b]).is_err() {
                    return;
                }
                count(1);
                std::thread::sleep(every);
            }
        }
    }
}

/// `lvh` with an isolated cache and the given extra environment.
fn lvh_cmd(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = crate::support::lvh();
    c.args(args).env("LVH_CACHE_DIR", cache);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs lvh under `/usr/bin/time` and returns its output and peak RSS (KiB).
fn lvh_measured(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> (Output, u64, Duration) {
    let report = cache.join("time.txt");
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_lvh"));
    c.args(args)
        .env("CI", "true")
        .env_remove("LVH_LOG")
        .env("LVH_CACHE_DIR", cache);
    for (k, v) in env {
        c.env(k, v);
    }
    let t0 = Instant::now();
    let o = c.output().expect("run /usr/bin/time lvh");
    let elapsed = t0.elapsed();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no RSS in {text:?}"));
    (o, kib, elapsed)
}

/// The peak RSS (KiB) of a running process, from /proc.
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts `lvh args`, waits until `busy` says the attack is under way,
/// sends SIGTERM, and returns how long lvh took to exit, its output and its
/// peak RSS just before the signal.
fn terminate_during(
    args: &[&str],
    cache: &Path,
    env: &[(&str, &str)],
    busy: impl Fn() -> bool,
) -> (Duration, Output, u64) {
    let child: Child = lvh_cmd(args, cache, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while !busy() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(busy(), "the attack never started");
    std::thread::sleep(Duration::from_millis(300));
    let rss = vm_hwm(child.id());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t0 = Instant::now();
    let o = child.wait_with_output().unwrap();
    (t0.elapsed(), o, rss)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Prints a figure for the report (visible with --nocapture).
fn figure(what: &str, rss_kib: u64, time: Duration) {
    eprintln!(
        "hostile-registry figure: {what}: peak RSS {:.1} MiB, {:.2} s",
        rss_kib as f64 / 1024.0,
        time.as_secs_f64()
    );
}

/// Files (not directories) under `dir`, as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// A gzip tar layer descriptor of `entries` (path, type, mode, data, link).
fn tar_layer(
    h: &Hostile,
    repo: &str,
    entries: &[(&str, tar::EntryType, u32, &[u8], Option<&str>)],
) -> serde_json::Value {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data, link) in entries {
        let mut hd = tar::Header::new_gnu();
        hd.set_entry_type(*kind);
        hd.set_mode(*mode);
        hd.set_size(data.len() as u64);
        if let Some(l) = link {
            hd.set_link_name(l).unwrap();
        }
        hd.set_path(path).unwrap();
        hd.set_cksum();
        b.append(&hd, *data).unwrap();
    }
    h.blob(
        repo,
        super::layout::TAR_GZIP,
        gzip(&b.into_inner().unwrap()),
    )
}

mod attacks;
