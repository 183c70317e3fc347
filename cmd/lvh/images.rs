//! `lvh images ...`: flags, and turning them into the image builder's plans.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

use crate::Ctx;
use lvh::error::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// Build VM images
    Build(BuildArgs),
    /// Print an example images.json
    ExampleConfig,
    /// Pull an image from an OCI repository
    Pull(PullArgs),
    /// Push an image file to an OCI repository (little-vm-helper's layout)
    Push(crate::oci::ImagePushArgs),
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
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub force_rebuild: bool,
    /// Validate and print the build plan without building anything
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub dry_run: bool,
    /// Merge steps where possible (one appliance launch per image)
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub merge_steps: bool,
    /// Debian suite (package repository) for root images
    #[arg(long)]
    pub pkg_repo: Option<String>,
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
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub cache: bool,
    /// Platform to pull, <os>/<arch>
    #[arg(long, default_value = lvh::arch::Arch::host().oci_platform())]
    pub platform: String,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub insecure: bool,
}

pub fn dispatch(cmd: &ImagesCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCmd::Build(_) => crate::not_implemented("images build"),
        ImagesCmd::ExampleConfig => crate::not_implemented("images example-config"),
        ImagesCmd::Pull(a) => crate::oci::images_pull(a, ctx),
        ImagesCmd::Push(a) => crate::oci::images_push(a, ctx),
    }
}
