//! Parsing and validating `images.json` ([`parse`]): each entry's JSON value
//! becomes an [`ImageConf`], keys matched case-insensitively as Go's decoder
//! does, each error naming the file, line and column and the field's path
//! (`[0].actions[1].op.cmd`).

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::actions::{Action, Op, ACTION_TYPES};
use super::config::{parse_size, ConfigError, ImageConf, VARIANTS};
use crate::jsonpos::{strip_unknown, Pos, Positions, UnknownKey};

/// Parses and validates the text of an images.json (everything that does not
/// need the filesystem: see `config::check_inputs` for that). `file` names it in errors.
/// Keys Go's decoder would ignore are dropped (see [`parse_with_warnings`]).
pub fn parse(file: &Path, text: &str) -> Result<Vec<ImageConf>, ConfigError> {
    parse_with_warnings(file, text).map(|(confs, _)| confs)
}

/// Drops the keys little-vm-helper ignores (in image entries, actions and ops)
/// and returns where they were.
fn strip_unknown_keys(value: &mut Value) -> Vec<UnknownKey> {
    let mut out = Vec::new();
    let Value::Array(entries) = value else {
        return out;
    };
    for (i, entry) in entries.iter_mut().enumerate() {
        let path = format!("[{i}]");
        out.extend(strip_unknown(entry, &path, IMAGE_KEYS));
        let Some(Value::Array(actions)) = entry
            .as_object_mut()
            .and_then(|m| {
                m.iter_mut()
                    .find(|(k, _)| k.eq_ignore_ascii_case("actions"))
            })
            .map(|(_, v)| v)
        else {
            continue;
        };
        for (j, act) in actions.iter_mut().enumerate() {
            let apath = format!("{path}.actions[{j}]");
            out.extend(strip_unknown(act, &apath, &["comment", "op", "type"]));
            let Some(m) = act.as_object_mut() else {
                continue;
            };
            let ty = m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("type"))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string);
            let Some((_, keys)) = ACTION_TYPES.iter().find(|(t, _)| Some(*t) == ty.as_deref())
            else {
                continue;
            };
            if let Some((_, op)) = m.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("op")) {
                out.extend(strip_unknown(op, &format!("{apath}.op"), keys));
            }
        }
    }
    out
}

/// Parses and validates like `parse`, and returns, besides the images, one
/// warning per key lvh ignores as Go does (file, line and key), in file order.
pub fn parse_with_warnings(
    file: &Path,
    text: &str,
) -> Result<(Vec<ImageConf>, Vec<ConfigError>), ConfigError> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| ConfigError {
        file: file.to_owned(),
        pos: Pos {
            line: e.line(),
            col: e.column(),
        },
        msg: format!("invalid JSON: {e}"),
    })?;
    let positions = Positions::scan(text);
    let mut warnings: Vec<ConfigError> = strip_unknown_keys(&mut value)
        .into_iter()
        .map(|u| ConfigError {
            file: file.to_owned(),
            pos: positions.get(&u.path),
            msg: format!("unknown key {:?}", u.key),
        })
        .collect();
    warnings.sort_by_key(|w| (w.pos.line, w.pos.col));
    let err = |path: &str, msg: String| ConfigError {
        file: file.to_owned(),
        pos: positions.get(path),
        msg,
    };
    let Value::Array(entries) = value else {
        return Err(err(
            "",
            "expected a JSON array of images ([{\"name\": ...}, ...])".into(),
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let conf = parse_entry(&format!("[{i}]"), entry, &err, &positions)?;
        if !seen.insert(conf.name.clone()) {
            return Err(err(
                &format!("[{i}].name"),
                format!("duplicate image name {:?}", conf.name),
            ));
        }
        out.push(conf);
    }
    Ok((out, warnings))
}

pub(super) type ErrFn<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

/// Looks keys up case-insensitively and rejects unknown or repeated ones.
fn fields<'v>(
    path: &str,
    obj: &'v Value,
    allowed: &[&str],
    what: &str,
    err: &ErrFn,
) -> Result<Vec<(String, &'v Value)>, ConfigError> {
    let Value::Object(map) = obj else {
        return Err(err(path, format!("{what} must be a JSON object")));
    };
    let mut out: Vec<(String, &Value)> = Vec::new();
    for (k, v) in map {
        let lk = k.to_ascii_lowercase();
        let Some(canon) = allowed.iter().find(|a| a.to_ascii_lowercase() == lk) else {
            return Err(err(
                &format!("{path}.{lk}"),
                format!(
                    "unknown key {k:?} in {what} (known: {})",
                    allowed.join(", ")
                ),
            ));
        };
        if out.iter().any(|(c, _)| c == canon) {
            return Err(err(
                &format!("{path}.{lk}"),
                format!("key {k:?} given twice in {what} (keys are case-insensitive)"),
            ));
        }
        out.push((canon.to_string(), v));
    }
    Ok(out)
}

