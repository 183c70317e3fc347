//! How lvh boots an x86 `--kernel` fast (see the README's "Boot speed"): the
//! same build's `vmlinux` through its PVH entry instead of the compressed
//! bzImage ([`super::pvh`]), optionally the minimal qboot firmware instead of
//! SeaBIOS (measured, no gain: off), and under TCG the TSC frequency given to the kernel so that it neither
//! calibrates it against emulated timers nor falls back to the HPET.
//!
//! The decisions are pure functions of what was found on the host
//! ([`Found`]); [`find`] does the looking.

use std::path::{Path, PathBuf};

use super::accel::Accel;
use super::kcheck::Config;
use super::options::RunOptions;
use crate::arch::Arch;

/// Where Debian's `qemu-system-data` (and QEMU's own install) put qboot.
pub const QBOOT_PATHS: [&str; 2] = [
    "/usr/share/qemu/qboot.rom",
    "/usr/local/share/qemu/qboot.rom",
];

/// qboot instead of SeaBIOS for PVH boots. Off: measured, it gained nothing
/// (README, "Boot speed"); kept switchable for the next measurement.
pub const USE_QBOOT: bool = false;

/// Under TCG: no local APIC timer, so no calibration of it. TCG has no
/// TSC-deadline timer, so the kernel would measure the emulated APIC timer
/// against the PIT for a quarter of a second of guest time; without it, the
/// PIT (or the HPET) ticks for every CPU through the kernel's broadcast.
pub const NO_APIC_TIMER: &str = "noapictimer";

/// With `maxcpus=1` on x86: keep the SMP code. Booted on one CPU, the kernel
/// would rewrite its lock prefixes for one CPU, and back when the second
/// comes online; each rewrite of code is slow under TCG.
pub const KEEP_SMP_CODE: &str = "noreplace-smp";

/// No BSD-style pseudo-terminals (`/dev/ptyp0`, ...; devpts's are unaffected):
/// with `CONFIG_LEGACY_PTYS` the kernel registers 256 pairs at boot, about
/// 50 ms under TCG.
pub const NO_LEGACY_PTYS: &str = "pty.legacy_count=0";

/// Without q35's built-in AHCI controller and SMBus: lvh's disks are virtio
/// (an `hda` root gets the `pc` machine), and under TCG SeaBIOS's and the
/// kernel's probing of the AHCI ports cost about 0.1 s of every boot.
pub const LEAN_Q35: [&str; 2] = ["sata=off", "smbus=off"];

/// What the host offers for a fast boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// A PVH-bootable vmlinux of the same build as `--kernel` (or `--kernel` itself).
    pub pvh: Option<PathBuf>,
    /// qboot's ROM.
    pub qboot: Option<PathBuf>,
    /// The host's TSC frequency in kHz, when the host says it is constant.
    pub tsc_khz: Option<u64>,
    /// The kernel's configuration is known and has `CONFIG_HOTPLUG_CPU=y`.
    pub hotplug_cpu: bool,
    /// The kernel's configuration is known to unpack an initramfs and to
    /// have devtmpfs (`BLK_DEV_INITRD`, `DEVTMPFS`): lvh's static init can run.
    pub initramfs: bool,
    /// The kernel's configuration is known and has `CONFIG_LEGACY_PTYS=y`.
    pub legacy_ptys: bool,
}

/// How QEMU boots the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastBoot {
    /// The file given to `-kernel` instead of `--kernel` (the PVH vmlinux).
    pub kernel: Option<PathBuf>,
    /// `-bios`.
    pub bios: Option<PathBuf>,
    /// Kernel parameters added to lvh's base command line.
    pub cmdline: Vec<String>,
    /// Properties for `-machine q35` ([`LEAN_Q35`]).
    pub q35_props: Vec<String>,
}

