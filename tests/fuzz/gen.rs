//! Input makers for the fuzz harness: a small seeded RNG, byte-level
//! mutations of corpus entries with per-target dictionaries, and a
//! structure-aware tar writer that forges what a hostile layer would hold.

/// xorshift64*: small, seeded, repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// FNV-1a, for names of saved crashes and per-target seeds.
pub fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Tokens worth inserting, per target.
pub fn dictionary(target: &str) -> &'static [&'static str] {
    match target {
        "images_json" => &[
            "\"name\"",
            "\"parent\"",
            "\"image_size\"",
            "\"bootable\"",
            "\"packages\"",
            "\"actions\"",
            "\"op\"",
            "\"type\"",
            "\"run-command\"",
            "\"copy-in\"",
            "\"install-kernel\"",
            "\"tar-in\"",
            "\"Cmd\"",
            "\"LocalPath\"",
            "\"Permissions\"",
            "\"8G\"",
            "null",
            "true",
            "[]",
            "{}",
            "\"../x\"",
            "1e999",
            "-1",
            "\"\\u0000\"",
        ],
        "kernels_json" => &[
            "\"kernels\"",
            "\"common_opts\"",
            "\"name\"",
            "\"url\"",
            "\"opts\"",
            "\"extra_make_args\"",
            "\"--enable\"",
            "\"--set-val\"",
            "\"CONFIG_X\"",
            "\"git://h/r#b?depth=1\"",
            "[[",
            "]]",
            "null",
            "\"\"",
            "\"../..\"",
        ],
        "kernel_url" => &[
            "git://",
            "https://",
            "file://",
            "ssh://",
            "#",
            "?depth=",
            "?",
            "=",
            "0",
            "18446744073709551616",
            "/",
            "..",
            "@",
            ":",
            "%",
            " ",
            "\\",
        ],
        "oci_reference" => &[
            "quay.io/",
            "localhost:5000/",
            ":",
            "@sha256:",
            "#",
            "/",
            "..",
            "-",
            "_",
            "a",
            "A",
            "latest",
            "6.6-main",
            "0123456789abcdef",
            "::",
        ],
        "oci_manifest" => &[
            "\"schemaVersion\":2",
            "\"mediaType\"",
            "\"manifests\"",
            "\"layers\"",
            "\"platform\"",
            "\"architecture\"",
            "\"os\"",
            "\"variant\"",
            "\"digest\"",
            "\"size\"",
            "\"sha256:\"",
            "\"amd64\"",
            "\"arm64\"",
            "\"unknown\"",
            "\"application/vnd.oci.image.index.v1+json\"",
            "null",
            "-1",
            "1e400",
        ],
        "guest_report" => &[
            "exit ",
            "started",
            "error ",
            " 0",
            " -1",
            " 18446744073709551616",
            " -",
            "\n",
            "\r",
            "lvh-guest: error: ",
            "Kernel panic - not syncing: ",
            "Linux version ",
            "WARNING: CPU: 0 PID: 1 at ",
            "---[ end trace ",
        ],
        "crash_reports" => &[
            "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n",
            "BUG: KASAN: slab-use-after-free in f+0x1/0x2\n",
            "Read of size 8 at addr ffff888000000000 by task sh/1\n",
            "kernel BUG at x.c:1!\n",
            "Oops: invalid opcode: 0000 [#1] SMP\n",
            "Kernel panic - not syncing: Fatal exception\n",
            "INFO: task sh:1 blocked for more than 2 seconds.\n",
            "unreferenced object 0xffff888000000000 (size 8):\n",
            " invoked oom-killer: ",
            "Call Trace:\n",
            " <TASK>\n",
            " </TASK>\n",
            " <IRQ>\n",
            " ? g+0x1/0x2\n",
            "RIP: 0010:f+0x1/0x2\n",
            "pc : f+0x1/0x2\n",
            "[    1.000000]",
            "[  T1]",
            "[    C0]",
            "==================================================================\n",
            "---[ end trace 0000000000000000 ]---\n",
            "------------[ cut here ]------------\n",
        ],
        "kernel_config" => &[
            "CONFIG_EXT4_FS=y\n",
            "# CONFIG_EXT4_FS is not set\n",
            "CONFIG_9P_FS=m\n",
            "=",
            "\n",
            "IKCFG_ST",
            "IKCFG_ED",
            "\x1f\u{8b}\x08",
            "(\u{b5}/\u{fd}",
        ],
        _ => &[
            "data/kernels/6.1/",
            "data/images/",
            "..",
            "/",
            ".zst",
            "ustar",
        ],
    }
}

