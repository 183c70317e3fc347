//! Input limits of `lvh run` that QEMU or the guest kernel would otherwise
//! enforce late and obscurely: `--append` words the kernel cannot take,
//! the kernel command line's size, CPU and memory counts QEMU refuses,
//! clashing port forwards. Pure checks on the options and the plan's values
//! (table tested); the host probes (ports in use, host memory) are in
//! `preflight`.

use std::collections::HashMap;

use super::options::{RootDev, RunOptions, CPUS, MEMORY};
use super::ports::PortForward;
use crate::arch::Arch;
use crate::runner::error::RunError;

/// The kernel's `COMMAND_LINE_SIZE` (bytes, with the final NUL) on x86 and
/// arm64 in Linux 6.x: a longer command line is cut short silently.
pub const COMMAND_LINE_SIZE: usize = 2048;

/// The least `--mem` lvh boots with: below it no Debian kernel gets as far
/// as running init, and the run would end as "no sign of life".
pub const MIN_MEM: u64 = 32 << 20;

/// The most CPUs QEMU's machine for this arch and root device accepts
/// (QEMU 10: `q35` 4096, `pc` 255, `virt` 512).
pub const fn max_cpus(arch: Arch, root_dev: RootDev) -> u32 {
    match (arch, root_dev) {
        (Arch::Amd64, RootDev::Vda) => 4096,
        (Arch::Amd64, RootDev::Hda) => 255,
        (Arch::Arm64, _) => 512,
    }
}

/// One `--append` value: no control characters (a newline would end QEMU's
/// `-append` word for some front ends and is never a kernel separator
/// anyone means), and balanced double quotes (an odd one makes the kernel
/// join the rest of the command line into one word).
pub fn check_append(value: &str) -> Result<(), RunError> {
    if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(RunError::invalid(
            "--append",
            value,
            format!("invalid kernel argument: it contains the control character {c:?}; give each argument as plain text on one line"),
        ));
    }
    if value.matches('"').count() % 2 == 1 {
        return Err(RunError::invalid(
            "--append",
            value,
            "invalid kernel argument: unbalanced double quote; the kernel would take the rest of its command line as part of this argument (quote a whole value, as in dyndbg=\"file x.c +p\")",
        ));
    }
    Ok(())
}

/// The checks on the options alone, before the plan is built.
pub fn check_options(o: &RunOptions) -> Result<(), RunError> {
    for a in &o.append {
        check_append(a)?;
    }
    let max = max_cpus(o.arch, o.root_dev);
    if o.cpus > max {
        return Err(RunError::invalid(
            CPUS.flag,
            o.cpus,
            format!(
                "invalid CPU count: QEMU's {} machine takes at most {max}",
                machine_name(o.arch, o.root_dev)
            ),
        ));
    }
    if o.mem.bytes() < MIN_MEM {
        return Err(RunError::invalid(
            MEMORY.flag,
            o.mem.qemu_arg(),
            format!(
                "invalid memory size: lvh needs at least {}M for the guest kernel to boot",
                MIN_MEM >> 20
            ),
        ));
    }
    Ok(())
}

fn machine_name(arch: Arch, root_dev: RootDev) -> &'static str {
    match (arch, root_dev) {
        (Arch::Amd64, RootDev::Vda) => "q35",
        (Arch::Amd64, RootDev::Hda) => "pc",
        (Arch::Arm64, _) => "virt",
    }
}

/// The kernel command line fits the kernel (`append`: `--append`'s words,
/// to tell the user how long lvh's own part is).
pub fn check_cmdline(cmdline: &str, append: &[String]) -> Result<(), RunError> {
    if cmdline.len() + 1 > COMMAND_LINE_SIZE {
        let appended: usize = append.iter().map(|a| a.len() + 1).sum();
        return Err(RunError::refused(
            "--append",
            format!(
                "the kernel command line would be {} bytes, over the kernel's limit of {} (COMMAND_LINE_SIZE, with its NUL): shorten --append (lvh's own part is {} bytes)",
                cmdline.len() + 1,
                COMMAND_LINE_SIZE,
                cmdline.len() + 1 - appended
            ),
        ));
    }
    Ok(())
}

