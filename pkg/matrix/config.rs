//! `lvh-tests.json`: the test matrix file. Its text is parsed into plain wire
//! values, unknown keys are stripped and reported with line and column (as
//! images.json and kernels.json do), and [`validate`] turns the rest into a
//! [`Matrix`] whose every value is checked, with errors that name the file,
//! line, column, field and value. Nothing here touches the disk except the
//! existence checks of local kernel, image and host-mount paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::InvalidInput;
use crate::jsonpos::{strip_unknown, Positions};
use crate::runner::MemSize;

/// The file `lvh test` reads when `-f` is not given.
pub const DEFAULT_FILE: &str = "lvh-tests.json";
/// A test's vCPUs when it does not say.
pub const DEFAULT_CPUS: u32 = 1;
/// A test's RAM when it does not say.
pub const DEFAULT_MEMORY: &str = "1G";

const TOP_KEYS: &[&str] = &["kernels", "images", "tests", "skip"];
const KERNEL_KEYS: &[&str] = &["name", "path", "kernel", "pull"];
const IMAGE_KEYS: &[&str] = &["name", "path", "pull"];
const TEST_KEYS: &[&str] = &[
    "name",
    "command",
    "timeout",
    "host_mount",
    "cwd",
    "cpus",
    "memory",
    "env",
];
const SKIP_KEYS: &[&str] = &["kernel", "image", "test", "reason"];

/// Where a kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// A kernel image file (bzImage, vmlinuz, Image).
    Path(PathBuf),
    /// A kernel of `<dir>/kernels.json`, built by `lvh kernels build`.
    Built(String),
    /// An OCI reference `repo:tag` as `lvh kernels pull` takes it.
    Pull(String),
}

/// Where a root image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    Path(PathBuf),
    /// An OCI reference as `lvh run --image` takes it (`REF#NAME` picks one image).
    Pull(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    pub name: String,
    pub source: KernelSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub source: ImageSource,
}

/// One test: a command run in the guest, in a fresh VM per kernel and image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSpec {
    pub name: String,
    /// The guest argv (a string command becomes `sh -c STRING`).
    pub argv: Vec<String>,
    pub timeout: Option<Duration>,
    pub host_mount: Option<PathBuf>,
    pub cwd: Option<String>,
    pub cpus: u32,
    pub memory: MemSize,
    /// In file order (a JSON object's order is kept by sorting on nothing: BTreeMap).
    pub env: BTreeMap<String, String>,
}

/// Combinations not to run: a missing field matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Skip {
    pub kernel: Option<String>,
    pub image: Option<String>,
    pub test: Option<String>,
    pub reason: Option<String>,
}

/// A validated matrix file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    pub file: PathBuf,
    pub kernels: Vec<KernelSpec>,
    pub images: Vec<ImageSpec>,
    pub tests: Vec<TestSpec>,
    pub skip: Vec<Skip>,
}

/// Parses a duration: a number of seconds (`30`, `"30"`, `1.5`) or a string
/// of number-unit pairs with units `ms`, `s`, `m`, `h` (`"90s"`, `"5m"`, `"1h30m"`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return (v.is_finite() && v > 0.0).then(|| Duration::from_secs_f64(v));
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * mult;
    }
    (total.is_finite() && total > 0.0).then(|| Duration::from_secs_f64(total))
}

/// Reads and validates `file`. `exists` answers whether a local path is a
/// file (`true`) for kernels and images; host mounts are checked with `is_dir`.
/// Returns the matrix and the unknown-key warnings (`file:line:col: unknown key "k"`).
pub fn load(file: &Path) -> Result<(Matrix, Vec<String>), InvalidInput> {
    let text = std::fs::read_to_string(file).map_err(|e| InvalidInput {
        file: Some(file.to_path_buf()),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no such test file (lvh test reads {DEFAULT_FILE} in the current directory, or -f FILE)"
            )
        } else {
            format!("cannot read: {e}")
        },
        ..Default::default()
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    parse(&text, file, base, &|p: &Path| p.is_file(), &|p: &Path| {
        p.is_dir()
    })
}

/// The checks a validator needs from the file system, passed in so tests can fake them.
type Probe<'a> = &'a dyn Fn(&Path) -> bool;

/// One located error.
struct At<'a> {
    file: &'a Path,
    pos: &'a Positions,
}

