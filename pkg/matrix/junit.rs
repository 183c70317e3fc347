//! `--junit FILE`: the results as JUnit XML, the dialect GitHub test reporters
//! (dorny/test-reporter, mikepenz/action-junit-report, EnricoMi's publisher)
//! read: one `<testsuite>` per kernel and image, one `<testcase>` per test,
//! `<failure>` for a failed, splatted or timed-out test, `<error>` for a boot
//! or infrastructure failure, `<skipped>` for one that Ctrl-C interrupted.
//! After them, a `crashes` suite with one failed case per distinct kernel
//! crash (naming the kernels and tests that hit it), and a `missing shards`
//! suite with an error per shard `lvh test merge` had no result for.
//! quick-xml escapes; characters XML 1.0 cannot hold at all (console control
//! bytes such as ESC) are replaced first, so any output yields a valid file.

use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use super::crashes::CrashGroup;
use super::report::{crash_groups, groups, totals, word, TestResult};
use crate::runner::ResultVerdict;

/// `s` with every character XML 1.0 forbids replaced by U+FFFD.
pub fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn secs(s: f64) -> String {
    format!("{s:.3}")
}

/// What a non-passing verdict becomes: element name and `type` attribute.
fn element(v: ResultVerdict) -> Option<(&'static str, &'static str)> {
    match v {
        ResultVerdict::Passed => None,
        ResultVerdict::Failed => Some(("failure", "failed")),
        ResultVerdict::Splat => Some(("failure", "splat")),
        ResultVerdict::Timeout => Some(("failure", "timeout")),
        ResultVerdict::BootFailure => Some(("error", "boot_failure")),
        ResultVerdict::InfrastructureFailure => Some(("error", "infrastructure_failure")),
        ResultVerdict::Interrupted => Some(("skipped", "interrupted")),
    }
}

fn message(r: &TestResult) -> String {
    match (&r.error, r.command_status) {
        (Some(e), _) => e.lines().next().unwrap_or_default().to_string(),
        (None, Some(c)) => format!("the command exited with status {c}"),
        (None, None) => word(r.verdict).to_lowercase(),
    }
}