/// The fast boot for an x86 kernel when `enabled` (`--fast-boot`, the
/// default): PVH when a PVH vmlinux was found, and then qboot when
/// [`USE_QBOOT`] (it loads only the PVH ELF and a bzImage through fw_cfg, never
/// a boot sector, so a bootable image without `--kernel` keeps SeaBIOS); under TCG the host's TSC
/// frequency with `tsc=reliable` (TCG's TSC is the host's, constant and the
/// same on every vCPU, but the guest's synchronization check fails under
/// emulation and the kernel would mark it unstable and read the HPET instead).
/// On every architecture: [`NO_LEGACY_PTYS`] when the kernel has them.
pub fn decide(enabled: bool, arch: Arch, accel: Accel, found: &Found) -> FastBoot {
    let mut fb = FastBoot::default();
    if !enabled {
        return fb;
    }
    if found.legacy_ptys {
        fb.cmdline.push(NO_LEGACY_PTYS.into());
    }
    if arch != Arch::Amd64 {
        return fb;
    }
    fb.q35_props = LEAN_Q35.iter().map(|p| p.to_string()).collect();
    if let Some(p) = &found.pvh {
        fb.kernel = Some(p.clone());
        if USE_QBOOT {
            fb.bios = found.qboot.clone();
        }
    }
    if let (Accel::Tcg, Some(khz)) = (accel, found.tsc_khz) {
        fb.cmdline
            .extend([format!("tsc_early_khz={khz}"), "tsc=reliable".into()]);
    }
    if accel == Accel::Tcg {
        fb.cmdline.push(NO_APIC_TIMER.into());
    }
    fb
}

/// Whether lvh boots the kernel of a command run (lvh's init) on one CPU
/// (`maxcpus=1`) and its init brings the other `cpus - 1` online while it sets
/// up: with `--fast-boot`, more than one CPU, a kernel known to support CPU
/// hotplug, and no CPU limit of the user's own in `append`.
pub fn late_cpus(enabled: bool, cpus: u32, hotplug: bool, append: &[String]) -> bool {
    let users_own = append.iter().any(|a| {
        a == "nosmp"
            || ["maxcpus=", "nr_cpus=", "possible_cpus="]
                .iter()
                .any(|p| a.starts_with(p))
    });
    enabled && cpus > 1 && hotplug && !users_own
}

/// For a command run (lvh's init): when [`late_cpus`] holds, adds
/// `maxcpus=1` (on x86 with [`KEEP_SMP_CODE`]) to `fb` and returns true.
pub fn add_late_cpus(fb: &mut FastBoot, o: &RunOptions, found: &Found, append: &[String]) -> bool {
    let late = late_cpus(o.fast_boot, o.cpus, found.hotplug_cpu, append);
    if late {
        fb.cmdline.push("maxcpus=1".into());
        if o.arch == Arch::Amd64 {
            fb.cmdline.push(KEEP_SMP_CODE.into());
        }
    }
    late
}

