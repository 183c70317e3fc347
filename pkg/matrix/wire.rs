//! Reading a JSON matrix file's values with their place: each error names
//! the file, line and column ([`At`]), the field's path and the value.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::InvalidInput;
use crate::jsonpos::Positions;

/// One located error.
pub(super) struct At<'a> {
    pub(super) file: &'a Path,
    pub(super) pos: &'a Positions,
}

impl At<'_> {
    pub(super) fn err(
        &self,
        path: &str,
        value: Option<String>,
        reason: impl Into<String>,
    ) -> InvalidInput {
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

pub(super) fn array<'v>(v: &'v Value, key: &str, at: &At) -> Result<&'v [Value], InvalidInput> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(at.err(key, Some(other.to_string()), "expected an array")),
    }
}

pub(super) fn string(v: &Value, path: &str, at: &At) -> Result<Option<String>, InvalidInput> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => {
            Err(at.err(path, Some(s.clone()), "must not be empty"))
        }
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(at.err(path, Some(other.to_string()), "expected a string")),
    }
}

pub(super) fn field(
    obj: &Value,
    path: &str,
    key: &str,
    at: &At,
) -> Result<Option<String>, InvalidInput> {
    string(
        obj.get(key).unwrap_or(&Value::Null),
        &format!("{path}.{key}"),
        at,
    )
}

pub(super) fn object<'v>(v: &'v Value, path: &str, at: &At) -> Result<&'v Value, InvalidInput> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(at.err(path, Some(v.to_string()), "expected an object"))
    }
}

/// Exactly one of `keys` must be set; returns which and its value.
pub(super) fn one_of(
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
