//! Registry credentials: the environment, then Docker's `config.json` (and the
//! containers `auth.json` skopeo and podman write), including credential helpers.
//! Anonymous when nothing matches; oci-client turns either into bearer tokens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::error::{OciError, Result};
use crate::exec::{Cmd, Input};
use crate::progress::NullReporter;

/// `LVH_REGISTRY_USERNAME` + `LVH_REGISTRY_PASSWORD` (or `LVH_REGISTRY_TOKEN`)
/// apply to the registry named in `LVH_REGISTRY`, or to every registry when it is unset.
pub const ENV_USER: &str = "LVH_REGISTRY_USERNAME";
pub const ENV_PASSWORD: &str = "LVH_REGISTRY_PASSWORD";
pub const ENV_TOKEN: &str = "LVH_REGISTRY_TOKEN";
pub const ENV_REGISTRY: &str = "LVH_REGISTRY";

const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "registrytoken")]
    registry_token: Option<String>,
}

/// The credentials to use for `registry` (`host[:port]`).
pub fn auth_for(registry: &str) -> Result<RegistryAuth> {
    if let Some(a) = from_env(registry, |k| std::env::var(k).ok()) {
        return Ok(a);
    }
    for path in config_paths() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some(a) = from_config(&path, &text, registry)? {
            return Ok(a);
        }
    }
    Ok(RegistryAuth::Anonymous)
}

fn from_env(registry: &str, get: impl Fn(&str) -> Option<String>) -> Option<RegistryAuth> {
    if let Some(only) = get(ENV_REGISTRY).filter(|s| !s.is_empty()) {
        if normalize_key(&only) != normalize_key(registry) {
            return None;
        }
    }
    if let Some(t) = get(ENV_TOKEN).filter(|s| !s.is_empty()) {
        return Some(RegistryAuth::Bearer(t));
    }
    match (get(ENV_USER), get(ENV_PASSWORD)) {
        (Some(u), Some(p)) if !u.is_empty() => Some(RegistryAuth::Basic(u, p)),
        _ => None,
    }
}

/// Where credentials files are looked for, in order.
fn config_paths() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let mut v = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(p);
    }
    match env("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => v.extend(home.as_ref().map(|h| h.join(".docker/config.json"))),
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        v.push(d.join("containers/auth.json"));
    }
    v.extend(
        home.as_ref()
            .map(|h| h.join(".config/containers/auth.json")),
    );
    v
}

/// `https://index.docker.io/v1/` -> `docker.io`; `quay.io/org` -> `quay.io`.
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

fn from_config(path: &Path, text: &str, registry: &str) -> Result<Option<RegistryAuth>> {
    let bad = |message: String| OciError::AuthConfig {
        path: path.to_owned(),
        message,
    };
    let cfg: ConfigFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let want = normalize_key(registry);
    let helper = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_key(k) == want)
        .map(|(_, v)| v.clone());
    if let Some(h) = helper {
        return run_helper(path, &h, registry).map(Some);
    }
    if let Some((key, e)) = cfg.auths.iter().find(|(k, _)| normalize_key(k) == want) {
        if let Some(t) = &e.registry_token {
            return Ok(Some(RegistryAuth::Bearer(t.clone())));
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(Some(RegistryAuth::Basic(u.clone(), p.clone())));
        }
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64_decode(a)
                .ok_or_else(|| bad(format!("auths.{key:?}.auth is not valid base64")))?;
            let s = String::from_utf8(raw)
                .map_err(|_| bad(format!("auths.{key:?}.auth is not UTF-8")))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key:?}.auth is not user:password")))?;
            return Ok(Some(RegistryAuth::Basic(u.to_string(), p.to_string())));
        }
    }
    if let Some(store) = cfg.creds_store.filter(|s| !s.is_empty()) {
        return run_helper(path, &store, registry).map(Some);
    }
    Ok(None)
}

/// Asks `docker-credential-<helper>` for the registry's credentials.
fn run_helper(path: &Path, helper: &str, registry: &str) -> Result<RegistryAuth> {
    let program = format!("docker-credential-{helper}");
    let out = Cmd::new(&program)
        .arg("get")
        .input(Input::Bytes(registry.as_bytes().to_vec()))
        .capture_stdout()
        .timeout(HELPER_TIMEOUT)
        .run(&NullReporter)
        .map_err(|e| OciError::AuthConfig {
            path: path.to_owned(),
            message: format!("credential helper {program} failed for {registry}: {e}"),
        })?;
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let r: Reply = serde_json::from_slice(&out.stdout).map_err(|e| OciError::AuthConfig {
        path: path.to_owned(),
        message: format!("credential helper {program} printed unparsable JSON: {e}"),
    })?;
    Ok(if r.username == "<token>" {
        RegistryAuth::Bearer(r.secret)
    } else {
        RegistryAuth::Basic(r.username, r.secret)
    })
}

/// Standard base64 (padding optional), as Docker writes `auth` fields.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.trim().bytes().filter(|&c| c != b'=').collect();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() - 1;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(a: Option<RegistryAuth>) -> Option<(String, String)> {
        match a {
            Some(RegistryAuth::Basic(u, p)) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn base64_table() {
        for (enc, dec) in [
            ("dXNlcjpwYXNz", "user:pass"),
            ("YQ==", "a"),
            ("YWI=", "ab"),
            ("YWJj", "abc"),
            ("", ""),
        ] {
            assert_eq!(base64_decode(enc).unwrap(), dec.as_bytes(), "{enc}");
        }
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("!!!!").is_none());
    }

    #[test]
    fn docker_config_entries() {
        let p = Path::new("/x/config.json");
        let text = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "quay.io":{"username":"q","password":"w"},
            "ghcr.io":{"registrytoken":"tok"},
            "bad.io":{"auth":"***"}
        }}"#;
        assert_eq!(
            basic(from_config(p, text, "docker.io").unwrap()),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            basic(from_config(p, text, "quay.io").unwrap()),
            Some(("q".into(), "w".into()))
        );
        assert!(
            matches!(from_config(p, text, "ghcr.io").unwrap(), Some(RegistryAuth::Bearer(t)) if t == "tok")
        );
        assert!(from_config(p, text, "other.io").unwrap().is_none());
        let e = from_config(p, text, "bad.io").unwrap_err().to_string();
        assert!(e.contains("/x/config.json") && e.contains("bad.io"), "{e}");
        let e = from_config(p, "{not json", "quay.io")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/config.json"), "{e}");
    }

    #[test]
    fn env_credentials_respect_the_registry_filter() {
        fn env<'a>(m: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| m.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string())
        }
        let both = [(ENV_USER, "u"), (ENV_PASSWORD, "p")];
        assert_eq!(
            basic(from_env("quay.io", env(&both))),
            Some(("u".into(), "p".into()))
        );
        let scoped = [
            (ENV_USER, "u"),
            (ENV_PASSWORD, "p"),
            (ENV_REGISTRY, "ghcr.io"),
        ];
        assert!(from_env("quay.io", env(&scoped)).is_none());
        assert!(from_env("ghcr.io", env(&scoped)).is_some());
        assert!(from_env("quay.io", env(&[(ENV_USER, "u")])).is_none());
        assert!(matches!(
            from_env("x.io", env(&[(ENV_TOKEN, "t")])),
            Some(RegistryAuth::Bearer(_))
        ));
    }
}
