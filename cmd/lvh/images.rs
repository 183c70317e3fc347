//! `lvh images ...`: flags, and turning them into the image builder's plans
//! and the registry's pull/push options.

use std::path::PathBuf;

use anyhow::Context;

use clap::{Args, Subcommand};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::{ExitCode, InvalidInput};
use lvh::images;
use lvh::oci;

#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// Build VM images
    Build(BuildArgs),
    /// Print an example images.json
    ExampleConfig,
    /// Pull an image from an OCI repository
    Pull(PullArgs),
    /// Push an image file to an OCI repository (little-vm-helper's layout)
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image file to push (compressed with zstd unless it already ends in .zst)
    #[arg(value_name = "IMAGE_FILE")]
    pub file: PathBuf,
    /// Where to push, e.g. quay.io/org/root-images:main
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Architecture of the image (recorded in the image config)
    #[arg(long, default_value = Arch::host().as_str())]
    pub arch: Arch,
    #[command(flatten)]
    pub push: crate::oci::PushFlags,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Directory with images.json; images are written to <dir>/images
    #[arg(long)]
    pub dir: PathBuf,
    /// Image to build (repeatable); its missing or stale ancestors and its descendants are built too. Default: all
    #[arg(short = 'i', long = "image")]
    pub images: Vec<String>,
    /// Rebuild the selected images even if they are cached
    #[arg(long)]
    pub force_rebuild: bool,
    /// Validate and print the build plan without building anything
    #[arg(long)]
    pub dry_run: bool,
    /// Merge steps where possible (one appliance launch per image)
    #[arg(long, default_value_t = true)]
    pub merge_steps: bool,
    /// Debian suite (package repository) for root images
    #[arg(long)]
    pub pkg_repo: Option<String>,
    /// Images to build in parallel (default: from CPUs and available memory)
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Architecture of the images (amd64, arm64; arm64 on amd64 needs qemu-user-static)
    #[arg(long, default_value = lvh::arch::Arch::host().as_str())]
    pub arch: String,
    /// Write derived .qcow2 images standalone instead of as overlays on their parent
    #[arg(long)]
    pub flatten: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. quay.io/lvh-images/root-images:main
    #[arg(value_name = "URL")]
    pub url: String,
    /// Directory to keep the images (written to <dir>/images)
    #[arg(long, default_value = "_data")]
    pub dir: PathBuf,
    /// Keep the compressed (.zst) image too
    #[arg(long)]
    pub cache: bool,
    /// Platform to pull, <os>/<arch>
    #[arg(long, default_value = lvh::arch::Arch::host().oci_platform())]
    pub platform: String,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub caps: crate::oci::CapArgs,
}

pub fn dispatch(cmd: &ImagesCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCmd::Build(a) => build(a, ctx),
        ImagesCmd::ExampleConfig => {
            out!("{}", images::example::example_json());
            Ok(ExitCode::Success)
        }
        ImagesCmd::Pull(a) => pull(a, ctx),
        ImagesCmd::Push(a) => push(a, ctx),
    }
}

/// `lvh images pull <ref> --dir D [--cache] [--platform P]`.
fn pull(a: &PullArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = crate::oci::pull_options(&a.platform, a.insecure, &a.caps)?;
    let pulled = oci::pull_images(&a.url, &a.dir, a.cache, &opts, &ctx.reporter)
        .with_context(|| format!("failed to pull {}", a.url))?;
    for f in &pulled.files {
        outln!("{}", f.display());
    }
    Ok(ExitCode::Success)
}

/// `lvh images push <file> <ref>`.
fn push(a: &PushArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = a.push.options(a.arch);
    let p = oci::push_image(&a.file, &a.reference, &opts, &ctx.reporter)
        .with_context(|| format!("failed to push {} to {}", a.file.display(), a.reference))?;
    outln!("{}@{}", p.reference, p.manifest_digest);
    Ok(ExitCode::Success)
}

fn options(a: &BuildArgs) -> anyhow::Result<images::BuildOptions> {
    let arch: Arch = a
        .arch
        .parse()
        .map_err(|e| InvalidInput::value("--arch", &a.arch, format!("{e}")))?;
    if a.jobs == Some(0) {
        return Err(InvalidInput::value("--jobs", "0", "must be at least 1").into());
    }
    Ok(images::BuildOptions {
        dir: a.dir.clone(),
        images: a.images.clone(),
        force_rebuild: a.force_rebuild,
        pkg_repo: a.pkg_repo.clone(),
        arch,
        jobs: a.jobs.unwrap_or_else(images::build::default_jobs),
        flatten: a.flatten,
    })
}

/// Unknown keys in images.json: warnings, or with `--strict` an error. A file
/// that does not parse is left for the loader to report.
fn lint(dir: &std::path::Path, ctx: &Ctx) -> anyhow::Result<()> {
    let file = dir.join(images::config::IMAGES_JSON);
    let found = match std::fs::read_to_string(&file) {
        Ok(text) => match images::parse_with_warnings(&file, &text) {
            Ok((_, w)) => w.iter().map(|e| e.to_string()).collect(),
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    crate::warn_unknown_keys(found, ctx)
}

fn build(a: &BuildArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = options(a)?;
    lint(&opts.dir, ctx)?;
    let forest = images::load(&opts)?;
    if a.dry_run {
        let plan = images::plan(&opts, forest)?;
        out!("{}", render_plan(&plan));
        return Ok(ExitCode::Success);
    }
    let _lock = images::build::lock(&opts.dir)?;
    let plan = images::plan(&opts, forest)?;
    let summary = images::build(&plan, opts.jobs, &ctx.reporter);
    out!("{}", summary.table());
    for r in &summary.results {
        if let images::ImageOutcome::Failed(e) = &r.outcome {
            errln!("lvh: error: image {}: {e}", r.name);
        }
    }
    Ok(if lvh::cancel::CancelToken::global().is_cancelled() {
        ExitCode::Interrupted
    } else if summary.failed() == 0 {
        ExitCode::Success
    } else if summary.succeeded() > 0 {
        ExitCode::Partial
    } else {
        ExitCode::Failure
    })
}

/// The dry-run plan: build order, what is cached, what is built and why.
fn render_plan(plan: &images::Plan) -> String {
    let w = plan.items.iter().map(|i| i.name.len()).max().unwrap_or(0);
    let mut s = format!(
        "build plan for {} ({} to build):\n",
        plan.dir.join("images").display(),
        plan.to_build()
    );
    for (n, it) in plan.items.iter().enumerate() {
        let what = match &it.decision {
            images::Decision::Build { reason } => format!("build    ({reason})"),
            images::Decision::Cached => "cached".into(),
            images::Decision::Reused => "cached   (reused: no build record)".into(),
            images::Decision::Unselected => "not selected".into(),
        };
        let conf = plan.conf(it);
        let from = match &conf.parent {
            Some(p) => format!("from {p}"),
            None => format!("root, {} {}", it.settings.suite, it.settings.arch),
        };
        s.push_str(&format!(
            "{:>3}. {:<w$}  {from:<24}  {what}\n",
            n + 1,
            it.name
        ));
    }
    s
}
