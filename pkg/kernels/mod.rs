//! Kernels: `kernels.json` (little-vm-helper's format), kernel trees as git
//! worktrees of one shared bare repository, option groups and `.config`
//! verification, native and cross builds installed into `tar-install`.
//!
//! Each command is a function taking a validated plan; the binary renders the
//! events and results.

pub mod build;
pub mod config;
pub mod error;
mod fetched;
pub mod fragments;
pub mod git;
pub mod kconfig;
pub mod layout;
pub mod options;
mod shallow;
pub mod url;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use build::{Built, Configured};
pub use config::{Conf, KernelConf};
pub use error::KernelsError;
use error::Result;
pub use git::{FetchOutcome, Fetched};
use layout::Layout;

use crate::arch::Arch;
use crate::error::InvalidInput;
use crate::fsutil::{Lock, LockError};
use crate::progress::{self, Outcome, Reporter, Stage};

/// How long a command waits for another lvh working on the same kernel.
pub const LOCK_WAIT: Duration = Duration::from_secs(3 * 60 * 60);

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
}

pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let conf = config::load(dir)?;
    let layout = Layout::new(dir);
    Ok(conf
        .kernels
        .iter()
        .map(|k| Listed {
            name: k.name.clone(),
            url: k.url.clone(),
            tree: Some(layout.tree(&k.name)).filter(|t| t.is_dir()),
        })
        .collect())
}

fn lock(layout: &Layout, name: &str, reporter: &dyn Reporter) -> Result<Lock> {
    std::fs::create_dir_all(layout.kernels_dir())
        .map_err(|e| KernelsError::io("failed to create", layout.kernels_dir(), e))?;
    let what = format!("kernel {name:?}");
    match Lock::acquire(&layout.lock(name), &what, Duration::ZERO) {
        Ok(l) => Ok(l),
        Err(LockError::Busy { .. }) => {
            progress::warn(
                reporter,
                format!("{what} is in use by another lvh process; waiting for it"),
            );
            Ok(Lock::acquire(&layout.lock(name), &what, LOCK_WAIT)?)
        }
        Err(e) => Err(e.into()),
    }
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

fn kernel<'a>(conf: &'a Conf, dir: &Path, name: &str) -> Result<&'a KernelConf> {
    conf.kernel(name).ok_or_else(|| conf.unknown(name, dir))
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

/// `kernels configure` / `kernels build`.
#[derive(Clone, Debug)]
pub struct KernelPlan {
    pub dir: PathBuf,
    pub name: String,
    pub arch: Arch,
    /// Fail when Kconfig overrode a requested option instead of warning.
    pub strict: bool,
}

/// `common_opts`, the kernel's fragments (read from `tree`, those of `arch`),
/// then its `opts`: every option `configure` applies, in order. Fragment
/// symbols that a later fragment set again are reported.
fn all_options(
    conf: &Conf,
    k: &KernelConf,
    tree: &Path,
    arch: Arch,
    reporter: &dyn Reporter,
) -> Result<Vec<options::ConfigOption>> {
    let (frag, redefined) = fragments::load(tree, &k.fragments, arch).map_err(|e| {
        let (file, message) = match e {
            fragments::LoadError::Missing { file } => (file, "no such file".to_string()),
            fragments::LoadError::Read { file, err } => (file, format!("cannot read it: {err}")),
            fragments::LoadError::Parse { file, message } => (file, message),
        };
        KernelsError::Fragment {
            kernel: k.name.clone(),
            file,
            tree: tree.to_path_buf(),
            message,
        }
    })?;
    for r in redefined {
        progress::info(
            reporter,
            format!(
                "kernel {}: fragment {} redefines {}",
                k.name, r.fragment, r.symbol
            ),
        );
    }
    let mut v = conf.common_opts.clone();
    v.extend(frag);
    v.extend(k.opts.iter().cloned());
    Ok(v)
}

/// A hash of everything that decides a kernel's `.config` (`opts` are all the
/// options applied, fragments' contents included).
fn config_stamp(dir: &Path, k: &KernelConf, opts: &[options::ConfigOption], arch: Arch) -> String {
    let mut h = Sha256::new();
    h.update(arch.as_str());
    h.update(b"\0");
    match k.base(dir) {
        config::BaseConfig::Target(t) => h.update(t.as_bytes()),
        config::BaseConfig::File(p) => h.update(std::fs::read(p).unwrap_or_default()),
    }
    h.update(b"\0");
    h.update(serde_json::to_vec(opts).unwrap_or_default());
    h.update(serde_json::to_vec(&k.extra_make_args).unwrap_or_default());
    format!("{:x}\n", h.finalize())
}

fn report_findings(
    name: &str,
    c: &Configured,
    strict: bool,
    reporter: &dyn Reporter,
) -> Result<()> {
    let overrides: Vec<String> = c
        .findings
        .iter()
        .filter(|f| f.is_override())
        .map(|f| format!("  {f}"))
        .collect();
    if strict && !overrides.is_empty() {
        return Err(KernelsError::Strict {
            kernel: name.to_string(),
            count: overrides.len(),
            details: overrides.join("\n"),
        });
    }
    for f in &c.findings {
        progress::warn(reporter, format!("kernel {name}: {f}"));
    }
    Ok(())
}

fn tree_of(layout: &Layout, name: &str) -> Result<PathBuf> {
    let tree = layout.tree(name);
    if !tree.join("Makefile").is_file() {
        return Err(KernelsError::NotFetched {
            name: name.to_string(),
            path: tree,
        });
    }
    Ok(tree)
}

