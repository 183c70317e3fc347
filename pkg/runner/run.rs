//! Running a prepared plan: its mode (and saved state) picks the policy of
//! the QEMU session, and the report says how the run ended and what it saw.

use crate::progress::{self, Reporter};
use crate::runner::debug::gdb::{self, GdbListen};
use crate::runner::debug::shell;
use crate::runner::plan::decision::{Mode, RunPlan};
use crate::runner::saved;
use crate::runner::session::channel::Sinks;
use crate::runner::session::command::{self, Job};
use crate::runner::session::rundir::{RunDir, GDB_BASE};
use crate::runner::session::{daemon, Ctx};
use crate::runner::verdict::allow::SplatPolicy;
use crate::runner::verdict::outcome::{RunFacts, RunReport};

/// Runs the plan with `policy` for splats; returns the outcome and what the
/// run found (times, splats, kernel release) for `--result-json`.
/// `print_cmd` reports the QEMU command line before starting.
pub fn run_report(
    plan: &RunPlan,
    policy: &SplatPolicy,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> RunReport {
    let ctx = Ctx {
        reporter,
        print_cmd,
    };
    let mut facts = RunFacts {
        cmdline: plan.cmdline.clone(),
        console_log: plan.console_log.clone(),
        ..Default::default()
    };
    // A bare --gdb's socket: in a private directory that lives as long as
    // this run (lvh becomes QEMU in an interactive run, keeping its pid: the
    // next run's sweep removes it once that QEMU is gone).
    let gdb_dir = match &plan.gdb {
        Some(g) if g.listen == GdbListen::Private => match RunDir::private(GDB_BASE) {
            Ok(d) => Some(d),
            Err(e) => {
                return RunReport {
                    result: Err(e),
                    facts,
                }
            }
        },
        _ => None,
    };
    let placed;
    let plan = match (&gdb_dir, &plan.gdb) {
        (Some(d), Some(g)) => {
            placed = RunPlan {
                gdb: Some(g.placed_in(d.path())),
                ..plan.clone()
            };
            &placed
        }
        _ => plan,
    };
    if let Some(g) = &plan.gdb {
        let symbols = plan.kernel.as_deref().and_then(gdb::find_symbols);
        for line in gdb::announce(g, plan.kernel.as_deref(), symbols.as_ref()) {
            progress::info(reporter, line);
        }
    }
    let result = match &plan.mode {
        Mode::Command { cmd, timeout } => {
            let job = Job {
                plan,
                cmd,
                timeout: *timeout,
                policy,
            };
            let ran = match &plan.state {
                Some(op) => saved::run(job, op, sinks, ctx),
                None => command::run(job, sinks, ctx),
            };
            match ran {
                Ok((result, watch, ended)) => {
                    facts.boot_time = watch.boot_time();
                    facts.command_time = watch.command_time(ended);
                    facts.taint = watch.exit.and_then(|e| e.taint);
                    facts.kernel_release = watch.kernel_release.clone();
                    facts.splats = watch.splats;
                    result
                }
                Err(e) => Err(e),
            }
        }
        Mode::Interactive => match plan.state.as_ref().and_then(|op| op.ssh().map(|s| (op, s))) {
            // A bootable image's saved VM: commands over ssh.
            Some((op, ssh)) => saved::boot::run(plan, op, ssh, sinks, ctx),
            None => daemon::run_interactive(plan, ctx),
        },
        Mode::Shell(g) => shell::run_shell(plan, g, sinks, ctx),
        Mode::Daemon {
            ssh_port,
            ssh_timeout,
        } => daemon::run_daemon(plan, *ssh_port, *ssh_timeout, ctx),
    };
    RunReport { result, facts }
}