/// One mutated input from `seeds`: 1 to 8 edits.
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], dict: &[&str]) -> Vec<u8> {
    let mut v = if seeds.is_empty() {
        Vec::new()
    } else {
        rng.pick(seeds).clone()
    };
    for _ in 0..1 + rng.below(8) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'0', b'9', b'"', b'\\', b'/', b'.']);
            }
            2 => {
                let i = rng.below(len + 1);
                let t = rng.pick(dict).as_bytes();
                v.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                v.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk: Vec<u8> = v[a..b].to_vec();
                let i = rng.below(len + 1);
                v.splice(i..i, chunk);
            }
            5 if !seeds.is_empty() => {
                let other = rng.pick(seeds);
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let i = rng.below(len + 1);
                    v.truncate(i);
                    v.extend_from_slice(&other[a..]);
                }
            }
            6 if len > 0 => {
                v.truncate(rng.below(len));
            }
            _ => {
                let i = rng.below(len + 1);
                let n = rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
        }
    }
    v
}

const NAMES: &[&str] = &[
    "data/kernels/6.1/",
    "data/kernels/6.1/boot",
    "data/kernels/6.1/boot/vmlinuz-6.1",
    "data/kernels/6.1/lib/modules/6.1/kernel/x.ko",
    "data/kernels/6.1/a",
    "data/kernels/6.1/a/b",
    "data/kernels/6.1/link",
    "data/kernels/6.1/link/escape",
    "data/kernels/6.1/../../../etc/passwd",
    "data/kernels/6.1/..",
    "data/kernels/6.1/.wh.a",
    "data/kernels/6.2/boot/vmlinuz-6.2",
    "data/images/root.qcow2.zst",
    "data/images/base.qcow2",
    "data/images/.zst",
    "data/images/../../x",
    "/data/kernels/6.1/abs",
    "/etc/passwd",
    "./data/kernels/6.1/./dot",
    "data//kernels//6.1//double",
    "",
];

const LINKS: &[&str] = &[
    "a",
    "../a",
    "../../..",
    "/etc/passwd",
    "/",
    "",
    "boot/../../../..",
    "data/kernels/6.1/a",
    "data/kernels/6.1/boot/vmlinuz-6.1",
    "data/kernels/6.2/boot/vmlinuz-6.2",
    "data/kernels/6.1/../../../etc/passwd",
    "link/escape",
    ".",
];

/// Entry types: file, hard link, symlink, char and block devices, directory,
/// FIFO, contiguous file, GNU long name, pax header, and garbage.
const KINDS: &[u8] = b"0123456700000222211L5xg\xff";

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0w$o}", v, w = field.len() - 1);
    let b = s.as_bytes();
    let b = &b[b.len().saturating_sub(field.len() - 1)..];
    field[..b.len()].copy_from_slice(b);
    field[b.len()] = 0;
}

/// A raw 512-byte ustar header with exactly these bytes (no sanitizing).
fn header(name: &[u8], kind: u8, size: u64, link: &[u8], mode: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], mode);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 0o77777777777 {
        octal(&mut h[124..136], size);
    } else {
        // GNU base-256 for sizes beyond the octal field.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], 0);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

fn pad(v: &mut Vec<u8>) {
    while v.len() % 512 != 0 {
        v.push(0);
    }
}

/// A hostile layer: 1 to 12 entries with paths and link targets from lists
/// of known escapes, any entry type, sizes that lie, duplicates.
pub fn tar_archive(rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..1 + rng.below(12) {
        let mut name = rng.pick(NAMES).as_bytes().to_vec();
        if rng.below(4) == 0 {
            name.extend_from_slice(b"/");
            name.extend_from_slice(rng.pick(&["a", "..", "b", "x.zst", "link"]).as_bytes());
        }
        let kind = *rng.pick(KINDS);
        let link = rng.pick(LINKS).as_bytes();
        let mut data: Vec<u8> = match rng.below(4) {
            0 => zstd::encode_all(&vec![0u8; rng.below(1 << 16)][..], 1).unwrap(),
            1 => (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
            _ => b"hello".to_vec(),
        };
        if kind == b'L' {
            data = [
                NAMES[2].as_bytes(),
                &b"/very/long/"[..],
                &[b'x'; 120][..],
                b"\0",
            ]
            .concat();
        }
        let (size, truncate) = match rng.below(10) {
            0 => (1u64 << 40, true),
            1 => (data.len() as u64 + 1 + rng.below(1000) as u64, true),
            _ => (data.len() as u64, false),
        };
        let mode = *rng.pick(&[0o644, 0o755, 0o4755, 0o000, 0o7777, 0o1000]);
        v.extend_from_slice(&header(&name, kind, size, link, mode));
        v.extend_from_slice(&data);
        if truncate {
            return v;
        }
        pad(&mut v);
    }
    v.extend_from_slice(&[0u8; 1024]);
    v
}
