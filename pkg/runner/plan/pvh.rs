//! Finding the fast x86 boot artifact: the uncompressed `vmlinux` of the same
//! build as a `--kernel` bzImage, when it has the Xen PVH entry note
//! (`CONFIG_PVH`). QEMU boots such an ELF straight into 32-bit protected mode:
//! no real-mode setup code and, above all, no decompression of the kernel,
//! which under TCG is the largest part of a small kernel's boot.
//!
//! Where the sibling is looked for: `vmlinuz-<release>` → `vmlinux-<release>`
//! in the same directory (the install tree of `lvh kernels build`, like the
//! kernel's own `tar-pkg`), and `<tree>/arch/x86{,_64}/boot/bzImage` →
//! `<tree>/vmlinux` (a build tree). The sibling is used only when it is the same
//! build: the bzImage's version string (release, builder, build number and
//! time) must appear in the vmlinux's banner, so a stale vmlinux left from an
//! earlier build is never booted.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// ELF note name and type of the PVH entry (`XEN_ELFNOTE_PHYS32_ENTRY`).
const XEN_NOTE_NAME: &[u8] = b"Xen";
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_NOTE: u32 = 4;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The file ranges `(offset, size)` of the PT_NOTE segments of a 64-bit
/// little-endian ELF, given its first bytes (header and program headers); None
/// when `head` is not such an ELF or is too short.
pub fn note_segments(head: &[u8]) -> Option<Vec<(u64, u64)>> {
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = u64_at(head, 0x20)? as usize;
    let phentsize = u16_at(head, 0x36)? as usize;
    let phnum = u16_at(head, 0x38)? as usize;
    let mut v = Vec::new();
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(head, ph)? == PT_NOTE {
            v.push((u64_at(head, ph + 8)?, u64_at(head, ph + 32)?));
        }
    }
    Some(v)
}

/// Whether a note segment's bytes hold the Xen PVH entry note.
pub fn has_pvh_note(notes: &[u8]) -> bool {
    let align4 = |n: usize| n.div_ceil(4) * 4;
    let mut o = 0usize;
    while let (Some(namesz), Some(descsz), Some(ty)) =
        (u32_at(notes, o), u32_at(notes, o + 4), u32_at(notes, o + 8))
    {
        let name_at = o + 12;
        let (namesz, descsz) = (namesz as usize, descsz as usize);
        let name = notes.get(name_at..name_at + namesz).unwrap_or_default();
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        if name == XEN_NOTE_NAME && ty == XEN_ELFNOTE_PHYS32_ENTRY {
            return true;
        }
        o = name_at + align4(namesz) + align4(descsz);
    }
    false
}

/// Whether `path` is an x86-64 ELF kernel with the PVH entry note.
pub fn is_pvh_elf(path: &Path) -> io::Result<bool> {
    let f = File::open(path)?;
    let mut head = vec![0u8; 4096];
    let n = read_at_most(&f, &mut head, 0)?;
    head.truncate(n);
    let Some(segments) = note_segments(&head) else {
        return Ok(false);
    };
    for (off, size) in segments {
        let mut buf = vec![0u8; size.min(1 << 20) as usize];
        let n = read_at_most(&f, &mut buf, off)?;
        if has_pvh_note(&buf[..n]) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn read_at_most(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The version string of an x86 boot image (`kernel_version` in the setup
/// header: `6.12.0 (user@host) #1 SMP ...`), from its first bytes.
pub fn bzimage_version(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16_at(head, 0x20e)? as usize;
    if ptr == 0 {
        return None;
    }
    let s = head.get(ptr + 0x200..)?;
    let end = s.iter().position(|&b| b == 0)?;
    let v = String::from_utf8_lossy(&s[..end]).trim().to_string();
    (!v.is_empty()).then_some(v)
}

/// Whether a vmlinux's bytes carry the banner of the build whose bzImage has
/// version string `version`: `Linux version <release> (<who>) (<compiler>)
/// <uts version>` against `<release> (<who>) <uts version>`.
pub fn banner_matches(vmlinux: &[u8], version: &str) -> bool {
    let Some(split) = version.find(") ") else {
        return false;
    };
    let (who, uts) = (&version[..=split], &version[split + 2..]);
    let start = format!("Linux version {who} (");
    let mut rest = vmlinux;
    while let Some(i) = find_bytes(rest, start.as_bytes()) {
        let line = &rest[i..];
        let end = line
            .iter()
            .position(|&b| b == b'\n' || b == 0)
            .unwrap_or(line.len());
        if line[..end].ends_with(uts.as_bytes()) {
            return true;
        }
        rest = &rest[i + 1..];
    }
    false
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where the vmlinux of the same build as `kernel` would be (not checked).
pub fn sibling_candidates(kernel: &Path) -> Vec<PathBuf> {
    let Some(name) = kernel.file_name().and_then(|n| n.to_str()) else {
        return vec![];
    };
    let dir = kernel.parent().unwrap_or(Path::new(""));
    let mut v = Vec::new();
    if let Some(rest) = name.strip_prefix("vmlinuz") {
        v.push(dir.join(format!("vmlinux{rest}")));
    }
    if name == "bzImage" {
        let boot = dir.file_name().and_then(|n| n.to_str());
        let arch = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        if boot == Some("boot") && matches!(arch, Some("x86" | "x86_64")) {
            if let Some(tree) = dir
                .parent()
                .and_then(|p| p.parent())
                .and_then(|p| p.parent())
            {
                v.push(tree.join("vmlinux"));
            }
        }
        v.push(dir.join("vmlinux"));
    }
    v
}

/// The PVH-bootable kernel to use for `--kernel kernel`: the kernel itself when
/// it is a PVH ELF, else a sibling vmlinux of the same build with the PVH note;
/// None when there is none (lvh boots `kernel` as given).
pub fn find(kernel: &Path) -> Option<PathBuf> {
    if is_pvh_elf(kernel).unwrap_or(false) {
        return Some(kernel.to_path_buf());
    }
    let mut head = vec![0u8; 64 << 10];
    let n = File::open(kernel)
        .and_then(|f| read_at_most(&f, &mut head, 0))
        .ok()?;
    let version = bzimage_version(&head[..n])?;
    sibling_candidates(kernel).into_iter().find(|c| {
        c.is_file()
            && is_pvh_elf(c).unwrap_or(false)
            && file_has_banner(c, &version).unwrap_or(false)
    })
}

/// [`banner_matches`] over a file read in overlapping chunks, stopping at the
/// first match (the banner is in `.rodata`, early in the file).
fn file_has_banner(p: &Path, version: &str) -> io::Result<bool> {
    const CHUNK: usize = 4 << 20;
    const OVERLAP: usize = 4096;
    let mut f = File::open(p)?;
    let mut buf = vec![0u8; CHUNK + OVERLAP];
    let mut have = 0;
    loop {
        let n = f.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(banner_matches(&buf[..have], version));
        }
        have += n;
        if have == buf.len() {
            if banner_matches(&buf, version) {
                return Ok(true);
            }
            buf.copy_within(CHUNK.., 0);
            have = OVERLAP;
        }
    }
}

#[cfg(test)]
#[path = "pvh_tests.rs"]
mod tests;
