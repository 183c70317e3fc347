//! The top-level command line: global flags and the subcommand list. Each
//! subsystem's flags live in its own module (`images.rs`, `kernels.rs`, `run.rs`).

use clap::{Parser, Subcommand};

use crate::{images, kernels, run};

/// Build kernels and Debian root images, and boot them in QEMU fast.
///
/// A drop-in for cilium's little-vm-helper: same commands, flags and files.
#[derive(Debug, Parser)]
#[command(name = "lvh", version, propagate_version = true, term_width = 100)]
#[command(after_help = crate::exit_codes_help())]
pub struct Cli {
    /// More output: child process lines, QEMU console (-v), debug logs (-vv).
    /// LVH_LOG=<filter> sets the log filter directly.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

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
    /// Print the version of lvh
    Version,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
