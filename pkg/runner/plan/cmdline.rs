//! The kernel command line of a `--kernel` run, built once by the plan:
//! lvh's base ([`base`]), the fast boot's words, `--gdb`'s, `--append`, and
//! what hands the boot to the guest's init ([`Init`]).

use super::options::RootDev;
use crate::arch::Arch;
use crate::runner::debug::gdb;
use crate::runner::guest::initramfs;
use crate::runner::guest::shell_init;
use crate::runner::guest::steps::RootSpec;

/// Which init the guest boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// The image's own (`/sbin/init`, systemd): consoles, daemons, bootable saves.
    Image,
    /// lvh's shell init, from the control share (see `guest::shell_init`).
    Shell,
    /// lvh's static init from an initramfs, which mounts this root itself.
    Static(RootSpec),
}

/// The kernel command line lvh always sets, before `--append` and the init part.
pub fn base(arch: Arch, dev: RootDev) -> Vec<String> {
    let mut c = vec![
        format!("root={}", dev.kernel_root()),
        "rw".into(),
        format!("console={}", arch.console()),
        "panic=-1".into(),
    ];
    if arch == Arch::Amd64 {
        // No PS/2 keyboard or mouse: the console is serial. Probing the
        // mouse holds up the root mount by about 0.4 s under TCG. Dotted
        // (module) parameters never reach init, so kernels without i8042
        // are unaffected; `--append i8042.noaux=0` brings them back.
        c.extend(["i8042.noaux".into(), "i8042.nokbd".into()]);
        // No check that the IO-APIC delivers timer interrupts: it waits a
        // few ticks per wiring it tries, and under TCG on a busy host the
        // ticks come late, so the kernel concludes none works and panics
        // ("IO-APIC + timer doesn't work!", seen at a load average of 11).
        // QEMU's wiring is known good; cloud and virtme-ng guests skip it too.
        c.push("no_timer_check".into());
    }
    c
}

/// The early console of a console run with `--kernel`, as little-vm-helper
/// sets it: on amd64, `earlyprintk=ttyS0` prints the kernel's messages from
/// its first line, before the serial driver takes the console (the kernel
/// then does not print them twice), so a kernel that dies that early still
/// shows why. A kernel without `EARLY_PRINTK` hands it to init's environment,
/// where it does nothing. arm64 has none: its `earlycon` needs the UART's
/// address or a bare word, which a kernel without `SERIAL_EARLYCON` would
/// give init as an argument.
pub fn early_console(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::Amd64 => Some("earlyprintk=ttyS0"),
        Arch::Arm64 => None,
    }
}

/// The words before the init part: the base and the fast boot's words
/// (what decides whether the static init can take the root).
pub fn words(arch: Arch, dev: RootDev, fast: &[String], append: &[String]) -> Vec<String> {
    let mut w = base(arch, dev);
    w.extend(fast.iter().cloned());
    w.extend(append.iter().cloned());
    w
}

/// The whole command line.
pub fn kernel_cmdline(
    arch: Arch,
    dev: RootDev,
    fast: &[String],
    append: &[String],
    gdb: bool,
    init: &Init,
) -> String {
    let mut base = base(arch, dev);
    base.extend(fast.iter().cloned());
    let (mut appended, after) = gdb::cmdline_args(arch, gdb);
    appended.extend(append.iter().cloned());
    let mut line = match init {
        Init::Static(_) => {
            let mut parts = base;
            parts.extend(initramfs::cmdline_params());
            parts.extend(appended);
            parts.join(" ")
        }
        Init::Shell => shell_init::command_cmdline(&base, &appended),
        Init::Image => {
            let mut parts = base;
            parts.extend(appended);
            parts.join(" ")
        }
    };
    for a in after {
        line.push(' ');
        line.push_str(&a);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_arch_and_root_device() {
        assert_eq!(
            base(Arch::Arm64, RootDev::Vda).join(" "),
            "root=/dev/vda rw console=ttyAMA0 panic=-1"
        );
        assert_eq!(
            base(Arch::Amd64, RootDev::Hda).join(" "),
            "root=/dev/sda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check"
        );
    }

    #[test]
    fn each_init_its_own_part() {
        let line = |init: &Init, gdb| {
            kernel_cmdline(
                Arch::Amd64,
                RootDev::Vda,
                &["tsc=reliable".into()],
                &["quiet".into()],
                gdb,
                init,
            )
        };
        let base = "root=/dev/vda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check tsc=reliable";
        assert_eq!(line(&Init::Image, false), format!("{base} quiet"));
        assert_eq!(line(&Init::Image, true), format!("{base} quiet nokaslr"));
        let root = crate::runner::guest::steps::root_spec(&["root=/dev/vda".into()]).unwrap();
        assert_eq!(
            line(&Init::Static(root), false),
            format!("{base} rdinit=/lvh-init init=/lvh-init quiet")
        );
        let s = line(&Init::Shell, false);
        assert!(
            s.starts_with(&format!(
                "{base} ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off init=/bin/sh -c \":;mount"
            )),
            "{s}"
        );
        assert!(s.ends_with("exit 1;}\" quiet"), "{s}");
    }
}