/// No two listeners (forwards, `--serial-port`, `--qemu-monitor-port`) want
/// the same host port.
pub fn check_ports(
    ports: &[PortForward],
    serial_port: Option<u16>,
    monitor_port: Option<u16>,
) -> Result<(), RunError> {
    let mut seen: HashMap<(u16, &str), String> = HashMap::new();
    let mut claim = |port: u16, proto: &'static str, who: String| match seen.get(&(port, proto)) {
        Some(first) => Err(RunError::refused(
            &who,
            format!("host port {port}/{proto} is asked for twice: by {first} and by {who}"),
        )),
        None => {
            seen.insert((port, proto), who);
            Ok(())
        }
    };
    for f in ports {
        claim(
            f.host_port,
            f.proto.as_str(),
            format!("--port {}:{}", f.host_port, f.guest_port),
        )?;
    }
    if let Some(s) = serial_port {
        claim(s, "tcp", "--serial-port".into())?;
    }
    if let Some(m) = monitor_port {
        claim(m, "tcp", "--qemu-monitor-port".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::plan::decision::RunPlan;
    use crate::runner::plan::tests::{options, ports};

    #[test]
    fn append_values() {
        for ok in [
            "init_debug",
            "quiet loglevel=3",
            "dyndbg=\"file x.c +p\"",
            "a\tb",
            "",
        ] {
            check_append(ok).unwrap();
        }
        for (bad, want) in [
            ("a\nb", "control character '\\n'"),
            ("a\rb", "control character '\\r'"),
            ("x\u{0}", "control character '\\0'"),
            ("foo=\"bar", "unbalanced double quote"),
            ("\"", "unbalanced double quote"),
        ] {
            let e = check_append(bad).unwrap_err();
            assert!(matches!(e, RunError::Invalid(_)));
            let s = e.to_string();
            assert!(
                s.contains(want) && s.starts_with("--append "),
                "{bad:?}: {s}"
            );
        }
    }

    #[test]
    fn cpu_and_memory_ranges() {
        let d = tempfile::tempdir().unwrap();
        let base = options(d.path());
        type Edit = fn(&mut RunOptions);
        let cases: &[(Edit, Option<&str>)] = &[
            (|_| {}, None),
            (|o| o.cpus = 4096, None),
            (|o| o.cpus = 4097, Some("at most 4096")),
            (
                |o| {
                    o.cpus = 256;
                    o.root_dev = RootDev::Hda;
                },
                Some("QEMU's pc machine takes at most 255"),
            ),
            (
                |o| {
                    o.cpus = 513;
                    o.arch = Arch::Arm64;
                },
                Some("virt machine takes at most 512"),
            ),
            (|o| o.mem = "32M".parse().unwrap(), None),
            (|o| o.mem = "31M".parse().unwrap(), Some("at least 32M")),
            (
                |o| o.mem = "1K".parse().unwrap(),
                Some("--mem \"1K\": invalid memory size"),
            ),
            (|o| o.append = vec!["a\nb".into()], Some("--append ")),
        ];
        for (edit, want) in cases {
            let mut o = base.clone();
            edit(&mut o);
            match (check_options(&o), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{e}"),
                (r, w) => panic!("{r:?} but wanted {w:?}"),
            }
        }
    }

    #[test]
    fn the_command_line_must_fit_and_ports_must_not_clash() {
        let d = tempfile::tempdir().unwrap();
        let mut o = options(d.path());
        let ok = RunPlan::new(&o, false).unwrap();
        check_cmdline(ok.cmdline.as_ref().unwrap(), &ok.append).unwrap();
        let own = ok.cmdline.as_ref().unwrap().len() + 1;
        // Exactly at the limit passes, one byte over fails.
        o.append = vec!["x".repeat(COMMAND_LINE_SIZE - own - 1)];
        RunPlan::new(&o, false).unwrap();
        o.append = vec!["x".repeat(COMMAND_LINE_SIZE - own)];
        let e = RunPlan::new(&o, false).unwrap_err().to_string();
        assert!(
            e.contains("would be 2049 bytes, over the kernel's limit of 2048"),
            "{e}"
        );
        assert!(e.contains(&format!("lvh's own part is {own} bytes")), "{e}");
        // Without --kernel there is no command line to check.
        o.cmd.clear();
        o.kernel = None;
        RunPlan::new(&o, false).unwrap();

        let mut o = options(d.path());
        o.ports = ports(&["2222:22", "2222:23"]);
        let e = RunPlan::new(&o, false).unwrap_err().to_string();
        assert!(
            e.contains(
                "host port 2222/tcp is asked for twice: by --port 2222:22 and by --port 2222:23"
            ),
            "{e}"
        );
        o.ports = ports(&["2222:22", "2222:22:udp"]);
        RunPlan::new(&o, false).unwrap();
        o.cmd.clear();
        o.ports = ports(&["4444:22"]);
        o.monitor_port = Some(4444);
        let e = RunPlan::new(&o, false).unwrap_err().to_string();
        assert!(e.contains("by --qemu-monitor-port"), "{e}");
    }
}
