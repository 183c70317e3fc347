//! From a validated matrix to the list of combinations to run: every kernel ×
//! image × test in file order, minus the file's skips, then `--filter`, then
//! `--partition` (nextest's sharding: `count:K/N` deals the combinations out
//! round-robin, `hash:K/N` keeps those whose id hashes to slice K, stable
//! across machines and runs because the hash is SHA-256 of the id, not std's
//! randomly seeded hasher). All pure functions.

use std::str::FromStr;

use regex::Regex;
use sha2::{Digest, Sha256};

use super::config::{Matrix, Skip};

/// One kernel × image × test combination, by index into the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combo {
    pub kernel: usize,
    pub image: usize,
    pub test: usize,
    /// `kernel/image/test`: what `--filter` matches and `hash:` hashes.
    pub id: String,
}

/// A combination's id.
pub fn combo_id(kernel: &str, image: &str, test: &str) -> String {
    format!("{kernel}/{image}/{test}")
}

fn skipped(s: &Skip, kernel: &str, image: &str, test: &str) -> bool {
    s.kernel.as_deref().is_none_or(|k| k == kernel)
        && s.image.as_deref().is_none_or(|i| i == image)
        && s.test.as_deref().is_none_or(|t| t == test)
}

/// Every combination the file asks for, kernel-major, minus its skips.
pub fn expand(m: &Matrix) -> Vec<Combo> {
    let mut out = Vec::new();
    for (ki, k) in m.kernels.iter().enumerate() {
        for (ii, i) in m.images.iter().enumerate() {
            for (ti, t) in m.tests.iter().enumerate() {
                if m.skip.iter().any(|s| skipped(s, &k.name, &i.name, &t.name)) {
                    continue;
                }
                out.push(Combo {
                    kernel: ki,
                    image: ii,
                    test: ti,
                    id: combo_id(&k.name, &i.name, &t.name),
                });
            }
        }
    }
    out
}

/// The combinations whose id `re` matches (anywhere in it, as nextest's filters).
pub fn filter(combos: Vec<Combo>, re: &Regex) -> Vec<Combo> {
    combos.into_iter().filter(|c| re.is_match(&c.id)).collect()
}

/// `--partition`: which of N disjoint slices to run (K is 1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Count { k: u64, n: u64 },
    Hash { k: u64, n: u64 },
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Partition, String> {
        let bad = || {
            format!(
                "invalid partition {s:?} (--partition): expected count:K/N or hash:K/N with 1 <= K <= N, e.g. hash:1/4"
            )
        };
        let (kind, kn) = s.split_once(':').ok_or_else(bad)?;
        let (k, n) = kn.split_once('/').ok_or_else(bad)?;
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        match kind {
            "count" => Ok(Partition::Count { k, n }),
            "hash" => Ok(Partition::Hash { k, n }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Count { k, n } => write!(f, "count:{k}/{n}"),
            Partition::Hash { k, n } => write!(f, "hash:{k}/{n}"),
        }
    }
}

