//! A Leshan LwM2M client on our shim (issue 14, part 2): `lwm2m-server-shim serve` as a real
//! process, a Leshan client (Leshan's client library, Security/Server/Device objects) as
//! another, everything driven through the shim's Leshan-style REST API and checked on its SSE
//! stream (/api/event).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tests::e2e::temp_dir;
use tests::leshan::{
    instance_resource, is_registered, node_int, node_value, wait_registered, LeshanClient,
};
use tests::pki::Pki;
use tests::rest::{Events, Rest};
use tests::serve::ShimServe;

const REGISTER: Duration = Duration::from_secs(60);
const EVENT: Duration = Duration::from_secs(30);

/// `lwm2m-server-shim serve` on loopback: coap, coaps and HTTP on free ports.
struct Shim {
    serve: ShimServe,
    rest: Rest,
    coap: String,
    coaps: String,
    dir: PathBuf,
}

impl Shim {
    fn start(tag: &str) -> Self {
        Self::start_in::<&str>(temp_dir(tag), &[])
    }

    /// `serve` with certificate mode on its coaps port besides PSK: its certificate from
    /// `pki` naming `alt_names`, clients' certificates from the same CA.
    fn start_x509(tag: &str, alt_names: &[&str]) -> (Self, Pki) {
        let dir = temp_dir(tag);
        let pki = Pki::new(&dir.join("pki"), "shim-test-ca");
        let mine = pki.issue("shim", "lwm2m-server-shim", alt_names);
        let ca = pki.ca_pem();
        let args = [
            "--cert".as_ref(),
            mine.cert_pem.as_os_str(),
            "--key".as_ref(),
            mine.key_pem.as_os_str(),
            "--ca".as_ref(),
            ca.as_os_str(),
        ];
        (Self::start_in(dir, &args), pki)
    }

