//! The conformance runner against a client we did not write (issue 15): Eclipse Leshan's client
//! library (tests/leshan/src/LeshanTestClient.java: Security, Server and Device objects, no
//! Firmware Update object) registered on an in-process shim. The core cases must pass, or be
//! N/A for a fact about that client, or FAIL where that client departs from the ETS (listed,
//! with the evidence); every firmware case is N/A because it has no Object 5.
//! The reports are then read by a real JUnit consumer (PyPI junitparser).

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use lwm2m_server_shim::conformance::{
    report, CaseReport, ConformanceConfig, PackageSource, Selection, Verdict,
};
use std::process::Command;

use tests::e2e::{temp_dir, Harness};
use tests::leshan::{LaunchOption, LeshanClient};
use tests::pki::Pki;
use tests::process::{free_udp_port, workspace_bin, LoggedChild};

/// Why a core case may be N/A against Leshan's client: facts about that client or the shim.
const JUSTIFIED_NA: [(&str, &str); 4] = [
    // Started without Queue Mode here (its queue mode is judged below).
    ("core-reg-queue-mode", "registered without Queue Mode"),
    // Its Error Code (/3/0/11) has no instance, and /3/0 no other multiple resource.
    ("1.1-int-225", "its Error Code /3/0/11 has none"),
    // The test launcher has no Portfolio object (16).
    (
        "core-dm-create-delete",
        "announces no object a server may create",
    ),
    // Leshan's Server object has no Disable Timeout (/1/0/5).
    ("1.1-int-103", "refuses Write /1/0/5 Disable Timeout (4.04)"),
];

/// Where Leshan's client (2.0.0-M18, its library Security/Server/Device objects) itself
/// departs from the ETS, with the evidence the runner must show: the runner catching these is
/// part of what this test proves.
const LESHAN_DEPARTS: [(&str, &str); 3] = [
    // It accepts Write-Attributes on the Security object, which must not be accessible.
    ("1.1-int-221", "Write-Attributes /0 pmin=10 -> 2.04"),
    // With both gt and lt set it checks only lt, and only a downward crossing
    // (IntegerChecker: an else-if chain), so crossing gt upwards is not notified; core TS 1.1
    // section 5.1.2 asks for a notification on every crossing of either threshold.
    (
        "core-ir-gt-lt",
        "120 -> 2.04: not notified (expected notified)",
    ),
    // Its Device object does not implement the mandatory Reboot resource.
    ("1.1-int-241", "Execute /3/0/4 -> 5.00"),
];

/// Asserts that case `c` is N/A for one of the [`JUSTIFIED_NA`] reasons.
fn justified_na(c: &CaseReport, why: &str, table: &str, client: &LeshanClient) {
    assert!(
        JUSTIFIED_NA
            .iter()
            .any(|(name, reason)| c.name() == *name && why.contains(reason)),
        "unexpected N/A {}: {why}\n{table}\n{}",
        c.name(),
        client.log()
    );
}

fn config(http: std::net::SocketAddr) -> ConformanceConfig {
    let mut cfg = ConformanceConfig::new(PackageSource::Native(Default::default())).with_timeouts(
        Duration::from_secs(5),
        Duration::from_secs(30),
        Duration::from_secs(30),
    );
    cfg.short_lifetime = Duration::from_secs(6);
    cfg.http_host = Some(http);
    cfg.register_within = Duration::from_secs(60);
    cfg
}

#[test]
fn leshan_client_passes_the_core_cases_and_is_na_for_firmware() {
    let h = Harness::start("conf-leshan");
    let ep = "leshan-conf";
    let client = LeshanClient::start(&h.dir, ep, &format!("coap://{}", h.coap), 60, None);
    let cfg = config(h.running().http_addr);
    let run =
        h.rt.block_on(h.running().conformance(ep, &cfg, &Selection::all()))
            .expect("run");
    let table = report::table(&run);
    println!("{table}");
    for c in &run.cases {
        match (&c.verdict, c.group) {
            (Verdict::NotApplicable(why), "fw") => assert!(
                why.contains("announces no Object 5"),
                "{}: {why}\n{table}",
                c.name()
            ),
            (other, "fw") => panic!("{} is {other}\n{table}", c.name()),
            (Verdict::Pass, _) => {}
            (Verdict::Fail, _)
                if LESHAN_DEPARTS
                    .iter()
                    .any(|(name, ev)| c.name() == *name && c.evidence.contains(ev)) => {}
            (Verdict::NotApplicable(why), _) => justified_na(c, why, &table, &client),
            (other, _) => panic!("{} is {other}\n{table}\n{}", c.name(), client.log()),
        }
    }
    assert!(run.firmware.is_none(), "{table}");
    assert_eq!(run.count("FAIL"), LESHAN_DEPARTS.len(), "{table}");
    tests::junit::check(&run, &h.dir.join("reports"));
    drop(client);
}

