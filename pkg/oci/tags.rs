//! Kernel tags (`<version>-<date or main>`) and version ordering, as
//! little-vm-helper's `kernels catalog` and `kernels pull` understand them.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

use super::error::OciError;

/// The kernel tag pattern: group 1 is the kernel version (the directory under
/// `/data/kernels/`), group 2 the build (`main` or a date).
pub const KERNEL_TAG_REGEX: &str = r"^(.+)-([0-9]+\.[0-9]+|main)$";

fn tag_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(KERNEL_TAG_REGEX).expect("valid regex"))
}

/// The kernel version a tag holds (`6.6-main` -> `6.6`), if it is a kernel tag.
pub fn kernel_version(tag: &str) -> Option<&str> {
    tag_regex()
        .captures(tag)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// Like [`kernel_version`], with an error that shows the pattern.
pub fn require_kernel_version(tag: &str) -> Result<&str, OciError> {
    kernel_version(tag).ok_or_else(|| OciError::InvalidKernelTag {
        tag: tag.to_string(),
        regex: KERNEL_TAG_REGEX,
    })
}

/// Parses `6`, `6.6`, `5.10.3` (optionally `v`-prefixed) into numbers.
fn numeric_version(v: &str) -> Option<Vec<u64>> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

/// Version order as little-vm-helper prints it: names that are not versions
/// (`bpf-next`, `rhel8.6`) first, alphabetically, then versions numerically
/// (`4.19` < `5.4` < `5.10` < `6.6`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (numeric_version(a), numeric_version(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Natural order: runs of digits compare as numbers (`6.6-20240404.9` before
/// `6.6-20240404.10`); `main` sorts after dated tags, as in little-vm-helper.
pub fn compare_natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let n = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let m = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (p, q) = (trim_zeros(&x[..n]), trim_zeros(&y[..m]));
                let o = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[n..];
                y = &y[m..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let i = s
        .iter()
        .take_while(|&&c| c == b'0')
        .count()
        .min(s.len().saturating_sub(1));
    &s[i..]
}

/// Groups kernel tags by version, dropping tags that are not kernel tags and
/// the obsolete `*-latest-*` ones. Each version's tags are in natural order.
pub fn group_kernel_tags<'a>(
    tags: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in tags {
        if let Some(v) = kernel_version(tag) {
            if v.contains("-latest") {
                continue;
            }
            by.entry(v.to_string()).or_default().push(tag.to_string());
        }
    }
    for list in by.values_mut() {
        list.sort_by(|a, b| compare_natural(a, b));
    }
    by
}

/// The versions of a grouping, in version order.
pub fn sorted_versions(groups: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = groups.keys().cloned().collect();
    v.sort_by(|a, b| compare_versions(a, b));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_regex_table() {
        let cases = [
            ("6.6-main", Some("6.6")),
            ("bpf-next-20240404.012646", Some("bpf-next")),
            ("5.10-20231010.101010", Some("5.10")),
            ("rhel8.6-main", Some("rhel8.6")),
            ("main", None),
            ("6.6", None),
            ("6.6-latest", None),
            ("-main", None),
            ("6.6-main-x", None),
        ];
        for (tag, want) in cases {
            assert_eq!(kernel_version(tag), want, "{tag}");
        }
        assert!(require_kernel_version("nope")
            .unwrap_err()
            .to_string()
            .contains(KERNEL_TAG_REGEX));
    }

    #[test]
    fn versions_sort_like_semver_with_names_first() {
        let mut v = vec![
            "6.6", "5.10", "bpf-next", "4.19", "5.4", "bpf", "6.12", "rhel8.6", "6.1",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            ["bpf", "bpf-next", "rhel8.6", "4.19", "5.4", "5.10", "6.1", "6.6", "6.12"]
        );
    }

    #[test]
    fn tags_group_and_sort() {
        let tags = [
            "6.6-main",
            "6.6-20240404.10",
            "6.6-20240404.9",
            "6.6-latest-20230101.1",
            "bpf-next-main",
            "5.10-20231231.1",
            "junk",
        ];
        let g = group_kernel_tags(tags.iter().copied());
        assert_eq!(g["6.6"], ["6.6-20240404.9", "6.6-20240404.10", "6.6-main"]);
        assert_eq!(sorted_versions(&g), ["bpf-next", "5.10", "6.6"]);
        assert!(!g.contains_key("6.6-latest"));
    }
}