    fn start_in<S: AsRef<std::ffi::OsStr>>(dir: PathBuf, extra: &[S]) -> Self {
        let serve = ShimServe::start(&dir, extra);
        Self {
            rest: Rest::new(serve.rest.base.clone(), Duration::from_secs(60)),
            coap: format!("coap://127.0.0.1:{}", serve.coap),
            coaps: format!("coaps://127.0.0.1:{}", serve.coaps),
            serve,
            dir,
        }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A Read through the shim; asserts the client answered 2.05 and returns the content node.
fn read(rest: &Rest, ep: &str, path: &str, format: &str) -> Value {
    let (status, v) = rest.get(&format!(
        "/api/clients/{ep}{path}?format={format}&timeout=10"
    ));
    assert_eq!(status, 200, "read {path} as {format}: HTTP {status} {v}");
    assert_eq!(v["status"], "CONTENT(205)", "read {path} as {format}: {v}");
    v["content"].clone()
}

/// A string resource of an instance node.
fn string_of(instance: &Value, id: u64) -> Option<&str> {
    instance_resource(instance, id).and_then(|r| node_value(r).as_str())
}

/// Write a string resource through the shim; asserts CHANGED.
fn write_string(rest: &Rest, ep: &str, path: &str, id: u16, value: &str) {
    let (status, v) = rest.put(
        &format!("/api/clients/{ep}{path}?format=TEXT&timeout=10"),
        &json!({"id": id, "kind": "singleResource", "type": "string", "value": value}),
    );
    assert_eq!(status, 200, "write {path}: {v}");
    assert_eq!(v["status"], "CHANGED(204)", "write {path} = {value}: {v}");
}

/// Registration, the listing, reads in TLV / SenML JSON / SenML CBOR / text, writes (single
/// resource and a partial instance update), observe with a NOTIFICATION on our SSE stream,
/// execute (Registration Update Trigger, then the UPDATED event) and deregistration on exit.
#[test]
fn leshan_client_is_managed_by_the_shim_over_coap() {
    let shim = Shim::start("lshc-coap");
    let ep = "leshan-coap";
    let events = shim.rest.events(ep);
    let client = LeshanClient::start(shim.dir(), ep, &shim.coap, 60, None);
    events.wait_for(&["REGISTRATION"], REGISTER, |d| d["endpoint"] == ep);

    let (status, list) = shim.rest.get("/api/clients");
    assert_eq!(status, 200);
    assert!(
        list.as_array()
            .is_some_and(|a| a.iter().any(|r| r["endpoint"] == ep)),
        "{ep} in GET /api/clients: {list}"
    );
    let reg = wait_registered(&shim.rest, ep, REGISTER);
    assert_eq!(reg["lwM2mVersion"], "1.1", "{reg}");
    assert_eq!(reg["secure"], false, "{reg}");

    for format in ["TLV", "SENML_JSON", "SENML_CBOR"] {
        let device = read(&shim.rest, ep, "/3/0", format);
        assert_eq!(
            string_of(&device, 0),
            Some("Eclipse Leshan"),
            "{format}: {device}"
        );
        assert_eq!(string_of(&device, 2), Some("LT-0001"), "{format}: {device}");
        let server = read(&shim.rest, ep, "/1/0", format);
        let lifetime = instance_resource(&server, 1).and_then(node_int);
        assert_eq!(lifetime, Some(60), "{format} /1/0/1: {server}");
        let object = read(&shim.rest, ep, "/3", format);
        assert_eq!(object["instances"][0]["id"], 0, "{format} /3: {object}");
    }
    for format in ["TEXT", "TLV", "SENML_JSON", "SENML_CBOR"] {
        let manufacturer = read(&shim.rest, ep, "/3/0/0", format);
        assert_eq!(
            node_value(&manufacturer),
            "Eclipse Leshan",
            "{format}: {manufacturer}"
        );
        let lifetime = read(&shim.rest, ep, "/1/0/1", format);
        assert_eq!(node_int(&lifetime), Some(60), "{format}: {lifetime}");
    }

    // Writes: Timezone as a single resource, UTC Offset through a partial instance update.
    write_string(&shim.rest, ep, "/3/0/15", 15, "Europe/Paris");
    let (status, v) = shim.rest.put(
        &format!("/api/clients/{ep}/3/0?format=TLV&replace=false&timeout=10"),
        &json!({"id": 0, "kind": "instance", "resources": [
            {"id": 14, "kind": "singleResource", "type": "string", "value": "+01:00"}]}),
    );
    assert_eq!((status, &v["status"]), (200, &json!("CHANGED(204)")), "{v}");
    let device = read(&shim.rest, ep, "/3/0", "SENML_JSON");
    assert_eq!(string_of(&device, 15), Some("Europe/Paris"), "{device}");
    assert_eq!(string_of(&device, 14), Some("+01:00"), "{device}");

    // Observe Timezone; a write makes Leshan's client notify.
    let (status, v) = shim.rest.post(
        &format!("/api/clients/{ep}/3/0/15/observe?format=TEXT"),
        b"",
    );
    assert_eq!((status, &v["status"]), (200, &json!("CONTENT(205)")), "{v}");
    write_string(&shim.rest, ep, "/3/0/15", 15, "Asia/Tokyo");
    let n = events.wait_for(&["NOTIFICATION"], EVENT, |d| {
        d["res"] == "/3/0/15" && node_value(&d["val"]) == "Asia/Tokyo"
    });
    assert_eq!(n["ep"], ep, "{n}");

    // Execute the Registration Update Trigger: the client sends an Update.
    let (status, v) = shim
        .rest
        .post(&format!("/api/clients/{ep}/1/0/8?timeout=10"), b"");
    assert_eq!((status, &v["status"]), (200, &json!("CHANGED(204)")), "{v}");
    events.wait_for(&["UPDATED"], EVENT, |d| d["registration"]["endpoint"] == ep);

    client.stop(Duration::from_secs(30));
    events.wait_for(&["DEREGISTRATION"], EVENT, |d| d["endpoint"] == ep);
    let (status, _) = shim.rest.get(&format!("/api/clients/{ep}"));
    assert_ne!(status, 200, "{ep} is gone after deregistering");
}

/// The other formats Leshan's client announces in its registration (`ct` on `</>`): LwM2M JSON
/// (11543) for an instance and CBOR (60) for a single value.
#[test]
fn leshan_client_answers_lwm2m_json_and_cbor_through_the_shim() {
    let shim = Shim::start("lshc-fmt");
    let ep = "leshan-fmt";
    let _client = LeshanClient::start(shim.dir(), ep, &shim.coap, 60, None);
    let reg = wait_registered(&shim.rest, ep, REGISTER);
    let ct = reg["objectLinks"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["url"] == "/"))
        .map(|l| l["attributes"]["ct"].to_string())
        .unwrap_or_default();
    assert!(ct.contains("11543") && ct.contains("60"), "announced: {ct}");

    let device = read(&shim.rest, ep, "/3/0", "JSON");
    assert_eq!(
        string_of(&device, 0),
        Some("Eclipse Leshan"),
        "JSON: {device}"
    );
    let manufacturer = read(&shim.rest, ep, "/3/0/0", "CBOR");
    assert_eq!(
        node_value(&manufacturer),
        "Eclipse Leshan",
        "CBOR: {manufacturer}"
    );
    let lifetime = read(&shim.rest, ep, "/1/0/1", "CBOR");
    assert_eq!(node_int(&lifetime), Some(60), "CBOR: {lifetime}");
}

/// Waits until the shim has `ep` registered over DTLS, reads the manufacturer through the
/// session, then stops `client` and sees its deregistration on `events`.
fn registered_over_dtls(shim: &Shim, ep: &str, client: LeshanClient, events: &Events) {
    let reg = wait_registered(&shim.rest, ep, REGISTER);
    assert_eq!(reg["secure"], true, "registered over DTLS: {reg}");
    let device = read(&shim.rest, ep, "/3/0", "TLV");
    assert_eq!(string_of(&device, 0), Some("Eclipse Leshan"), "{device}");
    client.stop(Duration::from_secs(30));
    events.wait_for(&["DEREGISTRATION"], EVENT, |d| d["endpoint"] == ep);
}

#[test]
fn leshan_client_registers_on_the_shim_over_coaps_with_psk() {
    let shim = Shim::start("lshc-psk");
    let ep = "leshan-psk";
    let key = "00112233445566778899aabbccddeeff";
    let (status, v) = shim.rest.put(
        "/api/security/clients",
        &json!({"endpoint": ep, "psk": {"identity": "leshan-psk-id", "key": key}}),
    );
    assert!((200..300).contains(&status), "PSK stored: {status} {v}");
    let events = shim.rest.events(ep);
    let client = LeshanClient::start(
        shim.dir(),
        ep,
        &shim.coaps,
        60,
        Some(("leshan-psk-id", key)),
    );
    registered_over_dtls(&shim, ep, client, &events);
}

/// The shim's certificate mode judged by Leshan's client: Leshan checks that the shim's
/// certificate chains to its trust anchor (Certificate Usage 2) and names 127.0.0.1; the
/// shim checks Leshan's certificate against its CA and lets it register only as the name the
/// certificate carries.
#[test]
fn leshan_client_registers_on_the_shim_over_coaps_with_x509() {
    let (shim, pki) = Shim::start_x509("lshc-x509", &["IP:127.0.0.1"]);
    let ep = "leshan-x509";
    let mine = pki.issue(ep, ep, &[]);
    let events = shim.rest.events(ep);
    let client = LeshanClient::start_x509(shim.dir(), ep, &shim.coaps, 60, &mine, &pki.ca_der());
    registered_over_dtls(&shim, ep, client, &events);

    // A certificate of the same CA for another name may not register as this endpoint.
    let impostor = pki.issue("impostor", "someone-else", &[]);
    let mut client =
        LeshanClient::start_x509(shim.dir(), ep, &shim.coaps, 60, &impostor, &pki.ca_der());
    client.wait_log("Registration failed: FORBIDDEN(403)", REGISTER);
    let log = shim.serve.proc.log();
    assert!(
        log.contains("identity tried another endpoint"),
        "the shim says why: {log}"
    );
    assert!(
        !is_registered(&shim.rest, ep),
        "the impostor is not registered"
    );
}

/// A shim whose certificate names another address: Leshan's client refuses it (RFC 6125 §6),
/// so the shim never sees a registration.
#[test]
fn leshan_client_refuses_a_shim_certificate_for_another_host() {
    let (shim, pki) = Shim::start_x509("lshc-x509-other", &["IP:127.0.0.2"]);
    let ep = "leshan-x509-other";
    let mine = pki.issue(ep, ep, &[]);
    let mut client =
        LeshanClient::start_x509(shim.dir(), ep, &shim.coaps, 60, &mine, &pki.ca_der());
    client.wait_log("Unable to verify Certificate", REGISTER);
    assert!(!is_registered(&shim.rest, ep), "not registered");
}

/// Composite operations (LwM2M 1.1) through the shim's Leshan 2.0 routes, answered by Leshan's
/// client: Read-Composite in both SenML formats, Write-Composite, Observe-Composite with a
/// composite NOTIFICATION on our SSE stream, and an active cancel after which writes are no
/// longer notified.
#[test]
fn leshan_client_answers_composite_operations_through_the_shim() {
    let shim = Shim::start("lshc-composite");
    let ep = "leshan-composite";
    let events = shim.rest.events(ep);
    let _client = LeshanClient::start(shim.dir(), ep, &shim.coap, 60, None);
    wait_registered(&shim.rest, ep, REGISTER);

    for format in ["SENML_JSON", "SENML_CBOR"] {
        let (status, v) = shim.rest.get(&format!(
            "/api/clients/{ep}/composite?paths=/3/0/0,/1/0/1&pathformat={format}\
             &nodeformat={format}&timeout=10"
        ));
        assert_eq!((status, &v["status"]), (200, &json!("CONTENT(205)")), "{v}");
        assert_eq!(node_value(&v["content"]["/3/0/0"]), "Eclipse Leshan", "{v}");
        assert_eq!(node_int(&v["content"]["/1/0/1"]), Some(60), "{v}");
    }

    let write = |offset: &str, zone: &str| {
        let (status, v) = shim.rest.put(
            &format!("/api/clients/{ep}/composite?nodeformat=SENML_CBOR&timeout=10"),
            &json!({
                "/3/0/14": {"id": 14, "kind": "singleResource", "type": "string", "value": offset},
                "/3/0/15": {"id": 15, "kind": "singleResource", "type": "string", "value": zone},
            }),
        );
        assert_eq!((status, &v["status"]), (200, &json!("CHANGED(204)")), "{v}");
    };
    write("+02:00", "Europe/Berlin");
    let device = read(&shim.rest, ep, "/3/0", "SENML_JSON");
    assert_eq!(string_of(&device, 14), Some("+02:00"), "{device}");
    assert_eq!(string_of(&device, 15), Some("Europe/Berlin"), "{device}");

    let observe = format!("/api/clients/{ep}/composite/observe?paths=/3/0/14,/3/0/15&timeout=10");
    let (status, v) = shim.rest.post(&observe, b"");
    assert_eq!((status, &v["status"]), (200, &json!("CONTENT(205)")), "{v}");
    assert_eq!(node_value(&v["content"]["/3/0/15"]), "Europe/Berlin", "{v}");
    write("+09:00", "Asia/Tokyo");
    let n = events.wait_for(&["NOTIFICATION"], EVENT, |d| {
        d["kind"] == "composite" && node_value(&d["val"]["/3/0/15"]) == "Asia/Tokyo"
    });
    assert_eq!(n["paths"], json!(["/3/0/14", "/3/0/15"]), "{n}");
    assert_eq!(node_value(&n["val"]["/3/0/14"]), "+09:00", "{n}");

    let (status, v) = shim.rest.delete(&format!("{observe}&active"));
    assert_eq!((status, &v["status"]), (200, &json!("CONTENT(205)")), "{v}");
    let (status, _) = shim.rest.delete(&format!("{observe}&active"));
    assert_eq!(status, 404, "the observation is gone");
    // A single-path observation as a marker: its notification comes after any composite one
    // the client would still send for the same write.
    let (status, v) = shim.rest.post(
        &format!("/api/clients/{ep}/3/0/15/observe?format=TEXT"),
        b"",
    );
    assert_eq!((status, &v["status"]), (200, &json!("CONTENT(205)")), "{v}");
    write("+01:00", "Europe/Paris");
    let mut composite_after_cancel = Vec::new();
    loop {
        let (name, d) = events
            .rx
            .recv_timeout(EVENT)
            .expect("the marker notification");
        if name != "NOTIFICATION" {
            continue;
        }
        if d["kind"] == "composite" {
            composite_after_cancel.push(d);
        } else if d["res"] == "/3/0/15" && node_value(&d["val"]) == "Europe/Paris" {
            break;
        }
    }
    assert!(
        composite_after_cancel.is_empty(),
        "no composite notification after the active cancel: {composite_after_cancel:?}"
    );
}
