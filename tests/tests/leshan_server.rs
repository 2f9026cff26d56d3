//! Eclipse Leshan's demo server manages our `lwm2m-client` binary (issue 14, part 1). Every
//! request to the device goes through Leshan's own REST API and every event comes from Leshan's
//! SSE stream; our shim only hosts the signed packages (CoAP and HTTP), as a file server would.
//! Leshan, the device and the package host are real processes / sockets on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::e2e::{assert_resumed, write_key_file, Harness, PackageKind};
use tests::leshan::{
    instance_resource, is_registered, node_int, node_value, read_int, LeshanBootstrap, LeshanServer,
};
use tests::nat::Nat;
use tests::pki::Pki;
use tests::process::{lwm2m_client, LoggedChild};
use tests::rest::{Events, Rest};

const REGISTER: Duration = Duration::from_secs(60);
const UPDATE: Duration = Duration::from_secs(120);

/// Our device binary registered with `server` (a `coap://` or `coaps://` URI), trusting the
/// package host's signing key.
fn device(host: &Harness, server: &str, ep: &str, extra: &[&str]) -> LoggedChild {
    let state = host.dir.join(format!("state-{ep}"));
    let anchor = host.trust_anchor.display().to_string();
    let state = state.display().to_string();
    let mut args = vec![
        "--server",
        server,
        "--endpoint",
        ep,
        "--state-dir",
        &state,
        "--lifetime",
        "60",
        "--trust-anchor",
        &anchor,
        "--pull-ack-timeout-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    lwm2m_client(&host.dir, ep, &args)
}

/// A Read through Leshan's REST API; asserts that the device answered 2.05 and returns the
/// content node.
fn read(rest: &Rest, ep: &str, path: &str, format: &str) -> Value {
    let (status, v) = rest.get(&format!(
        "/api/clients/{ep}{path}?format={format}&timeout=10"
    ));
    assert_eq!(status, 200, "read {path} as {format}: HTTP {status} {v}");
    assert_eq!(
        v["status"], "CONTENT(205)",
        "read {path} as {format}: Leshan says {v}"
    );
    v["content"].clone()
}

/// Polls Leshan's reads of `path` until they give `want`.
fn wait_int(rest: &Rest, ep: &str, path: &str, want: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        last = read_int(rest, ep, path);
        if last == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{ep}{path}: waited for {want} through Leshan, last read {last:?}");
}

/// Polls `/3/0/3` (Firmware Version) through Leshan until it reads `want`.
fn wait_version(rest: &Rest, ep: &str, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (status, v) = rest.get(&format!("/api/clients/{ep}/3/0/3?format=TLV&timeout=10"));
        if status == 200 && node_value(&v["content"]) == want {
            return;
        }
        last = v;
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{ep}: /3/0/3 never read {want:?} through Leshan; last {last}");
}

/// Write /5/0/1 through Leshan (the node JSON both Leshan dialects accept).
fn write_uri(rest: &Rest, ep: &str, uri: &str) {
    let (status, v) = rest.put(
        &format!("/api/clients/{ep}/5/0/1?format=TLV&timeout=10"),
        &json!({"id": 1, "kind": "singleResource", "type": "string", "value": uri}),
    );
    assert_eq!(status, 200, "write /5/0/1: {v}");
    assert_eq!(v["status"], "CHANGED(204)", "write /5/0/1 = {uri}: {v}");
}

/// Execute /5/0/2 through Leshan. The device answers 2.04, resets and registers again within
/// milliseconds (its simulated reset takes no time), and Leshan cancels a registration's
/// pending requests when the endpoint registers again: on a loaded machine the new Register
/// can be taken before the 2.04 (seen once in CI, Leshan's REST answering HTTP 500 "Request
/// cancelled", the device's log showing the reset right after the Execute). Either way the
/// device executed; every caller then checks the new registration, version and result.
fn execute_update(rest: &Rest, ep: &str) {
    let (status, v) = rest.post(&format!("/api/clients/{ep}/5/0/2?timeout=10"), b"");
    let overtaken = status == 500
        && v.as_str().is_some_and(|m| {
            m.starts_with("Request cancelled:Request coap") && m.ends_with("/5/0/2 canceled")
        });
    if overtaken {
        return;
    }
    assert_eq!(status, 200, "execute /5/0/2: {v}");
    assert_eq!(v["status"], "CHANGED(204)", "execute /5/0/2: {v}");
}

/// The registration id Leshan holds for `ep`.
fn registration_id(rest: &Rest, ep: &str) -> String {
    let (status, reg) = rest.get(&format!("/api/clients/{ep}"));
    assert_eq!(status, 200, "{ep} registered: {reg}");
    reg["registrationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits for the REGISTRATION or UPDATED event that follows the device's reboot.
fn wait_reregistered(events: &Events, ep: &str) {
    events.wait_for(&["REGISTRATION", "UPDATED"], UPDATE, |d| {
        d["endpoint"] == ep || d["registration"]["endpoint"] == ep
    });
}

/// After Execute: the device reboots and registers again (Leshan's REGISTRATION or UPDATED
/// event, a registration other than `before`), confirms the image, and Leshan reads State 0,
/// Update Result 1 and `version`.
fn finish_update(rest: &Rest, events: &Events, ep: &str, before: &str, version: &str) {
    wait_reregistered(events, ep);
    assert_ne!(
        registration_id(rest, ep),
        before,
        "a new registration after the reboot"
    );
    wait_version(rest, ep, version, UPDATE);
    assert_eq!(read_int(rest, ep, "/5/0/3"), Some(0), "State Idle");
    assert_eq!(
        read_int(rest, ep, "/5/0/5"),
        Some(1),
        "Update Result: success"
    );
}

/// Registration as Leshan sees it, then reads of /3/0, /5/0 and single resources in each
/// format Leshan 2.0.0-M4 names for them. (LwM2M CBOR, 11544, is not among its formats: it
/// knows TLV, JSON, SENML_JSON, SENML_CBOR, CBOR, TEXT, OPAQUE and LINK.)
#[test]
fn leshan_reads_our_device_in_tlv_senml_json_and_senml_cbor() {
    let leshan = LeshanServer::start("lsh-read");
    let host = Harness::start("lsh-read-host");
    let ep = "lsh-read";
    let _dev = device(&host, &leshan.coap_uri(), ep, &[]);
    let reg = leshan.wait_registered(ep, REGISTER);
    assert_eq!(reg["lwM2mVersion"], "1.1", "{reg}");
    assert_eq!(reg["secure"], false, "{reg}");
    let links: Vec<&str> = reg["objectLinks"]
        .as_array()
        .expect("objectLinks")
        .iter()
        .filter_map(|l| l["url"].as_str())
        .collect();
    for want in ["/3/0", "/5/0"] {
        assert!(links.contains(&want), "{want} not in {links:?}");
    }

    for format in ["TLV", "SENML_JSON", "SENML_CBOR"] {
        let device = read(&leshan.rest, ep, "/3/0", format);
        let version = instance_resource(&device, 3).expect("/3/0/3 in the instance");
        assert_eq!(node_value(version), "1.0.0", "{format}: {device}");
        let serial = instance_resource(&device, 2).expect("/3/0/2 in the instance");
        assert_eq!(node_value(serial), ep, "{format}: {device}");

        let fw = read(&leshan.rest, ep, "/5/0", format);
        let int = |id| instance_resource(&fw, id).and_then(node_int);
        assert_eq!(int(3), Some(0), "{format} State: {fw}");
        assert_eq!(int(5), Some(0), "{format} Update Result: {fw}");
        assert_eq!(int(9), Some(2), "{format} Delivery Method (both): {fw}");
        let protocols = instance_resource(&fw, 8).expect("/5/0/8");
        assert!(
            protocols["values"]
                .as_object()
                .is_some_and(|m| m.values().any(|v| v == 0 || v == "0")),
            "{format}: CoAP (0) among the protocols: {protocols}"
        );

        let state = read(&leshan.rest, ep, "/5/0/3", format);
        assert_eq!(node_int(&state), Some(0), "{format} /5/0/3: {state}");
    }
    let text = read(&leshan.rest, ep, "/3/0/3", "TEXT");
    assert_eq!(node_value(&text), "1.0.0", "TEXT /3/0/3: {text}");
}

/// LwM2M JSON (11543), deprecated in LwM2M 1.1 but the format Leshan's `JSON` names.
#[test]
fn leshan_reads_our_device_in_lwm2m_json() {
    let leshan = LeshanServer::start("lsh-json");
    let host = Harness::start("lsh-json-host");
    let ep = "lsh-json";
    let _dev = device(&host, &leshan.coap_uri(), ep, &[]);
    leshan.wait_registered(ep, REGISTER);
    let device = read(&leshan.rest, ep, "/3/0", "JSON");
    let version = instance_resource(&device, 3).expect("/3/0/3 in the instance");
    assert_eq!(node_value(version), "1.0.0", "JSON: {device}");
    let fw = read(&leshan.rest, ep, "/5/0", "JSON");
    assert_eq!(
        instance_resource(&fw, 3).and_then(node_int),
        Some(0),
        "JSON State: {fw}"
    );
}

/// CBOR (60), the LwM2M 1.1 single-value format Leshan's `CBOR` names: Leshan decodes our
/// String, Integer and Time (tag 1) items and writes a String item the device takes.
/// The longest endpoint name the device takes (`--endpoint`: 252 bytes, so `ep=` and the name
/// fill one 255-byte Uri-Query option) registers with Leshan, which answers 4.02 Bad Option to
/// one byte more (measured by hand; the device refuses such a name at start).
#[test]
fn leshan_registers_our_device_under_the_longest_endpoint_name() {
    let leshan = LeshanServer::start("lsh-long-ep");
    let host = Harness::start("lsh-long-ep-host");
    let ep = "e".repeat(252);
    let state = host.dir.join("state-long-ep").display().to_string();
    let server = leshan.coap_uri();
    let args = [
        "--server",
        &server,
        "--endpoint",
        &ep,
        "--state-dir",
        &state,
    ];
    // Named apart from the endpoint: a file name of 252 bytes and more is too long.
    let _dev = lwm2m_client(&host.dir, "long-ep", &args);
    let reg = leshan.wait_registered(&ep, REGISTER);
    assert_eq!(reg["endpoint"], ep.as_str(), "{reg}");
}

#[test]
fn leshan_reads_and_writes_single_values_of_our_device_in_cbor() {
    let leshan = LeshanServer::start("lsh-cbor");
    let host = Harness::start("lsh-cbor-host");
    let ep = "lsh-cbor";
    let _dev = device(&host, &leshan.coap_uri(), ep, &[]);
    leshan.wait_registered(ep, REGISTER);
    let version = read(&leshan.rest, ep, "/3/0/3", "CBOR");
    assert_eq!(node_value(&version), "1.0.0", "CBOR /3/0/3: {version}");
    let state = read(&leshan.rest, ep, "/5/0/3", "CBOR");
    assert_eq!(node_int(&state), Some(0), "CBOR /5/0/3: {state}");
    let time = read(&leshan.rest, ep, "/3/0/13", "CBOR");
    // Leshan shows a Time as an ISO 8601 instant ("2026-01-02T03:04:05Z").
    assert!(
        time["value"]
            .as_str()
            .is_some_and(|t| t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T'),
        "CBOR /3/0/13 read as a Time: {time}"
    );
    let uri = "coap://127.0.0.1:9/never";
    let (status, v) = leshan.rest.put(
        &format!("/api/clients/{ep}/5/0/1?format=CBOR&timeout=10"),
        &json!({"id": 1, "kind": "singleResource", "type": "string", "value": uri}),
    );
    assert_eq!((status, &v["status"]), (200, &json!("CHANGED(204)")), "{v}");
    let written = read(&leshan.rest, ep, "/5/0/1", "TEXT");
    assert_eq!(node_value(&written), uri, "{written}");
}

/// The registration retry procedure's settings (Server /1/0/16-20, LwM2M 1.1 Core E.2 and
/// §6.2.1.1), here the device's own from its command line: Leshan reads the Server instance in
/// TLV, SenML JSON and SenML CBOR and decodes 17-20 as its model has them (Unsigned Integer).
/// Leshan 2.0.0-M4's REST API cannot write them: its JSON decoder makes every number an
/// Integer, which Leshan then refuses for these resources itself.
#[test]
fn leshan_reads_the_registration_retry_procedure_of_our_device() {
    let leshan = LeshanServer::start("lsh-retry");
    let host = Harness::start("lsh-retry-host");
    let ep = "lsh-retry";
    let retry = [
        "--retry-count",
        "3",
        "--retry-timer",
        "7",
        "--sequence-delay",
        "3600",
        "--retry-sequences",
        "2",
    ];
    let _dev = device(&host, &leshan.coap_uri(), ep, &retry);
    leshan.wait_registered(ep, REGISTER);
    for format in ["TLV", "SENML_JSON", "SENML_CBOR"] {
        let instance = read(&leshan.rest, ep, "/1/0", format);
        let r = instance_resource(&instance, 16).unwrap_or_else(|| panic!("{format} 16"));
        assert_eq!(r["value"], json!(true), "{format}: {r}");
        // Leshan holds an Unsigned Integer as a ULong, which its REST API shows as an object.
        for (id, want) in [(17, 3), (18, 7), (19, 3600), (20, 2)] {
            let r = instance_resource(&instance, id).unwrap_or_else(|| panic!("{format} {id}"));
            assert_eq!(r["value"], json!({ "value": want }), "{format}: {r}");
        }
    }
}

#[test]
fn leshan_registers_our_device_over_coaps_with_psk_from_its_security_api() {
    let leshan = LeshanServer::start("lsh-psk");
    let host = Harness::start("lsh-psk-host");
    let ep = "lsh-psk";
    let key = "000102030405060708090a0b0c0d0e0f";
    let _dev = psk_device(&host, &leshan, ep, ("lsh-psk-identity", key), &[]);
    let (status, infos) = leshan.rest.get("/api/security/clients");
    assert_eq!(status, 200);
    assert!(
        infos
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["endpoint"] == ep)),
        "security info stored: {infos}"
    );
    registered_over_dtls(&leshan, ep);
}

/// Our device `ep` at Leshan's `coaps://` endpoint with the PSK (`identity`, hex `key`), which
/// Leshan's security API is given first, and `extra`; the device reads the key from a file
/// (with a final newline) readable by its owner only, as a user keeps it out of `ps`.
fn psk_device(
    host: &Harness,
    leshan: &LeshanServer,
    ep: &str,
    (identity, key): (&str, &str),
    extra: &[&str],
) -> LoggedChild {
    assert_eq!(leshan.add_psk(ep, identity, key), 200);
    let key_file = write_key_file(&host.dir.join(format!("{ep}.hex")), &format!("{key}\n"));
    let mut args = vec!["--psk-identity", identity, "--psk-key-file", &key_file];
    args.extend_from_slice(extra);
    device(host, &leshan.coaps_uri(), ep, &args)
}

/// Disable (/1/0/4, LwM2M 1.1 Core E.2) from Leshan, over DTLS: after Leshan wrote a Disable
/// Timeout of 4 s (/1/0/5) and executed Disable, Leshan sees the device de-register and, no
/// sooner than 4 s later, register again over a new DTLS session.
#[test]
fn leshan_disables_our_device_for_the_disable_timeout() {
    let leshan = LeshanServer::start("lsh-disable");
    let host = Harness::start("lsh-disable-host");
    let ep = "lsh-disable";
    let key = "0f0e0d0c0b0a09080706050403020100";
    let mut dev = psk_device(&host, &leshan, ep, ("lsh-disable-identity", key), &[]);
    registered_over_dtls(&leshan, ep);
    let before = registration_id(&leshan.rest, ep);
    let (status, v) = leshan.rest.put(
        &format!("/api/clients/{ep}/1/0/5?format=TLV&timeout=10"),
        &json!({"id": 5, "kind": "singleResource", "type": "integer", "value": 4}),
    );
    assert_eq!((status, &v["status"]), (200, &json!("CHANGED(204)")), "{v}");
    assert_eq!(read_int(&leshan.rest, ep, "/1/0/5"), Some(4));
    let events = leshan.rest.events(ep);
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/1/0/4?timeout=10"), b"");
    assert_eq!((status, &v["status"]), (200, &json!("CHANGED(204)")), "{v}");
    // Polled, not awaited on the event stream: Leshan's servlet flushes the stream's headers
    // before it adds the listener, so a De-register right after the Execute (100 ms on a fast
    // machine) can fire before the stream hears anything.
    let deadline = Instant::now() + REGISTER;
    while is_registered(&leshan.rest, ep) {
        assert!(Instant::now() < deadline, "{ep} not de-registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let away = Instant::now();
    events.wait_for(&["REGISTRATION"], REGISTER, |d| d["endpoint"] == ep);
    let gone_for = away.elapsed();
    assert!(
        gone_for >= Duration::from_millis(3_500),
        "back after {gone_for:?}"
    );
    assert_ne!(registration_id(&leshan.rest, ep), before);
    registered_over_dtls(&leshan, ep);
    dev.wait_log("disabled by the server", REGISTER);
    assert_eq!(dev.log().matches("DTLS session established").count(), 2);
}

/// Our device in certificate mode (--cert, --cert-key, --ca) with its own certificate from
/// `pki`, CN `ep`, as Leshan wants it.
fn x509_device(host: &Harness, pki: &Pki, leshan: &LeshanServer, ep: &str) -> LoggedChild {
    let mine = pki.issue(ep, ep, &[]);
    let (cert, key, ca) = (
        mine.cert_pem.display().to_string(),
        mine.key_pem.display().to_string(),
        pki.ca_pem().display().to_string(),
    );
    device(
        host,
        &leshan.coaps_uri(),
        ep,
        &["--cert", &cert, "--cert-key", &key, "--ca", &ca],
    )
}

/// Certificate mode against a peer we did not write: Leshan (Californium's DTLS) presents a
/// certificate for 127.0.0.1 from the device's CA; the device presents one for its endpoint
/// name from the same CA. The suite is the one LwM2M mandates for certificates.
#[test]
fn leshan_registers_our_device_over_coaps_with_x509_certificates() {
    let host = Harness::start("lsh-x509-host");
    let pki = Pki::new(&host.dir.join("pki"), "lsh-test-ca");
    let server = pki.issue("leshan", "leshan.test", &["IP:127.0.0.1"]);
    let ep = "lsh-x509";
    let leshan = LeshanServer::start_x509("lsh-x509", &pki, &server, ep);
    let _dev = x509_device(&host, &pki, &leshan, ep);
    registered_over_dtls(&leshan, ep);
}

/// The same Leshan, but its certificate (from the device's own CA) names another address:
/// the device must not take it for its server's (RFC 6125 §6) and never registers.
#[test]
fn our_device_refuses_a_leshan_certificate_for_another_host() {
    let host = Harness::start("lsh-x509-other-host");
    let pki = Pki::new(&host.dir.join("pki"), "lsh-test-ca");
    let server = pki.issue(
        "leshan",
        "leshan.test",
        &["IP:127.0.0.2", "DNS:leshan.test"],
    );
    let ep = "lsh-x509-other";
    let leshan = LeshanServer::start_x509("lsh-x509-other", &pki, &server, ep);
    let mut dev = x509_device(&host, &pki, &leshan, ep);
    dev.wait_log("DTLS handshake failed", REGISTER);
    let log = dev.log();
    assert!(
        log.contains("peer certificate: IP address mismatch"),
        "refused for the certificate's name: {log}"
    );
    assert!(!is_registered(&leshan.rest, ep), "not registered");
}

/// Waits until Leshan has `ep` registered over DTLS, then reads its firmware version (1.0.0)
/// through the session.
fn registered_over_dtls(leshan: &LeshanServer, ep: &str) {
    let reg = leshan.wait_registered(ep, REGISTER);
    assert_eq!(reg["secure"], true, "registered over DTLS: {reg}");
    let device = read(&leshan.rest, ep, "/3/0", "TLV");
    assert_eq!(
        instance_resource(&device, 3).map(node_value),
        Some(&json!("1.0.0")),
        "{device}"
    );
}

/// The whole pull update driven by Leshan: Write-Attributes and Observe on State, Package URI
/// on our package host over CoAP, each State change as a NOTIFICATION on Leshan's SSE stream,
/// Execute once Downloaded, the reboot and new registration, then the final reads; then a
/// second update whose URI is HTTP.
#[test]
fn leshan_drives_a_pull_update_over_coap_and_http() {
    let leshan = LeshanServer::start("lsh-pull");
    let host = Harness::start("lsh-pull-host");
    let ep = "lsh-pull";
    let coap_uri = host.package("fw2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    host.package("fw3.suit", &PackageKind::good("3.0.0", 3, 20_000));
    let http_uri = host.package_http_uri("fw3.suit");

    let _dev = device(&host, &leshan.coap_uri(), ep, &[]);
    leshan.wait_registered(ep, REGISTER);
    let before = registration_id(&leshan.rest, ep);
    let events = leshan.rest.events(ep);

    let (status, v) = leshan.rest.put_empty(&format!(
        "/api/clients/{ep}/5/0/3/attributes?pmin=0&pmax=120"
    ));
    assert_eq!(status, 200, "write-attributes: {v}");
    assert_eq!(v["status"], "CHANGED(204)", "write-attributes: {v}");
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/5/0/3/observe?format=TLV"), b"");
    assert_eq!(status, 200, "observe: {v}");
    assert_eq!(v["status"], "CONTENT(205)", "observe: {v}");
    assert_eq!(node_int(&v["content"]), Some(0), "observe: {v}");

    write_uri(&leshan.rest, ep, &coap_uri);
    let mut states = Vec::new();
    while states.last() != Some(&2) {
        let n = events.wait_for(&["NOTIFICATION"], UPDATE, |d| d["res"] == "/5/0/3");
        states.push(node_int(&n["val"]).expect("integer State in the notification"));
    }
    assert_eq!(
        states,
        [1, 2],
        "each State change arrives as a NOTIFICATION: Downloading, then Downloaded"
    );
    assert_eq!(read_int(&leshan.rest, ep, "/5/0/5"), Some(0));

    execute_update(&leshan.rest, ep);
    let n = events.wait_for(&["NOTIFICATION"], UPDATE, |d| d["res"] == "/5/0/3");
    assert_eq!(node_int(&n["val"]), Some(3), "Updating: {n}");
    finish_update(&leshan.rest, &events, ep, &before, "2.0.0");

    // The same through an HTTP package URI.
    write_uri(&leshan.rest, ep, &http_uri);
    wait_int(&leshan.rest, ep, "/5/0/3", 2, UPDATE);
    let before = registration_id(&leshan.rest, ep);
    execute_update(&leshan.rest, ep);
    finish_update(&leshan.rest, &events, ep, &before, "3.0.0");
}

/// Queue Mode (the Register's `Q`, LwM2M 1.1), judged by Leshan's presence service, over DTLS
/// as a battery device on a cellular link runs it: the device registers in queue mode, sleeps
/// 2 s after its last exchange while its pull goes on (through a slow relay, a few seconds),
/// so a read then goes unanswered and Leshan takes it for SLEEPING; the finished download
/// wakes it with an Update over its resumed DTLS session (Leshan: AWAKE) before its Downloaded
/// notification, and Leshan's Execute right after installs the image.
#[test]
fn leshan_updates_our_device_in_queue_mode_while_it_sleeps_between_exchanges() {
    let leshan = LeshanServer::start("lsh-queue");
    let host = Harness::start("lsh-queue-host");
    let ep = "lsh-queue";
    host.package("fw2.suit", &PackageKind::good("2.0.0", 2, 200_000));
    let relay = host.slow_relay();
    let uri = format!("coap://{}/fw/fw2.suit", relay.addr());
    let queue = [
        "--queue-mode",
        "--awake-time",
        "2",
        "--pull-block-size",
        "256",
    ];
    let psk = ("lsh-queue-identity", "00112233445566778899aabbccddeeff");
    let mut dev = psk_device(&host, &leshan, ep, psk, &queue);
    let reg = leshan.wait_registered(ep, REGISTER);
    assert_eq!(reg["queuemode"], true, "{reg}");
    let before = registration_id(&leshan.rest, ep);
    let events = leshan.rest.events(ep);
    let (status, v) = leshan.rest.put_empty(&format!(
        "/api/clients/{ep}/5/0/3/attributes?pmin=0&pmax=300"
    ));
    assert_eq!(
        v["status"], "CHANGED(204)",
        "write-attributes: HTTP {status} {v}"
    );
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/5/0/3/observe?format=TLV"), b"");
    assert_eq!(v["status"], "CONTENT(205)", "observe: HTTP {status} {v}");
    write_uri(&leshan.rest, ep, &uri);

    // Asleep while the pull goes on: Leshan's read is not answered.
    dev.wait_log("queue mode: sleeping", UPDATE);
    let during = relay.requests();
    let (status, v) = leshan
        .rest
        .get(&format!("/api/clients/{ep}/5/0/3?format=TLV&timeout=2"));
    assert_ne!(
        v["status"], "CONTENT(205)",
        "read while asleep: HTTP {status} {v}"
    );
    events.wait_for(&["SLEEPING"], UPDATE, |_| true);
    assert!(
        relay.requests() > during,
        "the pull went on while the device slept"
    );

    // Downloaded: an Update wakes it first, then the notification.
    let first = events.wait_for(&["AWAKE", "NOTIFICATION"], UPDATE, |d| {
        d["res"].is_null() || node_int(&d["val"]) == Some(2)
    });
    assert!(
        first["res"].is_null(),
        "AWAKE before the notification: {first}"
    );
    events.wait_for(&["NOTIFICATION"], UPDATE, |d| {
        d["res"] == "/5/0/3" && node_int(&d["val"]) == Some(2)
    });
    execute_update(&leshan.rest, ep);
    finish_update(&leshan.rest, &events, ep, &before, "2.0.0");
    let (_, reg) = leshan.rest.get(&format!("/api/clients/{ep}"));
    assert_eq!(
        reg["queuemode"], true,
        "registered again in queue mode: {reg}"
    );
    assert!(dev.log().contains("resumed=true"), "{}", dev.log());
}

/// Leshan's cancel of an observation (its REST DELETE): Leshan forgets it and its CoAP stack
/// (Californium) answers the device's next notification with a Reset, which must end the
/// observation on the device (RFC 7641 §3.6, OMA test case 1.0-int-302): the device's
/// notifications of the current time, once a second before, stop. The datagrams the device
/// sends are counted by a relay on the way to Leshan.
#[test]
fn leshans_cancel_ends_the_devices_notifications() {
    let leshan = LeshanServer::start("lsh-cancel");
    let host = Harness::start("lsh-cancel-host");
    let ep = "lsh-cancel";
    let relay = tests::e2e::slow_relay_to(leshan.coap);
    let _dev = device(&host, &format!("coap://{}", relay.addr()), ep, &[]);
    leshan.wait_registered(ep, REGISTER);
    let (status, v) = leshan.rest.put_empty(&format!(
        "/api/clients/{ep}/3/0/13/attributes?pmin=1&pmax=1"
    ));
    assert_eq!(v["status"], "CHANGED(204)", "HTTP {status} {v}");
    let events = leshan.rest.events(ep);
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/3/0/13/observe?format=TLV"), b"");
    assert_eq!(v["status"], "CONTENT(205)", "observe: HTTP {status} {v}");
    for _ in 0..2 {
        events.wait_for(&["NOTIFICATION"], UPDATE, |d| d["res"] == "/3/0/13");
    }
    let (status, v) = leshan
        .rest
        .delete(&format!("/api/clients/{ep}/3/0/13/observe"));
    assert!(status < 300, "cancel: HTTP {status} {v}");
    // At most one more notification (the one Leshan resets), then none: over 5 s, where
    // five came before, at most one datagram (a lifetime Update, due 30 s after the Register,
    // on a slow machine).
    std::thread::sleep(Duration::from_secs(3));
    let before = relay.from_client();
    std::thread::sleep(Duration::from_secs(5));
    let sent = relay.from_client() - before;
    assert!(
        sent <= 1,
        "the device sent {sent} datagrams after Leshan's cancel"
    );
}

/// Leshan's operator retries a pull that lost its connection (Leshan issue 367: "retry by
/// rewriting /5/0/1"): the package host's link is cut until the device gives up (Leshan reads
/// State 0, Update Result 4), then Leshan writes the same Package URI again. The device goes
/// on from where its download was journaled (the relay counts far fewer requests than blocks
/// the second time), reports Downloaded, and Leshan's Execute installs it. Before, the
/// download started over.
#[test]
fn leshans_rewrite_of_the_uri_after_a_lost_connection_resumes_the_pull() {
    let leshan = LeshanServer::start("lsh-retry");
    let host = Harness::start("lsh-retry-host");
    let ep = "lsh-retry";
    let len: usize = 140 * 1024;
    let blocks = len.div_ceil(512) as u64;
    host.package("big.suit", &PackageKind::good("2.0.0", 2, len));
    let relay = host.slow_relay();
    let uri = format!("coap://{}/fw/big.suit", relay.addr());
    let opts = ["--pull-block-size", "512", "--pull-max-retransmit", "2"];
    let _dev = device(&host, &leshan.coap_uri(), ep, &opts);
    leshan.wait_registered(ep, REGISTER);
    let events = leshan.rest.events(ep);
    write_uri(&leshan.rest, ep, &uri);
    host.wait_until("a third of the blocks", UPDATE, || {
        relay.requests() > blocks / 3
    });
    relay.set_cut(true);
    wait_int(&leshan.rest, ep, "/5/0/5", 4, UPDATE);
    assert_eq!(read_int(&leshan.rest, ep, "/5/0/3"), Some(0), "Idle");
    let before = relay.requests();
    relay.set_cut(false);
    write_uri(&leshan.rest, ep, &uri);
    wait_int(&leshan.rest, ep, "/5/0/3", 2, UPDATE);
    assert_resumed(before, relay.requests() - before, blocks);
    let reg = registration_id(&leshan.rest, ep);
    execute_update(&leshan.rest, ep);
    finish_update(&leshan.rest, &events, ep, &reg, "2.0.0");
}

/// A NAT that rebinds (a new outside port, as carrier-grade NATs do once a quiet device's
/// mapping expired) sooner than the device's auto-resumption (30 s; Updates every 10 s):
/// Leshan's DTLS stack (Scandium; our device has no Connection ID) drops records from the
/// address it has no session for, so the device's next Update goes unanswered. Once half its
/// retransmissions did, the device resumes its session from the new port and the rest go
/// through: Leshan takes the Update, the same registration now at the new address. Before,
/// the device waited out MAX_TRANSMIT_WAIT (93 s), handshook again and registered anew (Leshan
/// dropping the registration's observations); before that, it kept sending over the dead
/// session until the registration expired and beyond.
#[test]
fn after_a_nat_rebinding_our_device_resumes_when_its_update_goes_unanswered() {
    let t = BehindNat::start("lsh-nat", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", &[]);
    let reg = t.leshan.wait_registered(t.ep, REGISTER);
    let port = t.nat.outside_port();
    assert_eq!(reg["address"], format!("127.0.0.1:{port}"), "{reg}");
    let id = registration_id(&t.leshan.rest, t.ep);
    let events = t.leshan.rest.events(t.ep);
    let new_port = t.nat.rebind();
    t.assert_updated_from(&events, &id, new_port);
}

/// Leshan and our device registered with it over DTLS (PSK `key`) through a [`Nat`] on
/// loopback, with a lifetime of 20 s (an Update every 10 s) and `extra` options.
struct BehindNat {
    ep: &'static str,
    leshan: LeshanServer,
    nat: Nat,
    dev: LoggedChild,
    _host: Harness,
}

impl BehindNat {
    fn start(ep: &'static str, key: &str, extra: &[&str]) -> Self {
        let leshan = LeshanServer::start(ep);
        let host = Harness::start(&format!("{ep}-host"));
        let identity = format!("{ep}-identity");
        assert_eq!(leshan.add_psk(ep, &identity, key), 200);
        let nat = Nat::start(leshan.coaps).expect("NAT");
        let key_file = write_key_file(&host.dir.join(format!("{ep}.hex")), key);
        let state = host.dir.join(format!("state-{ep}")).display().to_string();
        let server = format!("coaps://{}", nat.addr());
        let mut args = vec![
            "--server",
            &server,
            "--endpoint",
            ep,
            "--state-dir",
            &state,
            "--lifetime",
            "20",
            "--psk-identity",
            &identity,
            "--psk-key-file",
            &key_file,
        ];
        args.extend_from_slice(extra);
        let dev = lwm2m_client(&host.dir, ep, &args);
        Self {
            ep,
            leshan,
            nat,
            dev,
            _host: host,
        }
    }

    /// After the NAT gave the device `new_port`: the next Update (awaited on `events`) went
    /// over a resumed session, and Leshan has registration `id` at the new port.
    fn assert_updated_from(&self, events: &Events, id: &str, new_port: u16) {
        let updated = events.wait_for(
            &["UPDATED", "REGISTRATION"],
            Duration::from_secs(40),
            |_| true,
        );
        let (_, reg) = self.leshan.rest.get(&format!("/api/clients/{}", self.ep));
        assert_eq!(
            (reg["registrationId"].as_str(), &reg["address"]),
            (Some(id), &json!(format!("127.0.0.1:{new_port}"))),
            "the same registration at the new port: {updated}\n{reg}\n{}",
            self.dev.log()
        );
        let log = self.dev.log();
        assert!(
            log.contains("resumed=true") && !log.contains("a new handshake next"),
            "{log}"
        );
        registered_over_dtls(&self.leshan, self.ep);
    }
}

/// An always-on device behind a NAT that rebinds between its Updates, resuming its DTLS
/// session after a quiet spell (`--dtls-auto-resume 5`, Californium's auto-resumption, whose
/// default is 30 s): its next Update goes out over a session resumed from the new port, and
/// Leshan keeps the registration, now at the new address, without a lost datagram first. Without
/// it (the test above) the Update's first transmissions are lost before the device resumes.
#[test]
fn after_a_quiet_spell_our_device_resumes_its_session_and_leshan_takes_the_update() {
    // An Update every 10 s, each after more than 5 quiet seconds.
    let extra = ["--dtls-auto-resume", "5"];
    let t = BehindNat::start("lsh-autores", "e0e1e2e3e4e5e6e7e8e9eaebecedeeef", &extra);
    t.leshan.wait_registered(t.ep, REGISTER);
    let id = registration_id(&t.leshan.rest, t.ep);
    let events = t.leshan.rest.events(t.ep);
    let new_port = t.nat.rebind();
    t.assert_updated_from(&events, &id, new_port);
}

/// A queue-mode device behind a NAT whose mapping expires while it sleeps (the usual case on
/// a cellular link: the device's radio is off for longer than the NAT keeps a quiet mapping).
/// On waking, the device resumes its DTLS session (an abbreviated handshake, as Zephyr's and
/// Anjay's clients do) from the port the NAT gives it now, and Leshan takes its Update there:
/// the same registration, now at the new address, within the next lifetime Update. Before,
/// the Update went over the old session, which Leshan's DTLS stack has only for the old
/// address: it was dropped, and the device registered anew after MAX_TRANSMIT_WAIT (93 s).
#[test]
fn a_queue_mode_device_resumes_its_dtls_session_on_waking_behind_a_new_nat_port() {
    // Awake 3 s after each exchange.
    let extra = ["--queue-mode", "--awake-time", "3"];
    let mut t = BehindNat::start("lsh-qnat", "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf", &extra);
    let reg = t.leshan.wait_registered(t.ep, REGISTER);
    assert_eq!(reg["queuemode"], true, "{reg}");
    let id = registration_id(&t.leshan.rest, t.ep);
    let events = t.leshan.rest.events(t.ep);
    t.dev.wait_log("queue mode: sleeping", REGISTER);
    let new_port = t.nat.rebind();
    t.assert_updated_from(&events, &id, new_port);
}

/// A queue-mode device whose server restarted while it slept (Leshan killed: its DTLS
/// sessions and registrations gone, its security store reloaded): on waking the device offers
/// its session, Leshan answers with a full handshake, and the device, in a new security
/// context, registers again at once (LwM2M 1.1.1 Transport §6.4.3) instead of sending its
/// Update. Before, the Update went over the dead session and was dropped, and the Register
/// came only after MAX_TRANSMIT_WAIT (93 s).
#[test]
fn a_queue_mode_device_registers_at_once_when_its_server_lost_the_session() {
    let mut leshan = LeshanServer::start("lsh-qrestart");
    let host = Harness::start("lsh-qrestart-host");
    let ep = "lsh-qrestart";
    let psk = ("lsh-qrestart-identity", "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf");
    let mut dev = psk_device(
        &host,
        &leshan,
        ep,
        psk,
        &["--queue-mode", "--awake-time", "3"],
    );
    leshan.wait_registered(ep, REGISTER);
    dev.wait_log("queue mode: sleeping", REGISTER);
    leshan.restart();
    assert!(
        !is_registered(&leshan.rest, ep),
        "a restarted Leshan forgot {ep}"
    );
    // The device's lifetime is 60 s: it wakes for its Update 30 s after its Register.
    let reg = leshan.wait_registered(ep, Duration::from_secs(60));
    assert_eq!(reg["secure"], true, "{reg}");
    let log = dev.log();
    assert!(
        log.matches("resumed=false").count() >= 2 && !log.contains("a new handshake next"),
        "{log}"
    );
}

/// Leshan's bootstrap server provisioning `ep` for `leshan`'s coaps endpoint with `psk`
/// (which Leshan's server takes too), and our device told only where that bootstrap server is,
/// registered over DTLS.
fn bootstrapped_over_dtls(
    host: &Harness,
    leshan: &LeshanServer,
    ep: &str,
    psk: (&str, &str),
) -> (LeshanBootstrap, LoggedChild) {
    assert_eq!(leshan.add_psk(ep, psk.0, psk.1), 200);
    let bootstrap = LeshanBootstrap::start(&host.dir, ep, &leshan.coaps_uri(), Some(psk), None);
    // --server is ignored with --bootstrap.
    let dev = device(
        host,
        "coap://127.0.0.1:9",
        ep,
        &["--bootstrap", bootstrap.uri()],
    );
    registered_over_dtls(leshan, ep);
    (bootstrap, dev)
}

/// A device that only Leshan's bootstrap server configured (server, lifetime, PSK): Leshan's
/// server updates it over the DTLS session the bootstrap made possible; after the reboot the
/// device comes back with the new image over what it kept of the bootstrap, without asking
/// the bootstrap server again.
#[test]
fn leshan_updates_a_device_leshans_bootstrap_server_provisioned() {
    let leshan = LeshanServer::start("lsh-bs-update");
    let host = Harness::start("lsh-bs-update-host");
    let ep = "lsh-bs-update";
    let uri = host.package("fw2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    let psk = ("lsh-bs-update-id", "8899aabbccddeeff0011223344556677");
    let (bootstrap, _dev) = bootstrapped_over_dtls(&host, &leshan, ep, psk);
    let before = registration_id(&leshan.rest, ep);
    let events = leshan.rest.events(ep);
    write_uri(&leshan.rest, ep, &uri);
    wait_int(&leshan.rest, ep, "/5/0/3", 2, UPDATE);
    execute_update(&leshan.rest, ep);
    finish_update(&leshan.rest, &events, ep, &before, "2.0.0");
    let log = bootstrap.log();
    let sessions = log.matches(&format!("bootstrap end {ep}")).count();
    assert_eq!(sessions, 1, "bootstrapped once, not at each boot:\n{log}");
}

/// A key rotation through the Bootstrap-Request Trigger (/1/0/9, LwM2M 1.1 Core E.2): Leshan's
/// bootstrap server gets a new PSK for the device's account, Leshan's server executes /1/0/9
/// and then takes the new key; the device bootstraps again and comes back over DTLS with it.
#[test]
fn leshan_rotates_a_devices_psk_through_the_bootstrap_request_trigger() {
    let leshan = LeshanServer::start("lsh-bs-rotate");
    let host = Harness::start("lsh-bs-rotate-host");
    let ep = "lsh-bs-rotate";
    let old = ("lsh-bs-rotate-id-1", "00112233445566778899aabbccddeef1");
    let new = ("lsh-bs-rotate-id-2", "00112233445566778899aabbccddeef2");
    let (mut bootstrap, _dev) = bootstrapped_over_dtls(&host, &leshan, ep, old);
    let before = registration_id(&leshan.rest, ep);
    let events = leshan.rest.events(ep);
    bootstrap.rotate_psk(new.0, new.1);
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/1/0/9?timeout=10"), b"");
    assert_eq!(status, 200, "execute /1/0/9: {v}");
    assert_eq!(v["status"], "CHANGED(204)", "execute /1/0/9: {v}");
    assert_eq!(leshan.add_psk(ep, new.0, new.1), 200);
    wait_reregistered(&events, ep);
    registered_over_dtls(&leshan, ep);
    assert_ne!(
        registration_id(&leshan.rest, ep),
        before,
        "a new registration"
    );
    let log = bootstrap.log();
    assert_eq!(
        log.matches(&format!("bootstrap end {ep}")).count(),
        2,
        "{log}"
    );
}

/// Push: Leshan writes the whole package as an opaque value to /5/0/0 (Californium sends it
/// with Block1, RFC 7959 section 2.5), then executes the update.
#[test]
fn leshan_pushes_a_package_blockwise_and_the_update_completes() {
    let leshan = LeshanServer::start("lsh-push");
    let host = Harness::start("lsh-push-host");
    let ep = "lsh-push";
    host.package("fw2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    let package = std::fs::read(Path::new(&host.dir).join("packages/fw2.suit")).expect("package");
    assert!(package.len() > 8 * 1024, "a package that needs many blocks");

    let _dev = device(&host, &leshan.coap_uri(), ep, &[]);
    leshan.wait_registered(ep, REGISTER);
    let events = leshan.rest.events(ep);
    let hex: String = package.iter().map(|b| format!("{b:02x}")).collect();
    let (status, v) = leshan.rest.put(
        &format!("/api/clients/{ep}/5/0/0?format=OPAQUE&timeout=120"),
        &json!({"id": 0, "kind": "singleResource", "type": "opaque", "value": hex}),
    );
    assert_eq!(status, 200, "push: {v}");
    assert_eq!(
        v["status"],
        "CHANGED(204)",
        "push of {} bytes: {v}",
        package.len()
    );
    wait_int(&leshan.rest, ep, "/5/0/3", 2, UPDATE);
    assert_eq!(read_int(&leshan.rest, ep, "/5/0/5"), Some(0));

    let before = registration_id(&leshan.rest, ep);
    execute_update(&leshan.rest, ep);
    finish_update(&leshan.rest, &events, ep, &before, "2.0.0");
}

/// A package signed by a key the device does not trust: Leshan reads State 0 and Update Result
/// 5 (integrity check failure), and the firmware version is unchanged.
#[test]
fn leshan_reads_result_5_after_a_wrong_key_package() {
    let leshan = LeshanServer::start("lsh-badkey");
    let host = Harness::start("lsh-badkey-host");
    // Another harness has its own signing key, which the device does not trust.
    let stranger = Harness::start("lsh-badkey-stranger");
    let uri = stranger.package("fw2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    let ep = "lsh-badkey";
    let _dev = device(&host, &leshan.coap_uri(), ep, &[]);
    leshan.wait_registered(ep, REGISTER);

    write_uri(&leshan.rest, ep, &uri);
    wait_int(&leshan.rest, ep, "/5/0/5", 5, UPDATE);
    assert_eq!(read_int(&leshan.rest, ep, "/5/0/3"), Some(0), "State Idle");
    wait_version(&leshan.rest, ep, "1.0.0", Duration::from_secs(10));
}

/// Leshan writes a Package URI whose host does not answer yet, then reboots the device
/// (Execute /3/0/4) before the first block arrives. Through Leshan's own reads the device
/// comes back Downloading (it still owes that download, rather than Idle with the result it
/// had before); once the host answers Leshan reads Downloaded, and the update completes.
#[test]
fn leshan_sees_a_pull_cut_by_a_reboot_before_its_first_block_go_on() {
    let leshan = LeshanServer::start("lsh-early");
    let host = Harness::start("lsh-early-host");
    let ep = "lsh-early";
    host.package("fw2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    let relay = host.slow_relay();
    relay.set_cut(true);
    let uri = format!("coap://{}/fw/fw2.suit", relay.addr());
    // Patient pulls (at least 150 s of retransmissions): the link stays cut across the reboot.
    let _dev = device(
        &host,
        &leshan.coap_uri(),
        ep,
        &["--pull-max-retransmit", "8"],
    );
    leshan.wait_registered(ep, REGISTER);
    let before = registration_id(&leshan.rest, ep);
    let events = leshan.rest.events(ep);

    write_uri(&leshan.rest, ep, &uri);
    host.wait_until("a request at the package host", UPDATE, || {
        relay.from_client() > 0
    });
    assert_eq!(read_int(&leshan.rest, ep, "/5/0/3"), Some(1), "Downloading");
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/3/0/4?timeout=10"), b"");
    // The device answers, then reboots and registers again at once; when the new
    // registration reaches Leshan before the answer does, Leshan cancels the request of the
    // old one (HTTP 500, "Request ... canceled"). The new registration below is the proof.
    let cancelled = status == 500 && v.to_string().contains("canceled");
    assert!(
        (status, v["status"].as_str()) == (200, Some("CHANGED(204)")) || cancelled,
        "reboot: HTTP {status} {v}"
    );
    wait_reregistered(&events, ep);
    assert_ne!(
        registration_id(&leshan.rest, ep),
        before,
        "a new registration"
    );
    let state = read_int(&leshan.rest, ep, "/5/0/3");
    relay.set_cut(false);
    assert_eq!(state, Some(1), "Downloading after the reboot");
    wait_int(&leshan.rest, ep, "/5/0/3", 2, UPDATE);
    assert_eq!(read_int(&leshan.rest, ep, "/5/0/5"), Some(0));
    let before = registration_id(&leshan.rest, ep);
    execute_update(&leshan.rest, ep);
    finish_update(&leshan.rest, &events, ep, &before, "2.0.0");
}
