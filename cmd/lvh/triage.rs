//! `lvh triage`: reads console logs (files or stdin), prints every kernel
//! crash report in them with its title, kind and fingerprint, symbolized when
//! a vmlinux with DWARF is given or found beside `--kernel`.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::Ctx;
use lvh::error::ExitCode;
use lvh::triage::{self, Report, Symbolizer};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # The crashes in a console log saved by `lvh run --console-log-file`
  lvh triage console.log

  # A CI job's log from stdin, as JSON, symbolized with the kernel's vmlinux
  curl -s $LOG_URL | lvh triage --json --vmlinux linux/vmlinux

  # Symbolized with the vmlinux beside a kernel built by `lvh kernels build`
  lvh triage --kernel _data/kernels/bpf-next/arch/x86/boot/bzImage console.log

Exit codes: 0 no crash report found; 1 at least one found; 2 bad input
(a log, vmlinux or kernel that cannot be read).")]
pub struct TriageArgs {
    /// Console logs to read ('-' or none: stdin)
    #[arg(value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// Print a JSON array of reports (title, kind, fingerprint, culprit, frames, report, log, line)
    #[arg(long)]
    pub json: bool,
    /// A vmlinux with DWARF debug info: add file:line and inlined callers to every frame
    #[arg(long, value_name = "FILE", conflicts_with = "kernel")]
    pub vmlinux: Option<PathBuf>,
    /// A kernel image built by `lvh kernels build`: symbolize with the vmlinux beside it
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
}

/// Triage's own "bad input" code (a log or vmlinux that cannot be read),
/// kept apart from 1, which means "a crash was found".
const BAD_INPUT: ExitCode = ExitCode::Usage;

pub fn dispatch(a: &TriageArgs, _ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match run(a) {
        Ok(found) if found => Ok(ExitCode::Failure),
        Ok(_) => Ok(ExitCode::Success),
        Err(e) => {
            crate::print_error(&e);
            Ok(BAD_INPUT)
        }
    }
}

/// The vmlinux to symbolize with, if any was asked for.
fn vmlinux(a: &TriageArgs) -> anyhow::Result<Option<PathBuf>> {
    if let Some(v) = &a.vmlinux {
        return Ok(Some(v.clone()));
    }
    let Some(k) = &a.kernel else {
        return Ok(None);
    };
    if !k.exists() {
        anyhow::bail!("--kernel {}: no such file", k.display());
    }
    match lvh::runner::find_symbols(k) {
        Some(s) => Ok(Some(s.vmlinux)),
        None => anyhow::bail!(
            "--kernel {}: no vmlinux beside it (or in the directories above it); pass --vmlinux",
            k.display()
        ),
    }
}

fn read_log(p: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if p.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
    } else {
        bytes =
            std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
    }
    // Consoles carry stray bytes; a report is still text.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads, parses, symbolizes and prints; returns whether any report was found.
fn run(a: &TriageArgs) -> anyhow::Result<bool> {
    let symbolizer = vmlinux(a)?.map(|v| Symbolizer::open(&v)).transpose()?;
    let logs: Vec<PathBuf> = if a.logs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        a.logs.clone()
    };
    let mut found: Vec<(String, Report)> = Vec::new();
    for p in &logs {
        let text = read_log(p)?;
        let name = if p.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            p.display().to_string()
        };
        for mut r in triage::parse_log(&text) {
            if let Some(s) = &symbolizer {
                s.symbolize(&mut r);
            }
            found.push((name.clone(), r));
        }
    }
    if a.json {
        let v: Vec<serde_json::Value> = found
            .iter()
            .map(|(log, r)| {
                let mut v = serde_json::to_value(r).expect("a report serializes");
                v["log"] = serde_json::Value::String(log.clone());
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (log, r) in &found {
            outln!("== {}", r.title);
            let cut = if r.truncated { ", cut off" } else { "" };
            outln!(
                "   {}, fingerprint {}, {log}:{}{cut}",
                r.kind,
                r.fingerprint,
                r.line
            );
            outln!("{}\n", r.text());
        }
    }
    Ok(!found.is_empty())
}
