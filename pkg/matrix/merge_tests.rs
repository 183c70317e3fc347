//! Merging shards: which inputs join, which are refused (naming the files),
//! and which shards are named missing.

use super::*;
use crate::matrix::report::tests::result;
use crate::runner::ResultVerdict;

fn shard(partition: Option<&str>, ids: &[&str]) -> ShardReport {
    ShardReport {
        schema_version: 1,
        file: "ci/lvh-tests.json".into(),
        partition: partition.map(String::from),
        interrupted: false,
        results: ids
            .iter()
            .map(|i| result(i, ResultVerdict::Passed))
            .collect(),
    }
}

fn named(v: Vec<(&str, ShardReport)>) -> Vec<(String, ShardReport)> {
    v.into_iter().map(|(n, r)| (n.to_string(), r)).collect()
}

#[test]
fn shards_join_in_order_and_the_missing_ones_are_named() {
    let m = merge(named(vec![
        ("r4.json", shard(Some("hash:4/4"), &["k/i/d"])),
        ("r1.json", shard(Some("hash:1/4"), &["k/i/a", "k/i/b"])),
    ]))
    .unwrap();
    assert_eq!(m.shards, ["hash:1/4", "hash:4/4"]);
    assert_eq!(m.missing, ["hash:2/4", "hash:3/4"]);
    let ids: Vec<&str> = m.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["k/i/a", "k/i/b", "k/i/d"]);
    assert!(!m.interrupted);

    let all = merge(named(vec![
        ("a", shard(Some("count:2/2"), &["k/i/b"])),
        ("b", shard(Some("count:1/2"), &[])),
    ]))
    .unwrap();
    assert!(all.missing.is_empty());
    let mut i = shard(None, &["k/i/a"]);
    i.interrupted = true;
    let whole = merge(named(vec![("w", i)])).unwrap();
    assert!(whole.shards.is_empty() && whole.missing.is_empty() && whole.interrupted);
}

#[test]
fn inputs_that_are_not_shards_of_one_run_are_refused() {
    let mut other_file = shard(Some("hash:2/2"), &["k/i/b"]);
    other_file.file = "other.json".into();
    let mut same_name = shard(Some("hash:2/2"), &["k/i/b"]);
    same_name.file = "/home/runner/work/x/ci/lvh-tests.json".into();
    assert!(merge(named(vec![
        ("a", shard(Some("hash:1/2"), &[])),
        ("b", same_name)
    ]))
    .is_ok());
    let mut bad_partition = shard(None, &[]);
    bad_partition.partition = Some("hash:3/2".into());
    let cases: Vec<(Vec<(&str, ShardReport)>, &str)> = vec![
        (vec![], "no result file"),
        (
            vec![
                ("a", shard(Some("hash:1/2"), &[])),
                ("b", shard(Some("hash:1/3"), &[])),
            ],
            "b is shard hash:1/3 but a is shard hash:1/2",
        ),
        (
            vec![
                ("a", shard(Some("hash:1/2"), &[])),
                ("b", shard(Some("count:2/2"), &[])),
            ],
            "not shards of one split",
        ),
        (
            vec![("a", shard(Some("hash:1/2"), &[])), ("b", shard(None, &[]))],
            "b and a: one is a shard",
        ),
        (
            vec![
                ("a", shard(Some("hash:1/2"), &[])),
                ("b", shard(Some("hash:1/2"), &[])),
            ],
            "a and b are both shard hash:1/2",
        ),
        (
            vec![
                ("a", shard(Some("hash:1/2"), &["k/i/x"])),
                ("b", shard(Some("hash:2/2"), &["k/i/x"])),
            ],
            "combination k/i/x is in both a and b",
        ),
        (
            vec![("a", shard(Some("hash:1/2"), &[])), ("b", other_file)],
            "b ran other.json but a ran ci/lvh-tests.json",
        ),
        (
            vec![("a", bad_partition)],
            "a: partition: invalid partition \"hash:3/2\"",
        ),
    ];
    for (inputs, want) in cases {
        let e = merge(named(inputs)).unwrap_err();
        assert!(e.contains(want), "{e}\nwant {want}");
    }
}

#[test]
fn files_are_read_back_from_what_lvh_test_writes() {
    let rs = crate::matrix::report::tests::crashed();
    let bytes =
        crate::matrix::report::JsonReport::new("t.json", Some("hash:1/2".into()), false, &rs)
            .to_bytes();
    let r = parse("r.json", std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert_eq!(r.results, rs);
    assert_eq!(r.partition.as_deref(), Some("hash:1/2"));
    let e = parse("r.json", "{\"schema_version\": 1}").unwrap_err();
    assert!(
        e.starts_with("r.json: not a result file of `lvh test --json`"),
        "{e}"
    );
    let e = parse(
        "r.json",
        "{\"schema_version\": 9, \"file\": \"f\", \"partition\": null, \"results\": []}",
    )
    .unwrap_err();
    assert!(e.contains("schema_version 9"), "{e}");
}
