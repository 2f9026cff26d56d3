//! LwM2M over DTLS end to end: the simulated device registers with the shim over coaps://
//! with a PSK the shim's security store knows (set through its Leshan-style REST API),
//! pulls a package from the shim's coaps package host and completes the update, including
//! the new handshake and Register after its reset. A wrong key never gets a registration in:
//! the shim refuses its handshake and counts the refusal.

use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use tests::e2e::{Harness, PackageKind};

const T: Duration = Duration::from_secs(60);

#[test]
fn device_registers_over_dtls_and_updates_from_the_coaps_package_host() {
    let h = Harness::start_secure("dtls-e2e");
    let ep = "secure-dev";
    assert_eq!(
        h.add_psk(ep, "secure-dev-id", "00112233445566778899aabbccddeeff"),
        200
    );
    let opts = h.psk_device_options(ep, "secure-dev-id", "00112233445566778899aabbccddeeff");
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration over DTLS", T, || h.registered(ep));
    // coaps is listed among the pull protocols now that the device has credentials.
    let (_, v) = h.get(&format!("/api/clients/{ep}/5/0/8?format=TLV"));
    let listed: Vec<&str> = v["content"]["values"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed, ["0", "1", "2", "3", "4", "5"]);

    let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 30_000));
    assert!(uri.starts_with("coaps://"), "{uri}");
    h.write_uri(ep, &uri);
    h.wait_state(ep, (2, 0), T);
    h.execute(ep, "/5/0/2");
    h.wait_until("2.0.0 after the reset", T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some("2.0.0")
    });
    h.wait_state(ep, (0, 1), T);
    dev.stop().unwrap();
}

#[test]
fn a_wrong_key_never_registers() {
    let h = Harness::start_secure("dtls-wrong");
    let ep = "wrong-key";
    assert_eq!(
        h.add_psk(ep, "wrong-key-id", "000102030405060708090a0b0c0d0e0f"),
        200
    );
    let opts = h.psk_device_options(ep, "wrong-key-id", "ffffffffffffffffffffffffffffffff");
    let _dev = InThreadDevice::start(opts);
    // The shim counts the handshake it refuses (GET /api/server/stats), as an operator
    // watching for devices with wrong keys sees it.
    let refused = || h.get("/api/server/stats").1["dtls"]["refusedHandshakes"].as_u64();
    h.wait_until("the shim to refuse the handshake", T, || {
        refused().is_some_and(|n| n >= 1)
    });
    assert!(!h.registered(ep), "a device with the wrong key registered");
    assert_eq!(h.get("/api/server/stats").1["registrations"], 0);
}

/// A device that stops ends its DTLS session with close_notify (RFC 5246 §7.2.1, kept by DTLS
/// 1.2): the server drops the session at once instead of holding it until its idle timeout
/// (an hour in the shim), one more for every restart of every device.
#[test]
fn a_stopping_device_closes_its_dtls_session() {
    let h = Harness::start_secure("dtls-close");
    let ep = "closing-dev";
    let key = "0f0e0d0c0b0a09080706050403020100";
    assert_eq!(h.add_psk(ep, "closing-dev-id", key), 200);
    let dev = InThreadDevice::start(h.psk_device_options(ep, "closing-dev-id", key));
    h.wait_until("registration over DTLS", T, || h.registered(ep));
    let sessions = || h.get("/api/server/stats").1["dtls"]["sessions"].as_u64();
    assert_eq!(sessions(), Some(1));
    dev.stop().unwrap();
    assert!(!h.registered(ep), "deregistered");
    h.wait_until("the session closed", Duration::from_secs(5), || {
        sessions() == Some(0)
    });
}
