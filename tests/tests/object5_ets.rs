//! OMA ETS firmware-update test cases (OMA-ETS-LightweightM2M-V1_0_1, 1.0-int-751..780), each
//! its own test, over real UDP on loopback with the shim as the LwM2M server and the
//! simulated device as the client. Expectations are the ETS text's (section 6.1.6.6, test cases
//! 750-799): State (/5/0/3) and Update Result (/5/0/5).

use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use object5::author::Delivery;
use tests::e2e::{Harness, PackageKind};

const IDLE: i64 = 0;
const DOWNLOADED: i64 = 2;
const T: Duration = Duration::from_secs(60);

fn registered(h: &Harness, ep: &str) -> InThreadDevice {
    let dev = InThreadDevice::start(h.device_options(ep));
    h.wait_until(&format!("{ep} to register"), T, || h.registered(ep));
    dev
}

/// Waits for the device to come back after its reset and confirm (or revert).
fn wait_version(h: &Harness, ep: &str, version: &str) {
    h.wait_until(&format!("{ep} to run {version}"), T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some(version)
    });
}

#[test]
fn ets_751_readable_resources() {
    let h = Harness::start("ets751");
    let _dev = registered(&h, "ets751");
    let (status, v) = h.get("/api/clients/ets751/5/0?format=TLV");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "CONTENT(205)");
    let res = v["content"]["resources"]
        .as_array()
        .expect("instance resources");
    let value = |id: i64| res.iter().find(|r| r["id"] == id).cloned();
    assert_eq!(value(3).unwrap()["value"], "0", "State Idle");
    assert_eq!(value(5).unwrap()["value"], "0", "Update Result 0");
    // /5/0/8 lists exactly the protocols built in: CoAP, HTTP, HTTPS, CoAP over TCP and over
    // TLS; /5/0/9 both methods.
    let protocols = &value(8).unwrap()["values"];
    let listed: Vec<&str> = protocols
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed, ["0", "2", "3", "4", "5"]);
    assert_eq!(value(9).unwrap()["value"], "2");
}

#[test]
fn ets_771_successful_update_via_package_uri() {
    let h = Harness::start("ets771");
    let dev = registered(&h, "ets771");
    let uri = h.package("fw-2.0.0.suit", &PackageKind::good("2.0.0", 2, 40_000));
    assert_eq!(h.state_result("ets771"), Some((IDLE, 0)));
    let (status, v) = h.write_uri("ets771", &uri);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    h.wait_state("ets771", (DOWNLOADED, 0), T);
    assert_eq!(h.read_string("ets771", "/5/0/7").as_deref(), Some("2.0.0"));
    assert_eq!(h.execute("ets771", "/5/0/2"), "CHANGED(204)");
    wait_version(&h, "ets771", "2.0.0");
    h.wait_state("ets771", (IDLE, 1), T);
    assert_eq!(h.read_string("ets771", "/5/0/7").as_deref(), Some("2.0.0"));
    assert_eq!(h.read_string("ets771", "/5/0/6").as_deref(), Some("sim-fw"));
    dev.stop().unwrap();
}

#[test]
fn ets_770_successful_update_via_push() {
    let h = Harness::start("ets770");
    let dev = registered(&h, "ets770");
    h.package("fw.suit", &PackageKind::good("3.1.0", 5, 20_000));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).unwrap();
    // Reset first (\0), then the real package.
    let (status, v) = h.push("ets770", &[0]);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    assert_eq!(h.state_result("ets770"), Some((IDLE, 0)));
    let (status, v) = h.push("ets770", &pkg);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    h.wait_state("ets770", (DOWNLOADED, 0), T);
    assert_eq!(h.execute("ets770", "/5/0/2"), "CHANGED(204)");
    wait_version(&h, "ets770", "3.1.0");
    h.wait_state("ets770", (IDLE, 1), T);
    dev.stop().unwrap();
}

#[test]
fn ets_779_failed_update_reverts_and_reports_8() {
    let h = Harness::start("ets779");
    let dev = registered(&h, "ets779");
    let mut kind = PackageKind::good("2.0.0-broken", 2, 30_000);
    kind.fails_self_test = true;
    let uri = h.package("bad.suit", &kind);
    h.write_uri("ets779", &uri);
    h.wait_state("ets779", (DOWNLOADED, 0), T);
    assert_eq!(h.execute("ets779", "/5/0/2"), "CHANGED(204)");
    // The new image boots, fails its self-test, resets; the bootloader reverts.
    h.wait_state("ets779", (DOWNLOADED, 8), T);
    assert_eq!(h.read_string("ets779", "/3/0/3").as_deref(), Some("1.0.0"));
    dev.stop().unwrap();
}

#[test]
fn two_stage_pull_fetches_the_image_named_in_the_manifest() {
    let h = Harness::start("twostage");
    let dev = registered(&h, "twostage");
    let mut kind = PackageKind::good("4.0.0", 3, 25_000);
    kind.delivery = Delivery::Uri(h.package_uri("image-4.0.0.bin"));
    let uri = h.package("manifest-4.0.0.suit", &kind);
    h.write_uri("twostage", &uri);
    h.wait_state("twostage", (DOWNLOADED, 0), T);
    h.execute("twostage", "/5/0/2");
    wait_version(&h, "twostage", "4.0.0");
    h.wait_state("twostage", (IDLE, 1), T);
    dev.stop().unwrap();
}

