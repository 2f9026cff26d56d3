//! The conformance runner against this project's own simulated device
//! (`lwm2m_client::sim::InThreadDevice`, the `lwm2m-client` binary's library entry), in-process
//! over real loopback UDP, trusting the runner's signing key: every case must pass or be N/A for a
//! reason that is a fact about the device.
//! And a fleet of these devices updated through the REST API, followed on the SSE stream.

use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use lwm2m_server_shim::conformance::{
    report, ConformanceConfig, PackageSource, RunReport, Selection, Verdict, CASES,
};
use lwm2m_server_shim::packages::test_packages::{fresh_sequence, Kind, Signer};
use tests::e2e::{start_device_trusting, temp_dir, trusted_signer, Harness};

/// The run's settings for our device: SUIT packages signed by `signer`, loopback timeouts.
fn config(signer: Signer, http: std::net::SocketAddr) -> ConformanceConfig {
    let mut cfg = ConformanceConfig::new(PackageSource::Suit(signer)).with_timeouts(
        Duration::from_secs(3),
        Duration::from_secs(60),
        Duration::from_secs(30),
    );
    cfg.notify_within = Duration::from_secs(15);
    cfg.short_lifetime = Duration::from_secs(6);
    cfg.http_host = Some(http);
    cfg.register_within = Duration::from_secs(10);
    cfg
}

fn table(r: &RunReport) -> String {
    report::table(r)
}

/// Why our device may be N/A in a case: each reason is a fact about the device or the shim.
/// It announces one preferred format (ct=112) and serves TLV, SenML JSON/CBOR, LwM2M JSON and
/// CBOR too, so every format case (203, 204, 211, 231, 232) must pass.
const JUSTIFIED_NA: [(&str, &str); 3] = [
    // Started without Queue Mode in this run (a run in Queue Mode is below).
    ("core-reg-queue-mode", "registered without Queue Mode"),
    // It has no Portfolio object.
    (
        "core-dm-create-delete",
        "announces no object a server may create",
    ),
    // It lists https in /5/0/8; the shim hosts no https.
    ("1.0-int-771[https]", "the shim cannot host https"),
];

/// A conformance run of `selection` against `ep` on the harness's shim.
fn conform(h: &Harness, ep: &str, cfg: &ConformanceConfig, selection: &Selection) -> RunReport {
    h.rt.block_on(h.running().conformance(ep, cfg, selection))
        .expect("run")
}

/// The selection `--cases spec` makes.
fn cases(spec: &str) -> Selection {
    Selection::parse(&[spec.to_string()]).expect("selection")
}

/// Every case passed or is N/A for one of the [`JUSTIFIED_NA`] reasons.
fn passes_or_justified_na(run: &RunReport, table: &str) {
    for c in &run.cases {
        match &c.verdict {
            Verdict::Pass => {}
            Verdict::NotApplicable(why) => {
                let justified = JUSTIFIED_NA
                    .iter()
                    .any(|(name, reason)| c.name() == *name && why.contains(reason));
                assert!(justified, "unexpected N/A {}: {why}\n{table}", c.name());
            }
            other => panic!("{} is {other}\n{table}", c.name()),
        }
    }
}

#[test]
fn every_case_passes_or_is_justified_na_against_our_client() {
    // Package hosts over CoAP over TCP and TLS run too (the harness starts them); the device
    // trusts the TLS certificate.
    let h = Harness::start("conformance");
    let dir = temp_dir("conformance-device");
    let (signer, anchor) = trusted_signer(&dir);
    let device = start_device_trusting(
        h.coap,
        "ets-dev",
        &dir.join("state"),
        &anchor,
        Some(&h.tls_ca),
    );
    let mut cfg = config(signer, h.running().http_addr);
    cfg.coap_tcp_host = h.running().coap_tcp.as_ref().map(|t| t.local_addr());
    cfg.coaps_tcp_host = h.running().coaps_tcp.as_ref().map(|t| t.local_addr());
    let run = conform(&h, "ets-dev", &cfg, &Selection::all());
    let table = table(&run);
    // Every case a server can provoke ran (774 and Send only when named), 771 once per
    // protocol the device lists (coap, http, https, coap+tcp, coaps+tcp).
    let provokable = CASES.iter().filter(|c| c.provokable).count();
    assert_eq!(run.cases.len(), provokable + 4, "{table}");
    passes_or_justified_na(&run, &table);
    assert_eq!(run.count("N/A"), JUSTIFIED_NA.len(), "{table}");
    // The evidence names what decided the verdict.
    let evidence = |name: &str| {
        run.cases
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.evidence.clone())
            .unwrap_or_default()
    };
    assert!(
        evidence("1.0-int-779").contains("State 2, Result 8"),
        "{table}"
    );
    assert!(
        evidence("1.0-int-771[http]").contains("pull over http"),
        "{table}"
    );
    assert!(
        evidence("1.0-int-775").contains("cut the http transfer"),
        "{table}"
    );
    let fw = run.firmware.as_ref().expect("/5/0 read");
    assert_eq!(fw.protocols, [0, 2, 3, 4, 5], "{table}");
    for tcp in ["1.0-int-771[coap+tcp]", "1.0-int-771[coaps+tcp]"] {
        assert!(evidence(tcp).contains("pull over"), "{tcp}: {table}");
    }
    assert_eq!(fw.delivery, Some(2), "{table}");

    // Asking for 774 explicitly reports it as not provokable rather than passing it.
    let only = conform(&h, "ets-dev", &cfg, &cases("774"));
    assert_eq!(only.cases.len(), 1);
    assert!(
        matches!(&only.cases[0].verdict, Verdict::Inconclusive(why) if why.contains("out of RAM")),
        "{:?}",
        only.cases[0]
    );
    assert!(!only.failed());

    drop(device);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Our device in Queue Mode, sleeping 2 s after each exchange while the runner's shim assumes