/// Leshan's client registered in Queue Mode (LwM2M 1.1 `Q`): the Queue Mode case passes, its
/// periodic Update coming within the shortened lifetime and the Read kept for it answered at
/// once, and the other registration cases are judged as without Queue Mode. (Leshan's client
/// stays reachable in Queue Mode; our own device, which really sleeps, is judged in
/// `conformance_own_client.rs`.)
#[test]
fn leshan_client_in_queue_mode_passes_the_queue_mode_case() {
    let h = Harness::start("conf-leshan-queue");
    let ep = "leshan-conf-queue";
    let client = LeshanClient::start_plain(
        &h.dir,
        ep,
        &format!("coap://{}", h.coap),
        60,
        LaunchOption::QueueMode,
    );
    let cfg = config(h.running().http_addr);
    let run =
        h.rt.block_on(h.running().conformance(
            ep,
            &cfg,
            &Selection::parse(&["reg".to_string()]).expect("selection"),
        ))
        .expect("run");
    let table = report::table(&run);
    println!("{table}");
    let registration = run.registration.as_ref().expect("registered");
    assert!(registration.queue_mode, "{table}");
    for c in &run.cases {
        match &c.verdict {
            Verdict::Pass => {}
            Verdict::NotApplicable(why) => justified_na(c, why, &table, &client),
            other => panic!("{} is {other}\n{table}\n{}", c.name(), client.log()),
        }
    }
    let queue = run
        .cases
        .iter()
        .find(|c| c.id == "core-reg-queue-mode")
        .expect("the Queue Mode case ran");
    assert_eq!(queue.verdict, Verdict::Pass, "{table}");
    assert!(queue.evidence.contains("an Update after"), "{table}");
    assert!(queue.evidence.contains("-> 2.05"), "{table}");
    drop(client);
}

/// The runner as a test lab runs it against a client that speaks only DTLS: the
/// `conformance` command with `--coaps` and the client's PSK (`--psk`, as `serve` takes it),
/// Leshan's client registered over coaps with that key. The registration cases are judged
/// over the DTLS session: none fails, the command exits 0, and report.json says the device
/// registered securely.
/// Runs the `conformance` command (registration cases) with a coaps endpoint and `security`
/// options (PSK or certificates), starts Leshan's client with `start` against that endpoint's
/// URI, and checks the run: exit 0, no FAIL, some PASS, a secure registration.
fn judged_over_dtls(
    dir: &Path,
    ep: &str,
    security: &[&OsStr],
    start: impl FnOnce(&str) -> LeshanClient,
) {
    let key = dir.join("suit.pem");
    let keygen = Command::new(workspace_bin("lwm2m-server-shim"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(keygen.status.success(), "{keygen:?}");
    let (coap, coaps) = (free_udp_port(), free_udp_port());
    let reports = dir.join("reports");
    let mut cmd = Command::new(workspace_bin("lwm2m-server-shim"));
    cmd.args(["conformance", "--endpoint", ep, "--cases", "reg"])
        .args(["--coap", &format!("127.0.0.1:{coap}")])
        .args(["--coaps", &format!("127.0.0.1:{coaps}")])
        .args(["--http", "127.0.0.1:0"])
        .args(security)
        .arg("--key")
        .arg(&key)
        .arg("--report")
        .arg(&reports);
    let mut runner = LoggedChild::spawn("conformance", &mut cmd, dir.join("runner.log"), false);
    runner.wait_log("waiting for", Duration::from_secs(30));
    let client = start(&format!("coaps://127.0.0.1:{coaps}"));
    let status = runner.wait_exit(Duration::from_secs(300));
    let log = runner.log();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("report.json")).expect("report"))
            .expect("report.json parses");
    assert_eq!(json["summary"]["fail"], 0, "{json}");
    assert!(json["summary"]["pass"].as_u64() > Some(0), "{json}");
    assert_eq!(json["registration"]["secure"], true, "{json}");
    drop(client);
}

#[test]
fn the_conformance_command_judges_leshans_client_over_dtls() {
    let dir = temp_dir("conf-leshan-dtls");
    let ep = "leshan-conf-dtls";
    let psk = "000102030405060708090a0b0c0d0e0f";
    let entry = format!("{ep}:{ep}-id:{psk}");
    judged_over_dtls(&dir, ep, &["--psk".as_ref(), entry.as_ref()], |uri| {
        LeshanClient::start(&dir, ep, uri, 60, Some((&format!("{ep}-id"), psk)))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_conformance_command_judges_leshans_client_with_certificates() {
    let dir = temp_dir("conf-leshan-x509");
    let ep = "leshan-conf-x509";
    let pki = Pki::new(&dir.join("pki"), "conformance-test-ca");
    let shim = pki.issue("shim", "lwm2m-server-shim", &["IP:127.0.0.1"]);
    let (ca_pem, ca_der) = (pki.ca_pem(), pki.ca_der());
    let security: [&OsStr; 6] = [
        "--dtls-cert".as_ref(),
        shim.cert_pem.as_os_str(),
        "--dtls-key".as_ref(),
        shim.key_pem.as_os_str(),
        "--dtls-ca".as_ref(),
        ca_pem.as_os_str(),
    ];
    let mine = pki.issue(ep, ep, &[]);
    judged_over_dtls(&dir, ep, &security, |uri| {
        LeshanClient::start_x509(&dir, ep, uri, 60, &mine, &ca_der)
    });
    let _ = std::fs::remove_dir_all(&dir);
}
