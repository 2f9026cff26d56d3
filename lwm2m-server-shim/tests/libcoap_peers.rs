//! The shim against real CoAP peers (libcoap's coap-client-openssl and coap-server-openssl)
//! and a real HTTP client: registration interface, REST API, event stream, package host.

mod common;

use std::time::Duration;

use common::{bytes, coap_client, hex, wait_event, CoapServer, Harness};
use serde_json::{json, Value};

#[test]
fn register_update_deregister_and_expiry_seen_through_rest_and_events() {
    let h = Harness::start("reg", |_| {});
    let events = h.events("");
    let rd = format!("coap://{}/rd?ep=libcoap-dev&lt=60&lwm2m=1.1&b=U", h.coap);
    let (ok, _) = coap_client(&["-m", "post", &rd, "-t", "40", "-e", "</3/0>,</5/0>"]);
    assert!(ok, "coap-client registers");
    let reg = wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "libcoap-dev"
    });
    assert_eq!(reg["lifetime"], 60);
    assert_eq!(reg["lwM2mVersion"], "1.1");
    assert_eq!(reg["availableInstances"], json!({"3":[0],"5":[0]}));
    let id = reg["registrationId"].as_str().expect("id").to_string();

    let (s, list) = h.get_json("/api/clients");
    assert_eq!(s, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["objectLinks"][1]["url"], "/5/0");
    let (s, one) = h.get_json("/api/clients/libcoap-dev");
    assert_eq!(s, 200);
    assert_eq!(one["registrationId"], id.as_str());

    let upd = format!("coap://{}/rd/{id}?lt=120", h.coap);
    assert!(coap_client(&["-m", "post", &upd]).0);
    let u = wait_event(&events, Duration::from_secs(10), |n, _| n == "UPDATED");
    assert_eq!(u["registration"]["lifetime"], 120);
    assert_eq!(u["update"]["lifeTimeInSec"], 120);

    let del = format!("coap://{}/rd/{id}", h.coap);
    assert!(coap_client(&["-m", "delete", &del]).0);
    wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "DEREGISTRATION" && d["registrationId"] == id.as_str()
    });
    let (s, _) = h.get_json("/api/clients/libcoap-dev");
    assert_eq!(s, 400, "unknown client after de-registration");

    // Lifetime expiry: a 1 s registration disappears with a DEREGISTRATION event.
    let rd = format!("coap://{}/rd?ep=short&lt=1", h.coap);
    assert!(coap_client(&["-m", "post", &rd, "-t", "40", "-e", "</3/0>"]).0);
    wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "short"
    });
    wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "DEREGISTRATION" && d["endpoint"] == "short"
    });
    assert_eq!(h.get_json("/api/clients").1, json!([]));
}

#[test]
fn event_stream_filters_by_endpoint() {
    let h = Harness::start("filter", |_| {});
    let only_b = h.events("?ep=b");
    for ep in ["a", "b"] {
        let rd = format!("coap://{}/rd?ep={ep}&lt=60", h.coap);
        assert!(coap_client(&["-m", "post", &rd, "-t", "40", "-e", "</3/0>"]).0);
    }
    let (name, data) = only_b
        .recv_timeout(Duration::from_secs(10))
        .expect("event for b");
    assert_eq!(
        (name.as_str(), data["endpoint"].as_str()),
        ("REGISTRATION", Some("b"))
    );
}