fn configure_locked(
    plan: &KernelPlan,
    conf: &Conf,
    k: &KernelConf,
    tree: &Path,
    reporter: &dyn Reporter,
) -> Result<Configured> {
    let make = build::Make {
        tree: tree.to_path_buf(),
        arch: plan.arch,
        extra_args: k.extra_make_args.clone(),
    };
    make.check_compiler()?;
    let state = layout::state_dir(tree);
    std::fs::create_dir_all(&state).map_err(|e| KernelsError::io("failed to create", &state, e))?;
    let _ = std::fs::remove_file(layout::log_file(tree, "configure"));
    let stamp_file = layout::config_stamp(tree);
    // Until this run succeeds the .config matches no kernels.json: the next build
    // must configure again.
    crate::fsutil::write_atomic(&stamp_file, b"incomplete\n")
        .map_err(|e| KernelsError::io("failed to write", &stamp_file, e))?;
    let opts = all_options(conf, k, tree, plan.arch, reporter)?;
    let stage = Stage::start(reporter, format!("configure {} ({})", k.name, plan.arch));
    build::base_config(&make, &k.base(&plan.dir), &stage)?;
    let c = build::apply_options(&make, &opts, &stage)?;
    report_findings(&k.name, &c, plan.strict, reporter)?;
    crate::fsutil::write_atomic(
        &stamp_file,
        config_stamp(&plan.dir, k, &opts, plan.arch).as_bytes(),
    )
    .map_err(|e| KernelsError::io("failed to write", &stamp_file, e))?;
    stage.finish(Outcome::Done);
    Ok(c)
}

/// `kernels configure`: base config, `common_opts` then the kernel's `opts`,
/// `olddefconfig`, verification. Always re-applies everything.
pub fn configure(plan: &KernelPlan, reporter: &dyn Reporter) -> Result<Configured> {
    let conf = config::load(&plan.dir)?;
    let k = kernel(&conf, &plan.dir, &plan.name)?;
    let layout = Layout::new(&plan.dir);
    let tree = tree_of(&layout, &plan.name)?;
    let _lock = lock(&layout, &plan.name, reporter)?;
    configure_locked(plan, &conf, k, &tree, reporter)
}

/// `kernels raw_configure`.
#[derive(Clone, Debug)]
pub struct RawConfigurePlan {
    pub dir: PathBuf,
    pub tree: PathBuf,
    pub name: Option<String>,
    pub arch: Arch,
    pub strict: bool,
}

/// Applies the options to a tree that already has a `.config` (no base config).
pub fn raw_configure(plan: &RawConfigurePlan, reporter: &dyn Reporter) -> Result<Configured> {
    let conf = config::load(&plan.dir)?;
    let k = match &plan.name {
        Some(n) => Some(kernel(&conf, &plan.dir, n)?),
        None => None,
    };
    if !plan.tree.join("Makefile").is_file() {
        return Err(KernelsError::invalid(format!(
            "{} is not a kernel tree (no Makefile)",
            plan.tree.display()
        )));
    }
    let tree = std::path::absolute(&plan.tree).unwrap_or_else(|_| plan.tree.clone());
    let make = build::Make {
        tree,
        arch: plan.arch,
        extra_args: k.map(|k| k.extra_make_args.clone()).unwrap_or_default(),
    };
    let state = layout::state_dir(&plan.tree);
    std::fs::create_dir_all(&state).map_err(|e| KernelsError::io("failed to create", &state, e))?;
    let label = plan
        .name
        .clone()
        .unwrap_or_else(|| plan.tree.display().to_string());
    let opts = match k {
        Some(k) => all_options(&conf, k, &make.tree, plan.arch, reporter)?,
        None => conf.options_for(None),
    };
    let stage = Stage::start(reporter, format!("raw_configure {label}"));
    let c = build::apply_options(&make, &opts, &stage)?;
    report_findings(&label, &c, plan.strict, reporter)?;
    stage.finish(Outcome::Done);
    Ok(c)
}

/// `kernels build`: configures first when there is no `.config`, when it was
/// made for another arch, or when `kernels.json` changed since lvh configured it.
pub fn build(plan: &KernelPlan, reporter: &dyn Reporter) -> Result<Built> {
    let conf = config::load(&plan.dir)?;
    let k = kernel(&conf, &plan.dir, &plan.name)?;
    let layout = Layout::new(&plan.dir);
    let tree = tree_of(&layout, &plan.name)?;
    let _lock = lock(&layout, &plan.name, reporter)?;
    // Quiet here: configure (if it runs) reports the fragments' redefinitions.
    let opts = all_options(&conf, k, &tree, plan.arch, &progress::NullReporter)?;
    let want_stamp = config_stamp(&plan.dir, k, &opts, plan.arch);
    let have_stamp = std::fs::read_to_string(layout::config_stamp(&tree)).ok();
    let current = build::read_config(&tree);
    let reason = match (&current, &have_stamp) {
        (None, _) => Some("no .config yet"),
        (Some(c), _) if kconfig::config_arch(c).is_some_and(|a| a != plan.arch) => {
            Some(".config is for another architecture")
        }
        (_, Some(s)) if *s != want_stamp => Some("kernels.json changed since the last configure"),
        _ => None,
    };
    if let Some(reason) = reason {
        progress::info(reporter, format!("configuring {}: {reason}", plan.name));
        configure_locked(plan, &conf, k, &tree, reporter)?;
    }
    let make = build::Make {
        tree: tree.clone(),
        arch: plan.arch,
        extra_args: k.extra_make_args.clone(),
    };
    let stage = Stage::start(reporter, format!("build {} ({})", plan.name, plan.arch));
    let built = build::build(&make, &stage)?;
    stage.finish(Outcome::Done);
    Ok(built)
}