const DOWNLOADING: i64 = 1;

/// Writes `uri` and waits for Idle with `result` (download errors are reported only through
/// Update Result, after a 2.04 for the write itself).
fn pull_fails_with(h: &Harness, ep: &str, uri: &str, result: i64) {
    let (status, v) = h.write_uri(ep, uri);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    h.wait_state(ep, (IDLE, result), T);
    assert_eq!(h.read_string(ep, "/3/0/3").as_deref(), Some("1.0.0"));
}

#[test]
fn ets_755_package_write_resets_then_downloads() {
    let h = Harness::start("ets755");
    let _dev = registered(&h, "ets755");
    let (status, v) = h.push("ets755", &[0]);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    assert_eq!(h.state_result("ets755"), Some((IDLE, 0)));
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 12_000));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).unwrap();
    let (status, v) = h.push("ets755", &pkg);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    assert_eq!(h.state_result("ets755"), Some((DOWNLOADED, 0)));
    // A single NUL resets from Downloaded too, and removes the package.
    h.push("ets755", &[0]);
    assert_eq!(h.state_result("ets755"), Some((IDLE, 0)));
    assert!(h
        .execute("ets755", "/5/0/2")
        .starts_with("METHOD_NOT_ALLOWED"));
}

#[test]
fn ets_756_package_uri_write_resets_then_downloads() {
    let h = Harness::start("ets756");
    let _dev = registered(&h, "ets756");
    let (status, v) = h.write_uri("ets756", "");
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    assert_eq!(h.state_result("ets756"), Some((IDLE, 0)));
    let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 12_000));
    h.write_uri("ets756", &uri);
    h.wait_state("ets756", (DOWNLOADED, 0), T);
    assert_eq!(
        h.read_string("ets756", "/5/0/1").as_deref(),
        Some(uri.as_str())
    );
    h.write_uri("ets756", "");
    assert_eq!(h.state_result("ets756"), Some((IDLE, 0)));
}

#[test]
fn ets_760_observation_notifies_every_state_change() {
    let h = Harness::start("ets760");
    let dev = registered(&h, "ets760");
    let events = h.events("ets760");
    let (status, _) = h.write_attributes("ets760", "/5/0", "pmin=0&pmax=10");
    assert_eq!(status, 200);
    let (status, v) = h.observe("ets760", "/5/0/3");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"]["value"], "0", "initial State Idle");
    let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 30_000));
    h.write_uri("ets760", &uri);
    h.wait_state("ets760", (DOWNLOADED, 0), T);
    h.execute("ets760", "/5/0/2");
    wait_version(&h, "ets760", "2.0.0");
    h.wait_state("ets760", (IDLE, 1), T);
    // Re-observe after the reset (a new registration drops observations, as Leshan does).
    let (status, v) = h.observe("ets760", "/5/0/3");
    assert_eq!((status, v["content"]["value"].as_str()), (200, Some("0")));
    let mut seen = Vec::new();
    while let Ok((event, data)) = events.rx.recv_timeout(Duration::from_millis(500)) {
        if event == "NOTIFICATION" && data["res"] == "/5/0/3" {
            seen.push(data["val"]["value"].as_str().unwrap_or("?").to_owned());
        }
    }
    seen.dedup();
    // 0 came with the observe response; the notifications carry Downloading, Downloaded and
    // Updating in that order (the reset follows the Execute response and the notification).
    assert_eq!(seen, ["1", "2", "3"], "notified states");
    dev.stop().unwrap();
}

#[test]
fn ets_772_install_without_package_is_refused() {
    let h = Harness::start("ets772");
    let _dev = registered(&h, "ets772");
    assert_eq!(h.state_result("ets772"), Some((IDLE, 0)));
    assert_eq!(h.execute("ets772", "/5/0/2"), "METHOD_NOT_ALLOWED(405)");
    assert_eq!(h.state_result("ets772"), Some((IDLE, 0)));
    // Cancel with nothing to cancel is refused too.
    assert_eq!(h.execute("ets772", "/5/0/10"), "METHOD_NOT_ALLOWED(405)");
}

#[test]
fn ets_773_not_enough_storage() {
    let h = Harness::start("ets773");
    let _dev = registered(&h, "ets773");
    // Slots hold 64 KiB: a 100 KiB image cannot fit.
    let uri = h.package("big.suit", &PackageKind::good("9.0.0", 2, 100 * 1024));
    pull_fails_with(&h, "ets773", &uri, 2);
    // Pushed: refused with 4.13 and Size1, and result 2.
    let pkg = std::fs::read(h.dir.join("packages/big.suit")).unwrap();
    let (status, v) = h.push("ets773", &pkg);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "REQUEST_ENTITY_TOO_LARGE(413)", "{v}");
    assert_eq!(h.state_result("ets773"), Some((IDLE, 2)));
}

