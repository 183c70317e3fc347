//! The cost of supervising a child through `lvh::exec` against a bare
//! `std::process::Command`, for a trivial program.

use std::time::Instant;

use lvh::exec::Cmd;
use lvh::progress::NullReporter;

use crate::util::median;

const RUNS: usize = 200;

pub fn run() -> anyhow::Result<()> {
    let mut ours = Vec::with_capacity(RUNS);
    let mut bare = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        Cmd::new("true").run(&NullReporter)?;
        ours.push(t.elapsed());
        let t = Instant::now();
        std::process::Command::new("true").status()?;
        bare.push(t.elapsed());
    }
    let (o, b) = (median(&ours), median(&bare));
    println!(
        "exec `true`: lvh::exec median {:.2} ms, std::process median {:.2} ms, ratio {:.2}",
        o.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        o.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}
