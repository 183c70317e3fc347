//! Configuring and building a kernel tree with its own make and `scripts/config`:
//! base config, option pass, `olddefconfig`, verification; then the image and
//! modules (natively or cross), installed into `tar-install/{boot,lib/modules}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ccache::{self, Stats};
use super::config::BaseConfig;
use super::error::{KernelsError, Result};
use super::kconfig::{self, Finding};
use super::layout;
use super::makevars::MakeVar;
use super::options::ConfigOption;
use super::record;
use super::toolchain::{self, Toolchain};
use crate::arch::Arch;
use crate::exec::Cmd;
use crate::progress::{Event, Reporter, Stage, StageId};

/// How long a configuration step (defconfig, olddefconfig) may take.
pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a build without a terminal reports what make is doing.
const MAKE_STATUS_EVERY: Duration = Duration::from_secs(20);

/// How make is invoked for one tree: arch, toolchain, the kernel's
/// `extra_make_args` and the user's `--make-var`s.
#[derive(Clone, Debug)]
pub struct Make {
    pub tree: PathBuf,
    pub arch: Arch,
    /// `None` when the kernel's `extra_make_args` choose the compiler.
    pub toolchain: Option<Toolchain>,
    /// The tree's `VERSION.PATCHLEVEL`, when its Makefile says.
    pub kernel_version: Option<(u32, u32)>,
    pub extra_args: Vec<String>,
    pub user_vars: Vec<MakeVar>,
}

impl Make {
    /// For `tree`, reading its kernel version from the top-level Makefile.
    pub fn new(
        tree: &Path,
        arch: Arch,
        toolchain: Option<Toolchain>,
        extra_args: &[String],
        user_vars: &[MakeVar],
    ) -> Make {
        let kernel_version = std::fs::read_to_string(tree.join("Makefile"))
            .ok()
            .and_then(|t| toolchain::kernel_version(&t));
        Make {
            tree: tree.to_path_buf(),
            arch,
            toolchain,
            kernel_version,
            extra_args: extra_args.to_vec(),
            user_vars: user_vars.to_vec(),
        }
    }

