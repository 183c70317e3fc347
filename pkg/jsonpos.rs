//! Source positions (line, column) of every value in a JSON document, keyed by
//! path (`[0].actions[1].op.cmd`), so validation errors can point at the field;
//! and [`strip_unknown`], which drops the keys Go's decoder would ignore and
//! says where they were. Shared by images.json and kernels.json.
//!
//! serde_json reports positions only for syntax errors; the semantic checks run
//! on parsed values, so this small scanner walks the (already valid) text once.

use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions by path. Object keys are lowercased in paths, because lvh matches
/// keys case-insensitively as Go's decoder does.
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, Pos>);

impl Positions {
    /// Scans `text`, which must be syntactically valid JSON.
    pub fn scan(text: &str) -> Positions {
        let mut s = Scanner {
            b: text.as_bytes(),
            i: 0,
            line: 1,
            col: 1,
            out: HashMap::new(),
        };
        s.ws();
        s.value(String::new());
        Positions(s.out)
    }

    /// The position of the value at `path`, or of its closest recorded ancestor.
    pub fn get(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.0.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.0.get("").copied().unwrap_or(Pos { line: 1, col: 1 }),
            }
        }
    }
}

/// A key a config file has that lvh (like Go's decoder) ignores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as written.
    pub key: String,
    /// Its path, for [`Positions::get`].
    pub path: String,
}

/// Removes from the object `obj` (at `path`) the keys not in `known`, compared
/// case-insensitively as Go's `encoding/json` does, and returns them in file
/// order. A non-object is left alone (type errors are the parser's business).
pub fn strip_unknown(obj: &mut serde_json::Value, path: &str, known: &[&str]) -> Vec<UnknownKey> {
    let Some(map) = obj.as_object_mut() else {
        return Vec::new();
    };
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
        .cloned()
        .collect();
    unknown
        .into_iter()
        .map(|key| {
            map.remove(&key);
            let lk = key.to_ascii_lowercase();
            UnknownKey {
                path: if path.is_empty() {
                    lk
                } else {
                    format!("{path}.{lk}")
                },
                key,
            }
        })
        .collect()
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    col: usize,
    out: HashMap<String, Pos>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) {
        if let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            if c == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if c & 0xC0 != 0x80 {
                // count characters, not UTF-8 continuation bytes
                self.col += 1;
            }
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn string(&mut self) -> String {
        let mut out = Vec::new();
        self.bump(); // opening quote
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.bump();
                    break;
                }
                b'\\' => {
                    self.bump();
                    if let Some(e) = self.peek() {
                        out.push(e);
                        self.bump();
                    }
                }
                _ => {
                    out.push(c);
                    self.bump();
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn value(&mut self, path: String) {
        self.out.insert(
            path.clone(),
            Pos {
                line: self.line,
                col: self.col,
            },
        );
        match self.peek() {
            Some(b'{') => {
                self.bump();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'}') | None => {
                            self.bump();
                            return;
                        }
                        Some(b',') => self.bump(),
                        Some(b'"') => {
                            let key = self.string().to_ascii_lowercase();
                            self.ws();
                            if self.peek() == Some(b':') {
                                self.bump();
                            }
                            self.ws();
                            let sub = if path.is_empty() {
                                key
                            } else {
                                format!("{path}.{key}")
                            };
                            self.value(sub);
                        }
                        Some(_) => self.bump(),
                    }
                }
            }
            Some(b'[') => {
                self.bump();
                let mut idx = 0;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') | None => {
                            self.bump();
                            return;
                        }
                        Some(b',') => self.bump(),
                        Some(_) => {
                            self.value(format!("{path}[{idx}]"));
                            idx += 1;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            _ => {
                while matches!(self.peek(), Some(c) if !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.bump();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_values() {
        let text = "[\n  {\"name\": \"a\",\n   \"Actions\": [ {\"op\": {\"Cmd\": \"x\\\"y\"}} ]},\n  {\"name\": \"é\", \"parent\": \"a\"}\n]";
        let p = Positions::scan(text);
        assert_eq!(p.get("[0]"), Pos { line: 2, col: 3 });
        assert_eq!(p.get("[0].name"), Pos { line: 2, col: 12 });
        assert_eq!(p.get("[0].actions[0].op.cmd"), Pos { line: 3, col: 32 });
        assert_eq!(p.get("[1].parent"), Pos { line: 4, col: 27 });
        // unknown paths fall back to the closest ancestor
        assert_eq!(p.get("[1].packages[3]"), Pos { line: 4, col: 3 });
        assert_eq!(p.get("[9]"), Pos { line: 1, col: 1 });
    }
}
