//! A run's results for people and for CI: the console table, `junit.xml` (the JUnit XML shape
//! CI systems render: one `testcase` per case, FAIL as `failure` with the evidence, N/A and
//! INCONCLUSIVE as `skipped` with the reason) and `report.json` (everything, including the
//! device's registration and /5/0 readings).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::verdict::Verdict;
use super::RunReport;
use crate::api::registration_json::registration_json;

/// The console table: one line per case, then the counts.
pub fn table(r: &RunReport) -> String {
    let width = r
        .cases
        .iter()
        .map(|c| c.name().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$} {:<12} {:<52} evidence\n",
        "case", "verdict", "title"
    );
    for c in &r.cases {
        let _ = writeln!(
            out,
            "{:<width$} {:<12} {:<52} {}",
            c.name(),
            c.verdict.label(),
            c.title,
            c.evidence
        );
    }
    let _ = writeln!(out, "{}", summary(r));
    out
}

/// `N cases: P PASS, F FAIL, A N/A, I INCONCLUSIVE`.
pub fn summary(r: &RunReport) -> String {
    format!(
        "{} cases: {} PASS, {} FAIL, {} N/A, {} INCONCLUSIVE",
        r.cases.len(),
        r.count("PASS"),
        r.count("FAIL"),
        r.count("N/A"),
        r.count("INCONCLUSIVE")
    )
}

/// Escapes text for XML attributes and content; characters XML 1.0 cannot carry are
/// replaced.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Seconds with millisecond precision, as JUnit's `time` attribute.
fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// A UTC timestamp in ISO 8601 (`2024-05-01T12:00:00Z`), without a date library: days to
/// civil date after H. Hinnant's algorithm. Also how Leshan 2.0.0-M4 shows times in its REST
/// API, which the REST differential test compares against.
pub fn iso8601(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The run as JUnit XML: one `testsuite` named for the endpoint, one `testcase` per case
/// (`classname` = `lwm2m.<group>`).
pub fn junit_xml(r: &RunReport) -> String {
    let failures = r.count("FAIL");
    let skipped = r.count("N/A") + r.count("INCONCLUSIVE");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"lwm2m-server-shim conformance\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">",
        r.cases.len(),
        secs(r.duration)
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\" timestamp=\"{}\" hostname=\"localhost\">",
        xml(&format!("conformance.{}", r.endpoint)),
        r.cases.len(),
        secs(r.duration),
        iso8601(r.started)
    );
    out.push_str("    <properties>\n");
    let mut props = vec![
        ("endpoint".to_string(), r.endpoint.clone()),
        ("formats".to_string(), r.formats.clone()),
    ];
    if let Some(reg) = &r.registration {
        props.push(("lwm2m".into(), reg.lwm2m_version.clone()));
        props.push(("binding".into(), reg.binding.clone()));
        props.push(("objectLinks".into(), reg.object_links.clone()));
    }
    if let Some(fw) = &r.firmware {
        props.push(("firmware.protocols".into(), format!("{:?}", fw.protocols)));
        props.push((
            "firmware.delivery".into(),
            fw.delivery.map_or("absent".into(), |d| d.to_string()),
        ));
    }
    for (k, v) in props {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            xml(&k),
            xml(&v)
        );
    }
    out.push_str("    </properties>\n");
    for c in &r.cases {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"lwm2m.{}\" time=\"{}\"",
            xml(&format!("{} {}", c.name(), c.title)),
            c.group,
            secs(c.duration)
        );
        match &c.verdict {
            Verdict::Pass => out.push_str(">\n"),
            Verdict::Fail => {
                let _ = write!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"FAIL\">{}</failure>\n",
                    xml(&first_line(&c.evidence)),
                    xml(&c.evidence)
                );
            }
            Verdict::NotApplicable(why) | Verdict::Inconclusive(why) => {
                let _ = write!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n",
                    xml(&format!("{}: {why}", c.verdict.label()))
                );
            }
        }
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>\n    </testcase>",
            xml(&c.evidence)
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.len() > 200 {
        let mut end = 200;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &line[..end])
    } else {
        line.to_string()
    }
}

/// The run as JSON: cases with verdicts, reasons, evidence and timings, the registration and
/// the /5/0 readings.
pub fn json(r: &RunReport) -> Value {
    json!({
        "endpoint": r.endpoint,
        "started": iso8601(r.started),
        "durationS": r.duration.as_secs_f64(),
        "summary": {
            "cases": r.cases.len(),
            "pass": r.count("PASS"),
            "fail": r.count("FAIL"),
            "notApplicable": r.count("N/A"),
            "inconclusive": r.count("INCONCLUSIVE"),
        },
        "registration": r.registration.as_ref().map(registration_json),
        "formats": r.formats,
        "firmware": r.firmware.as_ref().map(|f| f.to_json()),
        "cases": r.cases.iter().map(|c| json!({
            "case": c.id,
            "variant": c.variant,
            "name": c.name(),
            "title": c.title,
            "group": c.group,
            "verdict": c.verdict.label(),
            "reason": c.verdict.reason(),
            "evidence": c.evidence,
            "started": iso8601(c.started),
            "durationS": c.duration.as_secs_f64(),
        })).collect::<Vec<_>>(),
    })
}

/// Writes `junit.xml` and `report.json` into `dir` (created when missing).
pub fn write(dir: &Path, r: &RunReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("junit.xml"), junit_xml(r))?;
    let pretty = serde_json::to_string_pretty(&json(r)).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), pretty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::CaseReport;

    fn report() -> RunReport {
        let case = |id, verdict, evidence: &str| CaseReport {
            id,
            variant: None,
            title: "t <&>",
            group: "fw",
            verdict,
            evidence: evidence.into(),
            started: UNIX_EPOCH,
            duration: Duration::from_millis(1500),
        };
        RunReport {
            endpoint: "dev\"1".into(),
            started: UNIX_EPOCH + Duration::from_secs(951_782_400),
            duration: Duration::from_secs(3),
            registration: None,
            firmware: None,
            formats: "ct=[11542]".into(),
            cases: vec![
                case("a", Verdict::Pass, "ok"),
                case("b", Verdict::Fail, "State 0, Result 5 <bad>\u{1}"),
                case("c", Verdict::NotApplicable("no push".into()), "no push"),
                case(
                    "d",
                    Verdict::Inconclusive("no answer within 5 s".into()),
                    "x",
                ),
            ],
        }
    }

    #[test]
    fn dates_and_escapes() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
            "2000-02-29T01:01:01Z"
        );
        assert_eq!(xml("a<b>&\"'\u{2}"), "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}");
    }

    #[test]
    fn junit_counts_and_elements() {
        let x = junit_xml(&report());
        assert!(
            x.contains("tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"2\""),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"State 0, Result 5 &lt;bad&gt;\u{FFFD}\" type=\"FAIL\">"),
            "{x}"
        );
        assert!(x.contains("<skipped message=\"N/A: no push\"/>"), "{x}");
        assert!(
            x.contains("<skipped message=\"INCONCLUSIVE: no answer within 5 s\"/>"),
            "{x}"
        );
        assert!(x.contains("timestamp=\"2000-02-29T00:00:00Z\""), "{x}");
        assert!(x.contains("name=\"conformance.dev&quot;1\""), "{x}");
        let j = json(&report());
        assert_eq!(j["summary"]["fail"], 1);
        assert_eq!(j["cases"][2]["reason"], "no push");
        assert!(table(&report()).ends_with("4 cases: 1 PASS, 1 FAIL, 1 N/A, 1 INCONCLUSIVE\n"));
    }
}
