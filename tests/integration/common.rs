//! Helpers shared by integration tests: run the built binary and inspect the result.

use std::path::Path;
use std::process::{Command, Output};

/// The `lvh` binary cargo built for these tests.
pub fn lvh_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lvh")
}

/// Runs `lvh args...` in `dir` with a clean, predictable environment.
pub fn lvh_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(lvh_bin())
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env_remove("LVH_LOG")
        .output()
        .expect("run lvh")
}

/// Runs `lvh args...` in a fresh temporary directory.
pub fn lvh(args: &[&str]) -> Output {
    let d = tempfile::tempdir().unwrap();
    lvh_in(d.path(), args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub use crate::support::assert_code;
