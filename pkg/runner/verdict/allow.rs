//! What `lvh run` does about kernel splats (`--splat fail|warn|off`) and the
//! allowlist of known ones (`--splat-allow FILE`): a JSON array of
//! `{"pattern": REGEX, "reason": TEXT, "expires": "YYYY-MM-DD"}`. Every entry
//! has a reason and an end date, so a tolerated splat cannot be forgotten: an
//! expired entry fails the run before the VM boots. Errors name the file, the
//! entry (1-based) and the value; unknown keys are warnings.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::splat::Splat;
pub use crate::date::Date;
use crate::error::InvalidInput;
use crate::runner::error::RunError;

/// `--splat`: what a splat that no allowlist entry matches does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplatMode {
    /// The run fails with exit code 245 (the default in command mode).
    #[default]
    Fail,
    /// The splat is reported on stderr; the command's exit code stands.
    Warn,
    /// Splats are not looked for.
    Off,
}

impl std::str::FromStr for SplatMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(SplatMode::Fail),
            "warn" => Ok(SplatMode::Warn),
            "off" => Ok(SplatMode::Off),
            _ => Err(format!(
                "invalid splat mode {s:?} (--splat): expected fail, warn or off"
            )),
        }
    }
}

/// One allowlist entry, checked.
#[derive(Clone, Debug)]
pub struct AllowEntry {
    /// 1-based position in the file, for messages.
    pub index: usize,
    pub pattern: Regex,
    pub reason: String,
    pub expires: Date,
}

impl AllowEntry {
    /// Whether the entry covers `splat`: its pattern is found in the splat's
    /// first line, its summary (`warning in lkdtm_WARNING`), its title
    /// (`WARNING in lkdtm_WARNING`, as `lvh triage` prints it) or its
    /// fingerprint.
    pub fn covers(&self, splat: &Splat) -> bool {
        [
            splat.first_line.as_str(),
            &splat.summary(),
            &splat.title,
            &splat.fingerprint,
        ]
        .iter()
        .any(|t| self.pattern.is_match(t))
    }
}

/// `--splat` and `--splat-allow` together.
#[derive(Clone, Debug, Default)]
pub struct SplatPolicy {
    pub mode: SplatMode,
    pub allow: Vec<AllowEntry>,
    pub allow_file: Option<PathBuf>,
}

impl SplatPolicy {
    /// The first entry that covers `splat`.
    pub fn allowed_by(&self, splat: &Splat) -> Option<&AllowEntry> {
        self.allow.iter().find(|e| e.covers(splat))
    }

    /// Reads and checks the allowlist `file` (if any) as of `today`; returns
    /// the policy and warnings about unknown keys.
    pub fn load(
        mode: SplatMode,
        file: Option<&Path>,
        today: Date,
    ) -> Result<(SplatPolicy, Vec<String>), RunError> {
        let Some(file) = file else {
            return Ok((
                SplatPolicy {
                    mode,
                    ..Default::default()
                },
                vec![],
            ));
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| RunError::io(format!("read splat allowlist {}", file.display()), e))?;
        let (allow, warnings) = parse_allowlist(&text, today).map_err(|reason| {
            RunError::Invalid(
                InvalidInput {
                    reason,
                    ..Default::default()
                }
                .in_file(file),
            )
        })?;
        let warnings = warnings
            .into_iter()
            .map(|w| format!("{}: {w}", file.display()))
            .collect();
        Ok((
            SplatPolicy {
                mode,
                allow,
                allow_file: Some(file.to_path_buf()),
            },
            warnings,
        ))
    }
}

const KNOWN_KEYS: &str = "pattern, reason, expires";

