//! `lvh kernels ...`: flags, and turning them into the kernel builder's plans
//! and the registry's pull/push/catalog calls.

use std::path::{Path, PathBuf};

use anyhow::Context;

use clap::{Args, Subcommand};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::ExitCode;
use lvh::kernels;
use lvh::oci::{self, Transport};

/// The option groups `kernels init` puts in common_opts by default.
pub const DEFAULT_CONFIG_GROUPS: &str = "basic,bpf,virtio,minimize,namespaces";
/// Where `kernels catalog` and `kernels pull` look by default.
pub const DEFAULT_KERNEL_REPO: &str = "quay.io/lvh-images/kernel-images";

#[derive(Debug, Subcommand)]
pub enum KernelsCmd {
    /// Initialize a kernels directory (writes <dir>/kernels.json)
    Init(InitArgs),
    /// List the kernels in <dir>/kernels.json (name and URL; -o wide for more)
    List(ListArgs),
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
    Build(crate::kbuild::BuildArgs),
    /// Fetch (or update) a kernel's git tree
    Fetch(NameDirArgs),
    /// List the kernel versions (or one version's tags) in a registry
    Catalog(CatalogArgs),
    /// Pull a kernel built by little-vm-helper-images from a registry
    Pull(PullArgs),
    /// Push a kernel install directory to a registry (little-vm-helper's layout)
    Push(PushArgs),
    /// Find the first commit of a kernel's history that makes a command fail or the kernel splat
    Bisect(crate::bisect::BisectArgs),
    /// Save or restore the kernel build cache (ccache) as an OCI artifact
    #[command(subcommand)]
    Cache(crate::kbuild::CacheCmd),
}

#[derive(Debug, Args)]
pub struct PushArgs {
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
    pub push: crate::oci::PushFlags,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Output format: `plain` is little-vm-helper's (name padded to 13 columns,
    /// a space, the URL); `wide` is tab-separated with more columns (whether
    /// the kernel's tree is fetched, then the last build's toolchain, release,
    /// start, duration, warnings and compiler-cache hit rate from its record)
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ListFormat::Plain)]
    pub output: ListFormat,
}

/// How `kernels list` prints a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Plain,
    Wide,
}

/// One line of `kernels list`.
fn list_line(k: &kernels::Listed, format: ListFormat) -> String {
    match format {
        // little-vm-helper: fmt.Printf("%-13s %s\n", k.Name, k.URL)
        ListFormat::Plain => format!("{:<13} {}", k.name, k.url),
        ListFormat::Wide => {
            let state = if k.tree.is_some() {
                "fetched"
            } else {
                "not fetched"
            };
            format!(
                "{}\t{}\t{state}\t{}",
                k.name,
                k.url,
                crate::kbuild::build_columns(k)
            )
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// Overwrite an existing kernels.json
    #[arg(long)]
    pub force: bool,
    /// Keep the old kernels.json under a timestamped name
    #[arg(long)]
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
    /// Option groups to copy into this kernel's opts (comma separated; default none:
    /// the groups from `init` are in common_opts)
    #[arg(long, value_delimiter = ',')]
    pub config_groups: Vec<String>,
    /// Do not add the kernel; print its config entry
    #[arg(long)]
    pub just_print_config: bool,
    /// Starting config: defconfig (default), another make target (tinyconfig) or a config file
    #[arg(long)]
    pub base_config: Option<String>,
    /// Kconfig fragment inside the kernel tree, merged before the options (repeatable; `.x86_64`, `.aarch64` names apply to that arch only)
    #[arg(long = "fragment", value_name = "FILE")]
    pub fragments: Vec<String>,
    /// The kernel's compiler, saved as its "toolchain" key: gcc, gcc-N, llvm, llvm-N
    #[arg(long, value_name = "TOOLCHAIN")]
    pub toolchain: Option<kernels::toolchain::Toolchain>,
    /// Fetch the kernel's tree after adding it
    #[arg(long)]
    pub fetch: bool,
    /// Keep the old kernels.json under a timestamped name
    #[arg(long)]
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
    #[arg(long)]
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
    #[command(flatten)]
    pub toolchain: crate::kbuild::ToolchainArgs,
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
    #[arg(long)]
    pub ci: bool,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long)]
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
    #[arg(short, long, default_value = ".")]
    pub dir: PathBuf,
    /// Repository to pull from
    #[arg(long, default_value = DEFAULT_KERNEL_REPO)]
    pub repo: String,
    /// Use the CI repository (<repo>-ci), like little-vm-helper's --ci
    #[arg(long)]
    pub ci: bool,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub caps: crate::oci::CapArgs,
}

