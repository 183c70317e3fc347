//! The OCI commands: `images pull|push`, `kernels pull|push|catalog`. Flags in,
//! validated options to `lvh::oci`, results to stdout.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgAction, Args};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::ExitCode;
use lvh::oci::{self, Platform, PullOptions, PushOptions, Transport};

#[derive(Debug, Args)]
pub struct ImagePushArgs {
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
    pub push: PushFlags,
}

#[derive(Debug, Args)]
pub struct KernelPushArgs {
    /// Kernel install directory with boot/ and lib/modules/ (e.g. <dir>/kernels/<name>/tar-install)
    #[arg(value_name = "INSTALL_DIR")]
    pub install_dir: PathBuf,
    /// Where to push; the tag must match <version>-<date|main>, e.g. quay.io/org/kernel-images:6.6-main
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Architecture of the kernel (recorded in the image config)
    #[arg(long, default_value = Arch::host().as_str())]
    pub arch: Arch,
    #[command(flatten)]
    pub push: PushFlags,
}

/// The flags `images push` and `kernels push` share.
#[derive(Debug, Args)]
pub struct PushFlags {
    /// Source URL recorded as the org.opencontainers.image.source annotation
    #[arg(long)]
    pub source: Option<String>,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub insecure: bool,
}

impl PushFlags {
    fn options(&self, arch: Arch) -> PushOptions {
        PushOptions {
            arch,
            transport: Transport {
                insecure: self.insecure,
            },
            source: self.source.clone(),
        }
    }
}

/// little-vm-helper's `--ci`: the `-ci` twin of the repository.
fn ci_repo(repo: &str, ci: bool) -> String {
    if ci {
        format!("{repo}-ci")
    } else {
        repo.to_string()
    }
}

fn pull_options(platform: &str, insecure: bool) -> anyhow::Result<PullOptions> {
    let platform: Platform = platform.parse()?;
    Ok(PullOptions {
        platform,
        transport: Transport { insecure },
    })
}

/// `lvh images pull <ref> --dir D [--cache] [--platform P]`.
pub fn images_pull(a: &crate::images::PullArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = pull_options(&a.platform, a.insecure)?;
    let pulled = oci::pull_images(&a.url, &a.dir, a.cache, &opts, &ctx.reporter)
        .with_context(|| format!("failed to pull {}", a.url))?;
    for f in &pulled.files {
        println!("{}", f.display());
    }
    Ok(ExitCode::Success)
}

/// `lvh images push <file> <ref>`.
pub fn images_push(a: &ImagePushArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = a.push.options(a.arch);
    let p = oci::push_image(&a.file, &a.reference, &opts, &ctx.reporter)
        .with_context(|| format!("failed to push {} to {}", a.file.display(), a.reference))?;
    println!("{}@{}", p.reference, p.manifest_digest);
    Ok(ExitCode::Success)
}

/// `lvh kernels pull <tag> [-d D] [-p P] [--repo R]`.
pub fn kernels_pull(a: &crate::kernels::PullArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = pull_options(&a.platform, a.insecure)?;
    let repo = ci_repo(&a.repo, a.ci);
    let dir = oci::pull_kernel(&repo, &a.tag, &a.dir, &opts, &ctx.reporter)
        .with_context(|| format!("failed to pull kernel {repo}:{}", a.tag))?;
    println!("{}", dir.display());
    Ok(ExitCode::Success)
}

/// `lvh kernels push <install-dir> <ref>`.
pub fn kernels_push(a: &KernelPushArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = a.push.options(a.arch);
    let p = oci::push_kernel(&a.install_dir, &a.reference, &opts, &ctx.reporter).with_context(
        || {
            format!(
                "failed to push {} to {}",
                a.install_dir.display(),
                a.reference
            )
        },
    )?;
    println!("{}@{}", p.reference, p.manifest_digest);
    Ok(ExitCode::Success)
}

/// `lvh kernels catalog [version] [--repo R]`.
pub fn kernels_catalog(a: &crate::kernels::CatalogArgs, _ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let repo = ci_repo(&a.repo, a.ci);
    let transport = Transport {
        insecure: a.insecure,
    };
    let lines = oci::catalog(&repo, a.kernel_version.as_deref(), &transport)
        .with_context(|| format!("failed to list {repo}"))?;
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::Success)
}
