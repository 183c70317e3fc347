//! The configure and build steps of one kernel: which toolchain and make
//! variables, when to configure again, the check of every requested option
//! (refusing those that need another compiler), the build through the
//! compiler cache, the build record, and `--reproduce`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::build::{self, BuildOptions, Built, Configured, Make};
use super::ccache;
use super::config::kernel;
use super::config::{self, Conf, KernelConf};
use super::error::{KernelsError, Result};
use super::fragments;
use super::kconfig;
use super::layout::lock;
use super::layout::{self, Layout};
use super::makevars::MakeVar;
use super::options;
use super::record::{self, BuildRecord, CacheUse};
use super::toolchain::{self, Toolchain};
use crate::arch::Arch;
use crate::progress::{self, Outcome, Reporter, Stage};

/// Whether and where a build caches compiler output.
#[derive(Clone, Debug, Default)]
pub struct CachePlan {
    pub mode: ccache::Mode,
    /// The cache directory; [`ccache::default_dir`] when `None`.
    pub dir: Option<PathBuf>,
}

/// `kernels configure` / `kernels build`.
#[derive(Clone, Debug)]
pub struct KernelPlan {
    pub dir: PathBuf,
    pub name: String,
    pub arch: Arch,
    /// Fail when Kconfig overrode a requested option instead of warning.
    pub strict: bool,
    /// `--toolchain`: wins over the kernel's `toolchain` key.
    pub toolchain: Option<Toolchain>,
    /// `--make-var`s, checked.
    pub make_vars: Vec<MakeVar>,
    /// make's `-j`; the number of CPUs when `None`.
    pub jobs: Option<usize>,
    pub cache: CachePlan,
}

