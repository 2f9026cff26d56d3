//! The conformance runner against a second client we did not write, after Leshan's: the
//! client of Telefonica's lwm2m-node-lib (npm; `tests/node/lwm2m_node_lib_client.js`), an
//! LwM2M 1.0 client with a Device object only (no Server object, no Object 5), whose requests
//! it does not understand go unanswered. Every case must end with the verdict that client
//! earns, and say why: FAIL with the evidence where it departs from the ETS, N/A where a case
//! does not apply to a 1.0 client or to its objects, INCONCLUSIVE naming the request it never
//! answered. The reports are read by PyPI's junitparser, as for Leshan.

use std::path::Path;
use std::time::Duration;

use lwm2m_server_shim::conformance::{report, ConformanceConfig, PackageSource, Selection};
use lwm2m_server_shim::packages::test_packages::Signer;
use tests::e2e::Harness;
use tests::process::{node_lib_command, LoggedChild};

/// The node-lib client registered on `coap` as `ep`, logging to `dir`.
fn node_lib_client(dir: &Path, coap: std::net::SocketAddr, ep: &str) -> LoggedChild {
    let mut cmd = node_lib_command("lwm2m_node_lib_client.js");
    cmd.arg(coap.port().to_string()).arg(ep);
    LoggedChild::spawn(
        "lwm2m-node-lib client",
        &mut cmd,
        dir.join("node-lib-client.log"),
        false,
    )
}

/// Most cases first read the Server object instance in TLV, the format LwM2M 1.0 clients must
/// support; this client leaves that read unanswered.
const UNANSWERED_SERVER_READ: &str = "no answer to Read /1/0 (format 11542)";

/// Each case's verdict against this client, and what its evidence (FAIL) or reason (N/A,
/// INCONCLUSIVE) must say. Firmware cases are not listed: all N/A, it has no Object 5.
const EXPECTED: [(&str, &str, &str); 32] = [
    // It registers </3/0> only: no Server object, which every client has (core TS 1.1 §6.2.1).
    (
        "1.1-int-101",
        "FAIL",
        "no LwM2M Server instance (</1/x>) announced",
    ),
    (
        "core-reg-params",
        "FAIL",
        "/1/0/7 Binding unreadable differs from b=U",
    ),
    ("1.1-int-102", "FAIL", "write /1/0/1 = 310 -> 4.04"),
    ("1.1-int-104", "FAIL", "Execute /1/0/8 -> 4.04"),
    ("1.1-int-107", "FAIL", "write /1/0/1 = 6 -> 4.04"),
    // A 1.0 client registered with b=U: no Queue Mode.
    (
        "core-reg-queue-mode",
        "N/A",
        "registered without Queue Mode",
    ),
    // The Device object lacks the mandatory Supported Binding (/3/0/16).
    ("1.1-int-201", "FAIL", "Read /3/0/16 (text) -> 4.04"),
    // Requests with an Accept it does not know (TLV 11542, JSON 11543: it knows the draft
    // numbers 1542/1543) get no answer at all, where 4.06 was due.
    (
        "1.1-int-203",
        "INCONCLUSIVE",
        "no answer to Read /3/0 (format 11542)",
    ),
    (
        "1.1-int-204",
        "INCONCLUSIVE",
        "no answer to Read /3/0 (format 11543)",
    ),
    // Formats LwM2M 1.1 introduced are not owed by a 1.0 client.
    (
        "1.1-int-211",
        "N/A",
        "content format 60 (CBOR) is LwM2M 1.1; the device registered as 1.0",
    ),
    (
        "1.1-int-231",
        "N/A",
        "format 110 (SenML JSON) is LwM2M 1.1; the device registered as 1.0",
    ),
    (
        "1.1-int-232",
        "N/A",
        "format 112 (SenML CBOR) is LwM2M 1.1; the device registered as 1.0",
    ),
    (
        "1.1-int-222",
        "INCONCLUSIVE",
        "no answer to Read /1 (format 11542)",
    ),
    ("1.1-int-223", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    (
        "1.1-int-224",
        "INCONCLUSIVE",
        "no answer to Read /1/0/1 (format 11542)",
    ),
    (
        "1.1-int-225",
        "N/A",
        "resource instance is LwM2M 1.1; the device registered as 1.0",
    ),
    ("1.1-int-205", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("1.1-int-227", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("1.1-int-226", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("1.1-int-256", "FAIL", "Write 77 -> 4.04 (expected 4.05)"),
    // Write-Attributes on the Security object is accepted; it must not be accessible.
    ("1.1-int-221", "FAIL", "Write-Attributes /0 pmin=10 -> 2.04"),
    ("1.1-int-260", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    (
        "core-dm-create-delete",
        "N/A",
        "announces no object a server may create",
    ),
    ("1.1-int-301", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("core-ir-instance", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("core-ir-object", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("1.1-int-303", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("core-ir-pmin-pmax", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("core-ir-gt-lt", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    ("core-ir-st", "INCONCLUSIVE", UNANSWERED_SERVER_READ),
    // It answers 2.04 to Execute /3/0/4, a resource it does not have, and never reboots.
    (
        "1.1-int-241",
        "FAIL",
        "Execute /3/0/4 -> 2.04; registered again within 10s: no",
    ),
    (
        "1.1-int-103",
        "N/A",
        "refuses Write /1/0/5 Disable Timeout (4.04)",
    ),
];

#[test]
fn lwm2m_node_lib_client_is_judged_case_by_case() {
    let h = Harness::start("conf-node-lib");
    let ep = "node-lib-conf";
    let client = node_lib_client(&h.dir, h.coap, ep);
    // Short waits: 16 cases wait out a request nobody answers.
    let mut cfg = ConformanceConfig::new(PackageSource::Suit(Signer::generate().expect("key")))
        .with_timeouts(
            Duration::from_secs(2),
            Duration::from_secs(10),
            Duration::from_secs(10),
        );
    cfg.notify_within = Duration::from_secs(3);
    cfg.short_lifetime = Duration::from_secs(6);
    cfg.http_host = Some(h.running().http_addr);
    cfg.register_within = Duration::from_secs(60);
    let run =
        h.rt.block_on(h.running().conformance(ep, &cfg, &Selection::all()))
            .expect("run");
    let table = report::table(&run);
    println!("{table}");
    let context = || format!("{table}\n{}", client.log());
    for c in &run.cases {
        let name = c.name();
        let (kind, says) = match (&c.verdict, c.group) {
            (_, "fw") => ("N/A", "announces no Object 5"),
            _ => EXPECTED
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, k, s)| (*k, *s))
                .unwrap_or_else(|| panic!("{name} is not expected to run\n{}", context())),
        };
        assert_eq!(c.verdict.label(), kind, "{name}\n{}", context());
        let text = c.verdict.reason().unwrap_or(&c.evidence);
        assert!(
            text.contains(says),
            "{name}: {text:?} lacks {says:?}\n{}",
            context()
        );
    }
    let core = run.cases.iter().filter(|c| c.group != "fw").count();
    assert_eq!(core, EXPECTED.len(), "{}", context());
    tests::junit::check(&run, &h.dir.join("reports"));
}
