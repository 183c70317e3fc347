//! Table tests of the PVH artifact search on synthetic ELF files and boot
//! images (the system tests boot real ones).

use super::*;

fn note(name: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut n = name.to_vec();
    n.push(0);
    v.extend((n.len() as u32).to_le_bytes());
    v.extend((desc.len() as u32).to_le_bytes());
    v.extend(ty.to_le_bytes());
    v.extend(&n);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v.extend(desc);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// A minimal ELF64 file: header, a PT_LOAD and a PT_NOTE program header, the
/// notes, then `tail` (e.g. a banner).
fn elf(notes: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 64];
    v[..6].copy_from_slice(b"\x7fELF\x02\x01");
    v[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    v[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    v[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    let notes_at = 64 + 2 * 56;
    for (ty, off, size) in [(1u32, 0u64, 0u64), (4, notes_at as u64, notes.len() as u64)] {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&ty.to_le_bytes());
        ph[8..16].copy_from_slice(&off.to_le_bytes());
        ph[32..40].copy_from_slice(&size.to_le_bytes());
        v.extend(ph);
    }
    v.extend(notes);
    v.extend(tail);
    v
}

const VERSION: &str = "6.12.0 (root@box) #3 SMP Wed Dec  2 08:50:12 UTC 2026";
const BANNER: &[u8] = b"\0Linux version 6.12.0 (root@box) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld 2.40) #3 SMP Wed Dec  2 08:50:12 UTC 2026\n\0";

/// A bzImage's first bytes: the setup header's magic and version pointer.
fn bzimage(version: &str) -> Vec<u8> {
    let mut v = vec![0u8; 0x1000];
    v[0x202..0x206].copy_from_slice(b"HdrS");
    v[0x20e..0x210].copy_from_slice(&(0x400u16).to_le_bytes());
    v[0x600..0x600 + version.len()].copy_from_slice(version.as_bytes());
    v
}

#[test]
fn notes() {
    let pvh = note(b"Xen", 18, &0x100_0000u32.to_le_bytes());
    let gnu = note(b"GNU", 3, b"0123456789abcdef0123");
    let other_xen = note(b"Xen", 6, b"linux\0");
    for (notes, want) in [
        ([gnu.clone(), pvh.clone()].concat(), true),
        ([other_xen.clone(), gnu.clone(), pvh.clone()].concat(), true),
        ([gnu.clone(), other_xen.clone()].concat(), false),
        (note(b"Xe", 18, b"1234"), false),
        (vec![], false),
        (pvh[..10].to_vec(), false),
    ] {
        assert_eq!(has_pvh_note(&notes), want, "{notes:?}");
        let file = elf(&notes, b"");
        let segs = note_segments(&file).unwrap();
        assert_eq!(segs, [(176, notes.len() as u64)]);
        let (o, n) = (segs[0].0 as usize, segs[0].1 as usize);
        assert_eq!(has_pvh_note(&file[o..o + n]), want);
    }
    assert_eq!(note_segments(b"\x7fELF\x01\x01"), None, "32-bit");
    assert_eq!(note_segments(b"MZ"), None);
    assert_eq!(note_segments(&elf(&[], b"")[..100]), None, "truncated");
}

#[test]
fn boot_image_versions() {
    assert_eq!(bzimage_version(&bzimage(VERSION)).as_deref(), Some(VERSION));
    let mut no_magic = bzimage(VERSION);
    no_magic[0x202] = b'X';
    assert_eq!(bzimage_version(&no_magic), None);
    let mut no_ptr = bzimage(VERSION);
    no_ptr[0x20e..0x210].fill(0);
    assert_eq!(bzimage_version(&no_ptr), None);
    assert_eq!(bzimage_version(&bzimage(VERSION)[..0x300]), None);
}

#[test]
fn banners() {
    assert!(banner_matches(BANNER, VERSION));
    for other in [
        "6.12.0 (root@box) #4 SMP Wed Dec  2 08:50:12 UTC 2026",
        "6.12.0 (root@box) #3 SMP Wed Dec  2 08:50:13 UTC 2026",
        "6.12.1 (root@box) #3 SMP Wed Dec  2 08:50:12 UTC 2026",
        "6.12.0 (lvh@box) #3 SMP Wed Dec  2 08:50:12 UTC 2026",
        "no parenthesis",
    ] {
        assert!(!banner_matches(BANNER, other), "{other}");
    }
    // A first near miss does not stop the search.
    let two = [&b"Linux version 6.12.0 (root@box) (x) #9\n"[..], BANNER].concat();
    assert!(banner_matches(&two, VERSION));
}

#[test]
fn candidates() {
    for (kernel, want) in [
        (
            "/k/tar-install/boot/vmlinuz-6.12.0",
            vec!["/k/tar-install/boot/vmlinux-6.12.0"],
        ),
        ("/boot/vmlinuz", vec!["/boot/vmlinux"]),
        (
            "/t/arch/x86/boot/bzImage",
            vec!["/t/vmlinux", "/t/arch/x86/boot/vmlinux"],
        ),
        (
            "/t/arch/x86_64/boot/bzImage",
            vec!["/t/vmlinux", "/t/arch/x86_64/boot/vmlinux"],
        ),
        ("/d/bzImage", vec!["/d/vmlinux"]),
        ("/d/Image.gz", vec![]),
        ("/d/vmlinux", vec![]),
    ] {
        let got: Vec<PathBuf> = sibling_candidates(Path::new(kernel));
        let want: Vec<PathBuf> = want.into_iter().map(PathBuf::from).collect();
        assert_eq!(got, want, "{kernel}");
    }
}

/// The whole search on files: a sibling of the same build is found, a stale
/// one or one without the note is not, and a PVH ELF given directly is used.
#[test]
fn find_on_files() {
    let d = tempfile::tempdir().unwrap();
    let boot = d.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    let vmlinuz = boot.join("vmlinuz-6.12.0");
    let vmlinux = boot.join("vmlinux-6.12.0");
    std::fs::write(&vmlinuz, bzimage(VERSION)).unwrap();
    let pvh = note(b"Xen", 18, &[0; 4]);
    // The banner past the first 4 MiB chunk, to cover the chunked scan.
    let pad = vec![0u8; (4 << 20) - 100];
    std::fs::write(&vmlinux, elf(&pvh, &[&pad[..], BANNER].concat())).unwrap();
    assert_eq!(find(&vmlinuz), Some(vmlinux.clone()));
    assert_eq!(find(&vmlinux), Some(vmlinux.clone()), "a PVH ELF itself");

    let stale = BANNER
        .to_vec()
        .iter()
        .map(|&b| if b == b'3' { b'4' } else { b })
        .collect::<Vec<_>>();
    std::fs::write(&vmlinux, elf(&pvh, &stale)).unwrap();
    assert_eq!(find(&vmlinuz), None, "another build's vmlinux");

    std::fs::write(&vmlinux, elf(&note(b"GNU", 3, &[0; 4]), BANNER)).unwrap();
    assert_eq!(find(&vmlinuz), None, "no PVH note");

    std::fs::remove_file(&vmlinux).unwrap();
    assert_eq!(find(&vmlinuz), None, "no sibling");
    assert_eq!(find(&d.path().join("missing")), None);
}
