//! The conformance runner's reports as a CI system reads them: `junit.xml` parsed by PyPI's
//! junitparser (installed by scripts/test).

use std::path::Path;
use std::process::Command;

use lwm2m_server_shim::conformance::{report, RunReport, Verdict};

/// Parses `junit.xml` with junitparser (PyPI), as a CI system would, and returns what it saw
/// per case: `name verdict-kind message`.
fn junitparser_view(dir: &Path) -> String {
    let script = r#"
import sys
from junitparser import JUnitXml, Failure, Skipped, Error
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    print("suite", suite.name, suite.tests, suite.failures, suite.skipped, suite.errors)
    for case in suite:
        kinds = [type(r).__name__ for r in case.result]
        msgs = [r.message or "" for r in case.result]
        print("case", case.name.split(" ")[0], ",".join(kinds) or "passed", "|".join(msgs))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("junit.xml"))
        .output()
        .expect("python3 runs (scripts/test installs junitparser)");
    assert!(
        out.status.success(),
        "junitparser could not read junit.xml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `run`'s reports to `dir` and checks, through junitparser, that each case is there
/// with its verdict's kind and reason, and that the suite's counts add up.
pub fn check(run: &RunReport, dir: &Path) {
    report::write(dir, run).expect("reports");
    let seen = junitparser_view(dir);
    let fails = run.count("FAIL");
    let skipped = run.count("N/A") + run.count("INCONCLUSIVE");
    assert!(
        seen.contains(&format!(
            "suite conformance.{} {} {fails} {skipped} 0",
            run.endpoint,
            run.cases.len()
        )),
        "{seen}"
    );
    for c in &run.cases {
        let kind = match &c.verdict {
            Verdict::Pass => "passed".to_string(),
            Verdict::Fail => "Failure".to_string(),
            Verdict::NotApplicable(_) | Verdict::Inconclusive(_) => "Skipped".to_string(),
        };
        let line = seen
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(c.name().as_str()))
            .unwrap_or_else(|| panic!("{} not in junit.xml: {seen}", c.name()));
        assert!(line.contains(&kind), "{line} for {:?}", c.verdict);
        if let Some(why) = c.verdict.reason() {
            assert!(line.contains(why), "{line} lacks the reason {why}");
        }
    }
}
