//! Fuzzing without a nightly toolchain: every target in `lvh::fuzz::TARGETS`
//! replays its committed corpus (`tests/fuzz/corpus/<target>/`, on every
//! `make test`), then runs mutated inputs for a bounded time: byte flips,
//! interesting values, dictionary tokens, cuts, copies and splices of corpus
//! entries, and for the layer extractor tar archives built entry by entry
//! (`..`, absolute paths, symlinks and hard links out of the tree, device
//! nodes, huge sizes, duplicates). A panic saves the input under
//! `target/fuzz-crashes/` and fails; a crash found becomes a corpus file.
//!
//! `LVH_FUZZ_SECS` sets the seconds per target (`make fuzz`: 60; default 2),
//! `LVH_FUZZ_SEED` the seed (printed, so a run can be repeated).

mod gen;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gen::Rng;
use lvh::fuzz::{Target, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Runs one input; on a panic saves it and returns where.
fn run_one(t: &Target, input: &[u8]) -> Result<(), PathBuf> {
    let r = std::panic::catch_unwind(|| (t.run)(input));
    if r.is_ok() {
        return Ok(());
    }
    Err(save(t, "crashes", input))
}

/// An input worth a look: slower than this (reported, not failed).
const SLOW: Duration = Duration::from_millis(500);

/// Keeps `input` under `target/fuzz-<kind>/` and returns where.
fn save(t: &Target, kind: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/fuzz-{kind}"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{}-{:016x}", t.name, gen::hash(input)));
    std::fs::write(&p, input).unwrap();
    p
}

#[test]
fn every_target_has_a_corpus_and_replays_it() {
    for t in TARGETS {
        let c = corpus(t.name);
        assert!(c.len() >= 3, "{}: corpus too small ({})", t.name, c.len());
        for (p, b) in c {
            if let Err(saved) = run_one(t, &b) {
                panic!(
                    "{}: {} panics (copy at {})",
                    t.name,
                    p.display(),
                    saved.display()
                );
            }
        }
    }
}

fn secs() -> f64 {
    std::env::var("LVH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

fn seed() -> u64 {
    std::env::var("LVH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[test]
fn mutated_inputs_for_a_bounded_time() {
    let seed = seed();
    let budget = Duration::from_secs_f64(secs());
    eprintln!("fuzz: seed {seed} (LVH_FUZZ_SEED), {budget:?} per target");
    let mut failures = Vec::new();
    for t in TARGETS {
        let mut rng = Rng::new(seed ^ gen::hash(t.name.as_bytes()));
        let seeds: Vec<Vec<u8>> = corpus(t.name).into_iter().map(|(_, b)| b).collect();
        let dict = gen::dictionary(t.name);
        let start = Instant::now();
        let mut execs: u64 = 0;
        let mut slow = 0;
        while start.elapsed() < budget {
            let input = if t.name == "layer_tar" && rng.below(2) == 0 {
                gen::tar_archive(&mut rng)
            } else {
                gen::mutate(&mut rng, &seeds, dict)
            };
            execs += 1;
            let t0 = Instant::now();
            let r = run_one(t, &input);
            if t0.elapsed() > SLOW {
                slow += 1;
                if slow <= 3 {
                    let p = save(t, "slow", &input);
                    eprintln!(
                        "fuzz: {} took {:?} on {}",
                        t.name,
                        t0.elapsed(),
                        p.display()
                    );
                }
            }
            if let Err(saved) = r {
                failures.push(format!("{}: crash saved at {}", t.name, saved.display()));
                break;
            }
        }
        let rate = execs as f64 / start.elapsed().as_secs_f64();
        eprintln!(
            "fuzz: {:<14} {execs:>9} executions ({rate:.0}/s), {slow} over {SLOW:?}",
            t.name
        );
    }
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
}

/// The generator itself: archives it builds are real tars the extractor
/// reads entry by entry (a generator that only made garbage would test nothing).
#[test]
fn generated_archives_reach_the_extractor() {
    let mut rng = Rng::new(7);
    let mut entries = 0;
    for _ in 0..200 {
        let a = gen::tar_archive(&mut rng);
        let mut ar = tar::Archive::new(&a[..]);
        entries += ar.entries().unwrap().take_while(|e| e.is_ok()).count();
    }
    assert!(entries > 400, "{entries} entries in 200 archives");
}