#[test]
fn package_upload_then_coap_block2_and_http_range_downloads_are_byte_identical() {
    let h = Harness::start("pkg", |_| {});
    let image = bytes(70_000, 7);
    let (s, info) = h.put("/api/packages/fw.bin", "application/octet-stream", &image);
    assert_eq!(s, 201, "{info}");
    assert_eq!(info["size"], 70_000);
    let (s, list) = h.get_json("/api/packages");
    assert_eq!(s, 200);
    assert_eq!(list[0]["name"], "fw.bin");

    for block in ["1024", "64"] {
        let out = h.dir.join(format!("fetched-{block}.bin"));
        let url = format!("coap://{}/fw/fw.bin", h.coap);
        let (ok, _) = coap_client(&["-b", block, "-o", out.to_str().expect("utf8"), &url]);
        assert!(ok, "coap-client fetches with -b {block}");
        assert_eq!(
            std::fs::read(&out).expect("fetched"),
            image,
            "block size {block}"
        );
    }

    let (s, body) = h.get("/fw/fw.bin");
    assert_eq!((s, body == image), (200, true));
    let (s, body, cr) = h.get_with("/api/packages/fw.bin", ("range", "bytes=1000-1999"));
    assert_eq!(s, 206);
    assert_eq!(body, image[1000..2000].to_vec());
    assert_eq!(cr.as_deref(), Some("bytes 1000-1999/70000"));
    let (s, body, _) = h.get_with("/fw/fw.bin", ("range", "bytes=-16"));
    assert_eq!((s, body), (206, image[70_000 - 16..].to_vec()));
    let (s, _, cr) = h.get_with("/fw/fw.bin", ("range", "bytes=70000-"));
    assert_eq!((s, cr.as_deref()), (416, Some("bytes */70000")));
    assert_eq!(h.get("/fw/missing.bin").0, 404);
    assert_eq!(
        h.put("/api/packages/..hidden", "application/octet-stream", b"x")
            .0,
        400
    );
    assert_eq!(
        h.put("/api/packages/a%2Fb", "application/octet-stream", b"x")
            .0,
        400
    );
    assert_eq!(h.delete("/api/packages/fw.bin").0, 204);
    assert_eq!(h.get("/fw/fw.bin").0, 404);
    assert_eq!(h.get_json("/api/packages").1, json!([]));
    let missing = format!("coap://{}/fw/missing.bin", h.coap);
    let (_, out) = coap_client(&["-v", "0", &missing]);
    assert!(
        !String::from_utf8_lossy(&out).contains("fw"),
        "no body for a missing package"
    );
}

#[test]
fn device_management_against_coap_server_push_read_observe() {
    let h = Harness::start("dm", |_| {});
    let dev = CoapServer::start();
    h.register_direct("srv", dev.addr, "</5/0>");
    let events = h.events("?ep=srv");

    // Block1 push of an opaque package (69 blocks of 1024 bytes), then a Block2 read back.
    let image = bytes(70_000, 11);
    let node = json!({"id":0,"kind":"singleResource","type":"opaque","value": hex(&image)});
    let (s, r) = h.put(
        "/api/clients/srv/5/0/0?format=OPAQUE&timeout=10",
        "application/json",
        node.to_string().as_bytes(),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["success"], true, "{r}");
    let (s, r) = h.get_json("/api/clients/srv/5/0/0?format=OPAQUE&timeout=10");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "CONTENT(205)");
    assert_eq!(r["content"]["value"].as_str().map(str::len), Some(140_000));
    assert_eq!(r["content"]["value"], Value::String(hex(&image)));

    // Observe /5/0/3, then change it: the notification reaches the event stream.
    let (s, r) = h.put("/api/clients/srv/5/0/3?format=TEXT", "text/plain", b"1");
    assert_eq!((s, r["success"].clone()), (200, json!(true)), "{r}");
    let (s, r) = h.post("/api/clients/srv/5/0/3/observe?format=TEXT", b"");
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["content"],
        json!({"kind":"singleResource","id":3,"type":"integer","value":"1"})
    );
    let (s, _) = h.put("/api/clients/srv/5/0/3?format=TEXT", "text/plain", b"2");
    assert_eq!(s, 200);
    let n = wait_event(&events, Duration::from_secs(10), |n, _| n == "NOTIFICATION");
    assert_eq!(n["ep"], "srv");
    assert_eq!(n["res"], "/5/0/3");
    assert_eq!(n["val"]["value"], "2");
    assert_eq!(h.delete("/api/clients/srv/5/0/3/observe").0, 200);

    // The device's own error answers are relayed with 200 (Leshan's mapping).
    let (s, r) = h.get_json("/api/clients/srv/5/0/7?timeout=5");
    assert_eq!(s, 200);
    assert_eq!(
        (r["status"].as_str(), r["success"].as_bool()),
        (Some("NOT_FOUND(404)"), Some(false))
    );
}

