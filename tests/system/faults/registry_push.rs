//! Registry faults beyond failed downloads, through [`super::proxy`] in front
//! of the real registry: a push whose blob upload (PATCH, closing PUT) or
//! manifest PUT fails by a reset or a 500 (before or after the registry did
//! the work) is retried step by step and the pushed artifact pulls back
//! byte for byte; and a bearer token that expires in the middle of a pull is
//! renewed once per refused request (as containerd does), or, when the token
//! endpoint refuses, the pull fails with a clear "unauthorized" error and
//! leaves nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::proxy::{response, Action, Req, Rule, RuleProxy};
use super::registry::{files_under, pull};
use crate::oci::registry::{test_bytes, write_file, Registry};
use crate::support::{assert_code, text};

fn push(cache: &Path, image: &Path, reference: &str) -> std::process::Output {
    crate::support::lvh()
        .args(["images", "push", image.to_str().unwrap(), reference])
        .env("LVH_CACHE_DIR", cache)
        .output()
        .unwrap()
}

/// A rule that applies `fault` to the first `times` requests `matches` accepts.
fn injecting(
    times: u32,
    matches: fn(&Req) -> bool,
    fault: fn() -> Action,
) -> (Arc<Rule>, Arc<AtomicU32>) {
    let n = Arc::new(AtomicU32::new(0));
    let count = n.clone();
    let rule = move |r: &Req| {
        if matches(r)
            && n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| {
                (k < times).then_some(k + 1)
            })
            .is_ok()
        {
            fault()
        } else {
            Action::Forward
        }
    };
    (Arc::new(rule), count)
}

fn status_500() -> Action {
    Action::Answer(response("500 Internal Server Error", "", ""))
}

fn patch_upload(r: &Req) -> bool {
    r.method == "PATCH" && r.is_blob_upload()
}

fn put_upload(r: &Req) -> bool {
    r.method == "PUT" && r.is_blob_upload()
}

fn put_manifest(r: &Req) -> bool {
    r.method == "PUT" && r.path.contains("/manifests/")
}

type Case = (&'static str, fn(&Req) -> bool, fn() -> Action);

#[test]
fn push_faults_are_retried_where_safe() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let cases: [Case; 5] = [
        ("reset during a blob upload PATCH", patch_upload, || {
            Action::Reset
        }),
        (
            "500 for the blob upload's closing PUT",
            put_upload,
            status_500,
        ),
        ("500 after the registry stored the blob", put_upload, || {
            Action::ForwardThen500
        }),
        ("500 for the manifest PUT", put_manifest, status_500),
        (
            "500 after the registry stored the manifest",
            put_manifest,
            || Action::ForwardThen500,
        ),
    ];
    let mut figures = Vec::new();
    for (i, (name, matches, fault)) in cases.into_iter().enumerate() {
        // New bytes each time (test_bytes ignores the seed's lowest bit): a
        // blob the registry has is not uploaded again.
        let data = test_bytes(3 << 20, 101 + 2 * i as u64);
        let img = t.path().join(format!("img-{i}/base.qcow2"));
        write_file(&img, &data);
        let (rule, injected) = injecting(2, matches, fault);
        let proxy = RuleProxy::start(&reg.addr, rule);
        let o = push(&cache, &img, &format!("{}/push-faults:t{i}", proxy.addr));
        assert_code(&o, 0);
        assert_eq!(injected.load(Ordering::SeqCst), 2, "{name}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("retrying"),
            "{name}: {}",
            text(&o)
        );
        if name.contains("stored the blob") {
            // The retry found the blob the lost answer was about.
            assert!(
                String::from_utf8_lossy(&o.stderr).contains(": cached"),
                "{name}: {}",
                text(&o)
            );
        }
        // What the registry holds is what was pushed.
        let d = t.path().join(format!("pulled-{i}"));
        let o = pull(&cache, &reg.reference("push-faults", &format!("t{i}")), &d);
        assert_code(&o, 0);
        assert!(
            std::fs::read(d.join("images/base.qcow2")).unwrap() == data,
            "{name}"
        );
        figures.push(format!("{name} x2: retried, pushed (exit 0)"));
    }

    // A reset on every upload: the retries run out, a clear error, no tag.
    let data = test_bytes(3 << 20, 70);
    let img = t.path().join("img-always/base.qcow2");
    write_file(&img, &data);
    let (rule, injected) = injecting(100, patch_upload, || Action::Reset);
    let proxy = RuleProxy::start(&reg.addr, rule);
    let o = push(&cache, &img, &format!("{}/push-faults:always", proxy.addr));
    assert_code(&o, 1);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("failed to push"), "{e}");
    assert_eq!(
        injected.load(Ordering::SeqCst),
        lvh::oci::RETRY_ATTEMPTS,
        "{e}"
    );
    let d = t.path().join("pulled-always");
    let o = pull(&cache, &reg.reference("push-faults", "always"), &d);
    assert_code(&o, 1);
    figures.push(format!(
        "reset on every PATCH: {} attempts, then exit 1, no tag",
        lvh::oci::RETRY_ATTEMPTS
    ));
    eprintln!("PUSH-FIGURES: {}", figures.join("; "));
}

