//! A real peer: libcoap's `coap-client` (Debian libcoap3-bin) reads /3/0 and /5/0 from the
//! running `lwm2m-client` binary in TLV, SenML JSON and SenML CBOR and discovers /5; the bytes
//! are checked against OMA TS Core 1.1 layouts. The test plays the LwM2M server on loopback
//! (Register -> 2.01, Deregister on SIGINT -> 2.02); coap-client sends from the server's
//! address, since the device answers its server only.

mod common;

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use common::net::{
    answer, coap_client_from, recv_request, request_to, server_socket, spawn_client, temp_dir,
};
use common::{option_values, queries};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs coap-client from `server` (the address the device registered with: it answers its
/// server only, so the test's server socket must be closed meanwhile) and returns the payload
/// it wrote.
fn coap_get(
    server: SocketAddr,
    addr: SocketAddr,
    accept: u16,
    path: &str,
    out: &std::path::Path,
) -> Vec<u8> {
    let _ = std::fs::remove_file(out);
    let uri = format!("coap://{addr}{path}");
    let status = coap_client_from(server)
        .args(["-m", "get", "-A", &accept.to_string(), "-B", "10", "-o"])
        .arg(out)
        .arg(&uri)
        .status()
        .expect("coap-client-openssl is installed (Debian libcoap3-bin)");
    assert!(status.success(), "coap-client {uri} failed: {status}");
    std::fs::read(out).unwrap_or_default()
}

#[test]
fn coap_client_reads_and_discovers_the_simulated_device() {
    let server = server_socket("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let state = temp_dir("interop");
    let server_uri = format!("coap://127.0.0.1:{port}");
    let mut child = spawn_client(
        &[
            "--server",
            &server_uri,
            "--endpoint",
            "interop-ep",
            "--log-level",
            "warn",
        ],
        &state,
    );

    let (reg, client) = recv_request(&server, "Register");
    assert_eq!(reg.header.code, MessageClass::Request(RequestType::Post));
    let q = queries(&reg);
    assert!(q.contains(&"ep=interop-ep".to_string()), "{q:?}");
    assert_eq!(
        std::str::from_utf8(&reg.payload).unwrap(),
        r#"</>;rt="oma.lwm2m";ct=112,</1>;ver=1.1,</1/0>,</3/0>,</5>;ver=1.1,</5/0>"#
    );
    answer(&server, client, &reg, ResponseType::Created, &["rd", "r1"]);
    // coap-client takes over the server's address for the reads below.
    let server_addr = server.local_addr().unwrap();
    drop(server);

    let out = state.join("coap-client.out");
    // /3/0 in TLV: resource 0 (manufacturer) is the first entry, /3/0/3 the booted factory version.
    let tlv = coap_get(server_addr, client, 11542, "/3/0", &out);
    let mut expect_head = vec![0xC8, 0x00, 18];
    expect_head.extend_from_slice(b"LwM2M SUIT project");
    assert_eq!(
        &tlv[..expect_head.len()],
        &expect_head[..],
        "TLV: 8-bit id, 8-bit length, value"
    );
    let node = lwm2m_client::codec::tlv::decode(
        &tlv,
        &lwm2m_client::codec::Path::instance(3, 0),
        &|_, _| None,
    )
    .unwrap();
    let lwm2m_client::codec::Node::Instance(inst) = node else {
        panic!("not an instance")
    };
    let fw = inst
        .resources
        .iter()
        .find(|r| r.id == 3)
        .expect("/3/0/3 present");
    assert_eq!(
        fw.value,
        lwm2m_client::codec::ResourceValue::Single(lwm2m_client::codec::Value::Opaque(
            b"1.0.0".to_vec()
        ))
    );
    // /5/0 in TLV: State (3) = 0 is C1 03 00, Update Result (5) = 0 is C1 05 00, protocols (8)
    // is a multiple resource 88 08 0F + (41 00 00)(41 01 02)(41 02 03)(41 03 04)(41 04 05) =
    // CoAP, HTTP, HTTPS, CoAP over TCP, CoAP over TLS,
    // delivery (9) = both is C1 09 02, then severity 1, last state change 0, no deferral
    // (object version 1.1 resources 11-13; 14 is a version 1.2 resource).
    let tlv = coap_get(server_addr, client, 11542, "/5/0", &out);
    assert_eq!(
        tlv,
        [
            0xC0, 0x01, 0xC1, 0x03, 0x00, 0xC1, 0x05, 0x00, 0xC0, 0x06, 0xC0, 0x07, 0x88, 0x08,
            0x0F, 0x41, 0x00, 0x00, 0x41, 0x01, 0x02, 0x41, 0x02, 0x03, 0x41, 0x03, 0x04, 0x41,
            0x04, 0x05, 0xC1, 0x09, 0x02, 0xC1, 0x0B, 0x01, 0xC1, 0x0C, 0x00, 0xC1, 0x0D, 0x00
        ]
    );
    // SenML JSON (RFC 8428, OMA TS Core 7.4.4).
    let json = coap_get(server_addr, client, 110, "/5/0", &out);
    assert_eq!(
        std::str::from_utf8(&json).unwrap(),
        r#"[{"bn":"/5/0/","n":"1","vs":""},{"n":"3","v":0},{"n":"5","v":0},{"n":"6","vs":""},{"n":"7","vs":""},{"n":"8/0","v":0},{"n":"8/1","v":2},{"n":"8/2","v":3},{"n":"8/3","v":4},{"n":"8/4","v":5},{"n":"9","v":2},{"n":"11","v":1},{"n":"12","v":0},{"n":"13","v":0}]"#
    );
    // SenML CBOR: array of 14 maps; the first is {-2: "/5/0/", 0: "1", 3: ""}.
    let cbor = coap_get(server_addr, client, 112, "/5/0", &out);
    assert_eq!(
        &cbor[..14],
        &[0x8E, 0xA3, 0x21, 0x65, b'/', b'5', b'/', b'0', b'/', 0x00, 0x61, b'1', 0x03, 0x60]
    );
    let leaves = lwm2m_client::codec::senml::decode_cbor_leaves(&cbor).unwrap();
    assert_eq!(leaves.len(), 14);
    let json3 = coap_get(server_addr, client, 110, "/3/0", &out);
    assert!(std::str::from_utf8(&json3)
        .unwrap()
        .contains(r#"{"n":"3","vs":"1.0.0"}"#));
    // Discover /5 (link-format, OMA TS Core 5.4.2).
    let links = coap_get(server_addr, client, 40, "/5", &out);
    assert_eq!(
        std::str::from_utf8(&links).unwrap(),
        "</5>;ver=1.1,</5/0>,</5/0/0>,</5/0/1>,</5/0/2>,</5/0/3>,</5/0/5>,</5/0/6>,</5/0/7>,</5/0/8>;dim=5,</5/0/9>,</5/0/10>,</5/0/11>,</5/0/12>,</5/0/13>"
    );

    let server = server_socket(&server_addr.to_string()).unwrap();
    // SIGINT: the client deregisters (DELETE /rd/r1) and exits 0.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let (dereg, from) = recv_request(&server, "Deregister");
    assert_eq!(
        dereg.header.code,
        MessageClass::Request(RequestType::Delete)
    );
    let path = option_values(&dereg, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec(), b"r1".to_vec()]);
    answer(&server, from, &dereg, ResponseType::Deleted, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "client did not exit after deregistering"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn registers_and_answers_over_ipv6_loopback() {
    let Ok(server) = server_socket("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let port = server.local_addr().unwrap().port();
    let state = temp_dir("ipv6");
    let server_uri = format!("coap://[::1]:{port}");
    let _child = spawn_client(
        &[
            "--server",
            &server_uri,
            "--endpoint",
            "v6-ep",
            "--log-level",
            "warn",
        ],
        &state,
    );
    let (reg, client) = recv_request(&server, "Register over IPv6");
    assert!(client.is_ipv6());
    answer(&server, client, &reg, ResponseType::Created, &["rd", "v6"]);
    let server_addr = server.local_addr().unwrap();
    drop(server);
    let out = state.join("coap-client.out");
    let body = coap_get(server_addr, client, 0, "/3/0/3", &out);
    assert_eq!(body, b"1.0.0", "the factory image's version is what booted");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn binary_bootstraps_then_registers_with_the_provisioned_server() {
    let bs = server_socket("127.0.0.1:0").unwrap();
    let dm = server_socket("127.0.0.1:0").unwrap();
    let state = temp_dir("bootstrap");
    let bs_uri = format!("coap://127.0.0.1:{}", bs.local_addr().unwrap().port());
    let _child = spawn_client(
        &[
            "--bootstrap",
            &bs_uri,
            "--endpoint",
            "bs-ep",
            "--log-level",
            "warn",
        ],
        &state,
    );
    let (req, client) = recv_request(&bs, "Bootstrap-Request");
    let path = option_values(&req, CoapOption::UriPath);
    assert_eq!(path, vec![b"bs".to_vec()]);
    answer(&bs, client, &req, ResponseType::Changed, &[]);
    let r = request_to(&bs, client, 1, RequestType::Delete, "/", None, &[]);
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Deleted));
    let uri = format!("coap://127.0.0.1:{}", dm.local_addr().unwrap().port());
    let mut tlv = vec![0xC8, 0x00, uri.len() as u8];
    tlv.extend_from_slice(uri.as_bytes());
    tlv.extend_from_slice(&[0xC1, 0x01, 0x00, 0xC1, 0x02, 0x03, 0xC1, 0x0A, 0x01]);
    let r = request_to(&bs, client, 2, RequestType::Put, "/0/1", Some(11542), &tlv);
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Changed));
    let r = request_to(
        &bs,
        client,
        3,
        RequestType::Put,
        "/1/0",
        Some(11542),
        &[0xC1, 0x00, 0x01, 0xC1, 0x01, 0x3C, 0xC1, 0x07, b'U'],
    );
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Changed));
    let r = request_to(&bs, client, 4, RequestType::Post, "/bs", None, &[]);
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Changed));
    let (reg, _) = recv_request(&dm, "Register at the provisioned server");
    let q = queries(&reg);
    assert!(
        q.contains(&"ep=bs-ep".to_string()) && q.contains(&"lt=60".to_string()),
        "{q:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