/// Parses an allowlist's text. Errors and warnings name the entry; the
/// caller prefixes the file name.
pub fn parse_allowlist(text: &str, today: Date) -> Result<(Vec<AllowEntry>, Vec<String>), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let serde_json::Value::Array(items) = v else {
        return Err(
            "expected a JSON array of {\"pattern\", \"reason\", \"expires\"} entries".into(),
        );
    };
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let serde_json::Value::Object(map) = item else {
            return Err(format!("entry {n}: expected an object with {KNOWN_KEYS}"));
        };
        for k in map.keys() {
            if !["pattern", "reason", "expires"].contains(&k.as_str()) {
                warnings.push(format!(
                    "entry {n}: unknown key {k:?} (known: {KNOWN_KEYS})"
                ));
            }
        }
        let field = |k: &str| -> Result<String, String> {
            match map.get(k) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(serde_json::Value::String(_)) => Err(format!("entry {n}: {k:?} is empty")),
                Some(other) => Err(format!("entry {n}: {k:?} must be a string, not {other}")),
                None => Err(format!(
                    "entry {n}: {k:?} is missing (each entry needs {KNOWN_KEYS})"
                )),
            }
        };
        let pattern = field("pattern")?;
        let reason = field("reason")?;
        let expires_s = field("expires")?;
        let pattern = Regex::new(&pattern)
            .map_err(|e| format!("entry {n}: invalid pattern {pattern:?}: {e}"))?;
        let expires = Date::parse(&expires_s).ok_or_else(|| {
            format!("entry {n}: invalid expires date {expires_s:?}: expected YYYY-MM-DD")
        })?;
        if expires < today {
            return Err(format!(
                "entry {n} ({:?}, reason: {reason}) expired on {expires} (today is {today}): fix the splat or renew the entry",
                pattern.as_str()
            ));
        }
        out.push(AllowEntry {
            index: n,
            pattern,
            reason,
            expires,
        });
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::super::splat::SplatKind;
    use super::*;
    use crate::triage::Kind;

    const TODAY: Date = Date {
        year: 2026,
        month: 11,
        day: 28,
    };

    fn warn(first: &str, function: Option<&str>) -> Splat {
        Splat {
            kind: SplatKind::Report(Kind::Warning),
            title: format!("WARNING in {}", function.unwrap_or("?")),
            fingerprint: format!("{:016x}", first.len()),
            function: function.map(String::from),
            first_line: first.into(),
            lines: vec![first.into()],
        }
    }

    #[test]
    fn entries_match_the_first_line_or_the_summary() {
        let (allow, warnings) = parse_allowlist(
            r#"[{"pattern": "warning in lkdtm_WARNING$", "reason": "provoked", "expires": "2026-11-28", "owner": "me"},
                {"pattern": "at drivers/net/", "reason": "known", "expires": "2027-01-31"}]"#,
            TODAY,
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec!["entry 1: unknown key \"owner\" (known: pattern, reason, expires)"]
        );
        let p = SplatPolicy {
            mode: SplatMode::Fail,
            allow,
            allow_file: None,
        };
        let a = warn(
            "WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:1 lkdtm_WARNING+0x1/0x2",
            Some("lkdtm_WARNING"),
        );
        assert_eq!(p.allowed_by(&a).map(|e| e.index), Some(1));
        let b = warn(
            "WARNING: CPU: 0 PID: 1 at drivers/net/x.c:1 f+0x1/0x2",
            Some("f"),
        );
        assert_eq!(p.allowed_by(&b).map(|e| e.index), Some(2));
        let c = warn(
            "WARNING: CPU: 0 PID: 1 at fs/x.c:1 lkdtm_WARNING_MESSAGE+0x1/0x2",
            Some("lkdtm_WARNING_MESSAGE"),
        );
        assert!(p.allowed_by(&c).is_none());
        // By title or fingerprint, as `lvh triage` prints them.
        let (allow, _) = parse_allowlist(
            r#"[{"pattern": "^WARNING in f$", "reason": "r", "expires": "2027-01-31"},
                {"pattern": "^0000000000000003$", "reason": "r", "expires": "2027-01-31"}]"#,
            TODAY,
        )
        .unwrap();
        let p = SplatPolicy { allow, ..p };
        assert_eq!(p.allowed_by(&b).map(|e| e.index), Some(1));
        assert_eq!(p.allowed_by(&warn("abc", None)).map(|e| e.index), Some(2));
        assert!(p.allowed_by(&c).is_none());
    }

    #[test]
    fn bad_entries_name_the_entry_and_value() {
        let cases = [
            ("{}", "expected a JSON array"),
            ("[1]", "entry 1: expected an object"),
            (
                r#"[{"pattern": "(", "reason": "r", "expires": "2027-01-31"}]"#,
                "entry 1: invalid pattern \"(\"",
            ),
            (
                r#"[{"pattern": "x", "reason": "r", "expires": "2027-01-31"}, {"pattern": "x", "reason": "r", "expires": "31/01/2027"}]"#,
                "entry 2: invalid expires date \"31/01/2027\"",
            ),
            (
                r#"[{"pattern": "x", "expires": "2027-01-31"}]"#,
                "entry 1: \"reason\" is missing",
            ),
            (
                r#"[{"pattern": "x", "reason": "", "expires": "2027-01-31"}]"#,
                "entry 1: \"reason\" is empty",
            ),
            (
                r#"[{"pattern": 1, "reason": "r", "expires": "2027-01-31"}]"#,
                "entry 1: \"pattern\" must be a string",
            ),
            (
                r#"[{"pattern": "x", "reason": "flaky", "expires": "2026-11-27"}]"#,
                "entry 1 (\"x\", reason: flaky) expired on 2026-11-27 (today is 2026-11-28)",
            ),
            ("[", "not valid JSON"),
        ];
        for (text, want) in cases {
            let e = parse_allowlist(text, TODAY).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_missing_file_and_the_file_name_in_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("allow.json");
        let e = SplatPolicy::load(SplatMode::Fail, Some(&p), TODAY).unwrap_err();
        assert!(e.to_string().contains("allow.json"), "{e}");
        std::fs::write(
            &p,
            r#"[{"pattern": "x", "reason": "r", "expires": "2020-01-01"}]"#,
        )
        .unwrap();
        let e = SplatPolicy::load(SplatMode::Fail, Some(&p), TODAY).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with(&p.display().to_string()) && s.contains("expired on 2020-01-01"),
            "{s}"
        );
        assert_eq!(crate::error::HasExitCode::exit_code(&e).code(), 3);
        let (none, w) = SplatPolicy::load(SplatMode::Warn, None, TODAY).unwrap();
        assert!(none.allow.is_empty() && w.is_empty() && none.mode == SplatMode::Warn);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("fail".parse(), Ok(SplatMode::Fail));
        assert_eq!("warn".parse(), Ok(SplatMode::Warn));
        assert_eq!("off".parse(), Ok(SplatMode::Off));
        assert!("no".parse::<SplatMode>().unwrap_err().contains("--splat"));
    }
}