impl At<'_> {
    fn err(&self, path: &str, value: Option<String>, reason: impl Into<String>) -> InvalidInput {
        let p = self.pos.get(path);
        InvalidInput {
            file: Some(PathBuf::from(format!(
                "{}:{}:{}",
                self.file.display(),
                p.line,
                p.col
            ))),
            field: path.to_string(),
            value,
            reason: reason.into(),
        }
    }
}

/// Parses and validates the text of a matrix file. Relative paths are taken
/// relative to `base` (the file's directory).
pub fn parse(
    text: &str,
    file: &Path,
    base: &Path,
    is_file: Probe,
    is_dir: Probe,
) -> Result<(Matrix, Vec<String>), InvalidInput> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| InvalidInput {
        file: Some(PathBuf::from(format!(
            "{}:{}:{}",
            file.display(),
            e.line(),
            e.column()
        ))),
        reason: format!("invalid JSON: {e}"),
        ..Default::default()
    })?;
    let pos = Positions::scan(text);
    let at = At { file, pos: &pos };
    if !v.is_object() {
        return Err(at.err(
            "",
            None,
            "expected a JSON object with \"kernels\", \"images\" and \"tests\"",
        ));
    }
    let mut unknown = strip_unknown(&mut v, "", TOP_KEYS);
    for (key, known) in [
        ("kernels", KERNEL_KEYS),
        ("images", IMAGE_KEYS),
        ("tests", TEST_KEYS),
        ("skip", SKIP_KEYS),
    ] {
        if let Some(Value::Array(items)) = v.get_mut(key) {
            for (i, item) in items.iter_mut().enumerate() {
                unknown.extend(strip_unknown(item, &format!("{key}[{i}]"), known));
            }
        }
    }
    let mut warnings: Vec<_> = unknown
        .iter()
        .map(|u| (pos.get(&u.path), u.key.clone()))
        .collect();
    warnings.sort_by_key(|(p, _)| (p.line, p.col));
    let warnings = warnings
        .into_iter()
        .map(|(p, k)| format!("{}:{}:{}: unknown key {k:?}", file.display(), p.line, p.col))
        .collect();

    let kernels = array(&v, "kernels", &at)?
        .iter()
        .enumerate()
        .map(|(i, k)| kernel(k, &format!("kernels[{i}]"), base, is_file, &at))
        .collect::<Result<Vec<_>, _>>()?;
    let images = array(&v, "images", &at)?
        .iter()
        .enumerate()
        .map(|(i, k)| image(k, &format!("images[{i}]"), base, is_file, &at))
        .collect::<Result<Vec<_>, _>>()?;
    let tests = array(&v, "tests", &at)?
        .iter()
        .enumerate()
        .map(|(i, t)| test(t, &format!("tests[{i}]"), base, is_dir, &at))
        .collect::<Result<Vec<_>, _>>()?;
    for (what, names) in [
        (
            "kernels",
            kernels.iter().map(|k| &k.name).collect::<Vec<_>>(),
        ),
        ("images", images.iter().map(|k| &k.name).collect()),
        ("tests", tests.iter().map(|k| &k.name).collect()),
    ] {
        if names.is_empty() {
            return Err(at.err(
                what,
                None,
                format!("the matrix is empty: \"{what}\" needs at least one entry"),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|m| m == n) {
                let first = pos.get(&format!("{what}[{j}]"));
                return Err(at.err(
                    &format!("{what}[{i}].name"),
                    Some((*n).clone()),
                    format!(
                        "duplicate name (first used at line {}); names must be unique",
                        first.line
                    ),
                ));
            }
        }
    }
    let skip = array(&v, "skip", &at)?
        .iter()
        .enumerate()
        .map(|(i, s)| skip_entry(s, &format!("skip[{i}]"), &kernels, &images, &tests, &at))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        Matrix {
            file: file.to_path_buf(),
            kernels,
            images,
            tests,
            skip,
        },
        warnings,
    ))
}

fn array<'v>(v: &'v Value, key: &str, at: &At) -> Result<&'v [Value], InvalidInput> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(at.err(key, Some(other.to_string()), "expected an array")),
    }
}

fn string(v: &Value, path: &str, at: &At) -> Result<Option<String>, InvalidInput> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => {
            Err(at.err(path, Some(s.clone()), "must not be empty"))
        }
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(at.err(path, Some(other.to_string()), "expected a string")),
    }
}

