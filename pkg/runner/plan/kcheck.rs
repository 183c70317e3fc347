//! Before booting `--kernel`: does the kernel have what the run needs? A
//! kernel without the root disk's driver or ext4 ends in "VFS: Unable to mount
//! root fs" (little-vm-helper#392) after a whole boot; one without 9p cannot
//! start lvh's command. When the kernel's configuration is known (its build
//! tree's `.config`, `config-<ver>` beside `vmlinuz-<ver>`, or the IKCONFIG
//! copy inside the image itself, found as the kernel's
//! `scripts/extract-ikconfig` finds it), [`missing`] names every option the
//! run lacks, and `lvh run` refuses before QEMU starts (`--no-kernel-check`
//! skips this).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::options::RootDev;
use crate::arch::Arch;
use crate::runner::error::RunError;

/// A kernel configuration: symbol (without `CONFIG_`) to value (`y`, `m`,
/// a number or string, `n` for "is not set").
pub type Config = HashMap<String, String>;

/// Parses a `.config` (or `config-<ver>`, or IKCONFIG's text).
pub fn parse(text: &str) -> Config {
    let mut m = Config::new();
    for line in text.lines().map(str::trim) {
        if let Some(sym) = line
            .strip_prefix("# CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            m.insert(sym.into(), "n".into());
        } else if let Some((sym, val)) =
            line.strip_prefix("CONFIG_").and_then(|r| r.split_once('='))
        {
            m.insert(sym.into(), val.into());
        }
    }
    m
}

/// One thing the run needs: any of `symbols` set to `y` (or `m`, where a
/// module can still be loaded in time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub symbols: &'static [&'static str],
    pub module_ok: bool,
    pub why: &'static str,
}

const fn need(symbols: &'static [&'static str], why: &'static str) -> Need {
    Need {
        symbols,
        module_ok: false,
        why,
    }
}

/// What a run of `arch` with its root on `root_dev` needs from the kernel;
/// `command` adds lvh's command channel (9p control share, virtio-serial,
/// the pseudo filesystems its init script mounts). lvh boots without an
/// initramfs, so everything before the root mount must be built in (`=y`).
pub fn needs(arch: Arch, root_dev: RootDev, command: bool) -> Vec<Need> {
    let mut v = vec![need(&["BINFMT_ELF"], "running /sbin/init or /bin/sh (ELF)")];
    match arch {
        Arch::Amd64 => v.push(need(&["SERIAL_8250_CONSOLE"], "the console on ttyS0")),
        Arch::Arm64 => v.push(need(
            &["SERIAL_AMBA_PL011_CONSOLE"],
            "the console on ttyAMA0",
        )),
    }
    match root_dev {
        RootDev::Vda => {
            v.push(need(&["PCI"], "the virtio PCI devices"));
            if arch == Arch::Arm64 {
                v.push(need(
                    &["PCI_HOST_GENERIC"],
                    "the PCI host bridge of QEMU's virt machine",
                ));
            }
            v.push(need(&["VIRTIO_PCI"], "the virtio PCI devices"));
            v.push(need(&["VIRTIO_BLK"], "the root disk /dev/vda (virtio-blk)"));
        }
        RootDev::Hda => {
            v.push(need(
                &["ATA_PIIX"],
                "the root disk on the PIIX IDE controller",
            ));
            v.push(need(&["BLK_DEV_SD"], "the root disk /dev/sda (SCSI disk)"));
        }
    }
    v.push(need(&["EXT4_FS"], "the root filesystem (ext4)"));
    if command {
        v.push(need(&["DEVTMPFS"], "/dev for the command (devtmpfs)"));
        v.push(need(&["PROC_FS"], "/proc for the command"));
        v.push(need(
            &["SYSFS"],
            "/sys, where lvh finds its virtio-serial ports",
        ));
        for (symbols, why) in [
            (
                &["VIRTIO_CONSOLE"][..],
                "the command's stdout, stderr and exit status (virtio-serial)",
            ),
            (
                &["NET_9P_VIRTIO"][..],
                "lvh's control share (9p over virtio)",
            ),
            (&["9P_FS"][..], "lvh's control share (9p)"),
        ] {
            v.push(Need {
                symbols,
                module_ok: true,
                why,
            });
        }
    }
    v
}

/// What `--kmemleak` needs besides the run's own needs.
pub const KMEMLEAK: Need = need(
    &["DEBUG_KMEMLEAK"],
    "--kmemleak: the kernel's memory leak detector (the option group `kmemleak` has it)",
);

/// The needs that `config` does not meet, each as `CONFIG_X=y (why; it is
/// VALUE)`. Empty when the kernel has all it needs.
pub fn missing(config: &Config, needs: &[Need]) -> Vec<String> {
    let mut out = Vec::new();
    for n in needs {
        let ok = n
            .symbols
            .iter()
            .any(|s| match config.get(*s).map(String::as_str) {
                Some("y") => true,
                Some("m") => n.module_ok,
                _ => false,
            });
        if ok {
            continue;
        }
        let want = n
            .symbols
            .iter()
            .map(|s| format!("CONFIG_{s}=y"))
            .collect::<Vec<_>>()
            .join(" or ");
        let has = match config.get(n.symbols[0]).map(String::as_str) {
            Some("m") => "it is a module, and lvh boots without an initramfs".to_string(),
            Some("n") | None => "it is not set".to_string(),
            Some(v) => format!("it is {v}"),
        };
        out.push(format!("{want} ({}; {has})", n.why));
    }
    out
}