/// The `--dir` of a command that reads kernels.json.
fn config_dir(cmd: &KernelsCmd) -> Option<&Path> {
    match cmd {
        KernelsCmd::List(a) => Some(&a.dir),
        KernelsCmd::Add(a) => Some(&a.dir),
        KernelsCmd::Remove(a) => Some(&a.dir),
        KernelsCmd::Fetch(a) => Some(&a.dir),
        KernelsCmd::Configure(a) => Some(&a.dir),
        KernelsCmd::Build(a) => Some(&a.dir),
        KernelsCmd::RawConfigure(a) => Some(&a.dir),
        KernelsCmd::Bisect(a) => Some(&a.dir),
        KernelsCmd::Init(_)
        | KernelsCmd::Catalog(_)
        | KernelsCmd::Pull(_)
        | KernelsCmd::Push(_)
        | KernelsCmd::Cache(_) => None,
    }
}

/// Unknown keys in kernels.json: warnings, or with `--strict` an error.
fn lint(dir: &Path, ctx: &Ctx) -> anyhow::Result<()> {
    crate::warn_unknown_keys(kernels::config::lint(dir), ctx)
}

pub fn dispatch(cmd: &KernelsCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let r = &ctx.reporter;
    if let Some(dir) = config_dir(cmd) {
        lint(dir, ctx)?;
    }
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
                outln!("{}", list_line(&k, a.output));
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
                    toolchain: a.toolchain,
                    cwd: std::env::current_dir()?,
                },
                r,
            )?;
            if a.just_print_config {
                outln!("{}", added.json);
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
            let mut p = kernels::KernelPlan::new(&a.dir, &a.name, a.arch);
            p.strict = ctx.strict;
            p.toolchain = a.toolchain.toolchain;
            p.make_vars = a.toolchain.make_var.clone();
            kernels::configure(&p, r)?;
            let tree = kernels::layout::Layout::new(&a.dir).tree(&a.name);
            outln!("{}", tree.join(".config").display());
        }
        KernelsCmd::RawConfigure(a) => {
            kernels::raw_configure(
                &kernels::RawConfigurePlan {
                    dir: a.dir.clone(),
                    tree: a.kernel_dir.clone(),
                    name: a.name.clone(),
                    arch: a.arch,
                    strict: ctx.strict,
                },
                r,
            )?;
            outln!("{}", a.kernel_dir.join(".config").display());
        }
        KernelsCmd::Build(a) => crate::kbuild::build(a, ctx)?,
        KernelsCmd::Catalog(a) => catalog(a)?,
        KernelsCmd::Pull(a) => pull(a, ctx)?,
        KernelsCmd::Push(a) => push(a, ctx)?,
        KernelsCmd::Cache(c) => crate::kbuild::cache(c, ctx)?,
        KernelsCmd::Bisect(a) => return crate::bisect::dispatch(a, ctx),
    }
    Ok(ExitCode::Success)
}

/// `lvh kernels pull <tag> [-d D] [-p P] [--repo R]`.
fn pull(a: &PullArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let opts = crate::oci::pull_options(&a.platform, a.insecure, &a.caps)?;
    let repo = crate::oci::ci_repo(&a.repo, a.ci);
    let dir = oci::pull_kernel(&repo, &a.tag, &a.dir, &opts, &ctx.reporter)
        .with_context(|| format!("failed to pull kernel {repo}:{}", a.tag))?;
    outln!("{}", dir.display());
    Ok(())
}

/// `lvh kernels push <install-dir> <ref>`.
fn push(a: &PushArgs, ctx: &Ctx) -> anyhow::Result<()> {
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
    outln!("{}@{}", p.reference, p.manifest_digest);
    Ok(())
}

/// `lvh kernels catalog [version] [--repo R]`.
fn catalog(a: &CatalogArgs) -> anyhow::Result<()> {
    let repo = crate::oci::ci_repo(&a.repo, a.ci);
    let transport = Transport {
        insecure: a.insecure,
        ..Transport::default()
    };
    let lines = oci::catalog(&repo, a.kernel_version.as_deref(), &transport)
        .with_context(|| format!("failed to list {repo}"))?;
    for l in lines {
        outln!("{l}");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_are_little_vm_helpers_unless_wide() {
        let k = |name: &str, url: &str, fetched: bool| kernels::Listed {
            name: name.into(),
            url: url.into(),
            tree: fetched.then(|| PathBuf::from("/d/kernels").join(name)),
            record: None,
        };
        let cases = [
            (
                k("bpf-next", "git://x/bpf-next.git", false),
                ListFormat::Plain,
                "bpf-next      git://x/bpf-next.git",
            ),
            (k("rhel8", "", false), ListFormat::Plain, "rhel8         "),
            (
                k("a-name-longer-than-13", "u", true),
                ListFormat::Plain,
                "a-name-longer-than-13 u",
            ),
            (
                k("6.6", "u#linux-6.6.y", true),
                ListFormat::Wide,
                "6.6\tu#linux-6.6.y\tfetched\t-\t-\t-\t-\t-\t-",
            ),
            (
                k("rhel8", "", false),
                ListFormat::Wide,
                "rhel8\t\tnot fetched\t-\t-\t-\t-\t-\t-",
            ),
        ];
        for (listed, format, want) in cases {
            assert_eq!(list_line(&listed, format), want, "{format:?}");
        }
    }
}
