//! Manifests, indexes and platforms: the wire types lvh reads and writes, and
//! picking one platform's manifest out of a multi-arch index.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::OciError;
use crate::arch::Arch;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type lvh accepts when pulling.
pub const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// `linux/amd64`, `linux/arm64/v8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn of(arch: Arch) -> Platform {
        Platform {
            os: "linux".into(),
            arch: arch.oci_arch().into(),
            variant: None,
        }
    }

    /// Whether an index entry's platform serves this one. `arm64` without a
    /// variant and `arm64/v8` are the same thing in practice.
    pub fn matches(&self, other: &PlatformJson) -> bool {
        if self.os != other.os || self.arch != normalize_arch(&other.architecture) {
            return false;
        }
        let norm = |v: Option<&str>| match (self.arch.as_str(), v) {
            ("arm64", Some("v8")) | (_, None) | (_, Some("")) => None,
            (_, Some(v)) => Some(v.to_string()),
        };
        match &self.variant {
            None => true,
            Some(v) => norm(Some(v)) == norm(other.variant.as_deref()),
        }
    }
}

fn normalize_arch(a: &str) -> String {
    match a {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.to_string(),
    }
}

impl FromStr for Platform {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, OciError> {
        let bad = || OciError::InvalidPlatform {
            value: s.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let ok = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            arch: normalize_arch(&parts[1].to_ascii_lowercase()),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformJson {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for PlatformJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor (config, layer, or index entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest or an index, as found on the wire (extra keys are allowed:
/// registries and tools add their own).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn parse(bytes: &[u8], reference: &str) -> Result<Manifest, OciError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| OciError::Registry {
            reference: reference.to_string(),
            message: format!("unparsable manifest: {e}"),
        })?;
        if m.schema_version != 2 {
            return Err(OciError::Registry {
                reference: reference.to_string(),
                message: format!("unsupported manifest schema version {}", m.schema_version),
            });
        }
        Ok(m)
    }

    pub fn is_index(&self) -> bool {
        self.manifests.is_some()
            || matches!(
                self.media_type.as_deref(),
                Some(OCI_INDEX) | Some(DOCKER_LIST)
            )
    }
}

/// Picks the entry of an index for `want`. Attestation manifests (platform
/// `unknown/unknown`) are never chosen.
pub fn select_platform<'a>(
    entries: &'a [Descriptor],
    want: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, OciError> {
    entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| want.matches(p)))
        .ok_or_else(|| OciError::NoSuchPlatform {
            reference: reference.to_string(),
            platform: want.to_string(),
            available: entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string())
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(PlatformJson {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platforms_parse() {
        let p: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(
            (p.os.as_str(), p.arch.as_str(), p.variant),
            ("linux", "amd64", None)
        );
        let p: Platform = "linux/aarch64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn index_selection() {
        let idx = vec![
            entry("unknown", "unknown", None, "att"),
            entry("linux", "amd64", None, "amd"),
            entry("linux", "arm", Some("v7"), "arm7"),
            entry("linux", "arm64", Some("v8"), "arm64"),
        ];
        let cases = [
            ("linux/amd64", Some("amd")),
            ("linux/arm64", Some("arm64")),
            ("linux/arm64/v8", Some("arm64")),
            ("linux/arm/v7", Some("arm7")),
            ("linux/arm/v6", None),
            ("linux/riscv64", None),
            ("windows/amd64", None),
        ];
        for (want, got) in cases {
            let p: Platform = want.parse().unwrap();
            let r = select_platform(&idx, &p, "r").map(|d| d.digest.as_str());
            match got {
                Some(g) => assert_eq!(r.unwrap(), g, "{want}"),
                None => {
                    let e = r.unwrap_err().to_string();
                    assert!(
                        e.contains("linux/amd64, linux/arm/v7, linux/arm64/v8"),
                        "{e}"
                    );
                    assert!(!e.contains("unknown"), "{e}");
                }
            }
        }
    }

    #[test]
    fn manifests_parse_docker_and_oci() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:aa","size":3,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let m = Manifest::parse(docker, "r").unwrap();
        assert!(m.is_index());
        let oci = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:bb","size":2},"layers":[]}"#;
        assert!(!Manifest::parse(oci, "r").unwrap().is_index());
        assert!(Manifest::parse(br#"{"schemaVersion":1}"#, "r").is_err());
    }
}