/// Bearer-token auth in front of the registry: `/token` hands out tokens,
/// each good for `per_token` blob GETs; then a request with it gets a 401
/// and a Bearer challenge with `error="invalid_token"`. Unless `renew`, the
/// token endpoint refuses once a token has expired.
struct Tokens {
    per_token: u32,
    renew: bool,
    uses: Mutex<HashMap<String, u32>>,
    issued: AtomicU32,
    refused: AtomicU32,
    expired: AtomicBool,
}

fn token_rule(s: Arc<Tokens>) -> Arc<Rule> {
    Arc::new(move |r: &Req| {
        let host = r.header("host").unwrap_or_default().to_string();
        if r.path.starts_with("/token") {
            if !s.renew && s.expired.load(Ordering::SeqCst) {
                return Action::Answer(response(
                    "401 Unauthorized",
                    "",
                    r#"{"details":"token renewal refused"}"#,
                ));
            }
            let tok = format!("tok-{}", s.issued.fetch_add(1, Ordering::SeqCst) + 1);
            s.uses.lock().unwrap().insert(tok.clone(), 0);
            return Action::Answer(response(
                "200 OK",
                "",
                &format!(r#"{{"token":"{tok}","expires_in":300}}"#),
            ));
        }
        let presented = r
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let mut uses = s.uses.lock().unwrap();
        let valid = presented
            .as_ref()
            .and_then(|t| uses.get_mut(t))
            .filter(|u| **u < s.per_token);
        match valid {
            Some(u) => {
                if r.method == "GET" && r.path.contains("/blobs/sha256:") {
                    *u += 1;
                }
                Action::Forward
            }
            None => {
                let error = if presented.is_some() {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    s.expired.store(true, Ordering::SeqCst);
                    ",error=\"invalid_token\""
                } else {
                    ""
                };
                Action::Answer(response(
                    "401 Unauthorized",
                    &format!(
                        "WWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"lvh-test\"{error}\r\n"
                    ),
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ))
            }
        }
    })
}

#[test]
fn a_bearer_token_that_expires_mid_pull_is_renewed_or_refused_clearly() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let data = test_bytes(3 << 20, 80);
    let img = t.path().join("base.qcow2");
    write_file(&img, &data);
    assert_code(&push(&cache, &img, &reg.reference("tokens", "t")), 0);
    let tokens = |renew| {
        Arc::new(Tokens {
            per_token: 1,
            renew,
            uses: Mutex::new(HashMap::new()),
            issued: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            expired: AtomicBool::new(false),
        })
    };

    // Each token is good for one blob: the config's. The layer's request is
    // refused, lvh fetches a new token and the pull goes on.
    let s = tokens(true);
    let proxy = RuleProxy::start(&reg.addr, token_rule(s.clone()));
    let d = t.path().join("renewed");
    let o = pull(&cache, &format!("{}/tokens:t", proxy.addr), &d);
    assert_code(&o, 0);
    assert!(std::fs::read(d.join("images/base.qcow2")).unwrap() == data);
    let (issued, refused) = (
        s.issued.load(Ordering::SeqCst),
        s.refused.load(Ordering::SeqCst),
    );
    assert!(
        refused >= 1 && issued > refused,
        "{issued} {refused}: {}",
        text(&o)
    );

    // The token endpoint refuses a new one: a clear error, nothing written.
    let s = tokens(false);
    let proxy = RuleProxy::start(&reg.addr, token_rule(s.clone()));
    let d = t.path().join("refused");
    let o = pull(&cache, &format!("{}/tokens:t", proxy.addr), &d);
    assert_code(&o, 1);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("refused access") && e.contains("token renewal refused"),
        "{e}"
    );
    assert!(files_under(&d).is_empty(), "{:?}", files_under(&d));
    eprintln!(
        "TOKEN-FIGURES: token good for 1 blob: {issued} tokens, {refused} refused requests, pulled (exit 0); \
         renewal refused: exit 1 ({} requests refused)",
        s.refused.load(Ordering::SeqCst)
    );
}
