//! `lvh kernels ...`: flags, and turning them into the kernel builder's plans.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::ExitCode;
use lvh::kernels;

/// The option groups `kernels init` and `kernels add` use by default.
pub const DEFAULT_CONFIG_GROUPS: &str = "basic,bpf,virtio,minimize,namespaces";
/// Where `kernels catalog` and `kernels pull` look by default.
pub const DEFAULT_KERNEL_REPO: &str = "quay.io/lvh-images/kernel-images";

#[derive(Debug, Subcommand)]
pub enum KernelsCmd {
    /// Initialize a kernels directory (writes <dir>/kernels.json)
    Init(InitArgs),
    /// List the kernels in <dir>/kernels.json
    List(DirArgs),
    /// Add a kernel (by updating the config file in the directory)
    Add(AddArgs),
    /// Remove a kernel (worktree, branch and config entry)
    Remove(RemoveArgs),
    /// Configure a kernel: base config, option groups, then verify the result
    Configure(ConfigureArgs),
    /// Apply the configuration options to a kernel tree that already has a .config
    #[command(name = "raw_configure")]
    RawConfigure(RawConfigureArgs),
    /// Build a kernel and install it into <worktree>/tar-install
    Build(ConfigureArgs),
    /// Fetch (or update) a kernel's git tree
    Fetch(NameDirArgs),
    /// List the kernel versions (or one version's tags) in a registry
    Catalog(CatalogArgs),
    /// Pull a kernel built by little-vm-helper-images from a registry
    Pull(PullArgs),
    /// Push a kernel install directory to a registry (little-vm-helper's layout)
    Push(crate::oci::KernelPushArgs),
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Overwrite an existing kernels.json
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub force: bool,
    /// Keep the old kernels.json under a timestamped name
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub backup_conf: bool,
    /// Option groups for common_opts (comma separated)
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CONFIG_GROUPS)]
    pub config_groups: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Kernel name (`git` is reserved)
    pub name: String,
    /// git://, https://, file:// URL or local path; `#branch` picks a branch, `?depth=N` a shallow clone
    pub url: String,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Option groups for this kernel's opts (comma separated)
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CONFIG_GROUPS)]
    pub config_groups: Vec<String>,
    /// Do not add the kernel; print its config entry
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub just_print_config: bool,
    /// Starting config: defconfig (default), another make target (tinyconfig) or a config file
    #[arg(long)]
    pub base_config: Option<String>,
    /// Kconfig fragment inside the kernel tree, merged before the options (repeatable; `.x86_64`, `.aarch64` names apply to that arch only)
    #[arg(long = "fragment", value_name = "FILE")]
    pub fragments: Vec<String>,
    /// Fetch the kernel's tree after adding it
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub fetch: bool,
    /// Keep the old kernels.json under a timestamped name
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub backup_conf: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Kernel name
    pub name: String,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep the old kernels.json under a timestamped name
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub backup_conf: bool,
}