    /// `ARCH=`, the toolchain's variables, `extra_make_args`, then `--make-var`s.
    pub fn vars(&self) -> Vec<String> {
        let mut v = vec![format!("ARCH={}", self.arch.kernel_make_arch())];
        match self.toolchain {
            Some(t) => v.extend(t.make_vars(self.arch, Arch::host(), self.kernel_version)),
            // extra_make_args chose the compiler; a cross build still gets
            // the GNU prefix unless they set it.
            None if !self.arch.is_native()
                && !self
                    .extra_args
                    .iter()
                    .any(|a| a.starts_with("CROSS_COMPILE=")) =>
            {
                v.push(format!(
                    "CROSS_COMPILE={}",
                    self.arch.cross_compile_prefix()
                ))
            }
            None => {}
        }
        for a in &self.extra_args {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v.extend(self.user_vars.iter().map(|m| m.to_string()));
        v
    }

    pub fn cmd<S: AsRef<str>>(&self, targets: &[S]) -> Cmd {
        Cmd::new("make")
            .current_dir(&self.tree)
            .args(self.vars())
            .args(targets.iter().map(|t| t.as_ref()))
    }

    /// Refuses a toolchain this tree cannot use or whose programs are
    /// missing, naming the Debian packages to install.
    pub fn check_compiler(&self) -> Result<()> {
        let Some(t) = self.toolchain else {
            return Ok(());
        };
        if let Some(why) = self.kernel_version.and_then(|k| t.unusable_for(k)) {
            return Err(KernelsError::Toolchain(why));
        }
        let tools = t.tools(self.arch, Arch::host());
        if let Some(m) = toolchain::missing(&tools, &|p| crate::exec::which(p).is_some()) {
            return Err(KernelsError::Toolchain(format!(
                "toolchain {t} for {}: {m}",
                self.arch
            )));
        }
        Ok(())
    }
}

/// The result of a configure run.
#[derive(Debug, Default)]
pub struct Configured {
    /// Options that did not hold in the final `.config`.
    pub findings: Vec<Finding>,
}

fn dotconfig(tree: &Path) -> PathBuf {
    tree.join(".config")
}

/// Makes the starting `.config` from `base`.
pub fn base_config(make: &Make, base: &BaseConfig, stage: &Stage) -> Result<()> {
    match base {
        BaseConfig::Target(t) => {
            stage.message(format!("make {t}"));
            make.cmd(&[t])
                .timeout(CONFIG_TIMEOUT)
                .stage(stage.id())
                .log_to(layout::log_file(&make.tree, "configure"))
                .run(stage.reporter())
                .map_err(KernelsError::exec(format!(
                    "`make {t}` failed in {}",
                    make.tree.display()
                )))?;
        }
        BaseConfig::File(p) => {
            let text = std::fs::read(p)
                .map_err(|e| KernelsError::io("base_config: cannot read the config file", p, e))?;
            crate::fsutil::write_atomic(&dotconfig(&make.tree), &text)
                .map_err(|e| KernelsError::io("failed to write", dotconfig(&make.tree), e))?;
        }
    }
    Ok(())
}

/// Applies `opts` with `scripts/config`, runs `make olddefconfig` and verifies
/// that every option holds. The tree must have a `.config`.
pub fn apply_options(make: &Make, opts: &[ConfigOption], stage: &Stage) -> Result<Configured> {
    let tree = &make.tree;
    if !dotconfig(tree).is_file() {
        return Err(KernelsError::invalid(format!(
            "{} has no .config to apply options to",
            tree.display()
        )));
    }
    let log = layout::log_file(tree, "configure");
    if !opts.is_empty() {
        stage.message(format!("scripts/config: {} options", opts.len()));
        // One call for every option: scripts/config takes a list of commands.
        Cmd::new("./scripts/config")
            .current_dir(tree)
            .args(opts.iter().flatten())
            .timeout(CONFIG_TIMEOUT)
            .stage(stage.id())
            .log_to(&log)
            .run(stage.reporter())
            .map_err(KernelsError::exec(format!(
                "scripts/config failed in {}",
                tree.display()
            )))?;
    }
    stage.message("make olddefconfig");
    make.cmd(&["olddefconfig"])
        .timeout(CONFIG_TIMEOUT)
        .stage(stage.id())
        .log_to(&log)
        .run(stage.reporter())
        .map_err(KernelsError::exec(format!(
            "`make olddefconfig` failed in {}",
            tree.display()
        )))?;
    let text = std::fs::read_to_string(dotconfig(tree))
        .map_err(|e| KernelsError::io("failed to read", dotconfig(tree), e))?;
    let config = kconfig::parse_dotconfig(&text);
    let declared = std::sync::OnceLock::new();
    let defined = |s: &str| {
        Some(
            declared
                .get_or_init(|| kconfig::declared_symbols(tree))
                .contains(s),
        )
    };
    Ok(Configured {
        findings: kconfig::verify(opts, &config, &defined),
    })
}

/// Reads the `.config` of a tree, if any.
pub fn read_config(tree: &Path) -> Option<std::collections::HashMap<String, String>> {
    std::fs::read_to_string(dotconfig(tree))
        .ok()
        .map(|t| kconfig::parse_dotconfig(&t))
}

/// Forwards events and, every [`MAKE_STATUS_EVERY`], tells the stage what make
/// is doing, so a long build shows signs of life without a terminal too.
struct MakeStatus<'a> {
    inner: &'a dyn Reporter,
    stage: StageId,
    started: Instant,
    state: Mutex<(Instant, String)>,
    warnings: AtomicU64,
}

impl Reporter for MakeStatus<'_> {
    fn report(&self, event: Event) {
        if let Event::Line { line, .. } = &event {
            if record::is_warning(line) {
                self.warnings.fetch_add(1, Ordering::Relaxed);
            }
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let l = line.trim();
            // Kbuild's short lines ("  CC      kernel/fork.o") say which stage it is in.
            if l.len() > 2 && l.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                st.1 = l.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            if st.0.elapsed() >= MAKE_STATUS_EVERY {
                st.0 = Instant::now();
                let msg = format!("{}s: {}", self.started.elapsed().as_secs(), st.1);
                drop(st);
                self.inner.report(Event::Message {
                    id: self.stage,
                    message: msg,
                });
            }
        }
        self.inner.report(event);
    }
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct Built {
    /// The bootable image in the tree (`arch/x86/boot/bzImage`, `arch/arm64/boot/Image.gz`).
    pub image: PathBuf,
    /// `<tree>/tar-install`.
    pub install: PathBuf,
    /// `make kernelrelease`.
    pub release: String,
    /// Whether the install tree was already current.
    pub install_cached: bool,
    /// Warnings in make's output.
    pub warnings: u64,
    /// What the compiles did with the compiler cache, when it was used.
    pub cache: Option<Stats>,
    /// How long make and the install took.
    pub duration: Duration,
    /// The build record beside `tar-install`, once written.
    pub record: Option<PathBuf>,
}

