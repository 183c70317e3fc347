//! `lvh kernels build` and `lvh kernels cache`: the toolchain, job, compiler
//! cache and reproduce flags, turned into the kernel builder's plans, and the
//! build's summary (toolchain, warnings, cache hits; at -v the cache
//! directory, make's variables and the build record).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::kernels;

#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// Push the compiler cache of kernel builds to a registry
    Push(CachePushArgs),
    /// Pull a compiler cache from a registry into the cache directory (entries already there are kept)
    Pull(CachePullArgs),
}

#[derive(Debug, Args)]
pub struct CachePushArgs {
    /// Where to push, e.g. ghcr.io/org/kernel-cache:bpf-next-llvm
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The cache directory (default: $CCACHE_DIR, else ~/.cache/lvh/ccache)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub push: crate::oci::PushFlags,
}

#[derive(Debug, Args)]
pub struct CachePullArgs {
    /// What to pull, e.g. ghcr.io/org/kernel-cache:bpf-next-llvm
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The cache directory (default: $CCACHE_DIR, else ~/.cache/lvh/ccache)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub caps: crate::oci::CapArgs,
}

/// The toolchain flags of `configure` and `build`.
#[derive(Debug, Args)]
pub struct ToolchainArgs {
    /// Compiler: gcc, gcc-N, llvm, llvm-N (clang, clang-N are the same as llvm, llvm-N);
    /// default: the kernel's "toolchain" in kernels.json, else gcc
    #[arg(long, value_name = "TOOLCHAIN")]
    pub toolchain: Option<kernels::toolchain::Toolchain>,
    /// A variable for the kernel's make, KEY=VALUE (repeatable), e.g. W=1 or KCFLAGS=-Og
    #[arg(long = "make-var", value_name = "KEY=VALUE")]
    pub make_var: Vec<kernels::makevars::MakeVar>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Kernel name (with --reproduce, the record's kernel)
    #[arg(required_unless_present = "reproduce")]
    pub name: Option<String>,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Target architecture (amd64 or arm64)
    #[arg(long, default_value = Arch::host().as_str())]
    pub arch: Arch,
    #[command(flatten)]
    pub toolchain: ToolchainArgs,
    /// Parallel make jobs [default: the number of CPUs]
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Compiler cache: auto (ccache when it is installed), on, off
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub cache: kernels::ccache::Mode,
    /// The compiler cache directory [default: $CCACHE_DIR, else ~/.cache/lvh/ccache]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Build again what a build record (<tree>/lvh-build.json) describes: its
    /// commit, configuration, toolchain, make variables and environment
    #[arg(long, value_name = "RECORD", conflicts_with_all = ["toolchain", "make_var", "arch", "name"])]
    pub reproduce: Option<PathBuf>,
}

/// `kernels list -o wide`'s columns from the build record: toolchain,
/// release, start, duration, warnings, cache hit rate (`-` for each without one).
pub fn build_columns(k: &kernels::Listed) -> String {
    match &k.record {
        Some(r) => format!(
            "{}\t{}\t{}\t{:.1}s\t{}\t{}",
            r.toolchain,
            r.release,
            r.started,
            r.duration_secs,
            r.warnings,
            r.hit_rate_text()
        ),
        None => ["-"; 6].join("\t"),
    }
}

/// `lvh kernels build`: the image's path on stdout, a summary on stderr.
pub fn build(a: &BuildArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let r = &ctx.reporter;
    let jobs = a.jobs.map(|j| j as usize);
    let cache = kernels::CachePlan {
        mode: a.cache,
        dir: a.cache_dir.clone(),
    };
    let (b, name) = match &a.reproduce {
        Some(record) => {
            let (b, rec) = kernels::reproduce(
                &kernels::ReproducePlan {
                    dir: a.dir.clone(),
                    record: record.clone(),
                    jobs,
                    cache,
                },
                r,
            )?;
            let now = b
                .record
                .as_ref()
                .and_then(|p| kernels::record::BuildRecord::read(p).ok());
            let same = now.as_ref().map(|n| n.image_sha256 == rec.image_sha256);
            r.println(&match same {
                Some(true) => format!("reproduced {}: the image is identical", record.display()),
                _ => format!(
                    "rebuilt {}: the image differs from the recorded one (sha256 {})",
                    record.display(),
                    rec.image_sha256
                ),
            });
            (b, rec.kernel)
        }
        None => {
            let name = a.name.clone().unwrap_or_default();
            let mut p = kernels::KernelPlan::new(&a.dir, &name, a.arch);
            p.strict = ctx.strict;
            p.toolchain = a.toolchain.toolchain;
            p.make_vars = a.toolchain.make_var.clone();
            p.jobs = jobs;
            p.cache = cache;
            (kernels::build(&p, r)?, name)
        }
    };
    r.println(&format!(
        "kernel {name} ({}) installed in {}{}",
        b.release,
        b.install.display(),
        if b.install_cached { " (unchanged)" } else { "" }
    ));
    let rec = b
        .record
        .as_ref()
        .and_then(|p| kernels::record::BuildRecord::read(p).ok());
    if let Some(rec) = &rec {
        let cache = match (&rec.cache, b.cache) {
            (Some(_), Some(s)) => s.to_string(),
            _ => "no compiler cache".to_string(),
        };
        r.println(&format!(
            "  {} ({}), {} warning(s), {cache}, {:.1} s",
            rec.toolchain,
            rec.compiler,
            b.warnings,
            b.duration.as_secs_f64()
        ));
        if ctx.verbose > 0 {
            if let Some(c) = &rec.cache {
                r.println(&format!("  compiler cache: {}", c.dir.display()));
            }
            r.println(&format!("  make {}", rec.make_vars.join(" ")));
            r.println(&format!(
                "  build record: {}",
                b.record
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
    }
    outln!("{}", b.image.display());
    Ok(())
}

/// `lvh kernels cache push|pull REF`.
pub fn cache(c: &CacheCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let dir = |d: &Option<PathBuf>| d.clone().unwrap_or_else(kernels::ccache::default_dir);
    match c {
        CacheCmd::Push(a) => {
            let d = dir(&a.cache_dir);
            let p = kernels::ccache::push(
                &d,
                &a.reference,
                &a.push.options(Arch::host()),
                &ctx.reporter,
            )
            .with_context(|| {
                format!(
                    "failed to push the compiler cache {} to {}",
                    d.display(),
                    a.reference
                )
            })?;
            ctx.reporter
                .println(&format!("pushed {} ({} bytes)", d.display(), p.layer_size));
            outln!("{}@{}", p.reference, p.manifest_digest);
        }
        CacheCmd::Pull(a) => {
            let d = dir(&a.cache_dir);
            let opts = crate::oci::pull_options(Arch::host().oci_platform(), a.insecure, &a.caps)?;
            let p = kernels::ccache::pull(&a.reference, &d, &opts, &ctx.reporter).with_context(
                || {
                    format!(
                        "failed to pull the compiler cache {} into {}",
                        a.reference,
                        d.display()
                    )
                },
            )?;
            ctx.reporter.println(&format!(
                "pulled {} into {}: {} entries added, {} already there",
                a.reference,
                d.display(),
                p.added,
                p.kept
            ));
            outln!("{}", d.display());
        }
    }
    Ok(())
}
