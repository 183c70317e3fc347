//! The `lvh` binary: parses the command line, sets up logging, Ctrl-C handling
//! and progress rendering, dispatches to the subsystem modules and turns errors
//! into messages and named exit codes.

#[macro_use]
mod out;
mod argv;
mod bisect;
mod cli;
mod gobool;
mod images;
mod kbuild;
mod kernels;
mod oci;
mod render;
mod run;
mod test;
mod triage;
mod version;

pub use version::version;

use lvh::error::ExitCode;

use cli::Command;

/// What every command handler gets besides its own flags.
pub struct Ctx {
    pub reporter: render::Renderer,
    pub verbose: u8,
    /// `--strict`: warnings about input are errors.
    pub strict: bool,
}

/// Unknown config keys (`file:line:col: unknown key "k"`): warnings as Go
/// ignores them, or with `--strict` one invalid-input error naming them all.
pub fn warn_unknown_keys(found: Vec<String>, ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.strict && !found.is_empty() {
        return Err(lvh::error::InvalidInput {
            field: "--strict".into(),
            reason: found.join("; "),
            ..Default::default()
        }
        .into());
    }
    for w in found {
        ctx.reporter.println(&format!(
            "lvh: warning: {w} (ignored; --strict makes it an error)"
        ));
    }
    Ok(())
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

/// The exit code one error of a chain says it deserves, if it is one of the
/// library's error types (each decides its own codes, see `HasExitCode`).
fn own_exit_code(e: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    use lvh::error::HasExitCode;
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = e.downcast_ref::<$t>() {
                return Some(e.exit_code());
            })*
        };
    }
    first_of!(
        lvh::error::InvalidInput,
        lvh::exec::ExecError,
        lvh::images::ImagesError,
        lvh::kernels::KernelsError,
        lvh::runner::RunError,
        lvh::oci::OciError,
        lvh::bisect::BisectError,
    );
    None
}

/// The exit code an error deserves: the first error in the chain that knows.
fn classify(err: &anyhow::Error) -> ExitCode {
    if let Some(code) = err.chain().find_map(own_exit_code) {
        return code;
    }
    if lvh::cancel::CancelToken::global().is_cancelled() {
        return ExitCode::Interrupted;
    }
    ExitCode::Failure
}

pub fn print_error(err: &anyhow::Error) {
    errln!("lvh: error: {err}");
    for cause in err.chain().skip(1) {
        errln!("  caused by: {cause}");
    }
}

fn main() -> std::process::ExitCode {
    // Before anything else: this process may be lvh's sentinel, not a command.
    lvh::exec::sentinel::init();
    let cli = match cli::parse_from(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            if let Err(w) = e.print() {
                if w.kind() == std::io::ErrorKind::BrokenPipe {
                    out::die_of_sigpipe();
                }
            }
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
        errln!("lvh: interrupted: stopping and cleaning up (press Ctrl-C again to kill)")
    }) {
        tracing::warn!("could not install the Ctrl-C handler: {e}");
    }
    let ctx = Ctx {
        reporter: render::Renderer::new(render::want_fancy(), cli.verbose),
        verbose: cli.verbose,
        strict: cli.strict,
    };
    let result = match &cli.command {
        Command::Images(c) => images::dispatch(c, &ctx),
        Command::Kernels(c) => kernels::dispatch(c, &ctx),
        Command::Run(a) => run::dispatch(a, &ctx),
        Command::Test(a) => test::dispatch(a, &ctx),
        Command::Triage(a) => triage::dispatch(a, &ctx),
        Command::Version => {
            out::stdout(version::render(cli.verbose > 0).as_bytes());
            Ok(ExitCode::Success)
        }
        Command::Completion { shell } => {
            out::stdout(&cli::completion(*shell));
            Ok(ExitCode::Success)
        }
        Command::Man { dir } => cli::man_pages(dir)
            .map(|()| ExitCode::Success)
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to write the manual pages into {}: {e}",
                    dir.display()
                )
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every library error type a chain may hold gives its own code.
    #[test]
    fn the_first_error_that_knows_its_code_wins() {
        let inner = lvh::error::InvalidInput::value("--jobs", "0", "must be at least 1");
        let wrapped = anyhow::Error::from(inner).context("failed to build");
        assert_eq!(classify(&wrapped), ExitCode::InvalidInput);
        let run = anyhow::Error::from(lvh::runner::RunError::Interrupted);
        assert_eq!(classify(&run), ExitCode::Interrupted);
        let plain = anyhow::anyhow!("something else");
        assert_eq!(classify(&plain), ExitCode::Failure);
    }
}
