//! Helpers shared by the benches.

use std::time::Duration;

/// The median of some timings (the upper one of the two middle values).
pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}