/// The host TSC's frequency (kHz) from `/proc/cpuinfo`'s text: `cpu MHz` of
/// the first CPU, only when the flags say the TSC is constant and its
/// frequency known (otherwise `cpu MHz` is the current clock, not the TSC's).
pub fn tsc_khz(cpuinfo: &str) -> Option<u64> {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags")?;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    if !(has("constant_tsc") && has("nonstop_tsc") && has("tsc_known_freq")) {
        return None;
    }
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// Looks for what [`decide`] may use, for `kernel` on `arch`.
pub fn find(kernel: &Path, arch: Arch, config: Option<&Config>) -> Found {
    let set = |name: &str| config.and_then(|c| c.get(name)).is_some_and(|v| v == "y");
    let hotplug_cpu = set("HOTPLUG_CPU");
    let initramfs = set("BLK_DEV_INITRD") && set("DEVTMPFS");
    let legacy_ptys = set("LEGACY_PTYS");
    if arch != Arch::Amd64 {
        return Found {
            hotplug_cpu,
            initramfs,
            legacy_ptys,
            ..Found::default()
        };
    }
    Found {
        pvh: super::pvh::find(kernel),
        qboot: QBOOT_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()),
        tsc_khz: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .as_deref()
            .and_then(tsc_khz),
        hotplug_cpu,
        initramfs,
        legacy_ptys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pvh: bool, qboot: bool, tsc: bool) -> Found {
        Found {
            pvh: pvh.then(|| "/k/vmlinux".into()),
            qboot: qboot.then(|| "/q/qboot.rom".into()),
            tsc_khz: tsc.then_some(2445406),
            hotplug_cpu: true,
            initramfs: true,
            legacy_ptys: false,
        }
    }

    #[test]
    fn late_cpus_only_when_safe() {
        let none: &[String] = &[];
        assert!(late_cpus(true, 2, true, none));
        assert!(late_cpus(true, 8, true, &["quiet".into()]));
        assert!(!late_cpus(false, 2, true, none), "--fast-boot=false");
        assert!(!late_cpus(true, 1, true, none), "one CPU");
        assert!(!late_cpus(true, 2, false, none), "no CPU hotplug");
        for own in ["maxcpus=2", "nr_cpus=1", "nosmp", "possible_cpus=4"] {
            assert!(!late_cpus(true, 2, true, &[own.into()]), "{own}");
        }
    }

    #[test]
    fn decisions() {
        use Accel::*;
        use Arch::*;
        let tsc = vec![
            "tsc_early_khz=2445406".to_string(),
            "tsc=reliable".into(),
            NO_APIC_TIMER.into(),
        ];
        let k = Some(PathBuf::from("/k/vmlinux"));
        let lean: Vec<String> = vec!["sata=off".into(), "smbus=off".into()];
        let q = USE_QBOOT.then(|| PathBuf::from("/q/qboot.rom"));
        for (enabled, arch, accel, f, want) in [
            (
                true,
                Amd64,
                Tcg,
                found(true, true, true),
                FastBoot {
                    kernel: k.clone(),
                    bios: q.clone(),
                    cmdline: tsc.clone(),
                    q35_props: lean.clone(),
                },
            ),
            (
                true,
                Amd64,
                Kvm,
                found(true, true, true),
                FastBoot {
                    kernel: k.clone(),
                    bios: q.clone(),
                    cmdline: vec![],
                    q35_props: lean.clone(),
                },
            ),
            (
                true,
                Amd64,
                Tcg,
                found(false, true, true),
                FastBoot {
                    kernel: None,
                    bios: None,
                    cmdline: tsc.clone(),
                    q35_props: lean.clone(),
                },
            ),
            (
                true,
                Amd64,
                Tcg,
                found(true, false, false),
                FastBoot {
                    kernel: k.clone(),
                    bios: None,
                    cmdline: vec![NO_APIC_TIMER.into()],
                    q35_props: lean.clone(),
                },
            ),
            (
                false,
                Amd64,
                Tcg,
                found(true, true, true),
                FastBoot::default(),
            ),
            (
                true,
                Arm64,
                Tcg,
                found(true, true, true),
                FastBoot::default(),
            ),
            (
                true,
                Arm64,
                Tcg,
                Found {
                    legacy_ptys: true,
                    ..found(false, false, false)
                },
                FastBoot {
                    cmdline: vec![NO_LEGACY_PTYS.into()],
                    ..FastBoot::default()
                },
            ),
            (
                false,
                Arm64,
                Tcg,
                Found {
                    legacy_ptys: true,
                    ..found(false, false, false)
                },
                FastBoot::default(),
            ),
        ] {
            assert_eq!(
                decide(enabled, arch, accel, &f),
                want,
                "{enabled} {arch} {accel:?} {f:?}"
            );
        }
    }

    #[test]
    fn tsc_from_cpuinfo() {
        let info = |flags: &str, mhz: &str| {
            format!("processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: {mhz}\nflags\t\t: fpu {flags} sse\n\nprocessor\t: 1\ncpu MHz\t\t: 1.0\n")
        };
        let all = "constant_tsc nonstop_tsc tsc_known_freq";
        assert_eq!(tsc_khz(&info(all, "2445.406")), Some(2445406));
        assert_eq!(tsc_khz(&info("constant_tsc nonstop_tsc", "2445.406")), None);
        assert_eq!(tsc_khz(&info(all, "n/a")), None);
        assert_eq!(tsc_khz(&info(all, "0.000")), None);
        assert_eq!(tsc_khz(""), None);
    }
}
