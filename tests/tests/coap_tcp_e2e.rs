//! Firmware updates pulled over CoAP over TCP and over TLS (RFC 8323) end to end: the shim's
//! coap+tcp and coaps+tcp package hosts, the simulated device pulling with BERT blocks, the
//! update installed after the reset. /5/0/8 lists 4 and 5; a device that does not trust the
//! host's certificate reports a lost connection, never a stored package.

use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use tests::e2e::{Harness, PackageKind};

const T: Duration = Duration::from_secs(60);

fn update_over(secure: bool, tag: &str) {
    let h = Harness::start(tag);
    let ep = tag;
    let dev = InThreadDevice::start(h.device_options(ep));
    h.wait_until("registration", T, || h.registered(ep));
    let (_, v) = h.get(&format!("/api/clients/{ep}/5/0/8?format=TLV"));
    let listed: Vec<&str> = v["content"]["values"]
        .as_object()
        .expect("/5/0/8 values")
        .values()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        listed.contains(&"4") && listed.contains(&"5"),
        "/5/0/8 {listed:?}"
    );

    // 60 000 bytes: BERT blocks of 16 KiB, the last one short.
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 60_000));
    let uri = h.package_tcp_uri("fw.suit", secure);
    assert!(
        uri.starts_with(if secure {
            "coaps+tcp://"
        } else {
            "coap+tcp://"
        }),
        "{uri}"
    );
    let (status, v) = h.write_uri(ep, &uri);
    assert_eq!(status, 200, "{v}");
    h.wait_state(ep, (2, 0), T);
    assert_eq!(h.execute(ep, "/5/0/2"), "CHANGED(204)");
    h.wait_until("2.0.0 after the reset", T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some("2.0.0")
    });
    h.wait_state(ep, (0, 1), T);
    dev.stop().expect("device stops");
}

#[test]
fn device_updates_from_the_coap_tcp_package_host() {
    update_over(false, "coap-tcp-e2e");
}

#[test]
fn device_updates_from_the_coaps_tcp_package_host() {
    update_over(true, "coaps-tcp-e2e");
}

#[test]
fn an_untrusted_certificate_is_a_lost_connection() {
    let h = Harness::start("coaps-tcp-untrusted");
    let ep = "untrusting";
    let mut opts = h.device_options(ep);
    opts.pull_ca = None;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 20_000));
    h.write_uri(ep, &h.package_tcp_uri("fw.suit", true));
    // Idle with Update Result 4: the handshake failed, nothing was stored.
    h.wait_state(ep, (0, 4), T);
    assert_eq!(h.read_string(ep, "/3/0/3").as_deref(), Some("1.0.0"));
}

#[test]
fn a_missing_package_is_an_invalid_uri() {
    let h = Harness::start("coap-tcp-missing");
    let ep = "missing-tcp";
    let _dev = InThreadDevice::start(h.device_options(ep));
    h.wait_until("registration", T, || h.registered(ep));
    h.write_uri(ep, &h.package_tcp_uri("nope.suit", false));
    h.wait_state(ep, (0, 7), T);
}

/// A device in PSK mode (LwM2M's usual credentials, over coaps) pulls from the coaps+tcp
/// host with the same PSK and no CA for the host's certificate: the PSK alone authenticates
/// both ends, as over DTLS.
#[test]
fn a_psk_device_updates_from_the_coaps_tcp_package_host_without_a_ca() {
    let h = Harness::start_secure("coaps-tcp-psk");
    let ep = "psk-tcp";
    assert_eq!(
        h.add_psk(ep, "psk-tcp-id", "00112233445566778899aabbccddeeff"),
        200
    );
    let mut opts = h.psk_device_options(ep, "psk-tcp-id", "00112233445566778899aabbccddeeff");
    opts.pull_ca = None;
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 40_000));
    h.pull_and_install(ep, &h.package_tcp_uri("fw.suit", true), "2.0.0");
    dev.stop().expect("device stops");
}