/// How one build runs besides make's variables.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// make's `-j`.
    pub jobs: usize,
    /// The compiler cache: ccache's path and its cache directory.
    pub cache: Option<(PathBuf, PathBuf)>,
    /// Extra environment (kbuild's `KBUILD_BUILD_*`).
    pub env: Vec<(String, String)>,
}

/// `make -j<jobs> <image> [modules]` (through the compiler cache when asked),
/// then the install tree.
pub fn build(make: &Make, opts: &BuildOptions, stage: &Stage) -> Result<Built> {
    make.check_compiler()?;
    let started = Instant::now();
    let tree = &make.tree;
    let config = read_config(tree).unwrap_or_default();
    let modules = config.get("MODULES").is_some_and(|v| v == "y");
    let mut targets = vec![
        format!("-j{}", opts.jobs.max(1)),
        make.arch.kernel_image_target().to_string(),
    ];
    if modules {
        targets.push("modules".into());
    }
    let log = layout::log_file(tree, "build");
    let _ = std::fs::remove_file(&log);
    stage.message(format!("make {}", targets.join(" ")));
    let status = MakeStatus {
        inner: stage.reporter(),
        stage: stage.id(),
        started: Instant::now(),
        state: Mutex::new((Instant::now(), String::new())),
        warnings: AtomicU64::new(0),
    };
    let mut cmd = make.cmd(&targets);
    for (k, v) in &opts.env {
        cmd = cmd.env(k, v);
    }
    let statslog = layout::state_dir(tree).join("ccache-stats.log");
    if let (Some((ccache_bin, dir)), Some(t)) = (&opts.cache, make.toolchain) {
        let bin = layout::state_dir(tree).join("ccache-bin");
        let compilers = t.compilers(make.arch, Arch::host());
        ccache::masquerade(&bin, ccache_bin, &compilers)
            .map_err(|e| KernelsError::io("failed to prepare the compiler cache in", &bin, e))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| KernelsError::io("failed to create the compiler cache", dir, e))?;
        crate::fsutil::write_atomic(&statslog, b"")
            .map_err(|e| KernelsError::io("failed to write", &statslog, e))?;
        let path = std::env::var_os("PATH");
        for (k, v) in ccache::env(&bin, dir, tree, &statslog, path.as_deref()) {
            cmd = cmd.env(k, v);
        }
        stage.message(format!(
            "compiler cache {} ({})",
            dir.display(),
            compilers.join(", ")
        ));
    }
    cmd.stage(stage.id())
        .log_to(&log)
        .tail_lines(30)
        .run(&status)
        .map_err(KernelsError::exec(format!(
            "kernel build failed in {}",
            tree.display()
        )))?;
    let cache = opts
        .cache
        .as_ref()
        .map(|_| ccache::parse_statslog(&std::fs::read_to_string(&statslog).unwrap_or_default()));

    let image = tree.join(make.arch.kernel_image_path());
    let release = std::fs::read_to_string(tree.join("include/config/kernel.release"))
        .map_err(|e| {
            KernelsError::io(
                "failed to read",
                tree.join("include/config/kernel.release"),
                e,
            )
        })?
        .trim()
        .to_string();
    let install = layout::install_dir(tree);
    let stamp = install_stamp(tree, &image, &release, modules);
    let stamp_file = layout::install_stamp(tree);
    let install_cached = install
        .join("boot")
        .join(format!("vmlinuz-{release}"))
        .is_file()
        && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str());
    if !install_cached {
        // The record beside tar-install describes the tree that is there:
        // it goes before the new tree arrives and returns after.
        let rec = record::path(tree);
        match std::fs::remove_file(&rec) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(KernelsError::io("failed to remove", &rec, e))
            }
            _ => {}
        }
        stage.message("installing into tar-install");
        install_tree(make, &image, &release, modules, stage)?;
        crate::fsutil::write_atomic(&stamp_file, stamp.as_bytes())
            .map_err(|e| KernelsError::io("failed to write", &stamp_file, e))?;
    }
    Ok(Built {
        image,
        install,
        release,
        install_cached,
        warnings: status.warnings.load(Ordering::Relaxed),
        cache,
        duration: started.elapsed(),
        record: None,
    })
}