impl KernelPlan {
    /// A plan with lvh's defaults for everything but the kernel.
    pub fn new(dir: &Path, name: &str, arch: Arch) -> Self {
        KernelPlan {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            arch,
            strict: false,
            toolchain: None,
            make_vars: Vec::new(),
            jobs: None,
            cache: CachePlan::default(),
        }
    }
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
/// options applied, fragments' contents included). gcc, the default, adds
/// nothing, so trees configured before toolchains existed stay current.
fn config_stamp(
    dir: &Path,
    k: &KernelConf,
    opts: &[options::ConfigOption],
    arch: Arch,
    toolchain: Option<Toolchain>,
) -> String {
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
    if let Some(t) = toolchain.filter(|t| *t != Toolchain::default()) {
        h.update(format!("\0toolchain {t}"));
    }
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

/// The make invocation for kernel `k` in `tree`: the toolchain decided from
/// the plan, the kernel's entry and its `extra_make_args`.
fn make_for(plan: &KernelPlan, k: &KernelConf, tree: &Path) -> Result<Make> {
    let sel = toolchain::select(plan.toolchain, k.toolchain, &k.extra_make_args, &k.name)
        .map_err(KernelsError::Toolchain)?;
    Ok(Make::new(
        tree,
        plan.arch,
        sel.toolchain,
        &k.extra_make_args,
        &plan.make_vars,
    ))
}

fn configure_locked(
    plan: &KernelPlan,
    conf: &Conf,
    k: &KernelConf,
    make: &Make,
    reporter: &dyn Reporter,
) -> Result<Configured> {
    make.check_compiler()?;
    let tree = &make.tree;
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
    build::base_config(make, &k.base(&plan.dir), &stage)?;
    let c = build::apply_options(make, &opts, &stage)?;
    if let Some(t) = make.toolchain {
        if let Some(m) = kconfig::toolchain_conflicts(&k.name, &c.findings, t, tree) {
            return Err(KernelsError::Toolchain(m));
        }
    }
    report_findings(&k.name, &c, plan.strict, reporter)?;
    crate::fsutil::write_atomic(
        &stamp_file,
        config_stamp(&plan.dir, k, &opts, plan.arch, make.toolchain).as_bytes(),
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
    let make = make_for(plan, k, &tree)?;
    let _lock = lock(&layout, &plan.name, reporter)?;
    configure_locked(plan, &conf, k, &make, reporter)
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
    let mut kplan = KernelPlan::new(&plan.dir, plan.name.as_deref().unwrap_or(""), plan.arch);
    kplan.strict = plan.strict;
    let make = make_for(&kplan, &k.cloned().unwrap_or_default(), &tree)?;
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
/// made for another arch, or when `kernels.json` (or the toolchain) changed
/// since lvh configured it; then builds and writes the build record.
pub fn build(plan: &KernelPlan, reporter: &dyn Reporter) -> Result<Built> {
    let conf = config::load(&plan.dir)?;
    let k = kernel(&conf, &plan.dir, &plan.name)?.clone();
    build_with(plan, &conf, &k, None, reporter)
}

/// `kernels build --reproduce RECORD`.
#[derive(Clone, Debug)]
pub struct ReproducePlan {
    pub dir: PathBuf,
    pub record: PathBuf,
    /// make's `-j` (it does not change the result); CPUs when `None`.
    pub jobs: Option<usize>,
    pub cache: CachePlan,
}

/// Builds what a build record describes: its kernel entry, options,
/// toolchain, make variables and environment, from the same commit; refuses
/// when the tree is at another commit or configures differently.
pub fn reproduce(plan: &ReproducePlan, reporter: &dyn Reporter) -> Result<(Built, BuildRecord)> {
    let file = &plan.record;
    let rec = BuildRecord::read(file)
        .map_err(|e| KernelsError::invalid(format!("--reproduce {}: {e}", file.display())))?;
    let k = rec.kernel_conf.clone();
    let conf = Conf {
        kernels: vec![k.clone()],
        common_opts: rec.common_opts.clone(),
    };
    let toolchain = match rec.toolchain.as_str() {
        "custom" => None,
        t => Some(t.parse().map_err(|e| {
            KernelsError::invalid(format!("--reproduce {}: toolchain: {e}", file.display()))
        })?),
    };
    let kplan = KernelPlan {
        dir: plan.dir.clone(),
        name: rec.kernel.clone(),
        arch: rec.arch,
        strict: false,
        toolchain,
        make_vars: rec.user_make_vars.clone(),
        jobs: plan.jobs,
        cache: plan.cache.clone(),
    };
    let built = build_with(&kplan, &conf, &k, Some(&rec), reporter)?;
    Ok((built, rec))
}

/// The compiler cache for this build, or why it is not used.
fn cache_for(
    plan: &KernelPlan,
    make: &Make,
    reporter: &dyn Reporter,
) -> Result<Option<(PathBuf, PathBuf)>> {
    if plan.cache.mode == ccache::Mode::Off {
        return Ok(None);
    }
    if make.toolchain.is_none() {
        progress::warn(
            reporter,
            format!(
                "kernel {}: its extra_make_args choose the compiler, so the compiler cache is not used",
                plan.name
            ),
        );
        return Ok(None);
    }
    let found = crate::exec::which(ccache::CCACHE);
    let use_it =
        ccache::decide(plan.cache.mode, found.is_some()).map_err(KernelsError::Toolchain)?;
    match found.filter(|_| use_it) {
        Some(bin) => Ok(Some((
            bin,
            plan.cache.dir.clone().unwrap_or_else(ccache::default_dir),
        ))),
        None => {
            progress::info(
                reporter,
                "ccache is not installed (Debian package ccache): building without a compiler cache",
            );
            Ok(None)
        }
    }
}

fn build_with(
    plan: &KernelPlan,
    conf: &Conf,
    k: &KernelConf,
    expect: Option<&BuildRecord>,
    reporter: &dyn Reporter,
) -> Result<Built> {
    let layout = Layout::new(&plan.dir);
    let tree = tree_of(&layout, &plan.name)?;
    let make = make_for(plan, k, &tree)?;
    make.check_compiler()?;
    let cache = cache_for(plan, &make, reporter)?;
    let _lock = lock(&layout, &plan.name, reporter)?;
    let head = record::head(&tree);
    if let Some(rec) = expect {
        rec.check_commit(head.as_ref(), &tree)
            .map_err(KernelsError::Reproduce)?;
    }
    // Quiet here: configure (if it runs) reports the fragments' redefinitions.
    let opts = all_options(conf, k, &tree, plan.arch, &progress::NullReporter)?;
    let want_stamp = config_stamp(&plan.dir, k, &opts, plan.arch, make.toolchain);
    let have_stamp = std::fs::read_to_string(layout::config_stamp(&tree)).ok();
    let current = build::read_config(&tree);
    let reason = match (&current, &have_stamp) {
        (None, _) => Some("no .config yet"),
        (Some(c), _) if kconfig::config_arch(c).is_some_and(|a| a != plan.arch) => {
            Some(".config is for another architecture")
        }
        (_, Some(s)) if *s != want_stamp => {
            Some("kernels.json changed since the last configure, or the toolchain did")
        }
        _ => None,
    };
    if let Some(reason) = reason {
        progress::info(reporter, format!("configuring {}: {reason}", plan.name));
        configure_locked(plan, conf, k, &make, reporter)?;
    }
    let dotconfig = tree.join(".config");
    let config_sha256 = record::sha256_file(&dotconfig)
        .map_err(|e| KernelsError::io("failed to read", &dotconfig, e))?;
    if let Some(rec) = expect {
        rec.check_config(&config_sha256, &dotconfig)
            .map_err(KernelsError::Reproduce)?;
    }
    let env = match expect {
        Some(rec) => rec.env.clone().into_iter().collect(),
        None => record::kbuild_env(head.as_ref().map(|h| h.time), &|k| std::env::var(k).ok()),
    };
    let jobs = plan
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let stage = Stage::start(reporter, format!("build {} ({})", plan.name, plan.arch));
    let opts = BuildOptions {
        jobs,
        cache: cache.clone(),
        env: env.clone(),
    };
    let mut built = build::build(&make, &opts, &stage)?;
    let rec_path = record::path(&tree);
    if !built.install_cached || !rec_path.is_file() {
        let config = build::read_config(&tree).unwrap_or_default();
        let rec = BuildRecord {
            format: record::FORMAT,
            lvh_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: plan.name.clone(),
            arch: plan.arch,
            release: built.release.clone(),
            commit: head.as_ref().map(|h| h.commit.clone()),
            modified: head.as_ref().is_some_and(|h| h.modified),
            config_sha256,
            kernel_conf: k.clone(),
            common_opts: conf.common_opts.clone(),
            toolchain: make
                .toolchain
                .map_or_else(|| "custom".to_string(), |t| t.to_string()),
            compiler: config
                .get("CC_VERSION_TEXT")
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default(),
            make_vars: make.vars(),
            user_make_vars: plan.make_vars.clone(),
            env: env.into_iter().collect(),
            jobs,
            started: record::rfc3339(started),
            duration_secs: (built.duration.as_millis() as f64 / 1000.0),
            warnings: built.warnings,
            cache: cache.zip(built.cache).map(|((_, dir), stats)| CacheUse {
                dir,
                stats,
                hit_rate: stats.hit_rate(),
            }),
            image: make.arch.kernel_image_path().to_string(),
            image_sha256: record::sha256_file(&built.image)
                .map_err(|e| KernelsError::io("failed to read", &built.image, e))?,
        };
        crate::fsutil::write_atomic(&rec_path, rec.to_json().as_bytes())
            .map_err(|e| KernelsError::io("failed to write", &rec_path, e))?;
    }
    built.record = Some(rec_path);
    stage.finish(Outcome::Done);
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_with_a_toolchain_but_not_for_the_default() {
        let k = KernelConf {
            name: "k".into(),
            ..Default::default()
        };
        let d = Path::new("/d");
        let base = config_stamp(d, &k, &[], Arch::Amd64, None);
        assert_eq!(
            base,
            config_stamp(d, &k, &[], Arch::Amd64, Some(Toolchain::default()))
        );
        let llvm = config_stamp(d, &k, &[], Arch::Amd64, Some("llvm-19".parse().unwrap()));
        assert_ne!(base, llvm);
        assert_ne!(
            llvm,
            config_stamp(d, &k, &[], Arch::Amd64, Some("llvm".parse().unwrap()))
        );
    }
}
