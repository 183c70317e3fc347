//! `kernels.json`: little-vm-helper's exact shape (`kernels[{name, url, opts,
//! extra_make_args}]`, `common_opts`) plus lvh's `base_config`, `fragments`
//! and `toolchain` extension keys. Unknown keys are ignored as Go ignores them ([`lint`] reports
//! them with file, line and key); malformed values name the file and kernel.
//! Written atomically with Go's 4-space indentation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{KernelsError, Result};
use super::options::{parse_option, ConfigOption};
use super::toolchain::Toolchain;
use super::url;

/// The file name inside `--dir`.
pub const CONFIG_FILE: &str = "kernels.json";
/// The kernel name that would collide with the shared git repository.
pub const RESERVED_NAME: &str = "git";

/// `kernels.json` as stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Conf {
    pub kernels: Vec<KernelConf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_opts: Vec<ConfigOption>,
}

/// One kernel to build from source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelConf {
    pub name: String,
    /// Empty for a kernel whose tree is made some other way (little-vm-helper-images'
    /// RHEL kernels, configured with `raw_configure`); only `fetch` needs it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opts: Vec<ConfigOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_make_args: Vec<String>,
    /// lvh extension: `defconfig` (default), another make target such as
    /// `tinyconfig`, or a path to a config file used as the starting `.config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_config: Option<String>,
    /// lvh extension: Kconfig fragment files inside the kernel tree (such as
    /// `tools/testing/selftests/bpf/config`), merged after `common_opts` and
    /// before `opts`; a name ending in an arch suffix (`.x86_64`, `.aarch64`)
    /// applies to that arch only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fragments: Vec<String>,
    /// lvh extension: the compiler (`gcc`, `gcc-N`, `llvm`, `llvm-N`); the
    /// `--toolchain` flag wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<Toolchain>,
}

/// Where configuration starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseConfig {
    /// A make target (`defconfig`, `tinyconfig`, `allnoconfig`, ...).
    Target(String),
    /// A config file copied to `.config` (relative paths are relative to `--dir`).
    File(PathBuf),
}

impl KernelConf {
    /// The starting point of `kernels configure`, relative paths resolved against `dir`.
    pub fn base(&self, dir: &Path) -> BaseConfig {
        match self.base_config.as_deref().map(str::trim) {
            None | Some("") => BaseConfig::Target("defconfig".into()),
            Some(b) if b.contains('/') || b.starts_with('.') => BaseConfig::File(dir.join(b)),
            Some(b) => BaseConfig::Target(b.to_string()),
        }
    }
}

/// Checks a kernel name: not reserved, usable as a directory, git branch and remote name.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name == RESERVED_NAME {
        return Err(format!(
            "the kernel name {name:?} is reserved (it is the shared git repository)"
        ));
    }
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if !ok {
        return Err(format!(
            "invalid kernel name {name:?} (use letters, digits, '.', '_', '-', '+'; not starting with '.' or '-')"
        ));
    }
    Ok(())
}

fn kernel_label(i: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("kernel {n:?}"),
        None => format!("kernels[{i}]"),
    }
}

/// Validates every field; errors say which kernel and which field.
pub fn validate(conf: &Conf) -> std::result::Result<(), String> {
    for (j, o) in conf.common_opts.iter().enumerate() {
        parse_option(o).map_err(|e| format!("common_opts[{j}]: {e}"))?;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, k) in conf.kernels.iter().enumerate() {
        let label = kernel_label(i, Some(&k.name));
        check_name(&k.name).map_err(|e| format!("kernels[{i}].name: {e}"))?;
        if !seen.insert(k.name.as_str()) {
            return Err(format!("{label} appears twice"));
        }
        if !k.url.is_empty() {
            url::parse(&k.url).map_err(|e| format!("{label}: url: {e}"))?;
        }
        for (j, o) in k.opts.iter().enumerate() {
            parse_option(o).map_err(|e| format!("{label}: opts[{j}]: {e}"))?;
        }
        for (j, f) in k.fragments.iter().enumerate() {
            super::fragments::check_path(f).map_err(|e| format!("{label}: fragments[{j}]: {e}"))?;
        }
        if let Some(b) = &k.base_config {
            if b.trim().is_empty() {
                return Err(format!("{label}: base_config: must not be empty"));
            }
        }
    }
    Ok(())
}

/// The keys of the file and of a kernel entry.
const TOP_KEYS: &[&str] = &["kernels", "common_opts"];
const KERNEL_KEYS: &[&str] = &[
    "name",
    "url",
    "opts",
    "extra_make_args",
    "base_config",
    "fragments",
    "toolchain",
];

/// Parses `kernels.json` text, naming the kernel (by index or name) whose entry
/// is wrong: wrong types, malformed options. Unknown keys are ignored.
pub fn parse(text: &str) -> std::result::Result<Conf, String> {
    parse_with_warnings(text).map(|(c, _)| c)
}

