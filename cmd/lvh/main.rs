//! The `lvh` binary: parses the command line, sets up logging, Ctrl-C handling
//! and progress rendering, dispatches to the subsystem modules and turns errors
//! into messages and named exit codes.

#[macro_use]
mod out;
mod argv;
mod cli;
mod gobool;
mod images;
mod kbuild;
mod kernels;
mod oci;
mod render;
mod run;
mod test;

use lvh::error::ExitCode;

use cli::Command;

/// What every command handler gets besides its own flags.
pub struct Ctx {
    pub reporter: render::Renderer,
    pub verbose: u8,
    /// `--strict`: warnings about input are errors.
    pub strict: bool,
}

/// The version `lvh version` and `--version` print: `git describe` of the
/// checkout lvh was built from, else the crate version.
pub fn version() -> &'static str {
    option_env!("LVH_GIT_VERSION").unwrap_or(lvh::VERSION)
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

/// The exit code an error deserves: the first error in the chain that knows.
fn classify(err: &anyhow::Error) -> ExitCode {
    if let Some(code) = lvh::error::exit_code_of(err.chain()) {
        return code;
    }
    if lvh::cancel::CancelToken::global().is_cancelled() {
        return ExitCode::Interrupted;
    }
    ExitCode::Failure
}

fn print_error(err: &anyhow::Error) {
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
        Command::Version => {
            outln!("lvh {}", version());
            Ok(ExitCode::Success)
        }
        Command::Completion { shell } => {
            out::stdout(&cli::completion(*shell));
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