/// the usual 93 s (a lab does not know a device's awake time): a request that meets the sleeping
/// device goes unanswered, the runner takes the device for asleep, waits for its next Update
/// (within its lifetime) and asks again, as Leshan's server does with a queue-mode client that
/// does not answer. Every core case then passes or is N/A as in the run above, and the Queue
/// Mode case passes: the device woke up with an Update and answered the request kept for it.
#[test]
fn a_queue_mode_device_that_sleeps_early_is_judged_on_every_core_case() {
    let h = Harness::start("conformance-queue");
    let dir = temp_dir("conformance-queue-device");
    let (signer, anchor) = trusted_signer(&dir);
    let device = InThreadDevice::start_args(vec![
        format!("--server=coap://{}", h.coap),
        "--endpoint=ets-queue".to_string(),
        format!("--state-dir={}", dir.join("state").display()),
        format!("--trust-anchor={}", anchor.display()),
        "--queue-mode".to_string(),
        "--awake-time=2".to_string(),
        "--lifetime=12".to_string(),
    ])
    .expect("device options");
    let cfg = config(signer, h.running().http_addr);
    let run = conform(&h, "ets-queue", &cfg, &cases("core"));
    let table = table(&run);
    passes_or_justified_na(&run, &table);
    let queue = run
        .cases
        .iter()
        .find(|c| c.id == "core-reg-queue-mode")
        .expect("the Queue Mode case ran");
    assert!(queue.evidence.contains("-> 2.05"), "{table}");
    println!("{table}");
    drop(device);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rest_jobs_update_a_fleet_of_our_devices_with_sse_progress() {
    let h = Harness::start("fleet-rest");
    let dir = temp_dir("fleet-devices");
    let (signer, anchor) = trusted_signer(&dir);
    let package = signer
        .build(Kind::Good, "3.0.0", fresh_sequence())
        .expect("package");
    let (s, _) = h.put_bytes(
        "/api/packages/fleet.suit",
        "application/octet-stream",
        &package,
    );
    assert_eq!(s, 201);
    let events = h.events("");
    let eps: Vec<String> = (0..3).map(|i| format!("fleet-{i}")).collect();
    let devices: Vec<_> = eps
        .iter()
        .map(|ep| start_device_trusting(h.coap, ep, &dir.join(ep), &anchor, None))
        .collect();
    // Registrations may come in any order: wait on the store.
    h.wait_until("the devices to register", Duration::from_secs(20), || {
        eps.iter()
            .all(|ep| h.running().shim.store.get_by_endpoint(ep).is_some())
    });
    let mut ids = Vec::new();
    for (i, ep) in eps.iter().enumerate() {
        let method = if i % 2 == 0 { "pull" } else { "push" };
        let body = serde_json::json!({"package": "fleet.suit", "method": method}).to_string();
        let (s, job) = h.post(&format!("/api/clients/{ep}/firmware"), body.as_bytes());
        assert_eq!(s, 202, "{job}");
        ids.push(job["id"].as_u64().expect("id"));
    }
    let mut done = std::collections::HashSet::new();
    while done.len() < ids.len() {
        let d = events.wait_for(&["FIRMWARE"], Duration::from_secs(60), |d| {
            d["phase"] == "SUCCEEDED" || d["phase"] == "FAILED"
        });
        assert_eq!(d["phase"], "SUCCEEDED", "{d}");
        assert_eq!(
            (d["state"].as_i64(), d["result"].as_i64()),
            (Some(0), Some(1)),
            "{d}"
        );
        assert_eq!(d["firmwareVersion"], "3.0.0", "{d}");
        done.insert(d["id"].as_u64().expect("id"));
    }
    let (s, jobs) = h.get("/api/jobs");
    assert_eq!(s, 200);
    for id in &ids {
        let j = jobs
            .as_array()
            .and_then(|a| a.iter().find(|j| j["id"] == *id))
            .cloned()
            .unwrap_or_default();
        assert_eq!(j["phase"], "SUCCEEDED", "{jobs}");
    }
    // The devices really run the new image: /3/0/3 through the Leshan-style read.
    for ep in &eps {
        let (s, r) = h.get(&format!("/api/clients/{ep}/3/0/3"));
        assert_eq!(
            (s, r["content"]["value"].as_str()),
            (200, Some("3.0.0")),
            "{r}"
        );
    }
    drop(devices);
    let _ = std::fs::remove_dir_all(&dir);
}