/// Like [`parse`], and also returns the unknown keys it ignored, as
/// `line:col: unknown key "k"`, in file order.
pub fn parse_with_warnings(text: &str) -> std::result::Result<(Conf, Vec<String>), String> {
    use crate::jsonpos::{strip_unknown, Positions};
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        return Err("expected a JSON object with \"kernels\" and \"common_opts\"".into());
    }
    let mut unknown = strip_unknown(&mut value, "", TOP_KEYS);
    if let Some(serde_json::Value::Array(ks)) = value.get_mut("kernels") {
        for (i, k) in ks.iter_mut().enumerate() {
            unknown.extend(strip_unknown(k, &format!("kernels[{i}]"), KERNEL_KEYS));
        }
    }
    let positions = Positions::scan(text);
    let mut warnings: Vec<_> = unknown
        .iter()
        .map(|u| (positions.get(&u.path), &u.key))
        .collect();
    warnings.sort_by_key(|(p, _)| (p.line, p.col));
    let warnings = warnings
        .into_iter()
        .map(|(p, k)| format!("{}:{}: unknown key {k:?}", p.line, p.col))
        .collect();
    let obj = value.as_object().expect("checked above");
    let mut conf = Conf::default();
    match obj.get("kernels") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(ks)) => {
            for (i, k) in ks.iter().enumerate() {
                let name = k.get("name").and_then(|n| n.as_str());
                let kc: KernelConf = serde_json::from_value(k.clone())
                    .map_err(|e| format!("{}: {e}", kernel_label(i, name)))?;
                conf.kernels.push(kc);
            }
        }
        Some(_) => return Err("\"kernels\" must be an array".into()),
    }
    if let Some(c) = obj.get("common_opts") {
        if !c.is_null() {
            conf.common_opts =
                serde_json::from_value(c.clone()).map_err(|e| format!("common_opts: {e}"))?;
        }
    }
    validate(&conf)?;
    Ok((conf, warnings))
}

/// The file for a kernels directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(CONFIG_FILE)
}

/// Loads and validates `<dir>/kernels.json`.
pub fn load(dir: &Path) -> Result<Conf> {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KernelsError::NoConfig {
                file,
                dir: dir.display().to_string(),
            })
        }
        Err(e) => return Err(KernelsError::io("failed to read", file, e)),
    };
    parse(&text).map_err(|message| KernelsError::BadConfig { file, message })
}