#[derive(Debug, Args)]
pub struct NameDirArgs {
    /// Kernel name
    pub name: String,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Kernel name
    pub name: String,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Target architecture (amd64 or arm64)
    #[arg(long, default_value = Arch::host().as_str())]
    pub arch: Arch,
    /// Fail when Kconfig overrode a requested option (default: warn)
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct RawConfigureArgs {
    /// Kernel tree with a .config
    pub kernel_dir: PathBuf,
    /// Kernel whose opts to apply besides common_opts
    pub name: Option<String>,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Target architecture (amd64 or arm64)
    #[arg(long, default_value = Arch::host().as_str())]
    pub arch: Arch,
    /// Fail when Kconfig overrode a requested option (default: warn)
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Kernel version whose tags to list
    #[arg(value_name = "VERSION")]
    pub kernel_version: Option<String>,
    /// Repository to query
    #[arg(long, default_value = DEFAULT_KERNEL_REPO)]
    pub repo: String,
    /// Use the CI repository (<repo>-ci), like little-vm-helper's --ci
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub ci: bool,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Kernel tag, e.g. 6.6-main or bpf-next-20240404.012646
    pub tag: String,
    /// Platform for the kernel image, <os>/<arch>
    #[arg(short, long, default_value = Arch::host().oci_platform())]
    pub platform: String,
    /// Directory to place kernels (written to <dir>/<tag>)
    #[arg(short, long, default_value = "_data")]
    pub dir: PathBuf,
    /// Repository to pull from
    #[arg(long, default_value = DEFAULT_KERNEL_REPO)]
    pub repo: String,
    /// Use the CI repository (<repo>-ci), like little-vm-helper's --ci
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub ci: bool,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub insecure: bool,
}

pub fn dispatch(cmd: &KernelsCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let r = &ctx.reporter;
    match cmd {
        KernelsCmd::Init(a) => {
            let file = kernels::init(&kernels::InitPlan {
                dir: a.dir.clone(),
                groups: a.config_groups.clone(),
                force: a.force,
                backup: a.backup_conf,
            })?;
            r.println(&format!("wrote {}", file.display()));
        }
        KernelsCmd::List(a) => {
            for k in kernels::list(&a.dir)? {
                let state = if k.tree.is_some() {
                    "fetched"
                } else {
                    "not fetched"
                };
                println!("{}\t{}\t{state}", k.name, k.url);
            }
        }
        KernelsCmd::Add(a) => {
            let added = kernels::add(
                &kernels::AddPlan {
                    dir: a.dir.clone(),
                    name: a.name.clone(),
                    url: a.url.clone(),
                    groups: a.config_groups.clone(),
                    just_print: a.just_print_config,
                    fetch: a.fetch,
                    backup: a.backup_conf,
                    base_config: a.base_config.clone(),
                    fragments: a.fragments.clone(),
                    cwd: std::env::current_dir()?,
                },
                r,
            )?;
            if a.just_print_config {
                println!("{}", added.json);
            } else {
                r.println(&format!(
                    "added kernel {} ({})",
                    added.entry.name, added.entry.url
                ));
                if let Some(f) = added.fetched {
                    print_fetched(r, &f);
                }
            }
        }
        KernelsCmd::Remove(a) => {
            for what in kernels::remove(&a.dir, &a.name, a.backup_conf, r)? {
                r.println(&format!("removed {what}"));
            }
        }
        KernelsCmd::Fetch(a) => {
            let f = kernels::fetch(&a.dir, &a.name, r)?;
            print_fetched(r, &f);
        }
        KernelsCmd::Configure(a) => {
            kernels::configure(&plan(a), r)?;
            let tree = kernels::layout::Layout::new(&a.dir).tree(&a.name);
            println!("{}", tree.join(".config").display());
        }
        KernelsCmd::RawConfigure(a) => {
            kernels::raw_configure(
                &kernels::RawConfigurePlan {
                    dir: a.dir.clone(),
                    tree: a.kernel_dir.clone(),
                    name: a.name.clone(),
                    arch: a.arch,
                    strict: a.strict,
                },
                r,
            )?;
            println!("{}", a.kernel_dir.join(".config").display());
        }
        KernelsCmd::Build(a) => {
            let b = kernels::build(&plan(a), r)?;
            r.println(&format!(
                "kernel {} ({}) installed in {}{}",
                a.name,
                b.release,
                b.install.display(),
                if b.install_cached { " (unchanged)" } else { "" }
            ));
            println!("{}", b.image.display());
        }
        KernelsCmd::Catalog(a) => return crate::oci::kernels_catalog(a, ctx),
        KernelsCmd::Pull(a) => return crate::oci::kernels_pull(a, ctx),
        KernelsCmd::Push(a) => return crate::oci::kernels_push(a, ctx),
    }
    Ok(ExitCode::Success)
}

fn plan(a: &ConfigureArgs) -> kernels::KernelPlan {
    kernels::KernelPlan {
        dir: a.dir.clone(),
        name: a.name.clone(),
        arch: a.arch,
        strict: a.strict,
    }
}

fn print_fetched(r: &crate::render::Renderer, f: &kernels::Fetched) {
    let what = match f.outcome {
        kernels::FetchOutcome::Created => "fetched",
        kernels::FetchOutcome::Updated => "updated",
        kernels::FetchOutcome::UpToDate => "up to date:",
    };
    r.println(&format!(
        "{what} {} at {} ({})",
        f.tree.display(),
        &f.commit[..f.commit.len().min(12)],
        f.branch
    ));
}
