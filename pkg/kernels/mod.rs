//! Kernels: `kernels.json` (little-vm-helper's format), kernel trees as git
//! worktrees of one shared bare repository, option groups and `.config`
//! verification, native and cross builds installed into `tar-install`.
//!
//! Each command is a function taking a validated plan; the binary renders the
//! events and results.

pub mod build;
pub mod ccache;
pub mod config;
pub mod error;
mod fetched;
pub mod fragments;
pub mod git;
pub mod kconfig;
pub mod layout;
pub mod makevars;
pub mod options;
pub mod record;
mod shallow;
pub mod steps;
pub mod toolchain;
pub mod url;

use std::path::{Path, PathBuf};

pub use build::{Built, Configured};
use config::kernel;
pub use config::{Conf, KernelConf};
pub use error::KernelsError;
use error::Result;
pub use git::{FetchOutcome, Fetched};
pub use layout::LOCK_WAIT;
use layout::{lock, Layout};
pub use steps::{
    build, configure, raw_configure, reproduce, CachePlan, KernelPlan, RawConfigurePlan,
    ReproducePlan,
};

use crate::error::InvalidInput;
use crate::progress::{Outcome, Reporter, Stage};

/// `kernels init`.
#[derive(Clone, Debug)]
pub struct InitPlan {
    pub dir: PathBuf,
    pub groups: Vec<String>,
    pub force: bool,
    pub backup: bool,
}

/// Writes `<dir>/kernels.json` with no kernels and the groups' options as `common_opts`.
pub fn init(plan: &InitPlan) -> Result<PathBuf> {
    let common_opts = options::group_options(&plan.groups).map_err(|e| {
        KernelsError::Invalid(InvalidInput::field("--config-groups", e.to_string()))
    })?;
    let file = config::path(&plan.dir);
    if file.exists() && !plan.force {
        return Err(KernelsError::invalid(format!(
            "{} already exists (use --force to overwrite it, with --backup-conf to keep a copy)",
            file.display()
        )));
    }
    std::fs::create_dir_all(&plan.dir)
        .map_err(|e| KernelsError::io("failed to create", &plan.dir, e))?;
    let conf = Conf {
        kernels: Vec::new(),
        common_opts,
    };
    config::save(&plan.dir, &conf, plan.backup)?;
    Ok(file)
}

/// `kernels add`.
#[derive(Clone, Debug)]
pub struct AddPlan {
    pub dir: PathBuf,
    pub name: String,
    pub url: String,
    pub groups: Vec<String>,
    pub just_print: bool,
    pub fetch: bool,
    pub backup: bool,
    /// lvh's `base_config` extension key (`defconfig` when absent).
    pub base_config: Option<String>,
    /// lvh's `fragments` extension key: Kconfig fragments inside the tree.
    pub fragments: Vec<String>,
    /// lvh's `toolchain` extension key.
    pub toolchain: Option<toolchain::Toolchain>,
    /// Where relative source paths are resolved (the caller's working directory).
    pub cwd: PathBuf,
}

/// What `kernels add` did.
#[derive(Debug)]
pub struct Added {
    pub entry: KernelConf,
    /// The entry as JSON, for `--just-print-config`.
    pub json: String,
    pub fetched: Option<Fetched>,
}

/// The config entry `kernels add` makes (validated, relative paths made absolute).
pub fn new_entry(plan: &AddPlan) -> Result<KernelConf> {
    config::check_name(&plan.name).map_err(KernelsError::invalid)?;
    let url = url::KernelUrl::absolutize(&plan.url, &plan.cwd)
        .map_err(|e| KernelsError::invalid(format!("kernel {:?}: url: {e}", plan.name)))?;
    let parsed = url::parse(&url).map_err(KernelsError::invalid)?;
    if let Some(p) = &parsed.local {
        if !p.join(".git").exists() && !p.join("HEAD").is_file() {
            return Err(KernelsError::invalid(format!(
                "kernel {:?}: url: {} is not a git repository",
                plan.name,
                p.display()
            )));
        }
    }
    let opts = options::group_options(&plan.groups).map_err(|e| {
        KernelsError::Invalid(InvalidInput::field("--config-groups", e.to_string()))
    })?;
    let entry = KernelConf {
        name: plan.name.clone(),
        url,
        opts,
        extra_make_args: Vec::new(),
        base_config: plan.base_config.clone(),
        fragments: plan.fragments.clone(),
        toolchain: plan.toolchain,
    };
    config::validate(&Conf {
        kernels: vec![entry.clone()],
        common_opts: Vec::new(),
    })
    .map_err(KernelsError::invalid)?;
    Ok(entry)
}

