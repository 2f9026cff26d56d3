//! The shim's coaps listener judged by tinydtls, the DTLS stack of Wakaama and of many
//! constrained devices, which offers only the CCM_8 suites LwM2M mandates: aiocoap's client
//! over PyPI's DTLSSocket (tinydtls) does the cookie exchange with the stateless listener
//! (RFC 6347 §4.2.1), then fetches a package with Block2, byte for byte. With a wrong key the
//! handshake is refused and counted, and nothing is served.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tests::e2e::Harness;

const IDENTITY: &str = "tinydtls-id";
const KEY_HEX: &str = "00112233445566778899aabbccddeeff";

/// aiocoap's client GETting `uri` with the PSK `key_hex` (credentials file in `dir`), given
/// `limit` seconds.
fn aiocoap_get(dir: &Path, uri: &str, key_hex: &str, limit: u32) -> Output {
    let authority = uri.split('/').take(3).collect::<Vec<_>>().join("/");
    let creds = serde_json::json!({
        format!("{authority}/*"): {"dtls": {
            "psk": {"hex": key_hex},
            "client-identity": {"ascii": IDENTITY},
        }}
    });
    let file = dir.join(format!("credentials-{key_hex}.json"));
    std::fs::write(&file, creds.to_string()).expect("credentials file");
    Command::new("timeout")
        .arg(limit.to_string())
        .arg("aiocoap-client")
        .arg("--credentials")
        .arg(&file)
        .arg(uri)
        .stdin(Stdio::null())
        .output()
        .expect("aiocoap-client runs (scripts/test: pip install aiocoap DTLSSocket)")
}

#[test]
fn tinydtls_fetches_a_package_over_coaps_and_a_wrong_key_is_refused() {
    let h = Harness::start_secure("dtls-tinydtls");
    assert_eq!(h.add_psk("tiny", IDENTITY, KEY_HEX), 200);
    let body: Vec<u8> = (0..30_000u32).map(|i| ((i * 7919) >> 5) as u8).collect();
    h.put_package("tiny.bin", &body);
    let uri = h.package_uri("tiny.bin");
    assert!(uri.starts_with("coaps://127.0.0.1:"), "{uri}");
    let dir = tests::e2e::temp_dir("dtls-tinydtls-client");

    let got = aiocoap_get(&dir, &uri, KEY_HEX, 60);
    assert!(
        got.status.success(),
        "aiocoap-client: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(
        got.stdout == body,
        "{} bytes, differ from the package",
        got.stdout.len()
    );
    let stats = || h.get("/api/server/stats").1["dtls"].clone();
    assert_eq!(stats()["refusedHandshakes"], 0, "{}", stats());

    // tinydtls retransmits its last flight for a long while: the shim drops records it
    // cannot authenticate (RFC 6347 §4.1.2.7), so the client is stopped after 8 s.
    let wrong = aiocoap_get(&dir, &uri, "ffffffffffffffffffffffffffffffff", 8);
    assert!(
        wrong.stdout != body,
        "a wrong key got the package: {}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    h.wait_until(
        "the refused handshake counted",
        Duration::from_secs(20),
        || stats()["refusedHandshakes"].as_u64() >= Some(1),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
