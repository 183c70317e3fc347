//! Sizes as users write them (`8G`, `512M`, as qemu-img takes them) and as
//! lvh shows them (`1.5G`).

/// A size as qemu-img takes it: bytes, or a number with K, M, G or T (powers
/// of 1024). None for anything else, zero, or a size that overflows 64 bits.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let mul: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (&s[..i], mul)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mul).filter(|b| *b > 0)
}

/// Bytes as "1.5G", "300M", "12K".
pub fn human(b: u64) -> String {
    let units = [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (u, n) in units {
        if b >= n {
            return format!("{:.1}{u}", b as f64 / n as f64);
        }
    }
    format!("{b}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_qemu_img() {
        for (s, want) in [
            ("8G", Some(8u64 << 30)),
            ("512M", Some(512 << 20)),
            ("1t", Some(1 << 40)),
            ("4096", Some(4096)),
            ("0G", None),
            ("G", None),
            ("8X", None),
            ("16E", None),
            ("-1G", None),
            ("17179869184G", None),
            ("18446744073709551615", Some(u64::MAX)),
        ] {
            assert_eq!(parse_size(s), want, "{s}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(8 << 30), "8.0G");
    }
}
