//! What the host and the files say about a run, read before the plan is
//! decided ([`gather`]), so that the decision itself ([`super::RunPlan::decide`])
//! is a pure function of the options and these facts.

use std::path::{Path, PathBuf};

use super::accel::KvmStatus;
use super::cloudinit;
use super::fastboot::{self, Found};
use super::hostmount::{self, ShareModel};
use super::image::ImageFormat;
use super::kcheck;
use super::options::RunOptions;
use super::sharefs::{self, FsRequest};
use super::sshkey;
use crate::arch::Arch;
use crate::runner::error::RunError;

/// `--kernel`, as found.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelFacts {
    pub is_file: bool,
    /// The path as given, made absolute.
    pub abs: PathBuf,
    /// Its configuration, where it was found ([`kcheck::find`]): read once,
    /// for the boot-speed decisions and the check before booting.
    pub config: Option<(kcheck::Source, kcheck::Config)>,
    /// What the fast boot may use.
    pub found: Found,
}

/// `--image`, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageFacts {
    /// No `--image` (a saved state has to give one).
    NotGiven,
    Missing(PathBuf),
    NotAFile(PathBuf),
    File {
        abs: PathBuf,
        format: ImageFormat,
    },
}

/// `--host-mount`, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMountFacts {
    pub is_dir: bool,
    pub abs: PathBuf,
    /// How QEMU serves it over 9p (see `hostmount`).
    pub model: ShareModel,
    /// Where virtiofsd is, who owns the directory, and whether lvh is
    /// root (see `sharefs`; the rest of its facts are the decision's).
    pub virtiofsd: Option<PathBuf>,
    pub owner: (u32, u32),
    pub owner_reaches: bool,
    pub root: bool,
}

/// Everything the decision needs from outside the options.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub kvm: KvmStatus,
    pub host: Arch,
    pub kernel: Option<KernelFacts>,
    pub image: ImageFacts,
    pub host_mount: Option<HostMountFacts>,
    /// `--ssh-key`'s checked public keys.
    pub ssh_keys: Option<String>,
    /// `--cloud-init`'s and `--cloud-init-meta`'s files, as read.
    pub cloud_init: Option<cloudinit::SeedFiles>,
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads what the options point at; `kvm` is what the probe found. Fails
/// only when a file that exists cannot be read (the image's header, the
/// ssh key); a missing file is a fact that the decision turns into an error.
pub fn gather(o: &RunOptions, kvm: KvmStatus) -> Result<Facts, RunError> {
    let kernel = o.kernel.as_deref().map(|k| {
        let is_file = k.is_file();
        // What `--kernel` really is: a symlink to a build tree's bzImage has
        // its .config and vmlinux beside the file it points to.
        let real = std::fs::canonicalize(k).unwrap_or_else(|_| abs(k));
        let config = if is_file {
            kcheck::find(&real).map(|(source, text)| (source, kcheck::parse(&text)))
        } else {
            None
        };
        let found = if is_file {
            fastboot::find(&real, o.arch, config.as_ref().map(|(_, c)| c))
        } else {
            Found::default()
        };
        KernelFacts {
            is_file,
            abs: abs(k),
            config,
            found,
        }
    });
    let image = match &o.image {
        None => ImageFacts::NotGiven,
        Some(p) if p.is_file() => ImageFacts::File {
            abs: abs(p),
            format: ImageFormat::detect(p)
                .map_err(|e| RunError::io(format!("read image {}", p.display()), e))?,
        },
        Some(p) if p.exists() => ImageFacts::NotAFile(p.clone()),
        Some(p) => ImageFacts::Missing(p.clone()),
    };
    let host_mount = o.host_mount.as_deref().map(|h| {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(h).map_or((0, 0), |m| (m.uid(), m.gid()));
        let virtiofsd = (o.host_mount_fs != FsRequest::NineP)
            .then(|| {
                sharefs::find_virtiofsd(
                    std::env::var_os(sharefs::ENV).as_deref(),
                    std::env::var_os("PATH").as_deref(),
                )
            })
            .flatten();
        // virtiofsd, run as the owner, must reach the directory and itself.
        let reaches = |p: &Path| {
            std::fs::canonicalize(p)
                .ok()
                .and_then(|c| sharefs::ancestors(&c))
                .is_some_and(|d| sharefs::reaches(owner.0, owner.1, &d))
        };
        HostMountFacts {
            is_dir: h.is_dir(),
            abs: abs(h),
            model: hostmount::decide(hostmount::qemu_is_root(), hostmount::probe_xattrs(h)),
            owner_reaches: reaches(h) && virtiofsd.as_deref().is_none_or(reaches),
            virtiofsd,
            owner,
            root: hostmount::qemu_is_root(),
        }
    });
    let ssh_keys = o
        .ssh_key
        .as_deref()
        .map(sshkey::read_public_keys)
        .transpose()?;
    let cloud_init = o
        .cloud_init
        .as_deref()
        .map(|u| cloudinit::read(u, o.cloud_init_meta.as_deref()))
        .transpose()?;
    Ok(Facts {
        kvm,
        host: Arch::host(),
        kernel,
        image,
        host_mount,
        ssh_keys,
        cloud_init,
    })
}
