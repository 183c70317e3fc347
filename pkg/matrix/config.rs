//! `lvh-tests.json`: the test matrix file. Its text is parsed into plain wire
//! values, unknown keys are stripped and reported with line and column (as
//! images.json and kernels.json do), and [`parse`] turns the rest into a
//! [`Matrix`] whose every value is checked, with errors that name the file,
//! line, column, field and value. Nothing here touches the disk except the
//! existence checks of local kernel, image and host-mount paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::wire::{array, field, object, one_of, string, At};
use crate::error::InvalidInput;
use crate::jsonpos::{strip_unknown, Positions};
use crate::runner::{
    Key, MemSize, CPUS, CWD, DEFAULT_CPUS, DEFAULT_MEM, HOST_MOUNT, MEMORY, TIMEOUT,
};

/// The file `lvh test` reads when `-f` is not given.
pub const DEFAULT_FILE: &str = "lvh-tests.json";

const TOP_KEYS: &[&str] = &["kernels", "images", "tests", "skip"];
const KERNEL_KEYS: &[&str] = &["name", "path", "kernel", "pull"];
const IMAGE_KEYS: &[&str] = &["name", "path", "pull"];
/// A test's keys: its own, and those it shares with `lvh run`'s flags
/// (the runner's `KEYS`, each with the flag's spelling as an alias).
const TEST_KEYS: &[&str] = &[
    "name",
    "command",
    "env",
    "timeout",
    "host_mount",
    "host-mount",
    "cwd",
    "cpus",
    "cpu",
    "memory",
    "mem",
    "kmemleak",
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
    /// Scan for kernel memory leaks after the command (`lvh run --kmemleak`).
    pub kmemleak: bool,
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
    let timeout = match shared(obj, path, &TIMEOUT, at)? {
        None => None,
        Some((p, t)) => {
            let s = match t {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            Some(crate::runner::duration(&p, &s).map_err(|e| at.err(&p, Some(s), e.reason))?)
        }
    };
    let host_mount = match shared(obj, path, &HOST_MOUNT, at)? {
        None => None,
        Some((p, v)) => {
            let h = string(v, &p, at)?.unwrap_or_default();
            let dir = local(base, &h);
            if !is_dir(&dir) {
                return Err(at.err(&p, Some(h), format!("{} is not a directory", dir.display())));
            }
            Some(dir)
        }
    };
    let cwd = match shared(obj, path, &CWD, at)? {
        None => None,
        Some((p, v)) => string(v, &p, at)?,
    };
    let cpus = match shared(obj, path, &CPUS, at)? {
        None => DEFAULT_CPUS,
        Some((p, c)) => c
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| at.err(&p, Some(c.to_string()), "expected a whole number of CPUs"))?,
    };
    let memory = match shared(obj, path, &MEMORY, at)? {
        None => DEFAULT_MEM.parse().expect("the default parses"),
        Some((p, m)) => {
            let s = m.as_str().map(str::to_string).unwrap_or(m.to_string());
            s.parse::<MemSize>()
                .map_err(|e| at.err(&p, Some(s), e.reason))?
        }
    };
    let kmemleak = match obj.get("kmemleak") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(at.err(
                &format!("{path}.kmemleak"),
                Some(other.to_string()),
                "expected true or false",
            ))
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
        kmemleak,
    })
}

/// A shared key of a test under its name or its alias (not both): the
/// path it was found at and its value; `None` when absent or null.
fn shared<'v>(
    obj: &'v Value,
    path: &str,
    key: &Key,
    at: &At,
) -> Result<Option<(String, &'v Value)>, InvalidInput> {
    let mut found = std::iter::once(key.file)
        .chain(key.file_aliases.iter().copied())
        .filter_map(|k| match obj.get(k) {
            None | Some(Value::Null) => None,
            Some(v) => Some((format!("{path}.{k}"), v)),
        });
    let first = found.next();
    if let Some((second, _)) = found.next() {
        return Err(at.err(
            &second,
            None,
            format!(
                "{} and {second} are the same setting: give one",
                first.as_ref().map(|(p, _)| p.as_str()).unwrap_or("")
            ),
        ));
    }
    Ok(first)
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