/// The unknown keys of `<dir>/kernels.json`, as `file:line:col: unknown key
/// "k"`; none when the file is missing or unreadable (loading it
/// reports that), or malformed (likewise).
pub fn lint(dir: &Path) -> Vec<String> {
    let file = path(dir);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Vec::new();
    };
    match parse_with_warnings(&text) {
        Ok((_, w)) => w
            .into_iter()
            .map(|w| format!("{}:{w}", file.display()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The text lvh writes: Go's `json.MarshalIndent(conf, "", "    ")` layout.
pub fn to_text(conf: &Conf) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    conf.serialize(&mut ser).expect("kernels.json serializes");
    String::from_utf8(buf).expect("utf-8")
}

/// Writes `<dir>/kernels.json` atomically; with `backup`, the old file is first
/// renamed to `kernels.json.<timestamp>` (little-vm-helper's naming).
pub fn save(dir: &Path, conf: &Conf, backup: bool) -> Result<Option<PathBuf>> {
    let file = path(dir);
    let mut backed_up = None;
    if backup && file.is_file() {
        let old = dir.join(format!("{CONFIG_FILE}.{}", timestamp()));
        std::fs::rename(&file, &old)
            .map_err(|e| KernelsError::io("failed to back up", &file, e))?;
        backed_up = Some(old);
    }
    crate::fsutil::write_atomic(&file, to_text(conf).as_bytes())
        .map_err(|e| KernelsError::io("failed to write", &file, e))?;
    Ok(backed_up)
}

/// `YYYYMMDD.HHMMSSffffff` in UTC, as little-vm-helper names backups.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let date = crate::date::Date::from_unix_days(days);
    let (y, m, d) = (date.year, date.month, date.day);
    format!(
        "{y:04}{m:02}{d:02}.{:02}{:02}{:02}{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

impl Conf {
    pub fn kernel(&self, name: &str) -> Option<&KernelConf> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// The unknown-kernel error for `name`.
    pub fn unknown(&self, name: &str, dir: &Path) -> KernelsError {
        let known: Vec<&str> = self.kernels.iter().map(|k| k.name.as_str()).collect();
        KernelsError::UnknownKernel {
            name: name.to_string(),
            file: path(dir),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }
    }

    /// `common_opts` then the kernel's `opts`, the order they are applied in.
    pub fn options_for(&self, k: Option<&KernelConf>) -> Vec<ConfigOption> {
        let mut v = self.common_opts.clone();
        if let Some(k) = k {
            v.extend(k.opts.iter().cloned());
        }
        v
    }
}

pub(crate) fn kernel<'a>(conf: &'a Conf, dir: &Path, name: &str) -> Result<&'a KernelConf> {
    conf.kernel(name).ok_or_else(|| conf.unknown(name, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
    "kernels": [
        {
            "name": "bpf-next",
            "url": "git://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git",
            "opts": [
                [
                    "--enable",
                    "CONFIG_BPF"
                ]
            ],
            "extra_make_args": [
                "LLVM=1"
            ]
        },
        {
            "name": "tiny",
            "url": "/src/linux#main",
            "base_config": "tinyconfig",
            "fragments": [
                "tools/testing/selftests/bpf/config",
                "tools/testing/selftests/bpf/config.x86_64"
            ],
            "toolchain": "llvm-19"
        }
    ],
    "common_opts": [
        [
            "--disable",
            "CONFIG_WERROR"
        ]
    ]
}"#;

    #[test]
    fn round_trips_with_the_exact_keys_and_layout() {
        let conf = parse(SAMPLE).unwrap();
        assert_eq!(conf.kernels[0].extra_make_args, vec!["LLVM=1"]);
        assert_eq!(conf.kernels[1].base_config.as_deref(), Some("tinyconfig"));
        assert_eq!(conf.kernels[1].fragments.len(), 2);
        assert_eq!(conf.kernels[1].toolchain, Some("clang-19".parse().unwrap()));
        assert_eq!(conf.kernels[0].toolchain, None);
        assert!(conf.kernels[0].fragments.is_empty());
        assert_eq!(to_text(&conf), SAMPLE);
    }

    #[test]
    fn init_shape_has_an_empty_kernels_array() {
        let text = to_text(&Conf::default());
        assert_eq!(text, "{\n    \"kernels\": []\n}");
        assert_eq!(parse(&text).unwrap(), Conf::default());
        assert_eq!(parse(r#"{"kernels": null}"#).unwrap(), Conf::default());
    }

    #[test]
    fn bad_files_name_the_kernel_and_field() {
        let cases: &[(&str, &str)] = &[
            ("{", "invalid JSON"),
            ("[]", "expected a JSON object"),
            (
                r#"{"kernels": [{"url": "/x"}]}"#,
                "kernels[0]: missing field `name`",
            ),
            (
                r#"{"kernels": [{"name": "a", "url": "/x", "opts": [["--frob", "X"]]}]}"#,
                "kernel \"a\": opts[0]: unknown scripts/config command \"--frob\"",
            ),
            (
                r#"{"kernels": [{"name": "a", "url": "ftp://h/x"}]}"#,
                "kernel \"a\": url:",
            ),
            (
                r#"{"kernels": [{"name": "git", "url": "/x"}]}"#,
                "kernels[0].name: the kernel name \"git\" is reserved",
            ),
            (
                r#"{"kernels": [{"name": "a", "url": "/x"}, {"name": "a", "url": "/y"}]}"#,
                "kernel \"a\" appears twice",
            ),
            (
                r#"{"kernels": [{"name": "a", "url": "/x", "fragments": ["../cfg"]}]}"#,
                "kernel \"a\": fragments[0]: \"../cfg\" must be a path inside the kernel tree",
            ),
            (
                r#"{"kernels": [{"name": "a", "url": "/x", "fragments": "cfg"}]}"#,
                "kernel \"a\": invalid type",
            ),
            (
                r#"{"kernels": [], "common_opts": [["--enable"]]}"#,
                "common_opts[0]: --enable needs 1 argument",
            ),
            (
                r#"{"kernels": [{"name": "a", "url": "/x", "toolchain": "icc"}]}"#,
                "kernel \"a\": unknown toolchain \"icc\"",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn url_less_kernels_and_unknown_keys_load_with_warnings() {
        // little-vm-helper-images' RHEL kernels have no url; Go ignores unknown keys.
        let text = "{\n  \"kernels\": [\n    {\"name\": \"rhel8.6\", \"comment\": 1},\n    {\"name\": \"a\", \"url\": \"/x\"}\n  ],\n  \"version\": 2\n}";
        let (conf, w) = parse_with_warnings(text).unwrap();
        assert_eq!(conf.kernels[0].url, "");
        assert_eq!(conf.kernels[1].url, "/x");
        assert_eq!(
            w,
            [
                "3:36: unknown key \"comment\"",
                "6:14: unknown key \"version\""
            ]
        );
        // a url-less entry is written back without a url key
        assert!(!to_text(&conf).contains("\"url\": \"\""));
    }

    #[test]
    fn base_config_forms() {
        let mut k = KernelConf::default();
        let d = Path::new("/d");
        assert_eq!(k.base(d), BaseConfig::Target("defconfig".into()));
        k.base_config = Some("tinyconfig".into());
        assert_eq!(k.base(d), BaseConfig::Target("tinyconfig".into()));
        k.base_config = Some("configs/x.config".into());
        assert_eq!(k.base(d), BaseConfig::File("/d/configs/x.config".into()));
    }

    #[test]
    fn names() {
        for ok in ["bpf-next", "6.6", "a_b+c"] {
            check_name(ok).unwrap();
        }
        for bad in ["git", "", ".x", "-x", "a/b", "a b", "x.lock", "a..b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_look_like_go_ones() {
        let t = timestamp();
        assert_eq!(t.len(), 21, "{t}");
        assert_eq!(&t[8..9], ".");
    }
}
