//! Retrying registry requests that are safe to repeat: resolving a manifest
//! and downloading layers are idempotent GETs, and a layer download starts
//! again from nothing (its staging directory is removed first); a push
//! repeats whole steps (a blob upload in a new session after asking whether
//! the blob arrived after all, a manifest PUT), and storing the same bytes
//! under the same digest or tag twice changes nothing. So a connection reset,
//! a truncated body or a 5xx is retried a bounded number of times with a
//! growing pause. A digest mismatch, a missing artifact and bad input are
//! final: repeating them would only hide them. Which error is retried, and
//! after how long, is decided by [`retry_after`], a pure function.
//!
//! A 401 is different: a bearer token can expire or be revoked in the middle
//! of a pull. Like containerd's resolver (on a 401 with a Bearer challenge
//! it fetches a new token and repeats the request; the same request refused
//! again is an error), each request that gets a 401 fetches a new token and
//! is repeated once ([`reauthenticate`]); a second refusal, or a token
//! endpoint that refuses, is a clear "unauthorized" error.

use std::time::Duration;

use super::error::{OciError, Result};
use crate::cancel::CancelToken;
use crate::progress::{self, Reporter};

/// Tries in all, the first included.
pub const ATTEMPTS: u32 = 4;
/// The pause after the first failure; it doubles after each further one.
pub const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// Whether an error may go away by itself: the network or the registry's
/// server side, not what was asked for or what came back.
pub fn is_transient(e: &OciError) -> bool {
    matches!(e, OciError::Unreachable { .. } | OciError::Registry { .. })
}

/// Whether a request that failed with `e` gets a new token and one more try
/// (see the module's doc).
pub fn reauthenticate(e: &OciError) -> bool {
    matches!(e, OciError::Unauthorized { .. })
}

/// After failed attempt number `attempt` (0-based) with `e`: how long to
/// wait before the next one, or `None` to give up.
pub fn retry_after(attempt: u32, e: &OciError) -> Option<Duration> {
    (attempt + 1 < ATTEMPTS && is_transient(e)).then(|| FIRST_PAUSE * 2u32.pow(attempt))
}

/// Runs `f` until it succeeds, fails for good, or [`ATTEMPTS`] ran out,
/// warning about each retry. `what` names the operation ("pull x").
pub fn with_retries<T>(
    what: &str,
    reporter: &dyn Reporter,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let cancel = CancelToken::global();
    let mut attempt = 0;
    loop {
        let e = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(pause) = retry_after(attempt, &e) else {
            return Err(e);
        };
        progress::warn(
            reporter,
            format!(
                "{what}: {e}; retrying in {:.1}s (attempt {} of {ATTEMPTS})",
                pause.as_secs_f64(),
                attempt + 2
            ),
        );
        if cancel.sleep(pause) {
            return Err(OciError::Interrupted);
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Event, RecordingReporter};

    fn registry() -> OciError {
        OciError::Registry {
            reference: "r".into(),
            message: "download failed: connection reset".into(),
        }
    }

    #[test]
    fn what_is_retried_and_when() {
        let unreachable = OciError::Unreachable {
            registry: "r".into(),
            scheme: "http",
            message: "refused".into(),
        };
        assert_eq!(retry_after(0, &registry()), Some(FIRST_PAUSE));
        assert_eq!(retry_after(1, &unreachable), Some(FIRST_PAUSE * 2));
        assert_eq!(retry_after(2, &registry()), Some(FIRST_PAUSE * 4));
        assert_eq!(retry_after(ATTEMPTS - 1, &registry()), None);
        let final_errors = [
            OciError::DigestMismatch {
                what: "w".into(),
                expected: "a".into(),
                actual: "b".into(),
            },
            OciError::NotFound {
                what: "manifest",
                reference: "r".into(),
            },
            OciError::Unauthorized {
                reference: "r".into(),
                hint: "h".into(),
            },
            OciError::Interrupted,
            OciError::invalid("x"),
        ];
        for e in &final_errors {
            assert_eq!(retry_after(0, e), None, "{e}");
            // Only a refusal gets a new token.
            assert_eq!(
                reauthenticate(e),
                matches!(e, OciError::Unauthorized { .. }),
                "{e}"
            );
        }
        assert!(!reauthenticate(&registry()) && !reauthenticate(&unreachable));
    }

    #[test]
    fn retries_until_success_and_says_so() {
        let rec = RecordingReporter::default();
        let mut calls = 0;
        let v = with_retries("pull x", &rec, || {
            calls += 1;
            if calls < 3 {
                Err(registry())
            } else {
                Ok(calls)
            }
        })
        .unwrap();
        assert_eq!(v, 3);
        let warnings = rec
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Warning(w) if w.starts_with("pull x: ") && w.contains("retrying")))
            .count();
        assert_eq!(warnings, 2);
    }

    #[test]
    fn final_errors_and_exhaustion_stop() {
        let mut calls = 0;
        let e = with_retries("x", &crate::progress::NullReporter, || -> Result<()> {
            calls += 1;
            Err(OciError::NotFound {
                what: "manifest",
                reference: "r".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(e, OciError::NotFound { .. }));
        assert_eq!(calls, 1);
        // Exhaustion takes the pauses 0.5 + 1 + 2 s: keep it to one run here.
        let mut calls = 0;
        let start = std::time::Instant::now();
        let e = with_retries("x", &crate::progress::NullReporter, || -> Result<()> {
            calls += 1;
            Err(registry())
        })
        .unwrap_err();
        assert!(matches!(e, OciError::Registry { .. }));
        assert_eq!(calls, ATTEMPTS);
        assert!(start.elapsed() >= FIRST_PAUSE * 7);
    }
}
