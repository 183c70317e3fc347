//! The libguestfs appliance's size and its output: how many vCPUs and how much
//! memory it gets, and how a guest command's output reaches lvh's progress
//! display while the command runs.
//!
//! libguestfs returns a command's output only when the command ends, so a long
//! `apt-get install` used to print nothing for minutes. The command's output is
//! copied to the appliance's console (`tee /dev/console`), which libguestfs
//! forwards as `GUESTFS_EVENT_APPLIANCE` events; [`ConsoleLines`] turns those
//! byte chunks into clean lines. The command's exit status and the tail of its
//! output (for the error) still come back through `guestfs_sh`.

/// Lines of a failed command's output kept for the error message.
pub const ERROR_TAIL_LINES: usize = 40;

/// The appliance's memory (MiB) when the host has plenty. libguestfs's default
/// (1280 MiB on Debian 12's 1.48) is enough for apt; dpkg's unpacking of large
/// packages (`docker.io`) is page-cache bound, so more helps a little and costs
/// nothing the host misses.
pub const MEMSIZE_MIB: u32 = 2048;

/// vCPUs for the appliance: one under TCG, else the host's CPUs, at most 4.
/// Under TCG a second vCPU made it slower: the example config's `apt-get
/// install docker.io` took 325.6 s with 2 vCPUs against 262.9 s with one, on
/// this 2-core machine at a load average of 3-6 (README, "The appliance").
pub fn smp(host_cpus: usize, tcg: bool) -> u32 {
    match tcg {
        true => 1,
        false => host_cpus.clamp(1, 4) as u32,
    }
}

/// Whether the appliance runs under TCG: `LIBGUESTFS_BACKEND_SETTINGS` says
/// `force_tcg`, or the host has no `/dev/kvm`.
pub fn tcg(backend_settings: Option<&str>, kvm_present: bool) -> bool {
    let forced = backend_settings.is_some_and(|s| s.split(':').any(|w| w.trim() == "force_tcg"));
    forced || !kvm_present
}

/// Memory for the appliance: [`MEMSIZE_MIB`], or a quarter of the host's
/// available memory when that is less (never below libguestfs's minimum, 256).
pub fn memsize_mib(available_mib: Option<u64>) -> u32 {
    match available_mib {
        Some(a) => (a / 4).clamp(256, MEMSIZE_MIB as u64) as u32,
        None => MEMSIZE_MIB,
    }
}

/// `LVH_APPLIANCE_CPUS`: overrides [`smp`] (1 is libguestfs's own default).
pub const ENV_CPUS: &str = "LVH_APPLIANCE_CPUS";
/// `LVH_APPLIANCE_MEM`: overrides [`memsize_mib`], in MiB.
pub const ENV_MEM: &str = "LVH_APPLIANCE_MEM";

/// The appliance's vCPUs and memory (MiB): the defaults above, unless the
/// user set [`ENV_CPUS`] / [`ENV_MEM`] (to cap a shared CI machine, or to
/// measure libguestfs's own 1-vCPU default). A value that is not a number in
/// range is an error naming the variable and the value.
pub fn size(
    cpus_var: Option<&str>,
    mem_var: Option<&str>,
    host_cpus: usize,
    tcg: bool,
    available_mib: Option<u64>,
) -> Result<(u32, u32), String> {
    let parse = |name: &str, v: &str, lo: u32, hi: u32| match v.trim().parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("{name}={v:?} is not a number from {lo} to {hi}")),
    };
    let cpus = match cpus_var {
        Some(v) => parse(ENV_CPUS, v, 1, 64)?,
        None => smp(host_cpus, tcg),
    };
    let mem = match mem_var {
        Some(v) => parse(ENV_MEM, v, 256, 65536)?,
        None => memsize_mib(available_mib),
    };
    Ok((cpus, mem))
}

/// The host's available memory (MiB), from /proc/meminfo.
pub fn host_available_mib() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `cmd` wrapped so that its output (stdout and stderr, merged) goes to the
/// appliance console as it is written, its last [`ERROR_TAIL_LINES`] lines to
/// stderr (which libguestfs puts in the error when the command fails), and the
/// wrapper exits with the command's status. The command runs in a subshell of
/// its own (an `exit` in it ends only the command) with fd 4 (the status
/// channel) closed, so a daemon it leaves behind cannot hold the status open.
pub fn teed(cmd: &str) -> String {
    teed_to(cmd, "/dev/console")
}

fn teed_to(cmd: &str, console: &str) -> String {
    format!(
        "lvh_rc=$({{ {{ (\n{cmd}\n) 4>&- 2>&1; echo $? >&4; }} \
         | tee -a {console} 2>/dev/null | tail -n {ERROR_TAIL_LINES} >&2; }} 4>&1); \
         exit \"${{lvh_rc:-1}}\""
    )
}

/// Splits the console's byte chunks into lines for `sink`: carriage returns,
/// terminal escape sequences and other control characters are dropped, and
/// so are lines left empty.
pub struct ConsoleLines<'f> {
    partial: Vec<u8>,
    sink: &'f mut dyn FnMut(&str),
}

