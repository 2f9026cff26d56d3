//! OMA ETS firmware-update test cases (OMA-ETS-LightweightM2M-V1_0_1, 1.0-int-751..780), each
//! its own test, over real UDP on loopback with the shim as the LwM2M server and the
//! simulated device as the client. Expectations are the ETS text's (see
//! ../shared/reference/lwm2m-object5.md §4.1): State (/5/0/3) and Update Result (/5/0/5).

use std::time::Duration;

use object5::author::Delivery;
use tests::e2e::{Harness, PackageKind, SimDeviceThread};

const IDLE: i64 = 0;
const DOWNLOADED: i64 = 2;
const T: Duration = Duration::from_secs(60);

fn registered(h: &Harness, ep: &str) -> SimDeviceThread {
    let dev = SimDeviceThread::start(h.device_options(ep));
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
    // /5/0/8 lists exactly the protocols built in: CoAP, HTTP, HTTPS; /5/0/9 both methods.
    let protocols = &value(8).unwrap()["values"];
    let listed: Vec<&str> = protocols
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed, ["0", "2", "3"]);
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
