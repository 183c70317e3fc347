//! A minimal QMP client (QEMU's JSON machine protocol) over the unix socket of
//! `-qmp unix:PATH,server=on,wait=off`: enough to stop, migrate to a file,
//! follow the migration, continue and quit, for saved VMs (`saved`).
//! Every call has a deadline; asynchronous events are skipped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The QMP arguments that make QEMU listen on `sock`.
pub fn qmp_args(sock: &Path) -> Vec<String> {
    vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", super::qemu::opt_path(sock)),
    ]
}

/// A QMP session in command mode (capabilities negotiated).
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Qmp {
    /// Connects to `sock`, retrying until QEMU listens (or `deadline`, or
    /// `alive` says QEMU is gone), and negotiates capabilities.
    pub fn connect(
        sock: &Path,
        deadline: Instant,
        alive: &mut dyn FnMut() -> bool,
    ) -> io::Result<Qmp> {
        let s = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() >= deadline || !alive() {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut q = Qmp {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(other(format!("not a QMP greeting: {greeting}")));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QEMU closed its QMP socket",
            ));
        }
        serde_json::from_str(&line).map_err(|e| other(format!("bad QMP line {line:?}: {e}")))
    }

    /// Runs one command and returns its `return` value; a QMP error is an
    /// error naming the command and QEMU's description.
    pub fn execute(&mut self, cmd: &str, args: Option<Value>) -> io::Result<Value> {
        let mut msg = json!({ "execute": cmd });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        writeln!(self.w, "{msg}")?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            let desc = v["error"]["desc"].as_str().unwrap_or("unknown error");
            return Err(other(format!("QMP {cmd} failed: {desc}")));
        }
    }

    /// Polls `query-migrate` until the migration completed; an error says why
    /// it failed or that it did not finish before `deadline`.
    pub fn wait_migration(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let r = self.execute("query-migrate", None)?;
            match migration_status(&r) {
                MigrationStatus::Completed => return Ok(()),
                MigrationStatus::Failed(why) => {
                    return Err(other(format!("the migration failed: {why}")))
                }
                MigrationStatus::Running => {}
            }
            if Instant::now() >= deadline {
                return Err(other("the migration did not finish in time".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls `query-status` until the VM left `inmigrate` (an incoming
    /// migration was loaded), returning the new status. Every millisecond:
    /// a restore waits on nothing else.
    pub fn wait_incoming(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            let r = self.execute("query-status", None)?;
            let status = r["status"].as_str().unwrap_or("").to_string();
            if status != "inmigrate" {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(other("the saved VM did not load in time".into()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Where a migration stands, from a `query-migrate` answer.
#[derive(Debug, PartialEq, Eq)]
pub enum MigrationStatus {
    Running,
    Completed,
    Failed(String),
}

pub fn migration_status(r: &Value) -> MigrationStatus {
    match r["status"].as_str() {
        Some("completed") => MigrationStatus::Completed,
        Some("failed" | "cancelled") => MigrationStatus::Failed(
            r["error-desc"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        ),
        _ => MigrationStatus::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_answers() {
        for (v, want) in [
            (json!({}), MigrationStatus::Running),
            (json!({"status": "active"}), MigrationStatus::Running),
            (json!({"status": "completed"}), MigrationStatus::Completed),
            (
                json!({"status": "failed", "error-desc": "Migration is disabled when VirtFS export path '/x' is mounted"}),
                MigrationStatus::Failed(
                    "Migration is disabled when VirtFS export path '/x' is mounted".into(),
                ),
            ),
            (
                json!({"status": "cancelled"}),
                MigrationStatus::Failed("no reason given".into()),
            ),
        ] {
            assert_eq!(migration_status(&v), want, "{v}");
        }
    }

    #[test]
    fn a_fake_qemu_session() {
        // A unit check of the protocol handling beside the real round trip
        // in the system tests: greeting, events skipped, errors named.
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("qmp.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            for reply in [
                r#"{"return": {}}"#,
                "{\"event\": \"STOP\"}\n{\"return\": {\"status\": \"paused\"}}",
                r#"{"error": {"class": "GenericError", "desc": "no such thing"}}"#,
            ] {
                line.clear();
                r.read_line(&mut line).unwrap();
                writeln!(w, "{reply}").unwrap();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut q = Qmp::connect(&sock, deadline, &mut || true).unwrap();
        assert_eq!(q.wait_incoming(deadline).unwrap(), "paused");
        let e = q.execute("frobnicate", None).unwrap_err().to_string();
        assert_eq!(e, "QMP frobnicate failed: no such thing");
        t.join().unwrap();
    }
}
