//! The top-level command line: global flags, the subcommand list, and the one
//! place the clap tree is finished (Go-style booleans) and argv is read
//! (cobra-style flag placement). Each subsystem's flags live in its own module.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::{argv, gobool, images, kernels, run, test, triage};

/// Build kernels and Debian root images, and boot them in QEMU fast.
///
/// A drop-in for cilium's little-vm-helper: same commands, flags and files.
#[derive(Debug, Parser)]
#[command(name = "lvh", version = crate::version(), propagate_version = true, term_width = 100)]
#[command(after_help = crate::exit_codes_help())]
pub struct Cli {
    /// More output: child process lines, QEMU console (-v), debug logs (-vv).
    /// On `run`, -v also prints the QEMU command first, as little-vm-helper's
    /// --verbose does (--verbose=BOOL is accepted). LVH_LOG=<filter> sets the log filter
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Treat warnings about input as errors: unknown keys in kernels.json and
    /// images.json, Kconfig overriding a requested option
    #[arg(long, global = true)]
    pub strict: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build and pull VM root images
    #[command(subcommand)]
    Images(images::ImagesCmd),
    /// Build and pull kernels
    #[command(subcommand, visible_aliases = ["kernel", "k"])]
    Kernels(kernels::KernelsCmd),
    /// Run VMs based on generated base images and kernels
    Run(Box<run::RunArgs>),
    /// Run a matrix of kernels x images x tests, each in its own VM (lvh-tests.json)
    Test(Box<test::TestArgs>),
    /// Find, title, fingerprint and symbolize the kernel crash reports in console logs
    Triage(Box<triage::TriageArgs>),
    /// Print the version of lvh (with -v: the commit, target, compiler and guest inits)
    Version,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    Completion {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (one per command, roff) into DIR; for packagers
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// The finished clap tree: derive's definitions with Go-style booleans.
pub fn command() -> clap::Command {
    gobool::apply(Cli::command())
}

/// Parses a full argv (program name first) the way cobra would accept it.
pub fn parse_from(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let mut cmd = command();
    let args = argv::normalize(&cmd, args);
    let m = cmd.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&m).map_err(|e| e.format(&mut cmd))
}

/// `lvh completion <shell>`: the script for the finished tree.
pub fn completion(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "lvh", &mut buf);
    buf
}

/// `lvh man DIR`: `lvh.1`, `lvh-run.1`, `lvh-images-build.1`, ... for the
/// finished tree (hidden commands get none).
pub fn man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    clap_mangen::generate_to(command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_shell_gets_a_script_naming_lvh() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
        ] {
            let s = String::from_utf8(completion(shell)).unwrap();
            assert!(s.contains("lvh") && s.contains("raw_configure"), "{shell}");
        }
    }

    #[test]
    fn man_pages_cover_every_visible_command_and_no_hidden_one() {
        let d = tempfile::tempdir().unwrap();
        man_pages(d.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for want in [
            "lvh.1",
            "lvh-run.1",
            "lvh-images-build.1",
            "lvh-kernels-raw_configure.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("lvh-man")), "{names:?}");
        let top = std::fs::read_to_string(d.path().join("lvh.1")).unwrap();
        assert!(
            top.starts_with(".ie") || top.contains(".TH lvh"),
            "{top:.200}"
        );
        assert!(
            top.contains("Exit codes"),
            "the exit-code table is in the page"
        );
    }
}