/// Where a kernel's configuration was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `config-<ver>` beside `vmlinuz-<ver>` (an install tree's `boot/`).
    Beside(PathBuf),
    /// The `.config` of the build tree the image is in.
    Tree(PathBuf),
    /// The image's own copy (CONFIG_IKCONFIG).
    Embedded(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Beside(p) | Source::Tree(p) => write!(f, "{}", p.display()),
            Source::Embedded(p) => write!(f, "the IKCONFIG copy in {}", p.display()),
        }
    }
}

fn newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((m(a), m(b)), (Some(a), Some(b)) if a > b)
}

/// Finds the kernel's configuration: `config-<ver>` beside `vmlinuz-<ver>`;
/// the `.config` of the build tree above the image (up to four levels, a
/// directory with `Kconfig` beside it), unless it is newer than the image and
/// so may not describe it; else IKCONFIG inside the image. `None` when the
/// configuration is unknown (then nothing is checked).
pub fn find(kernel: &Path) -> Option<(Source, String)> {
    let name = kernel.file_name()?.to_string_lossy();
    let dir = kernel.parent()?;
    if let Some(ver) = name
        .strip_prefix("vmlinuz-")
        .or(name.strip_prefix("vmlinux-"))
    {
        let c = dir.join(format!("config-{ver}"));
        if let Ok(t) = std::fs::read_to_string(&c) {
            return Some((Source::Beside(c), t));
        }
    }
    for tree in kernel.ancestors().skip(1).take(4) {
        let c = tree.join(".config");
        if tree.join("Kconfig").is_file() && c.is_file() {
            if newer(&c, kernel) {
                break;
            }
            if let Ok(t) = std::fs::read_to_string(&c) {
                return Some((Source::Tree(c), t));
            }
        }
    }
    let image = std::fs::read(kernel).ok()?;
    ikconfig(&image).map(|t| (Source::Embedded(kernel.to_path_buf()), t))
}

const IKCFG_ST: &[u8] = b"IKCFG_ST";
/// No kernel decompresses to more than this; a bound for hostile images.
const MAX_UNPACKED: u64 = 512 << 20;
/// Compressed streams tried per image (a gzip or zstd magic can occur by chance).
const MAX_CANDIDATES: usize = 32;

fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Reads what `r` yields up to [`MAX_UNPACKED`], keeping what came before an
/// error (a kernel's compressed payload is followed by other bytes).
fn read_some(r: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = r.take(MAX_UNPACKED);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The IKCONFIG text in an uncompressed kernel: gzip data after `IKCFG_ST`.
fn ikcfg_in(data: &[u8]) -> Option<String> {
    let at = find_bytes(data, IKCFG_ST, 0)? + IKCFG_ST.len();
    let text = read_some(flate2::read::GzDecoder::new(&data[at..]));
    let text = String::from_utf8(text).ok()?;
    text.contains("CONFIG_").then_some(text)
}

/// The configuration a kernel image carries (CONFIG_IKCONFIG): looked for in
/// the image as it is (vmlinux), then in every gzip or zstd stream in it (a
/// compressed bzImage or Image.gz), as `scripts/extract-ikconfig` does.
/// Kernels compressed otherwise (xz, lzma, lz4, ...) yield `None`.
pub fn ikconfig(image: &[u8]) -> Option<String> {
    if let Some(t) = ikcfg_in(image) {
        return Some(t);
    }
    let mut tried = 0;
    for magic in [&[0x1f, 0x8b, 0x08][..], &[0x28, 0xb5, 0x2f, 0xfd][..]] {
        let mut from = 0;
        while let Some(at) = find_bytes(image, magic, from) {
            from = at + 1;
            tried += 1;
            if tried > MAX_CANDIDATES {
                return None;
            }
            let data = &image[at..];
            let unpacked = if magic[0] == 0x1f {
                read_some(flate2::read::GzDecoder::new(data))
            } else {
                match zstd::stream::read::Decoder::new(data) {
                    Ok(d) => read_some(d),
                    Err(_) => continue,
                }
            };
            if let Some(t) = ikcfg_in(&unpacked) {
                return Some(t);
            }
        }
    }
    None
}

/// The check `lvh run` makes: `Ok(Some(source))` when the configuration was
/// found and has all the run `needs`, `Ok(None)` when it is unknown (nothing
/// to check), and an error that names every missing option otherwise.
pub fn check(
    kernel: Option<&Path>,
    config: Option<&(Source, Config)>,
    needs: &[Need],
) -> Result<Option<Source>, RunError> {
    let (Some(kernel), Some((source, config))) = (kernel, config) else {
        return Ok(None);
    };
    let lacks = missing(config, needs);
    if lacks.is_empty() {
        return Ok(Some(source.clone()));
    }
    Err(RunError::invalid(
        "--kernel",
        kernel.display(),
        format!(
            "this kernel cannot run this: its configuration ({source}) lacks\n  {}\nbuild the kernel with these options (lvh's `runner` option group has them all), or pass --no-kernel-check to boot it anyway",
            lacks.join("\n  ")
        ),
    ))
}

#[cfg(test)]
#[path = "kcheck_tests.rs"]
mod tests;