#[test]
fn malformed_requests_and_unknown_endpoints_get_documented_statuses() {
    let h = Harness::start("bad", |_| {});
    let dev = CoapServer::start();
    h.register_direct("srv", dev.addr, "</5/0>");
    let cases: Vec<(u16, (u16, Value))> = vec![
        (400, h.get_json("/api/clients/ghost")),
        (400, h.get_json("/api/clients/ghost/3/0/0")),
        (404, h.get_json("/api/nothing")),
        (404, h.get_json("/")),
        (400, h.get_json("/api/clients/srv/abc")),
        (400, h.get_json("/api/clients/srv/3/0/0/0/0")),
        (400, h.get_json("/api/clients/srv/3/0/0?timeout=soon")),
        (400, h.get_json("/api/clients/srv/3/0/0?format=XML")),
        // Composite reads reach the device now (issue 14): libcoap's server answers the FETCH
        // with 4.05, relayed as 200 like every device answer. A bad path list is still 400.
        (200, h.get_json("/api/clients/srv/composite?paths=/3/0/1")),
        (400, h.get_json("/api/clients/srv/composite?paths=/3/x")),
        (
            400,
            h.put("/api/clients/srv/5/0/1", "application/json", b"{not json"),
        ),
        (
            400,
            h.put("/api/clients/srv/5/0/1", "application/json", b"[]"),
        ),
        (
            400,
            h.put(
                "/api/clients/srv/5/0/1",
                "application/json",
                br#"{"kind":"singleResource","id":2,"type":"string","value":"x"}"#,
            ),
        ),
        (
            400,
            h.put(
                "/api/clients/srv/5/0/1",
                "application/json",
                br#"{"kind":"singleResource","id":1,"type":"integer","value":"x"}"#,
            ),
        ),
        (
            400,
            h.put(
                "/api/clients/srv/5",
                "application/json",
                br#"{"kind":"obj","id":5,"instances":[]}"#,
            ),
        ),
        (
            400,
            h.put(
                "/api/clients/srv/5/0/1?replace=maybe",
                "application/json",
                br#"{"kind":"singleResource","id":1,"type":"string","value":"x"}"#,
            ),
        ),
        (400, h.post("/api/clients/srv/5", b"\xff\xfe")),
    ];
    for (i, (want, (got, body))) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}: {body}");
    }
    // Still serving afterwards.
    assert_eq!(h.get_json("/api/clients").0, 200);
}

#[test]
fn ipv6_loopback_registration_and_package_fetch() {
    let h = Harness::start("v6", |c| {
        c.coap_addr = Some("[::1]:0".parse().expect("addr"));
    });
    let events = h.events("");
    let rd = format!("coap://[::1]:{}/rd?ep=v6dev&lt=60", h.coap.port());
    assert!(coap_client(&["-m", "post", &rd, "-t", "40", "-e", "</5/0>"]).0);
    let reg = wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "v6dev"
    });
    assert!(
        reg["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("[::1]:")),
        "{reg}"
    );
    let image = bytes(5000, 3);
    assert_eq!(
        h.put("/api/packages/v6.bin", "application/octet-stream", &image)
            .0,
        201
    );
    let out = h.dir.join("v6.bin");
    let url = format!("coap://[::1]:{}/fw/v6.bin", h.coap.port());
    assert!(coap_client(&["-b", "512", "-o", out.to_str().expect("utf8"), &url]).0);
    assert_eq!(std::fs::read(&out).expect("fetched"), image);
}
