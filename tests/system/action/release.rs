//! A release of lvh served as GitHub serves one, for the action's install step:
//! `<base>/<tag>/lvh-<version>-<target>.tar.gz` (the binary at
//! `lvh-<version>-<target>/lvh`) and `<base>/<tag>/SHA256SUMS`, made from the
//! binary cargo built for the tests (stripped, as a release's is), served by a
//! small HTTP server on 127.0.0.1 that counts what it serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The release tag of the built binary's version.
pub fn tag() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

pub fn target() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    }
}

/// `<dir>/<tag>/{lvh-<version>-<target>.tar.gz,SHA256SUMS}` for the built
/// binary, made once per test process.
pub fn release_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let name = format!("lvh-{}-{}", env!("CARGO_PKG_VERSION"), target());
        let stage = dir.join("stage").join(&name);
        std::fs::create_dir_all(&stage).unwrap();
        let st = Command::new("strip")
            .arg("-o")
            .arg(stage.join("lvh"))
            .arg(env!("CARGO_BIN_EXE_lvh"))
            .status()
            .expect("strip (binutils)");
        assert!(st.success(), "strip failed");
        std::fs::write(stage.join("LICENSE"), "Apache-2.0\n").unwrap();
        let rel = dir.join(tag());
        std::fs::create_dir_all(&rel).unwrap();
        let tarball = format!("{name}.tar.gz");
        let st = Command::new("tar")
            .arg("-czf")
            .arg(rel.join(&tarball))
            .arg("-C")
            .arg(dir.join("stage"))
            .arg(&name)
            .status()
            .unwrap();
        assert!(st.success(), "tar failed");
        let sum = Sha256::digest(std::fs::read(rel.join(&tarball)).unwrap());
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        // Another target's line first: the step must pick its own.
        std::fs::write(
            rel.join("SHA256SUMS"),
            format!(
                "{}  lvh-{v}-riscv64gc-unknown-linux-gnu.tar.gz\n{hex}  {tarball}\n",
                "0".repeat(64),
                v = env!("CARGO_PKG_VERSION")
            ),
        )
        .unwrap();
        dir
    })
}

/// A static file server on 127.0.0.1 (HTTP/1.0, GET only), stopped on drop.
pub struct Server {
    pub url: String,
    /// The paths asked for, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    addr: String,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, reqs, stopping) = (root.to_owned(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, reqs) = (root.clone(), reqs.clone());
                std::thread::spawn(move || serve(conn, &root, &reqs));
            }
        });
        Server {
            url: format!("http://{addr}"),
            requests,
            stop,
            addr,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(mut conn: TcpStream, root: &Path, reqs: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The rest of the header.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    reqs.lock().unwrap().push(path.clone());
    let file = root.join(path.trim_start_matches('/'));
    let safe = !path.contains("..");
    match std::fs::File::open(&file) {
        Ok(mut f) if safe && file.is_file() => {
            let len = f.metadata().unwrap().len();
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\r\n"
            );
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
        _ => {
            let _ = write!(conn, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}
