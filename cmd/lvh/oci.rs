//! What the registry commands of `images` and `kernels` share: the push flags
//! and turning flags into `lvh::oci` options. It knows nothing of either
//! command group; `images.rs` and `kernels.rs` use it.

use clap::Args;

use lvh::arch::Arch;
use lvh::oci::{CapFlags, Platform, PullOptions, PushOptions, Transport};

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
                ..Transport::default()
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

/// The caps a pull's unpacking gets (`images pull`, `kernels pull`); unset
/// ones come from `LVH_OCI_MAX_UNPACKED` and `LVH_OCI_MAX_LAYER_UNPACKED`,
/// then lvh's defaults (docs/security.md).
#[derive(Debug, Args, Default)]
pub struct CapArgs {
    /// Most bytes the pull may unpack, all layers together (e.g. 64G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_unpacked: Option<u64>,
    /// Most bytes one layer may unpack to (e.g. 32G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_layer_unpacked: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    lvh::bytesize::parse_size(s).ok_or_else(|| format!("{s:?} is not a size (e.g. 64G, 512M)"))
}

pub fn pull_options(platform: &str, insecure: bool, caps: &CapArgs) -> anyhow::Result<PullOptions> {
    let platform: Platform = platform.parse()?;
    Ok(PullOptions {
        platform,
        transport: Transport {
            insecure,
            caps: CapFlags {
                unpacked: caps.max_unpacked,
                layer_unpacked: caps.max_layer_unpacked,
            },
        },
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