impl<'f> ConsoleLines<'f> {
    pub fn new(sink: &'f mut dyn FnMut(&str)) -> Self {
        ConsoleLines {
            partial: Vec::new(),
            sink,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.emit();
            } else {
                self.partial.push(b);
            }
        }
        // A runaway line without a newline: hand it over in pieces.
        if self.partial.len() > 4096 {
            self.emit();
        }
    }

    /// Hands over an unterminated last line.
    pub fn flush(&mut self) {
        self.emit();
    }

    fn emit(&mut self) {
        let raw = std::mem::take(&mut self.partial);
        if let Some(l) = clean_line(&raw) {
            (self.sink)(&l);
        }
    }
}

/// A console line as text: after the last carriage return (a progress
/// display's final state), without escape sequences or control characters,
/// trimmed; None when nothing is left.
pub fn clean_line(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches('\r');
    let text = text.rsplit('\r').next().unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte; other escapes: ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' {
            out.push(' ');
        } else if !c.is_control() {
            out.push(c);
        }
    }
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        let mut sink = |l: &str| got.push(l.to_string());
        let mut c = ConsoleLines::new(&mut sink);
        for ch in chunks {
            c.push(ch);
        }
        c.flush();
        got
    }

    #[test]
    fn chunks_become_lines() {
        assert_eq!(
            lines(&[
                b"Get:1 http://deb",
                b".debian.org a\r\nGet:2 b\n\n",
                b"Setting up x"
            ]),
            ["Get:1 http://deb.debian.org a", "Get:2 b", "Setting up x"]
        );
        assert!(lines(&[b"\r\n\n  \n"]).is_empty());
        let long = vec![b'a'; 5000];
        let got = lines(&[&long]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 5000);
    }

    #[test]
    fn control_characters_and_escapes_are_dropped() {
        for (raw, want) in [
            (&b"\x1b[1;31mE:\x1b[0m Unable"[..], Some("E: Unable")),
            (b"50%\r75%\r100% done", Some("100% done")),
            (b"a\tb\x07c", Some("a bc")),
            (b"\x1b[?25l", None),
            (b"\x1b7saved", Some("saved")),
            (b"\xff\xfe ok", Some("\u{fffd}\u{fffd} ok")),
        ] {
            assert_eq!(clean_line(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn sizing() {
        assert_eq!(smp(0, false), 1);
        assert_eq!(smp(2, false), 2);
        assert_eq!(smp(64, false), 4);
        assert_eq!(smp(64, true), 1);
        assert!(tcg(Some("force_tcg"), true));
        assert!(tcg(Some("direct:force_tcg"), true));
        assert!(tcg(None, false));
        assert!(!tcg(None, true));
        assert!(!tcg(Some("force_kvm"), true));
        assert_eq!(memsize_mib(None), MEMSIZE_MIB);
        assert_eq!(size(None, None, 2, false, None), Ok((2, MEMSIZE_MIB)));
        assert_eq!(size(None, None, 2, true, None), Ok((1, MEMSIZE_MIB)));
        assert_eq!(size(Some("1"), Some("1280"), 2, false, None), Ok((1, 1280)));
        assert_eq!(size(Some(" 3 "), None, 8, true, Some(1000)), Ok((3, 256)));
        for (c, m, var) in [
            (Some("0"), None, ENV_CPUS),
            (Some("two"), None, ENV_CPUS),
            (None, Some("100"), ENV_MEM),
            (None, Some("1G"), ENV_MEM),
        ] {
            let e = size(c, m, 2, false, None).unwrap_err();
            assert!(e.starts_with(var), "{e}");
        }
        assert_eq!(memsize_mib(Some(24_000)), MEMSIZE_MIB);
        assert_eq!(memsize_mib(Some(2_000)), 500);
        assert_eq!(memsize_mib(Some(100)), 256);
    }

    /// The wrapper really runs under a POSIX shell (dash when installed, as in
    /// Debian guests): the command's status comes back, its whole output goes
    /// to the console (a file here), its tail to stderr, and stdout and stderr
    /// are both in it.
    #[test]
    fn teed_keeps_the_status_and_the_output_tail() {
        let sh = if std::path::Path::new("/bin/dash").exists() {
            "/bin/dash"
        } else {
            "/bin/sh"
        };
        let d = tempfile::tempdir().unwrap();
        let console = d.path().join("console");
        let run = |cmd: &str| {
            let _ = std::fs::remove_file(&console);
            std::process::Command::new(sh)
                .arg("-c")
                .arg(teed_to(cmd, console.to_str().unwrap()))
                .output()
                .unwrap()
        };
        let o = run("echo out; echo err >&2; exit 3");
        assert_eq!(o.status.code(), Some(3));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("out\n") && err.contains("err\n"), "{err}");
        assert!(o.stdout.is_empty());
        assert_eq!(std::fs::read_to_string(&console).unwrap(), "out\nerr\n");
        let o = run("true # a trailing comment");
        assert_eq!(o.status.code(), Some(0));
        let o = run("seq 1 100");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), ERROR_TAIL_LINES);
        assert!(err.ends_with("100\n"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&console).unwrap().lines().count(),
            100
        );
        // Exports and `&&` chains behave as in a plain `sh -c`.
        let o = run("export A=1; [ \"$A\" = 1 ] && exit 0; exit 9");
        assert_eq!(o.status.code(), Some(0));
    }
}