fn testcase<W: io::Write>(w: &mut Writer<W>, r: &TestResult) -> io::Result<()> {
    let classname = format!("{}.{}", r.kernel, r.image);
    let el = w
        .create_element("testcase")
        .with_attribute(("name", xml_safe(&r.test).as_str()))
        .with_attribute(("classname", xml_safe(&classname).as_str()))
        .with_attribute(("time", secs(r.seconds).as_str()));
    let detail = element(r.verdict);
    if detail.is_none() && r.output.is_empty() {
        el.write_empty()?;
        return Ok(());
    }
    el.write_inner_content(|w| {
        if let Some((name, kind)) = detail {
            let msg = xml_safe(&message(r));
            let e = w
                .create_element(name)
                .with_attribute(("message", msg.as_str()))
                .with_attribute(("type", kind));
            match (&r.error, name) {
                (Some(err), "failure" | "error") => {
                    e.write_text_content(BytesText::new(&xml_safe(err)))?;
                }
                _ => {
                    e.write_empty()?;
                }
            }
        }
        if !r.output.is_empty() {
            w.create_element("system-out")
                .write_text_content(BytesText::new(&xml_safe(&r.output)))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// A suite of cases that each carry one `<failure>` or `<error>`.
fn extra_suite<W: io::Write>(
    w: &mut Writer<W>,
    name: &str,
    failure: bool,
    cases: &[(String, String, String)],
) -> io::Result<()> {
    if cases.is_empty() {
        return Ok(());
    }
    let (el, count) = if failure {
        ("failure", "failures")
    } else {
        ("error", "errors")
    };
    let n = cases.len().to_string();
    w.create_element("testsuite")
        .with_attribute(("name", name))
        .with_attribute(("tests", n.as_str()))
        .with_attribute((count, n.as_str()))
        .with_attribute(("time", "0.000"))
        .write_inner_content(|w| {
            for (case, message, text) in cases {
                w.create_element("testcase")
                    .with_attribute(("name", xml_safe(case).as_str()))
                    .with_attribute(("classname", name))
                    .with_attribute(("time", "0.000"))
                    .write_inner_content(|w| {
                        w.create_element(el)
                            .with_attribute(("message", xml_safe(message).as_str()))
                            .with_attribute((
                                "type",
                                if failure { "crash" } else { "missing_shard" },
                            ))
                            .write_text_content(BytesText::new(&xml_safe(text)))?;
                        Ok(())
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

/// A distinct crash as a case: its title, and what hit it.
fn crash_case(g: &CrashGroup) -> (String, String, String) {
    let runs = g.ids.len();
    let message = format!(
        "{} ({}) on {runs} run{}: kernels {}; tests {}",
        g.title,
        g.kind,
        if runs == 1 { "" } else { "s" },
        g.kernels.join(", "),
        g.tests.join(", ")
    );
    let text = format!("fingerprint {}\n{}", g.fingerprint, g.ids.join("\n"));
    (g.title.clone(), message, text)
}

/// The JUnit XML document for `results`; `missing` names the shards with no
/// result (`lvh test merge`).
pub fn junit(title: &str, results: &[TestResult], missing: &[String]) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let t = totals(results);
    let time: f64 = results.iter().map(|r| r.seconds).sum();
    let crashes: Vec<_> = crash_groups(results).iter().map(crash_case).collect();
    let missing: Vec<_> = missing
        .iter()
        .map(|m| {
            let msg = format!("no result for shard {m}");
            (m.clone(), msg.clone(), msg)
        })
        .collect();
    let doc = (|| -> io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("testsuites")
            .with_attribute(("name", xml_safe(title).as_str()))
            .with_attribute((
                "tests",
                (t.total() + crashes.len() + missing.len())
                    .to_string()
                    .as_str(),
            ))
            .with_attribute((
                "failures",
                (t.failed + t.splat + t.timeout + crashes.len())
                    .to_string()
                    .as_str(),
            ))
            .with_attribute((
                "errors",
                (t.boot_failure + t.infrastructure_failure + missing.len())
                    .to_string()
                    .as_str(),
            ))
            .with_attribute(("skipped", t.interrupted.to_string().as_str()))
            .with_attribute(("time", secs(time).as_str()))
            .write_inner_content(|w| {
                for g in groups(results) {
                    let c = g.counts;
                    let members: Vec<&TestResult> = results
                        .iter()
                        .filter(|r| r.kernel == g.kernel && r.image == g.image)
                        .collect();
                    let name = format!("{}/{}", g.kernel, g.image);
                    let time: f64 = members.iter().map(|r| r.seconds).sum();
                    w.create_element("testsuite")
                        .with_attribute(("name", xml_safe(&name).as_str()))
                        .with_attribute(("tests", c.total().to_string().as_str()))
                        .with_attribute((
                            "failures",
                            (c.failed + c.splat + c.timeout).to_string().as_str(),
                        ))
                        .with_attribute((
                            "errors",
                            (c.boot_failure + c.infrastructure_failure)
                                .to_string()
                                .as_str(),
                        ))
                        .with_attribute(("skipped", c.interrupted.to_string().as_str()))
                        .with_attribute(("time", secs(time).as_str()))
                        .write_inner_content(|w| {
                            for r in members {
                                testcase(w, r)?;
                            }
                            Ok(())
                        })?;
                }
                extra_suite(w, "crashes", true, &crashes)?;
                extra_suite(w, "missing shards", false, &missing)?;
                Ok(())
            })?;
        Ok(())
    })();
    doc.expect("writing XML to memory cannot fail");
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::report::tests::result;
    use quick_xml::events::Event;
    use quick_xml::{Reader, XmlVersion};

    /// An element's name, attributes and text.
    type El = (String, Vec<(String, String)>, String);

    /// Every element with its attributes and text, read back by a real parser.
    fn parse(xml: &[u8]) -> Vec<El> {
        let mut r = Reader::from_reader(xml);
        let mut out: Vec<El> = Vec::new();
        // Indexes into `out` of the open elements: text belongs to the innermost.
        let mut open: Vec<usize> = Vec::new();
        let mut buf = Vec::new();
        loop {
            let ev = r.read_event_into(&mut buf).expect("well-formed XML");
            match ev.clone() {
                Event::Eof => break,
                Event::End(_) => {
                    open.pop();
                }
                Event::Start(e) | Event::Empty(e) => {
                    if matches!(ev, Event::Start(_)) {
                        open.push(out.len());
                    }
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.expect("attribute");
                            (
                                a.key.as_ref().to_string(),
                                a.normalized_value(XmlVersion::Implicit1_0)
                                    .expect("escaped")
                                    .into_owned(),
                            )
                        })
                        .collect();
                    out.push((e.name().as_ref().to_string(), attrs, String::new()));
                }
                Event::Text(t) => {
                    if let Some(&i) = open.last() {
                        out[i].2.push_str(&t.xml_content(XmlVersion::Implicit1_0));
                    }
                }
                Event::GeneralRef(g) => {
                    let s = match g.as_ref() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "?",
                    };
                    if let Some(&i) = open.last() {
                        out[i].2.push_str(s);
                    }
                }
                _ => {}
            }
            buf.clear();
        }
        out
    }

    fn attr<'a>(e: &'a El, k: &str) -> &'a str {
        &e.1.iter().find(|(n, _)| n == k).expect(k).1
    }

    #[test]
    fn verdicts_map_to_junit_elements_and_counts() {
        let mut bad = result("k1/i/bad<&\"'>", ResultVerdict::Failed);
        bad.output = "line1\n\u{1b}[31mred\u{0}\n".into();
        let rs = vec![
            result("k1/i/ok", ResultVerdict::Passed),
            bad,
            result("k1/i/slow", ResultVerdict::Timeout),
            result("k2/i/boot", ResultVerdict::BootFailure),
            result("k2/i/rest", ResultVerdict::Interrupted),
        ];
        let xml = junit("lvh test", &rs, &[]);
        let els = parse(&xml);
        let names: Vec<&str> = els.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "testsuites",
                "testsuite",
                "testcase",
                "testcase",
                "failure",
                "system-out",
                "testcase",
                "failure",
                "testsuite",
                "testcase",
                "error",
                "testcase",
                "skipped"
            ]
        );
        assert_eq!(attr(&els[0], "tests"), "5");
        assert_eq!(attr(&els[0], "failures"), "2");
        assert_eq!(attr(&els[0], "errors"), "1");
        assert_eq!(attr(&els[0], "skipped"), "1");
        assert_eq!(attr(&els[1], "name"), "k1/i");
        assert_eq!(attr(&els[3], "name"), "bad<&\"'>");
        assert_eq!(attr(&els[3], "classname"), "k1.i");
        assert_eq!(attr(&els[4], "type"), "failed");
        assert_eq!(attr(&els[4], "message"), "the command exited with status 3");
        assert_eq!(els[5].2, "line1\n\u{FFFD}[31mred\u{FFFD}\n");
        assert_eq!(attr(&els[7], "type"), "timeout");
        assert!(els[7].2.contains("did not finish"));
        assert_eq!(attr(&els[10], "type"), "boot_failure");
        assert_eq!(attr(&els[12], "type"), "interrupted");
        assert_eq!(attr(&els[2], "time"), "1.500");
    }

    #[test]
    fn one_failed_case_per_distinct_crash_and_an_error_per_missing_shard() {
        use crate::matrix::crashes::Crash;
        let w = Crash {
            title: "WARNING in lkdtm_WARNING".into(),
            kind: "warning".into(),
            fingerprint: "4cda48a19d14d057".into(),
        };
        let mut a = result("k1/i/warn", ResultVerdict::Splat);
        a.crashes = vec![w.clone()];
        let mut b = result("k2/i/warn", ResultVerdict::Splat);
        b.crashes = vec![w];
        let xml = junit("t", &[a, b], &["hash:2/3".into()]);
        let els = parse(&xml);
        assert_eq!(attr(&els[0], "tests"), "4");
        assert_eq!(attr(&els[0], "failures"), "3");
        assert_eq!(attr(&els[0], "errors"), "1");
        let suite = |n: &str| {
            els.iter()
                .position(|e| e.0 == "testsuite" && attr(e, "name") == n)
        };
        let c = suite("crashes").expect("a crashes suite");
        assert_eq!(attr(&els[c], "tests"), "1");
        assert_eq!(attr(&els[c + 1], "name"), "WARNING in lkdtm_WARNING");
        assert_eq!(
            attr(&els[c + 2], "message"),
            "WARNING in lkdtm_WARNING (warning) on 2 runs: kernels k1, k2; tests warn"
        );
        assert!(els[c + 2]
            .2
            .contains("4cda48a19d14d057\nk1/i/warn\nk2/i/warn"));
        let m = suite("missing shards").expect("a missing shards suite");
        assert_eq!(els[m + 2].0, "error");
        assert_eq!(attr(&els[m + 2], "message"), "no result for shard hash:2/3");
        // Without crashes or missing shards, neither suite.
        let plain = parse(&junit("t", &[result("k/i/ok", ResultVerdict::Passed)], &[]));
        assert_eq!(plain.iter().filter(|e| e.0 == "testsuite").count(), 1);
    }

    #[test]
    fn xml_safe_keeps_whitespace_and_text() {
        assert_eq!(xml_safe("a\tb\r\nc é"), "a\tb\r\nc é");
        assert_eq!(xml_safe("\u{7}\u{FFFF}"), "\u{FFFD}\u{FFFD}");
    }
}