fn get<'v>(fs: &[(String, &'v Value)], key: &str) -> Option<&'v Value> {
    fs.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_null())
}

fn string_field(
    fs: &[(String, &Value)],
    path: &str,
    key: &str,
    what: &str,
    err: &ErrFn,
) -> Result<Option<String>, ConfigError> {
    match get(fs, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(err(
            &format!("{path}.{}", key.to_ascii_lowercase()),
            format!("{what}: {key} must be a string, not {v}"),
        )),
    }
}

/// The largest `image_size`: ext4's largest file with 4 KiB blocks, where a
/// raw image has to live (and far more than a test VM's root needs).
pub const MAX_IMAGE_SIZE: u64 = 16 << 40;

pub(super) const IMAGE_KEYS: &[&str] = &[
    "name",
    "parent",
    "image_size",
    "bootable",
    "packages",
    "actions",
    "suite",
    "mirror",
    "variant",
    "flatten",
];

/// One image entry's keys, with what errors need to name it.
struct Entry<'v, 'e> {
    fs: Vec<(String, &'v Value)>,
    path: &'e str,
    what: String,
    err: &'e ErrFn<'e>,
}

impl Entry<'_, '_> {
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        string_field(&self.fs, self.path, key, &self.what, self.err)
    }

    /// A string key where `""` means unset, as in Go.
    fn nonempty(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.string(key)?.filter(|s| !s.is_empty()))
    }

    fn error(&self, key: &str, message: String) -> ConfigError {
        (self.err)(&format!("{}.{key}", self.path), message)
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match get(&self.fs, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.error(
                key,
                format!("{}: {key} must be true or false, not {v}", self.what),
            )),
        }
    }

    /// `image_size` as written and in bytes.
    fn image_size(&self) -> Result<Option<(String, u64)>, ConfigError> {
        let Some(s) = self.nonempty("image_size")? else {
            return Ok(None);
        };
        let bytes = parse_size(&s).ok_or_else(|| {
            self.error(
                "image_size",
                format!(
                    "{}: invalid image_size {s:?} (examples: \"8G\", \"512M\")",
                    self.what
                ),
            )
        })?;
        if bytes > MAX_IMAGE_SIZE {
            return Err(self.error(
                "image_size",
                format!(
                    "{}: image_size {s:?} is {bytes} bytes, more than the 16T an image may have",
                    self.what
                ),
            ));
        }
        Ok(Some((s, bytes)))
    }

    fn packages(&self) -> Result<Vec<String>, ConfigError> {
        match get(&self.fs, "packages") {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(j, p)| match p {
                    Value::String(s) if valid_package(s) => Ok(s.clone()),
                    _ => Err(self.error(
                        &format!("packages[{j}]"),
                        format!("{}: invalid package name {p}", self.what),
                    )),
                })
                .collect(),
            Some(v) => Err(self.error(
                "packages",
                format!("{}: packages must be an array of names, not {v}", self.what),
            )),
        }
    }

    fn actions(&self) -> Result<Vec<Action>, ConfigError> {
        match get(&self.fs, "actions") {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(j, act)| {
                    let path = format!("{}.actions[{j}]", self.path);
                    parse_action(&path, act, &self.what, self.err)
                })
                .collect(),
            Some(v) => Err(self.error(
                "actions",
                format!("{}: actions must be an array, not {v}", self.what),
            )),
        }
    }

    fn variant(&self) -> Result<Option<String>, ConfigError> {
        let variant = self.nonempty("variant")?;
        if let Some(v) = &variant {
            if !VARIANTS.contains(&v.as_str()) {
                return Err(self.error(
                    "variant",
                    format!(
                        "{}: unknown variant {v:?} (known: {})",
                        self.what,
                        VARIANTS.join(", ")
                    ),
                ));
            }
        }
        Ok(variant)
    }

    /// Rejects the keys that only a root image (one without a parent) may set.
    fn check_root_only(&self, set: [(&str, bool); 3]) -> Result<(), ConfigError> {
        match set.into_iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(self.error(
                key,
                format!(
                    "{}: {key} applies to root images only, and this one has a parent",
                    self.what
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The image's name, which every later error names.
fn entry_name(fs: &[(String, &Value)], path: &str, err: &ErrFn) -> Result<String, ConfigError> {
    let name = string_field(fs, path, "name", "image", err)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err(path, "image entry has no \"name\"".into()))?;
    validate_name(&name).map_err(|m| err(&format!("{path}.name"), m))?;
    Ok(name)
}

pub(super) fn parse_entry(
    path: &str,
    entry: &Value,
    err: &ErrFn,
    positions: &Positions,
) -> Result<ImageConf, ConfigError> {
    let fs = fields(path, entry, IMAGE_KEYS, "an image entry", err)?;
    let name = entry_name(&fs, path, err)?;
    let e = Entry {
        fs,
        path,
        what: format!("image {name:?}"),
        err,
    };
    let parent = e.nonempty("parent")?;
    if let Some(p) = &parent {
        validate_name(p).map_err(|m| e.error("parent", format!("{}: {m}", e.what)))?;
    }
    let image_size = e.image_size()?;
    let bootable = e.bool("bootable")?;
    let flatten = e.bool("flatten")?;
    let packages = e.packages()?;
    let actions = e.actions()?;
    let suite = e.nonempty("suite")?;
    let mirror = e.nonempty("mirror")?;
    let variant = e.variant()?;
    if parent.is_some() {
        e.check_root_only([
            ("suite", suite.is_some()),
            ("mirror", mirror.is_some()),
            ("variant", variant.is_some()),
        ])?;
    }
    Ok(ImageConf {
        name,
        parent,
        image_size,
        bootable,
        packages,
        actions,
        suite,
        mirror,
        variant,
        flatten,
        pos: positions.get(path),
    })
}

fn parse_action(path: &str, act: &Value, what: &str, err: &ErrFn) -> Result<Action, ConfigError> {
    let fs = fields(path, act, &["comment", "op", "type"], "an action", err)?;
    let comment = string_field(&fs, path, "comment", what, err)?.unwrap_or_default();
    let ty = string_field(&fs, path, "type", what, err)?
        .ok_or_else(|| err(path, format!("{what}: action has no \"type\"")))?;
    let Some((_, keys)) = ACTION_TYPES.iter().find(|(t, _)| *t == ty) else {
        let known: Vec<&str> = ACTION_TYPES.iter().map(|(t, _)| *t).collect();
        return Err(err(
            &format!("{path}.type"),
            format!(
                "{what}: unknown action type {ty:?} (known: {})",
                known.join(", ")
            ),
        ));
    };
    let op_path = format!("{path}.op");
    let op_val =
        get(&fs, "op").ok_or_else(|| err(path, format!("{what}: {ty} action has no \"op\"")))?;
    let op_fs = fields(&op_path, op_val, keys, &format!("a {ty} op"), err)?;
    let mut missing = None;
    let mut bad = None;
    let op = Op::from_fields(&ty, &mut |key| match get(&op_fs, key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            missing.get_or_insert(key.to_string());
            String::new()
        }
        Some(v) => {
            bad.get_or_insert((key.to_string(), v.to_string()));
            String::new()
        }
    })
    .expect("type checked above");
    if let Some((key, v)) = bad {
        return Err(err(
            &format!("{op_path}.{}", key.to_ascii_lowercase()),
            format!("{what}: {ty} op field {key} must be a string, not {v}"),
        ));
    }
    if let Some(key) = missing {
        return Err(err(
            &op_path,
            format!("{what}: {ty} op is missing field {key:?}"),
        ));
    }
    let op = op.map_err(|(key, msg)| {
        err(
            &format!("{op_path}.{}", key.to_ascii_lowercase()),
            format!("{what}: {ty} {key} {msg}"),
        )
    })?;
    Ok(Action { comment, op })
}

/// Image names become file names under `D/images`.
fn validate_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." || name.contains('/') || name.starts_with('.') {
        return Err(format!(
            "invalid image name {name:?}: it must be a plain file name (no '/', not starting with '.')"
        ));
    }
    // NUL cannot be in a path; a newline or escape would forge lines in
    // summaries, logs and the dry-run plan.
    if name.chars().any(char::is_control) {
        return Err(format!(
            "invalid image name {name:?}: it must not contain control characters (NUL, newline, escape)"
        ));
    }
    Ok(())
}

fn valid_package(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.:=_~/".contains(c))
}
