//! `lvh run --cloud-init USER-DATA [--cloud-init-meta META]`: the NoCloud
//! seed that provisions a stock cloud image (Debian's genericcloud, Ubuntu's
//! cloud images) at its first boot, the way dev boxes are made.
//!
//! lvh checks the files before anything boots (cloud-init ignores a
//! user-data it cannot parse and the guest boots unprovisioned, which is
//! slow to notice), warns about clear-text passwords, and decides the seed's
//! files: `user-data` as given, `meta-data` as given or with an
//! `instance-id` derived from the user-data (a changed user-data is a new
//! instance, so a `--persist`ed image is provisioned again), and a
//! `vendor-data` that mounts `--host-mount` at `/host`. The seed drive itself
//! is written by `session::seed`; nothing here touches the image.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

use crate::runner::error::RunError;

/// The flags, as errors and warnings name them.
pub const USER_FLAG: &str = "--cloud-init";
pub const META_FLAG: &str = "--cloud-init-meta";
/// The largest user-data or meta-data lvh reads (cloud-init's own limit on
/// most clouds is 16 KiB-64 KiB; a NoCloud drive allows more).
pub const MAX_FILE: u64 = 4 << 20;

/// The first words of the user-data formats cloud-init accepts besides
/// `#cloud-config` (which lvh parses).
const OTHER_FORMATS: [&str; 6] = [
    "#!",
    "#include",
    "#cloud-boothook",
    "#part-handler",
    "#upstart-job",
    "Content-Type:",
];

/// The checked seed content of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudInit {
    /// The user-data file, for messages.
    pub user_file: PathBuf,
    pub user_data: Vec<u8>,
    pub meta_data: Vec<u8>,
    /// What lvh itself adds (the host mount); `None` when nothing.
    pub vendor_data: Option<String>,
    /// Clear-text passwords and the like, one line each.
    pub warnings: Vec<String>,
}

impl CloudInit {
    /// The seed's files, in the order they are written.
    pub fn files(&self) -> Vec<(&'static str, &[u8])> {
        let mut v = vec![
            ("meta-data", self.meta_data.as_slice()),
            ("user-data", self.user_data.as_slice()),
        ];
        if let Some(vd) = &self.vendor_data {
            v.push(("vendor-data", vd.as_bytes()));
        }
        v
    }
}

/// The user-data and meta-data as read (checked by [`check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFiles {
    pub user: (PathBuf, Vec<u8>),
    pub meta: Option<(PathBuf, Vec<u8>)>,
}

/// Reads the files `--cloud-init` and `--cloud-init-meta` name (regular
/// files of at most [`MAX_FILE`] bytes).
pub fn read(user: &Path, meta: Option<&Path>) -> Result<SeedFiles, RunError> {
    let one = |flag: &str, p: &Path| {
        crate::fsutil::read_input(p, MAX_FILE)
            .map(|b| (p.to_path_buf(), b))
            .map_err(|e| RunError::invalid(flag, p.display(), e.to_string()))
    };
    Ok(SeedFiles {
        user: one(USER_FLAG, user)?,
        meta: meta.map(|m| one(META_FLAG, m)).transpose()?,
    })
}

/// Parses YAML text, naming the flag, file, line and column of an error.
fn parse_yaml(flag: &str, file: &Path, text: &str) -> Result<Yaml, RunError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        RunError::invalid(
            flag,
            file.display(),
            format!(
                "not valid YAML at line {} column {}: {} (cloud-init would ignore the whole file)",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            ),
        )
    })?;
    Ok(docs.into_iter().next().unwrap_or(Yaml::Null))
}

/// Whether a `chpasswd` password is stored hashed or generated, not in clear.
fn hashed(password: &str) -> bool {
    password.starts_with('$') || matches!(password, "R" | "RANDOM")
}

/// The keys of a `#cloud-config` that set a password in clear text.
pub fn clear_text_passwords(doc: &Yaml) -> Vec<String> {
    let mut keys = vec![];
    if doc["password"].as_str().is_some() {
        keys.push("password".to_string());
    }
    if let Some(users) = doc["users"].as_vec() {
        for (i, u) in users.iter().enumerate() {
            if u["plain_text_passwd"].as_str().is_some() {
                keys.push(format!("users[{i}].plain_text_passwd"));
            }
        }
    }
    let chpasswd = &doc["chpasswd"];
    // The old form: `list: |` with `user:password` lines (or a list of them).
    let list: Vec<String> = match &chpasswd["list"] {
        Yaml::String(s) => s.lines().map(String::from).collect(),
        Yaml::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    };
    if list
        .iter()
        .filter_map(|l| l.split_once(':'))
        .any(|(_, p)| !hashed(p.trim()))
    {
        keys.push("chpasswd.list".to_string());
    }
    if let Some(users) = chpasswd["users"].as_vec() {
        for (i, u) in users.iter().enumerate() {
            let typ = u["type"].as_str().unwrap_or("text");
            let clear = match u["password"].as_str() {
                Some(p) => typ == "text" && !hashed(p),
                None => false,
            };
            if clear {
                keys.push(format!("chpasswd.users[{i}].password"));
            }
        }
    }
    keys
}

