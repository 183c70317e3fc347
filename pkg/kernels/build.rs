//! Configuring and building a kernel tree with its own make and `scripts/config`:
//! base config, option pass, `olddefconfig`, verification; then the image and
//! modules (natively or cross), installed into `tar-install/{boot,lib/modules}`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::BaseConfig;
use super::error::{KernelsError, Result};
use super::kconfig::{self, Finding};
use super::layout;
use super::options::ConfigOption;
use crate::arch::Arch;
use crate::exec::Cmd;
use crate::progress::{Event, Reporter, Stage, StageId};

/// How long a configuration step (defconfig, olddefconfig) may take.
pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a build without a terminal reports what make is doing.
const MAKE_STATUS_EVERY: Duration = Duration::from_secs(20);

/// How make is invoked for one tree: arch, cross compiler, the kernel's extra args.
#[derive(Clone, Debug)]
pub struct Make {
    pub tree: PathBuf,
    pub arch: Arch,
    pub extra_args: Vec<String>,
}

impl Make {
    /// `ARCH=` (and `CROSS_COMPILE=` when not native) then `extra_make_args`.
    pub fn vars(&self) -> Vec<String> {
        let mut v = vec![format!("ARCH={}", self.arch.kernel_make_arch())];
        if !self.arch.is_native() {
            v.push(format!(
                "CROSS_COMPILE={}",
                self.arch.cross_compile_prefix()
            ));
        }
        v.extend(self.extra_args.iter().cloned());
        v
    }

    pub fn cmd<S: AsRef<str>>(&self, targets: &[S]) -> Cmd {
        Cmd::new("make")
            .current_dir(&self.tree)
            .args(self.vars())
            .args(targets.iter().map(|t| t.as_ref()))
    }

    /// Fails with the Debian package to install when a needed cross compiler is missing.
    pub fn check_compiler(&self) -> Result<()> {
        if self.arch.is_native() {
            return Ok(());
        }
        let gcc = format!("{}gcc", self.arch.cross_compile_prefix());
        if crate::exec::which(&gcc).is_none() {
            return Err(KernelsError::NoCrossCompiler {
                gcc,
                arch: self.arch,
                package: self.arch.cross_gcc_package().to_string(),
            });
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
}

impl Reporter for MakeStatus<'_> {
    fn report(&self, event: Event) {
        if let Event::Line { line, .. } = &event {
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
}

/// `make -j<cores> <image> [modules]`, then the install tree.
pub fn build(make: &Make, stage: &Stage) -> Result<Built> {
    make.check_compiler()?;
    let tree = &make.tree;
    let config = read_config(tree).unwrap_or_default();
    let modules = config.get("MODULES").is_some_and(|v| v == "y");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut targets = vec![
        format!("-j{jobs}"),
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
    };
    make.cmd(&targets)
        .stage(stage.id())
        .log_to(&log)
        .tail_lines(30)
        .run(&status)
        .map_err(KernelsError::exec(format!(
            "kernel build failed in {}",
            tree.display()
        )))?;

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
    fn make_vars_cross_only_for_the_other_arch() {
        let m = |arch| Make {
            tree: PathBuf::from("/t"),
            arch,
            extra_args: vec!["LLVM=1".into()],
        };
        let native = Arch::host();
        let other = Arch::ALL.into_iter().find(|a| *a != native).unwrap();
        let v = m(native).vars();
        assert_eq!(v[0], format!("ARCH={}", native.kernel_make_arch()));
        assert_eq!(v[1], "LLVM=1");
        let v = m(other).vars();
        assert_eq!(
            v[1],
            format!("CROSS_COMPILE={}", other.cross_compile_prefix())
        );
        assert_eq!(v.len(), 3);
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
