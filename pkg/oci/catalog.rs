//! `lvh kernels catalog`: the kernel versions in a repository, or one
//! version's tags, in version order.

use super::error::{OciError, Result};
use super::reference::parse_reference;
use super::tags::{group_kernel_tags, sorted_versions};
use super::transport::{Remote, Transport};

/// The versions in `repo` (no `version`), or the tags of `version`.
pub fn catalog(repo: &str, version: Option<&str>, transport: &Transport) -> Result<Vec<String>> {
    let r = parse_reference(repo)?;
    if r.digest().is_some() || repo.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        return Err(OciError::InvalidReference {
            reference: repo.to_string(),
            reason: "a repository takes no tag or digest".into(),
        });
    }
    let remote = Remote::connect(r, transport)?;
    let tags = remote.list_tags()?;
    let groups = group_kernel_tags(tags.iter().map(String::as_str));
    match version {
        None => Ok(sorted_versions(&groups)),
        Some(v) => groups.get(v).cloned().ok_or_else(|| OciError::NotFound {
            what: "kernel version",
            reference: format!(
                "{v} in {repo} (versions: {})",
                sorted_versions(&groups).join(", ")
            ),
        }),
    }
}
