//! Leshan's server resource on the shim: `GET /api/server/endpoint` names the ports of the
//! listeners that run, `GET /api/server/security` shows the certificate coaps clients must
//! trust, checked against what the `openssl` tool reads from the same certificate.

mod common;

use common::{openssl, temp_dir, Harness};
use lwm2m_client::codec::{base64, hex};
use serde_json::{json, Value};

#[test]
fn endpoint_names_the_listeners_that_run() {
    let h = Harness::start("server-endpoint", |_| {});
    let coap = h.running().coap_addr.expect("coap").port().to_string();
    assert_eq!(
        h.get_json("/api/server/endpoint"),
        (200, json!({"unsecuredEndpointPort": coap}))
    );
    // Pre-shared keys only: nothing to show, as Leshan shows nothing without certificate or RPK.
    assert_eq!(h.get_json("/api/server/security"), (200, json!({})));
}

fn b64(v: &Value) -> Vec<u8> {
    base64::decode(v.as_str().expect("base64 string")).expect("valid base64")
}

#[test]
fn security_shows_the_certificate_and_its_key() {
    let dir = temp_dir("server-security");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pem");
    let cert = lwm2m_server_shim::coap::dtls_socket::ServerCertificate(
        lwm2m_client::host::dtls::CertIdentity {
            cert_pem: read("server.pem"),
            key_pem: read("server.key"),
            ca_pem: read("server.pem"),
        },
    );
    let h = Harness::start("server-security", |c| {
        c.coaps_addr = Some("127.0.0.1:0".parse().expect("addr"));
        c.dtls_certificate = Some(cert);
    });
    let (coap, coaps) = (h.running().coap_addr, h.running().coaps_addr);
    assert_eq!(
        h.get_json("/api/server/endpoint"),
        (
            200,
            json!({
                "securedEndpointPort": coaps.expect("coaps").port().to_string(),
                "unsecuredEndpointPort": coap.expect("coap").port().to_string(),
            })
        )
    );
    let (s, v) = h.get_json("/api/server/security");
    assert_eq!(s, 200, "{v}");
    let c = &v["certificate"];
    let der = openssl(&dir, &["x509", "-in", "server.pem", "-outform", "DER"]);
    assert_eq!(b64(&c["b64Der"]), der);
    let spki = openssl(&dir, &["x509", "-in", "server.pem", "-noout", "-pubkey"]);
    std::fs::write(dir.join("pub.pem"), spki).expect("write");
    let spki_der = openssl(
        &dir,
        &["pkey", "-pubin", "-in", "pub.pem", "-outform", "DER"],
    );
    assert_eq!(b64(&c["pubkey"]["b64Der"]), spki_der);
    // The SubjectPublicKeyInfo of a P-256 key ends with the uncompressed point 04 || x || y.
    let point = &spki_der[spki_der.len() - 65..];
    assert_eq!(point[0], 4);
    assert_eq!(c["pubkey"]["x"], hex::encode(&point[1..33]));
    assert_eq!(c["pubkey"]["y"], hex::encode(&point[33..]));
    assert_eq!(
        c["pubkey"]["params"],
        "secp256r1 [NIST P-256,X9.62 prime256v1] (1.2.840.10045.3.1.7)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
