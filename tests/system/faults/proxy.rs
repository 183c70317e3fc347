//! A rule-driven HTTP proxy in front of the real registry, for faults that
//! depend on the request (a blob upload's PATCH or PUT, a manifest PUT, a
//! request whose bearer token has expired). One request per connection: the
//! proxy reads the whole request (head and body, `Content-Length` or chunked),
//! asks the rule what to do, and forwards it with `Connection: close` or
//! answers by itself.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::registry::read_head;

/// One request as the client sent it.
pub struct Req {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub head: String,
}

impl Req {
    /// A header's value (name matched without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn is_blob_upload(&self) -> bool {
        self.path.contains("/blobs/uploads/")
    }
}

/// What the proxy does with a request.
pub enum Action {
    /// Forward it and pass the registry's answer on.
    Forward,
    /// Forward it, then answer 500: the registry did the work and the client
    /// never heard.
    ForwardThen500,
    /// Answer with this whole HTTP response, without forwarding.
    Answer(String),
    /// Close the connection with a TCP reset, without forwarding.
    Reset,
}

pub type Rule = dyn Fn(&Req) -> Action + Send + Sync;

pub struct RuleProxy {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl Drop for RuleProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl RuleProxy {
    pub fn start(target: &str, rule: Arc<Rule>) -> RuleProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, target) = (stop.clone(), target.to_string());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (rule, target) = (rule.clone(), target.clone());
                        std::thread::spawn(move || serve(c, &target, &*rule));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RuleProxy { addr, stop }
    }
}

/// An HTTP response with a JSON body and extra header lines (each ending `\r\n`).
pub fn response(status: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one line ending in `\r\n` (kept).
fn read_line(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(1) => line.push(b[0]),
            _ => return None,
        }
    }
    Some(line)
}

/// The request body as sent (chunk framing kept, to forward unchanged).
fn read_body(s: &mut TcpStream, req: &Req) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line = read_line(s)?;
            let text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(text.trim().split(';').next()?, 16).ok()?;
            body.extend_from_slice(&line);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let l = read_line(s)?;
                    body.extend_from_slice(&l);
                    if l == b"\r\n" {
                        return Some(body);
                    }
                }
            }
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
        }
    }
    let n: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    body.resize(n, 0);
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// Closes with RST instead of FIN (SO_LINGER 0).
pub fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a live struct of the right size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

fn serve(mut client: TcpStream, target: &str, rule: &Rule) {
    client.set_nonblocking(false).unwrap();
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut first = head.split_whitespace();
    let req = Req {
        method: first.next().unwrap_or_default().to_string(),
        path: first.next().unwrap_or_default().to_string(),
        head: head.clone(),
    };
    let Some(body) = read_body(&mut client, &req) else {
        return;
    };
    let action = rule(&req);
    let forward = |client: &mut TcpStream, replace_answer: bool| {
        let head: String = head
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let head = head.trim_end().to_string() + "\r\nConnection: close\r\n\r\n";
        let Ok(mut server) = TcpStream::connect(target) else {
            return;
        };
        let _ = server.write_all(head.as_bytes());
        let _ = server.write_all(&body);
        let mut resp = Vec::new();
        let _ = server.read_to_end(&mut resp);
        if replace_answer {
            let _ = client.write_all(response("500 Internal Server Error", "", "").as_bytes());
        } else {
            let _ = client.write_all(&resp);
        }
    };
    match action {
        Action::Forward => forward(&mut client, false),
        Action::ForwardThen500 => forward(&mut client, true),
        Action::Answer(text) => {
            let _ = client.write_all(text.as_bytes());
        }
        Action::Reset => return reset(client),
    }
    let _ = client.shutdown(Shutdown::Both);
}