pub fn add(plan: &AddPlan, reporter: &dyn Reporter) -> Result<Added> {
    let entry = new_entry(plan)?;
    let json = {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        serde::Serialize::serialize(&entry, &mut ser).expect("serializes");
        String::from_utf8(buf).expect("utf-8")
    };
    if plan.just_print {
        return Ok(Added {
            entry,
            json,
            fetched: None,
        });
    }
    let mut conf = config::load(&plan.dir)?;
    if conf.kernel(&plan.name).is_some() {
        return Err(KernelsError::invalid(format!(
            "kernel {:?} already exists in {}",
            plan.name,
            config::path(&plan.dir).display()
        )));
    }
    conf.kernels.push(entry.clone());
    config::save(&plan.dir, &conf, plan.backup)?;
    let fetched = if plan.fetch {
        Some(fetch(&plan.dir, &plan.name, reporter)?)
    } else {
        None
    };
    Ok(Added {
        entry,
        json,
        fetched,
    })
}

/// One line of `kernels list`.
#[derive(Clone, Debug)]
pub struct Listed {
    pub name: String,
    pub url: String,
    /// The tree, when it has been fetched.
    pub tree: Option<PathBuf>,
    /// The record of the build in the tree's `tar-install`, if any.
    pub record: Option<record::BuildRecord>,
}

pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let conf = config::load(dir)?;
    let layout = Layout::new(dir);
    Ok(conf
        .kernels
        .iter()
        .map(|k| {
            let tree = Some(layout.tree(&k.name)).filter(|t| t.is_dir());
            Listed {
                name: k.name.clone(),
                url: k.url.clone(),
                record: tree
                    .as_ref()
                    .and_then(|t| record::BuildRecord::read(&record::path(t)).ok()),
                tree,
            }
        })
        .collect())
}

/// `kernels remove`: tree, worktree, branch, remote and config entry go; the
/// shared repository stays.
pub fn remove(
    dir: &Path,
    name: &str,
    backup: bool,
    reporter: &dyn Reporter,
) -> Result<Vec<String>> {
    let mut conf = config::load(dir)?;
    if conf.kernel(name).is_none() {
        return Err(conf.unknown(name, dir));
    }
    let layout = Layout::new(dir);
    let _lock = lock(&layout, name, reporter)?;
    let mut removed = git::remove(&layout, name)?;
    conf.kernels.retain(|k| k.name != name);
    config::save(dir, &conf, backup)?;
    removed.push(format!("entry {name:?} in {}", config::path(dir).display()));
    let _ = std::fs::remove_file(layout.lock(name));
    Ok(removed)
}

/// `kernels fetch`.
pub fn fetch(dir: &Path, name: &str, reporter: &dyn Reporter) -> Result<Fetched> {
    let conf = config::load(dir)?;
    let k = kernel(&conf, dir, name)?;
    if k.url.is_empty() {
        return Err(KernelsError::NoUrl {
            name: name.to_string(),
            file: config::path(dir),
        });
    }
    let url = url::parse(&k.url).map_err(KernelsError::invalid)?;
    let layout = Layout::new(dir);
    let _lock = lock(&layout, name, reporter)?;
    let stage = Stage::start(reporter, format!("fetch {name}"));
    let f = git::fetch(&layout, name, &url, &stage)?;
    stage.finish(match f.outcome {
        FetchOutcome::UpToDate => Outcome::Cached,
        _ => Outcome::Done,
    });
    Ok(f)
}