#[test]
fn ets_774_out_of_ram() {
    let h = Harness::start("ets774");
    let _dev = registered(&h, "ets774");
    // A manifest larger than the device's 4 KiB receive buffer.
    let mut kind = PackageKind::good("2.0.0", 2, 10_000);
    kind.version = "v".repeat(6000);
    let uri = h.package("huge-manifest.suit", &kind);
    pull_fails_with(&h, "ets774", &uri, 3);
}

#[test]
fn ets_775_connection_lost_during_pull() {
    let h = Harness::start("ets775");
    let _dev = registered(&h, "ets775");
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 50_000));
    // The package host goes silent after 10 datagrams (a few blocks).
    let relay = tests::relay::Relay::start(
        "127.0.0.1:0".parse().unwrap(),
        h.coap,
        tests::relay::Faults {
            cut_after: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    let uri = format!("coap://{}/fw/fw.suit", relay.addr());
    let (status, _) = h.write_uri("ets775", &uri);
    assert_eq!(status, 200);
    h.wait_state("ets775", (IDLE, 4), T);
}

#[test]
fn ets_776_integrity_check_failure() {
    let h = Harness::start("ets776");
    let _dev = registered(&h, "ets776");
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 20_000));
    let mut pkg = std::fs::read(h.dir.join("packages/fw.suit")).unwrap();
    let at = pkg.len() - 1000;
    pkg[at] ^= 0x40; // one payload bit: the image digest no longer matches
    h.put_package("tampered.suit", &pkg);
    pull_fails_with(&h, "ets776", &h.package_uri("tampered.suit"), 5);
    // Signed by a key the device does not trust: also 5.
    let other = Harness::start("ets776-other-key");
    other.package("foreign.suit", &PackageKind::good("2.0.0", 2, 5_000));
    let foreign = std::fs::read(other.dir.join("packages/foreign.suit")).unwrap();
    h.put_package("foreign.suit", &foreign);
    pull_fails_with(&h, "ets776", &h.package_uri("foreign.suit"), 5);
}

#[test]
fn ets_777_unsupported_package_type() {
    let h = Harness::start("ets777");
    let _dev = registered(&h, "ets777");
    h.put_package("firmware.zip", b"PK\x03\x04 this is not a SUIT envelope");
    pull_fails_with(&h, "ets777", &h.package_uri("firmware.zip"), 6);
    // A genuine package for another vendor's devices is unsupported here too.
    let mut kind = PackageKind::good("2.0.0", 2, 5_000);
    kind.vendor = "other-vendor.example".into();
    let uri = h.package("other.suit", &kind);
    pull_fails_with(&h, "ets777", &uri, 6);
}

#[test]
fn ets_778_invalid_uri() {
    let h = Harness::start("ets778");
    let _dev = registered(&h, "ets778");
    pull_fails_with(&h, "ets778", &h.package_uri("no-such-package.suit"), 7);
    pull_fails_with(&h, "ets778", "coap//missing-colon/fw", 7);
}

#[test]
fn ets_780_unsupported_protocol() {
    let h = Harness::start("ets780");
    let _dev = registered(&h, "ets780");
    pull_fails_with(&h, "ets780", "ftp://127.0.0.1/fw.suit", 9);
    // coaps is not built into this device (no package-host credentials): /5/0/8 says so.
    pull_fails_with(&h, "ets780", "coaps://127.0.0.1:5684/fw.suit", 9);
}

#[test]
fn cancel_downloaded_package_gives_idle_with_result_10() {
    let h = Harness::start("cancel");
    let _dev = registered(&h, "cancel");
    let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 8_000));
    h.write_uri("cancel", &uri);
    h.wait_state("cancel", (DOWNLOADED, 0), T);
    assert_eq!(h.execute("cancel", "/5/0/10"), "CHANGED(204)");
    assert_eq!(h.state_result("cancel"), Some((IDLE, 10)));
    assert_eq!(h.execute("cancel", "/5/0/2"), "METHOD_NOT_ALLOWED(405)");
    let _ = DOWNLOADING;
}

#[test]
fn deferred_update_reports_11_then_installs_when_the_period_ends() {
    let h = Harness::start("defer");
    let mut opts = h.device_options("defer");
    opts.defer_updates = true;
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered("defer"));
    let (status, v) = h.put(
        "/api/clients/defer/5/0/13?format=TEXT",
        &serde_json::json!({"id": 13, "kind": "singleResource", "type": "unsigned", "value": "2"}),
    );
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{v}"
    );
    let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 10_000));
    h.write_uri("defer", &uri);
    h.wait_state("defer", (DOWNLOADED, 0), T);
    assert_eq!(h.execute("defer", "/5/0/2"), "CHANGED(204)");
    // The user deferred: still Downloaded, Update Result 11.
    assert_eq!(h.state_result("defer"), Some((DOWNLOADED, 11)));
    assert_eq!(h.read_string("defer", "/3/0/3").as_deref(), Some("1.0.0"));
    // Two seconds later it installs by itself.
    wait_version(&h, "defer", "2.0.0");
    h.wait_state("defer", (IDLE, 1), T);
    dev.stop().unwrap();
}
