//! The `lvh` binary: parses the command line, sets up logging, Ctrl-C handling
//! and progress rendering, dispatches to the subsystem modules and turns errors
//! into messages and named exit codes.

mod cli;
mod images;
mod kernels;
mod oci;
mod render;
mod run;

use clap::Parser;
use lvh::error::{ExitCode, HasExitCode};

use cli::{Cli, Command};

/// What every command handler gets besides its own flags.
pub struct Ctx {
    pub reporter: render::Renderer,
    pub verbose: u8,
}

/// The exit-code table shown under `lvh --help`.
pub fn exit_codes_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, what) in ExitCode::ALL {
        s.push_str(&format!("  {:>3}  {what}\n", code.code()));
    }
    s.push_str("  `lvh run -- CMD` exits with CMD's own exit code when the guest ran it.");
    s
}

/// The error for commands that exist for compatibility but are not built yet.
pub fn not_implemented(command: &str) -> anyhow::Result<ExitCode> {
    Err(lvh::error::NotImplemented {
        command: command.to_string(),
    }
    .into())
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 | 1 => "warn",
        2 => "lvh=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("LVH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The exit code an error deserves: the first error in the chain that knows.
fn classify(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        macro_rules! known {
            ($($t:ty),* $(,)?) => {
                $(if let Some(e) = cause.downcast_ref::<$t>() {
                    return e.exit_code();
                })*
            };
        }
        known!(
            lvh::error::NotImplemented,
            lvh::error::InvalidInput,
            lvh::exec::ExecError,
            lvh::images::ImagesError,
            lvh::kernels::KernelsError,
            lvh::runner::RunError,
            lvh::oci::OciError,
        );
    }
    if lvh::cancel::CancelToken::global().is_cancelled() {
        return ExitCode::Interrupted;
    }
    ExitCode::Failure
}

fn print_error(err: &anyhow::Error) {
    eprintln!("lvh: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            };
            return std::process::ExitCode::from(code as u8);
        }
    };
    init_logging(cli.verbose);
    if let Err(e) = lvh::cancel::install_handler(|| {
        eprintln!("lvh: interrupted: stopping and cleaning up (press Ctrl-C again to kill)")
    }) {
        tracing::warn!("could not install the Ctrl-C handler: {e}");
    }
    let ctx = Ctx {
        reporter: render::Renderer::new(render::want_fancy(), cli.verbose),
        verbose: cli.verbose,
    };
    let result = match &cli.command {
        Command::Images(c) => images::dispatch(c, &ctx),
        Command::Kernels(c) => kernels::dispatch(c, &ctx),
        Command::Run(a) => run::dispatch(a, &ctx),
        Command::Version => {
            println!("lvh {}", lvh::VERSION);
            Ok(ExitCode::Success)
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            classify(&e)
        }
    };
    std::process::ExitCode::from(code.code() as u8)
}