/// The `instance-id` lvh gives a seed without meta-data: the user-data's
/// hash, so the same user-data is the same instance.
pub fn instance_id(user_data: &[u8], vendor_data: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(user_data);
    h.update(vendor_data.unwrap_or_default().as_bytes());
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("lvh-{hex}")
}

/// The vendor-data that mounts the host directory at `/host` (9p, the tag
/// little-vm-helper's images use); user-data's own `mounts` take precedence.
pub fn vendor_data(host_mount: bool) -> Option<String> {
    host_mount.then(|| {
        format!(
            "#cloud-config\nmounts:\n  - [{tag}, /host, 9p, \"trans=virtio,version=9p2000.L,msize=1048576,nofail\", \"0\", \"0\"]\n",
            tag = crate::runner::guest::HOST_MOUNT_TAG
        )
    })
}

/// Checks the seed files and decides the seed: `host_mount` adds the
/// vendor-data that mounts it. Pure.
pub fn check(files: &SeedFiles, host_mount: bool) -> Result<CloudInit, RunError> {
    let (user_file, user_data) = &files.user;
    let bad = |reason: String| RunError::invalid(USER_FLAG, user_file.display(), reason);
    let text = std::str::from_utf8(user_data);
    let mut warnings = vec![];
    let gzip = user_data.starts_with(&[0x1f, 0x8b]);
    match text {
        _ if gzip => {}
        Err(_) => return Err(bad("not UTF-8 text (nor gzip-compressed user-data)".into())),
        Ok(t) if t.starts_with("#cloud-config") => {
            let doc = parse_yaml(USER_FLAG, user_file, t)?;
            if !matches!(doc, Yaml::Hash(_) | Yaml::Null) {
                return Err(bad(
                    "#cloud-config must be a YAML mapping of module keys (users:, write_files:, ...)"
                        .into(),
                ));
            }
            for key in clear_text_passwords(&doc) {
                warnings.push(format!(
                    "{}: `{key}` sets a clear-text password: anyone who reads the seed or the image can log in with it; prefer ssh keys (--ssh-key, or ssh_authorized_keys in the user-data)",
                    user_file.display()
                ));
            }
        }
        Ok(t) if OTHER_FORMATS.iter().any(|f| t.starts_with(f)) => {}
        Ok(t) => {
            let first = t.lines().next().unwrap_or_default();
            return Err(bad(format!(
                "starts with {first:?}: cloud-init would ignore it; user-data starts with #cloud-config (or #!, #include, #cloud-boothook, a MIME multipart)"
            )));
        }
    }
    let vendor = vendor_data(host_mount);
    let meta_data = match &files.meta {
        Some((file, bytes)) => {
            let t = std::str::from_utf8(bytes)
                .map_err(|_| RunError::invalid(META_FLAG, file.display(), "not UTF-8 text"))?;
            let doc = parse_yaml(META_FLAG, file, t)?;
            if !matches!(doc, Yaml::Hash(_) | Yaml::Null) {
                return Err(RunError::invalid(
                    META_FLAG,
                    file.display(),
                    "meta-data must be a YAML mapping (instance-id:, local-hostname:)",
                ));
            }
            bytes.clone()
        }
        None => format!(
            "instance-id: {}\n",
            instance_id(user_data, vendor.as_deref())
        )
        .into_bytes(),
    };
    Ok(CloudInit {
        user_file: user_file.clone(),
        user_data: user_data.clone(),
        meta_data,
        vendor_data: vendor,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(user: &str, meta: Option<&str>) -> SeedFiles {
        SeedFiles {
            user: ("u.yaml".into(), user.as_bytes().to_vec()),
            meta: meta.map(|m| (PathBuf::from("m.yaml"), m.as_bytes().to_vec())),
        }
    }

    fn err(f: &SeedFiles) -> String {
        check(f, false).unwrap_err().to_string()
    }

    #[test]
    fn a_cloud_config_becomes_a_seed_with_an_instance_id() {
        let c = check(&files("#cloud-config\nusers: [default]\n", None), false).unwrap();
        let names: Vec<_> = c.files().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["meta-data", "user-data"]);
        let meta = String::from_utf8(c.meta_data.clone()).unwrap();
        assert!(meta.starts_with("instance-id: lvh-"), "{meta}");
        assert!(c.warnings.is_empty());
        // The same user-data is the same instance; another is a new one.
        let again = check(&files("#cloud-config\nusers: [default]\n", None), false).unwrap();
        assert_eq!(again.meta_data, c.meta_data);
        let other = check(&files("#cloud-config\nusers: []\n", None), false).unwrap();
        assert_ne!(other.meta_data, c.meta_data);
    }

    #[test]
    fn the_host_mount_is_vendor_data_at_slash_host() {
        let c = check(&files("#cloud-config\n", None), true).unwrap();
        let vd = c.vendor_data.unwrap();
        assert!(vd.starts_with("#cloud-config\nmounts:\n"), "{vd}");
        assert!(vd.contains("[host_mount, /host, 9p, "), "{vd}");
        let no_mount = check(&files("#cloud-config\n", None), false).unwrap();
        assert_ne!(no_mount.meta_data, c.meta_data, "a new instance");
    }

    #[test]
    fn given_meta_data_is_kept_as_is() {
        let m = "instance-id: box-1\nlocal-hostname: box\n";
        let c = check(&files("#cloud-config\n", Some(m)), false).unwrap();
        assert_eq!(c.meta_data, m.as_bytes());
    }

    #[test]
    fn bad_files_are_named_with_line_and_column() {
        let e = err(&files(
            "#cloud-config\nusers:\n  - name: a\n   bad: [\n",
            None,
        ));
        assert!(e.contains("--cloud-init") && e.contains("u.yaml"), "{e}");
        assert!(e.contains("not valid YAML at line"), "{e}");
        let e = err(&files("users: []\n", None));
        assert!(
            e.contains("starts with \"users: []\": cloud-init would ignore it"),
            "{e}"
        );
        let e = err(&files("#cloud-config\n- a\n- b\n", None));
        assert!(e.contains("must be a YAML mapping"), "{e}");
        let e = err(&files("#cloud-config\n", Some("- x\n")));
        assert!(
            e.contains("--cloud-init-meta") && e.contains("m.yaml"),
            "{e}"
        );
        let e = err(&files("#cloud-config\n", Some("a: [\n")));
        assert!(e.contains("not valid YAML"), "{e}");
    }

    #[test]
    fn other_user_data_formats_pass_unparsed() {
        for u in [
            "#!/bin/sh\necho hi\n",
            "#include\nhttp://x\n",
            "Content-Type: multipart/mixed; boundary=x\n",
        ] {
            assert!(check(&files(u, None), false).is_ok(), "{u}");
        }
        let gz = SeedFiles {
            user: ("u.gz".into(), vec![0x1f, 0x8b, 8, 0, 0xff]),
            meta: None,
        };
        assert!(check(&gz, false).is_ok());
        let bin = SeedFiles {
            user: ("u.bin".into(), vec![0xff, 0xfe, 0]),
            meta: None,
        };
        assert!(err(&bin).contains("not UTF-8"));
    }

    #[test]
    fn clear_text_passwords_are_named_by_key() {
        for (doc, want) in [
            ("password: hunter2\n", vec!["password"]),
            (
                "users:\n  - name: a\n    passwd: $6$salt$hash\n  - name: b\n    plain_text_passwd: pw\n",
                vec!["users[1].plain_text_passwd"],
            ),
            ("chpasswd:\n  list: |\n    root:pw\n", vec!["chpasswd.list"]),
            ("chpasswd:\n  list: |\n    root:$6$x$y\n    me:RANDOM\n", vec![]),
            (
                "chpasswd:\n  users:\n    - {name: a, password: pw}\n    - {name: b, password: $6$x, type: hash}\n    - {name: c, type: RANDOM}\n",
                vec!["chpasswd.users[0].password"],
            ),
            ("users:\n  - name: a\n    ssh_authorized_keys: [ssh-ed25519 AAAA]\n", vec![]),
        ] {
            let y = YamlLoader::load_from_str(doc).unwrap().remove(0);
            assert_eq!(clear_text_passwords(&y), want, "{doc}");
        }
        let c = check(&files("#cloud-config\npassword: pw\n", None), false).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("u.yaml: `password` sets a clear-text password"));
        assert!(c.warnings[0].contains("--ssh-key"));
    }

    #[test]
    fn reading_refuses_what_is_not_a_small_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let e = read(&d.path().join("missing.yaml"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cloud-init") && e.contains("missing.yaml"),
            "{e}"
        );
        let e = read(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("--cloud-init"), "{e}");
        let u = d.path().join("u.yaml");
        std::fs::write(&u, "#cloud-config\n").unwrap();
        let e = read(&u, Some(Path::new("/dev/zero")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cloud-init-meta"), "{e}");
    }
}
