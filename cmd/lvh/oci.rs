//! What the registry commands of `images` and `kernels` share: the push flags
//! and turning flags into `lvh::oci` options. It knows nothing of either
//! command group; `images.rs` and `kernels.rs` use it.

use clap::Args;

use lvh::arch::Arch;
use lvh::oci::{Platform, PullOptions, PushOptions, Transport};

/// The flags `images push` and `kernels push` share.
#[derive(Debug, Args)]
pub struct PushFlags {
    /// Source URL recorded as the org.opencontainers.image.source annotation
    #[arg(long)]
    pub source: Option<String>,
    /// Use plain http (always used for localhost and 127.0.0.1)
    #[arg(long)]
    pub insecure: bool,
}

impl PushFlags {
    pub fn options(&self, arch: Arch) -> PushOptions {
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
pub fn ci_repo(repo: &str, ci: bool) -> String {
    if ci {
        format!("{repo}-ci")
    } else {
        repo.to_string()
    }
}

pub fn pull_options(platform: &str, insecure: bool) -> anyhow::Result<PullOptions> {
    let platform: Platform = platform.parse()?;
    Ok(PullOptions {
        platform,
        transport: Transport { insecure },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ci_repo_appends_the_ci_suffix_only_with_ci() {
        assert_eq!(super::ci_repo("quay.io/a/k", true), "quay.io/a/k-ci");
        assert_eq!(super::ci_repo("quay.io/a/k", false), "quay.io/a/k");
    }
}