fn field(obj: &Value, path: &str, key: &str, at: &At) -> Result<Option<String>, InvalidInput> {
    string(
        obj.get(key).unwrap_or(&Value::Null),
        &format!("{path}.{key}"),
        at,
    )
}

fn object<'v>(v: &'v Value, path: &str, at: &At) -> Result<&'v Value, InvalidInput> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(at.err(path, Some(v.to_string()), "expected an object"))
    }
}

/// Exactly one of `keys` must be set; returns which and its value.
fn one_of(
    obj: &Value,
    path: &str,
    keys: &[&'static str],
    at: &At,
) -> Result<(&'static str, String), InvalidInput> {
    let mut found = Vec::new();
    for k in keys {
        if let Some(s) = field(obj, path, k, at)? {
            found.push((*k, s));
        }
    }
    if found.len() != 1 {
        return Err(at.err(
            path,
            None,
            format!("needs exactly one of {}", keys.join(", ")),
        ));
    }
    Ok(found.remove(0))
}

/// Names form a combination's id `kernel/image/test`, so none may hold a '/'.
fn check_name(name: &str, path: &str, at: &At) -> Result<(), InvalidInput> {
    if name.contains('/') || name.trim().is_empty() {
        return Err(at.err(
            &format!("{path}.name"),
            Some(name.to_string()),
            "a name must be non-empty and without '/' (it separates kernel, image and test in a combination's id); set \"name\"",
        ));
    }
    Ok(())
}

fn local(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn kernel(
    v: &Value,
    path: &str,
    base: &Path,
    is_file: Probe,
    at: &At,
) -> Result<KernelSpec, InvalidInput> {
    let obj = object(v, path, at)?;
    let (key, val) = one_of(obj, path, &["path", "kernel", "pull"], at)?;
    let source = match key {
        "path" => {
            let p = local(base, &val);
            if !is_file(&p) {
                return Err(at.err(
                    &format!("{path}.path"),
                    Some(val),
                    format!("no such kernel file {}", p.display()),
                ));
            }
            KernelSource::Path(p)
        }
        "kernel" => KernelSource::Built(val.clone()),
        _ => {
            if crate::oci::reference::parse_reference(&val).is_err() || !val.contains(':') {
                return Err(at.err(
                    &format!("{path}.pull"),
                    Some(val),
                    "expected an OCI reference REPO:TAG, e.g. quay.io/lvh-images/kernel-images:6.6-main",
                ));
            }
            KernelSource::Pull(val.clone())
        }
    };
    let name = match field(obj, path, "name", at)? {
        Some(n) => n,
        None => match &source {
            KernelSource::Path(_) => val,
            KernelSource::Built(n) => n.clone(),
            KernelSource::Pull(r) => r.rsplit(':').next().unwrap_or(r).to_string(),
        },
    };
    check_name(&name, path, at)?;
    Ok(KernelSpec { name, source })
}

fn image(
    v: &Value,
    path: &str,
    base: &Path,
    is_file: Probe,
    at: &At,
) -> Result<ImageSpec, InvalidInput> {
    let obj = object(v, path, at)?;
    let (key, val) = one_of(obj, path, &["path", "pull"], at)?;
    let source = if key == "path" {
        let p = local(base, &val);
        if !is_file(&p) {
            return Err(at.err(
                &format!("{path}.path"),
                Some(val),
                format!("no such image file {}", p.display()),
            ));
        }
        ImageSource::Path(p)
    } else {
        if !matches!(
            crate::oci::ImageSource::parse(&val, |_| false),
            Ok(crate::oci::ImageSource::Reference { .. })
        ) {
            return Err(at.err(
                &format!("{path}.pull"),
                Some(val),
                "expected an OCI reference, e.g. quay.io/lvh-images/root-images:main",
            ));
        }
        ImageSource::Pull(val.clone())
    };
    let name = match field(obj, path, "name", at)? {
        Some(n) => n,
        None => Path::new(&val)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(val),
    };
    check_name(&name, path, at)?;
    Ok(ImageSpec { name, source })
}

fn test(
    v: &Value,
    path: &str,
    base: &Path,
    is_dir: Probe,
    at: &At,
) -> Result<TestSpec, InvalidInput> {
    let obj = object(v, path, at)?;
    let name = field(obj, path, "name", at)?
        .ok_or_else(|| at.err(path, None, "a test needs a \"name\""))?;
    check_name(&name, path, at)?;
    let cpath = format!("{path}.command");
    let argv = match obj.get("command") {
        None | Some(Value::Null) => {
            return Err(at.err(path, None, format!("test {name:?} needs a \"command\"")))
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            vec!["sh".into(), "-c".into(), s.clone()]
        }
        Some(Value::Array(a))
            if !a.is_empty()
                && a.iter().all(|x| x.is_string())
                && !a[0].as_str().unwrap_or("").is_empty() =>
        {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        }
        Some(other) => {
            return Err(at.err(
                &cpath,
                Some(other.to_string()),
                "expected a shell command string or a non-empty array of strings (argv)",
            ))
        }
    };
    let tpath = format!("{path}.timeout");
    let timeout = match obj.get("timeout") {
        None | Some(Value::Null) => None,
        Some(t) => {
            let s = match t {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            Some(parse_duration(&s).ok_or_else(|| {
                at.err(
                    &tpath,
                    Some(s),
                    "not a duration: expected seconds (30) or a number with a unit (\"30s\", \"5m\", \"1h30m\")",
                )
            })?)
        }
    };
    let host_mount = match field(obj, path, "host_mount", at)? {
        None => None,
        Some(h) => {
            let p = local(base, &h);
            if !is_dir(&p) {
                return Err(at.err(
                    &format!("{path}.host_mount"),
                    Some(h),
                    format!("{} is not a directory", p.display()),
                ));
            }
            Some(p)
        }
    };
    let cwd = field(obj, path, "cwd", at)?;
    let cpus = match obj.get("cpus") {
        None | Some(Value::Null) => DEFAULT_CPUS,
        Some(c) => c
            .as_u64()
            .filter(|&c| (1..=512).contains(&c))
            .map(|c| c as u32)
            .ok_or_else(|| {
                at.err(
                    &format!("{path}.cpus"),
                    Some(c.to_string()),
                    "expected a whole number from 1 to 512",
                )
            })?,
    };
    let memory = match obj.get("memory") {
        None | Some(Value::Null) => DEFAULT_MEMORY.parse().expect("default parses"),
        Some(m) => {
            let s = m.as_str().map(str::to_string).unwrap_or(m.to_string());
            s.parse::<MemSize>().map_err(|_| {
                at.err(
                    &format!("{path}.memory"),
                    Some(s),
                    "expected a size such as 512M or 2G",
                )
            })?
        }
    };
    let mut env = BTreeMap::new();
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                let kp = format!("{path}.env.{}", k.to_ascii_lowercase());
                let ok_key = !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok_key {
                    return Err(at.err(&kp, Some(k.clone()), "not a valid variable name"));
                }
                let s = match val {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(at.err(&kp, Some(other.to_string()), "expected a string")),
                };
                env.insert(k.clone(), s);
            }
        }
        Some(other) => {
            return Err(at.err(
                &format!("{path}.env"),
                Some(other.to_string()),
                "expected an object of NAME: value",
            ))
        }
    }
    Ok(TestSpec {
        name,
        argv,
        timeout,
        host_mount,
        cwd,
        cpus,
        memory,
        env,
    })
}

fn skip_entry(
    v: &Value,
    path: &str,
    kernels: &[KernelSpec],
    images: &[ImageSpec],
    tests: &[TestSpec],
    at: &At,
) -> Result<Skip, InvalidInput> {
    let obj = object(v, path, at)?;
    let check = |key: &str, names: Vec<&String>| -> Result<Option<String>, InvalidInput> {
        let val = field(obj, path, key, at)?;
        if let Some(n) = &val {
            if !names.contains(&n) {
                return Err(at.err(
                    &format!("{path}.{key}"),
                    Some(n.clone()),
                    format!("no {key} of that name in the matrix"),
                ));
            }
        }
        Ok(val)
    };
    let s = Skip {
        kernel: check("kernel", kernels.iter().map(|k| &k.name).collect())?,
        image: check("image", images.iter().map(|k| &k.name).collect())?,
        test: check("test", tests.iter().map(|k| &k.name).collect())?,
        reason: field(obj, path, "reason", at)?,
    };
    if s.kernel.is_none() && s.image.is_none() && s.test.is_none() {
        return Err(at.err(
            path,
            None,
            "a skip needs at least one of kernel, image, test",
        ));
    }
    Ok(s)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
