//! `make bench`: benchmarks that measure lvh side by side with the reference
//! tool in the same run and print the ratio. Run one by name:
//! `cargo bench --bench bench -- exec`.

mod accel;
mod arm64;
mod exec_overhead;
mod hostmount;
mod images;
mod kbuild;
mod kernels;
mod matrix;
mod oci;
mod runner;
mod saved;
#[path = "../support/mod.rs"]
mod support;
mod triage;
mod util;

type Bench = (&'static str, fn() -> anyhow::Result<()>);

const BENCHES: &[Bench] = &[
    ("accel", accel::run),
    ("arm64", arm64::run),
    ("exec", exec_overhead::run),
    ("hostmount", hostmount::run),
    ("images", images::run),
    ("kbuild", kbuild::run),
    ("kernels", kernels::run),
    ("matrix", matrix::run),
    ("oci", oci::run),
    ("runner", runner::run),
    ("saved", saved::run),
    ("triage", triage::run),
];

fn main() -> anyhow::Result<()> {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, f) in BENCHES {
        if filter.is_empty() || filter.iter().any(|x| name.contains(x.as_str())) {
            println!("== bench {name}");
            f()?;
        }
    }
    Ok(())
}