/// Identifies the build outputs an install tree was made from (sizes and mtimes).
fn install_stamp(tree: &Path, image: &Path, release: &str, modules: bool) -> String {
    let mut s = format!("release {release}\nmodules {modules}\n");
    for f in [
        image.to_path_buf(),
        tree.join("System.map"),
        tree.join(".config"),
        tree.join("vmlinux"),
        tree.join("modules.order"),
    ] {
        let m = std::fs::metadata(&f).ok();
        let mtime = m
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        s.push_str(&format!(
            "{} {} {mtime}\n",
            f.display(),
            m.map_or(0, |m| m.len())
        ));
    }
    s
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| KernelsError::io(format!("failed to copy {} to", from.display()), to, e))
}

/// Builds `tar-install` as the kernel's own `tar-pkg` lays it out:
/// `boot/{vmlinuz,System.map,config,vmlinux}-<release>` and `lib/modules/<release>`.
fn install_tree(
    make: &Make,
    image: &Path,
    release: &str,
    modules: bool,
    stage: &Stage,
) -> Result<()> {
    let tree = &make.tree;
    let dest = layout::install_dir(tree);
    let partial = crate::fsutil::Partial::new(&dest)
        .map_err(|e| KernelsError::io("failed to prepare", &dest, e))?;
    let root = partial.path().to_path_buf();
    let boot = root.join("boot");
    let modules_dir = root.join("lib/modules").join(release);
    std::fs::create_dir_all(&boot).map_err(|e| KernelsError::io("failed to create", &boot, e))?;
    copy(image, &boot.join(format!("vmlinuz-{release}")))?;
    copy(
        &tree.join("System.map"),
        &boot.join(format!("System.map-{release}")),
    )?;
    copy(
        &tree.join(".config"),
        &boot.join(format!("config-{release}")),
    )?;
    copy(
        &tree.join("vmlinux"),
        &boot.join(format!("vmlinux-{release}")),
    )?;
    if modules {
        make.cmd(&[
            format!("INSTALL_MOD_PATH={}", root.display()),
            "modules_install".to_string(),
        ])
        .stage(stage.id())
        .log_to(layout::log_file(tree, "build"))
        .run(stage.reporter())
        .map_err(KernelsError::exec("`make modules_install` failed"))?;
    }
    std::fs::create_dir_all(&modules_dir)
        .map_err(|e| KernelsError::io("failed to create", &modules_dir, e))?;
    partial
        .commit()
        .map_err(|e| KernelsError::io("failed to move the install tree to", &dest, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_vars_in_order_without_repeats() {
        let m = |arch, toolchain: Option<&str>, extra: &[&str]| Make {
            tree: PathBuf::from("/t"),
            arch,
            toolchain: toolchain.map(|t| t.parse().unwrap()),
            kernel_version: Some((6, 12)),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            user_vars: vec!["W=1".parse().unwrap()],
        };
        let native = Arch::host();
        let other = Arch::ALL.into_iter().find(|a| *a != native).unwrap();
        let arch = |a: Arch| format!("ARCH={}", a.kernel_make_arch());
        let cross = format!("CROSS_COMPILE={}", other.cross_compile_prefix());
        assert_eq!(
            m(native, Some("gcc"), &[]).vars(),
            [arch(native), "W=1".into()]
        );
        assert_eq!(
            m(other, Some("gcc"), &["KCFLAGS=-g"]).vars(),
            [
                arch(other),
                cross.clone(),
                "KCFLAGS=-g".into(),
                "W=1".into()
            ]
        );
        // The LLVM=1 extra_make_args imply is not said twice.
        assert_eq!(
            m(other, Some("llvm"), &["LLVM=1"]).vars(),
            [arch(other), "LLVM=1".into(), "W=1".into()]
        );
        // extra_make_args that chose the compiler themselves keep the GNU prefix for cross.
        assert_eq!(
            m(other, None, &["CC=my-cc"]).vars(),
            [arch(other), cross, "CC=my-cc".into(), "W=1".into()]
        );
    }

    #[test]
    fn install_stamp_changes_with_the_outputs() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("bzImage");
        std::fs::write(&img, b"1").unwrap();
        let a = install_stamp(d.path(), &img, "6.12.0", false);
        assert_eq!(a, install_stamp(d.path(), &img, "6.12.0", false));
        std::fs::write(&img, b"22").unwrap();
        assert_ne!(a, install_stamp(d.path(), &img, "6.12.0", false));
        assert_ne!(a, install_stamp(d.path(), &img, "6.12.1", false));
    }
}
