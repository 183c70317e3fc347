//! The host checks `lvh run` makes before it starts QEMU, so that a busy port
//! or a memory size the host cannot give ends with a clear error naming the
//! flag instead of QEMU's own message after the run directory exists. The
//! decisions are pure functions ([`mem_fits`]); the probes are a bind and a
//! read of `/proc/meminfo`.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use super::decision::RunPlan;
use super::options::{MemSize, MEMORY};
use super::ports::Proto;
use crate::runner::error::RunError;

/// Memory the host can give one process under the kernel's default
/// (heuristic) overcommit: RAM plus swap, in bytes, from `/proc/meminfo`.
pub fn host_memory(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let l = meminfo.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = l[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some(field("MemTotal:")? + field("SwapTotal:").unwrap_or(0))
}

/// Whether `--mem` fits the host: QEMU allocates guest RAM in one mapping,
/// which the kernel refuses ("cannot set up guest memory") when it exceeds
/// RAM plus swap, unless overcommit is `1` (always).
pub fn mem_fits(mem: u64, meminfo: &str, overcommit: &str) -> Result<(), RunError> {
    if overcommit.trim() == "1" {
        return Ok(());
    }
    match host_memory(meminfo) {
        Some(host) if mem > host => Err(RunError::invalid(
            MEMORY.flag,
            MemSize::from_bytes(mem).qemu_arg(),
            format!(
                "invalid memory size: the host has {}M of RAM and swap, and QEMU could not allocate it",
                host >> 20
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether something already listens on `addr` (TCP) or is bound to it (UDP).
fn in_use(addr: SocketAddr, proto: Proto) -> Option<std::io::Error> {
    match proto {
        Proto::Tcp => TcpListener::bind(addr).err(),
        Proto::Udp => UdpSocket::bind(addr).err(),
    }
}

/// The listeners the plan asks QEMU to open: address, protocol and the flag.
pub(crate) fn listeners(p: &RunPlan) -> Vec<(SocketAddr, Proto, String)> {
    let lo = std::net::Ipv4Addr::LOCALHOST;
    let mut v: Vec<(SocketAddr, Proto, String)> = p
        .ports
        .iter()
        .map(|f| {
            (
                SocketAddr::from((f.addr, f.host_port)),
                f.proto,
                format!("--port {}:{}", f.host_port, f.guest_port),
            )
        })
        .collect();
    if let Some(s) = p.serial_port {
        v.push((
            SocketAddr::from((lo, s)),
            Proto::Tcp,
            "--serial-port".into(),
        ));
    }
    if let Some(m) = p.monitor_port {
        v.push((
            SocketAddr::from((lo, m)),
            Proto::Tcp,
            "--qemu-monitor-port".into(),
        ));
    }
    v
}

/// Every host check, in order: memory, then each port.
pub fn check(p: &RunPlan) -> Result<(), RunError> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    mem_fits(p.mem.bytes(), &meminfo, &overcommit)?;
    for (addr, proto, flag) in listeners(p) {
        if let Some(e) = in_use(addr, proto) {
            return Err(RunError::refused(
                &flag,
                format!(
                    "host port {addr}/{} cannot be used: {e}; pick another port",
                    proto.as_str()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str =
        "MemTotal:       24683584 kB\nMemFree:         1000000 kB\nSwapTotal:       1048576 kB\n";

    #[test]
    fn memory_against_the_host() {
        assert_eq!(host_memory(MEMINFO), Some((24683584 + 1048576) * 1024));
        assert_eq!(host_memory("nonsense"), None);
        let host = host_memory(MEMINFO).unwrap();
        for (mem, overcommit, ok) in [
            (4 << 30, "0\n", true),
            (host, "0", true),
            (host + 1, "0", false),
            (100 << 30, "0", false),
            (100 << 30, "1\n", true),
            (100 << 30, "2", false),
        ] {
            let r = mem_fits(mem, MEMINFO, overcommit);
            assert_eq!(r.is_ok(), ok, "{mem} {overcommit:?}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.to_string()
                        .contains(": invalid memory size: the host has 25129M"),
                    "{e}"
                );
            }
        }
        // Unknown host memory: QEMU decides.
        mem_fits(100 << 30, "", "0").unwrap();
    }

    #[test]
    fn a_port_in_use_is_named() {
        let d = tempfile::tempdir().unwrap();
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let mut o = crate::runner::plan::tests::options(d.path());
        o.ports = crate::runner::plan::tests::ports(&[&format!("{port}:22")]);
        let plan = RunPlan::new(&o, false).unwrap();
        let e = check(&plan).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "--port {port}:22: host port 127.0.0.1:{port}/tcp cannot be used"
            )),
            "{e}"
        );
        drop(busy);
        check(&plan).unwrap();
        // The same port number over UDP is another socket.
        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        o.ports = crate::runner::plan::tests::ports(&[&format!("{port}:53:udp")]);
        let plan = RunPlan::new(&o, false).unwrap();
        assert!(check(&plan).unwrap_err().to_string().contains("/udp"));
    }
}