/// A hash of `id` that every machine and every run computes alike.
pub fn stable_hash(id: &str) -> u64 {
    let d = Sha256::digest(id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The slice of `combos` that `p` selects.
pub fn partition(combos: Vec<Combo>, p: Partition) -> Vec<Combo> {
    combos
        .into_iter()
        .enumerate()
        .filter(|(i, c)| match p {
            Partition::Count { k, n } => (*i as u64) % n == k - 1,
            Partition::Hash { k, n } => stable_hash(&c.id) % n == k - 1,
        })
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::config::{ImageSource, ImageSpec, KernelSource, KernelSpec, TestSpec};
    use std::collections::BTreeSet;

    fn matrix(kernels: &[&str], images: &[&str], tests: &[&str], skip: Vec<Skip>) -> Matrix {
        Matrix {
            file: "m.json".into(),
            kernels: kernels
                .iter()
                .map(|n| KernelSpec {
                    name: n.to_string(),
                    source: KernelSource::Built(n.to_string()),
                })
                .collect(),
            images: images
                .iter()
                .map(|n| ImageSpec {
                    name: n.to_string(),
                    source: ImageSource::Path(n.into()),
                })
                .collect(),
            tests: tests
                .iter()
                .map(|n| TestSpec {
                    name: n.to_string(),
                    argv: vec!["true".into()],
                    timeout: None,
                    host_mount: None,
                    cwd: None,
                    cpus: 1,
                    memory: "1G".parse().unwrap(),
                    env: Default::default(),
                    kmemleak: false,
                })
                .collect(),
            skip,
        }
    }

    fn ids(c: &[Combo]) -> Vec<&str> {
        c.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn expansion_is_kernel_major_minus_skips() {
        let skip = |k: Option<&str>, i: Option<&str>, t: Option<&str>| Skip {
            kernel: k.map(Into::into),
            image: i.map(Into::into),
            test: t.map(Into::into),
            reason: None,
        };
        let cases: Vec<(Vec<Skip>, Vec<&str>)> = vec![
            (vec![], vec!["k1/i/a", "k1/i/b", "k2/i/a", "k2/i/b"]),
            (vec![skip(Some("k1"), None, None)], vec!["k2/i/a", "k2/i/b"]),
            (vec![skip(None, None, Some("b"))], vec!["k1/i/a", "k2/i/a"]),
            (
                vec![skip(Some("k2"), Some("i"), Some("a"))],
                vec!["k1/i/a", "k1/i/b", "k2/i/b"],
            ),
            (vec![skip(None, Some("i"), None)], vec![]),
        ];
        for (s, want) in cases {
            let m = matrix(&["k1", "k2"], &["i"], &["a", "b"], s.clone());
            assert_eq!(ids(&expand(&m)), want, "{s:?}");
        }
    }

    #[test]
    fn filter_matches_anywhere_in_the_id() {
        let m = matrix(&["k1", "k2"], &["i"], &["net", "bpf"], vec![]);
        let f = |re: &str| {
            ids(&filter(expand(&m), &Regex::new(re).unwrap()))
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(f("bpf"), ["k1/i/bpf", "k2/i/bpf"]);
        assert_eq!(f("^k2/"), ["k2/i/net", "k2/i/bpf"]);
        assert_eq!(f("k1/.*/net$"), ["k1/i/net"]);
        assert!(f("nothing").is_empty());
    }

    #[test]
    fn partition_specs_parse_and_refuse() {
        assert_eq!(
            "count:1/3".parse::<Partition>(),
            Ok(Partition::Count { k: 1, n: 3 })
        );
        assert_eq!(
            "hash:4/4".parse::<Partition>(),
            Ok(Partition::Hash { k: 4, n: 4 })
        );
        for bad in [
            "count:0/3",
            "hash:5/4",
            "count:1",
            "rand:1/2",
            "hash:a/b",
            "1/2",
            "hash:1/0",
        ] {
            let e = bad.parse::<Partition>().unwrap_err();
            assert!(e.contains(bad) && e.contains("--partition"), "{e}");
        }
        assert_eq!(Partition::Hash { k: 2, n: 3 }.to_string(), "hash:2/3");
    }

    #[test]
    fn slices_are_disjoint_and_cover_everything() {
        let names: Vec<String> = (0..13).map(|i| format!("t{i}")).collect();
        let tests: Vec<&str> = names.iter().map(String::as_str).collect();
        let m = matrix(&["k1", "k2", "k3"], &["i1", "i2"], &tests, vec![]);
        let all = expand(&m);
        assert_eq!(all.len(), 78);
        for n in 1..=7u64 {
            for make in [
                (|k, n| Partition::Count { k, n }) as fn(u64, u64) -> Partition,
                |k, n| Partition::Hash { k, n },
            ] {
                let mut seen = BTreeSet::new();
                let mut total = 0;
                for k in 1..=n {
                    let slice = partition(all.clone(), make(k, n));
                    total += slice.len();
                    for c in slice {
                        assert!(seen.insert(c.id.clone()), "{} in two slices", c.id);
                    }
                }
                assert_eq!(total, all.len(), "{:?}", make(1, n));
                assert_eq!(seen.len(), all.len());
            }
        }
        // count: slices differ in size by at most one.
        let sizes: Vec<usize> = (1..=4)
            .map(|k| partition(all.clone(), Partition::Count { k, n: 4 }).len())
            .collect();
        assert_eq!(sizes, [20, 20, 19, 19]);
    }

    #[test]
    fn the_hash_is_fixed_across_machines_and_releases() {
        // SHA-256("k/i/t")'s first 8 bytes: a change here reshuffles every CI's shards.
        assert_eq!(stable_hash("k/i/t"), stable_hash("k/i/t"));
        assert_eq!(format!("{:016x}", stable_hash("")), "e3b0c44298fc1c14");
    }
}
