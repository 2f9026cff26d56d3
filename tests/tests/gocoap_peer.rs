//! Our pulls and our package host judged by plgd's go-coap (Go modules, `tests/gocoap`): a
//! CoAP stack with its own RFC 9177 Q-Block and RFC 8323 code, over pion's DTLS, neither
//! OpenSSL nor tinydtls nor Scandium. `scripts/test` builds it into `target/peers/`.
//!
//! - Our device pulls from go-coap's host with Q-Block2 through loss, over plain CoAP and over
//!   pion DTLS (PSK and certificates, each with the CCM_8 suite LwM2M mandates), and over
//!   coap+tcp.
//! - go-coap's client pulls from our shim's package host with Q-Block2 through loss, over
//!   coaps with pion DTLS, and over coap+tcp: byte-exact.
//! - The shim's Q-Block1 pusher writes a body into go-coap's server through loss; go-coap's
//!   client reads it back.
//! - coaps+tcp with Go's own TLS (crypto/tls, no OpenSSL): our device pulls from go-coap's TLS
//!   host trusting its CA, and go-coap's client pulls from the shim's coaps+tcp host trusting
//!   the shim's self-signed certificate (checked against 127.0.0.1, as Go does).
//!
//! Q-Block tests check that Q-Block was used (datagrams per block, go-coap's own count of
//! Q-Block2 responses), not a silent fall back to Block2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::CoapPullConfig;
use lwm2m_client::host::dtls::{DtlsContext, Psk};
use lwm2m_client::host::tcp_pull::{self, TcpPullConfig};
use lwm2m_client::pull::qblock::QBlockParams;
use lwm2m_client::pull::MemSink;
use lwm2m_server_shim::packages::coap_tcp::{
    TcpHostLimits, TcpPackageHost, TlsCredentials, TlsIdentity,
};
use lwm2m_server_shim::packages::host::PackageHost;
use tests::pki::Pki;
use tests::process::{gocoap_peer, LoggedChild};
use tests::qblock_peers::{
    assert_bursts, assert_lossy, image, pull_exactly, q_block1_push, shim_host,
};
use tests::relay::{Faults, Relay};

const IDENTITY: &str = "gocoap-id";
const KEY: &[u8] = b"gocoap-dtls-key1";

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gocoap-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The shim's security entry for [`IDENTITY`].
fn our_psk() -> String {
    format!("dev-go:{IDENTITY}:{}", key_hex())
}

fn key_hex() -> String {
    KEY.iter().map(|b| format!("{b:02x}")).collect()
}

/// go-coap's host serving `body` as `/fw` over `net` (udp, dtls or tcp) with `extra` flags;
/// returns it with its address once it listens.
fn go_host(dir: &Path, net: &str, body: &[u8], extra: &[&str]) -> (LoggedChild, SocketAddr) {
    let file = dir.join(format!("served-{net}.bin"));
    std::fs::write(&file, body).expect("file");
    let mut host = LoggedChild::spawn(
        "gocoap-peer serve",
        Command::new(gocoap_peer())
            .args(["serve", "-net", net, "-file"])
            .arg(&file)
            .args(extra),
        dir.join(format!("gocoap-{net}.log")),
        false,
    );
    host.wait_log("listening ", Duration::from_secs(20));
    let addr = host
        .log()
        .lines()
        .find_map(|l| l.strip_prefix("listening ")?.trim().parse().ok())
        .expect("address in the log");
    (host, addr)
}

/// go-coap's client pulls `uri` with `extra` flags; returns what it got and its summary line
/// ("got N bytes, Q-Block responses M, Block2 responses K").
async fn go_get(dir: &Path, uri: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let out = dir.join("got.bin");
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(gocoap_peer())
        .args(["get", "-uri", uri, "-out"])
        .arg(&out)
        .args(extra);
    let done = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("gocoap-peer runs");
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        done.status.success(),
        "go-coap's GET {uri} failed ({}):\n{stdout}{}",
        done.status,
        String::from_utf8_lossy(&done.stderr)
    );
    (std::fs::read(&out).expect("output file"), stdout)
}

/// The number after `label` in go-coap's summary line.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(label)
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {summary:?}"))
}

fn q_pull(tx: TxParams, dtls: Option<DtlsContext>) -> CoapPullConfig {
    CoapPullConfig {
        block_size: 1024,
        qblock: Some(QBlockParams::scaled(tx.ack_timeout_ms)),
        tx,
        max_size: 4 << 20,
        dtls,
    }
}

fn lossy_tx() -> TxParams {
    TxParams {
        ack_timeout_ms: 500,
        max_retransmit: 6,
        ..TxParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_go_coap_with_q_block2_through_loss() {
    let dir = temp_dir("device-udp");
    let body = image(80 * 1024 + 11, 1);
    let (host, addr) = go_host(&dir, "udp", &body, &["-qblock"]);
    let relay = Relay::start(any(), addr, Faults::lossy(0.05, 0x60c0a9)).expect("relay");
    pull_exactly(
        &format!("coap://{}/fw", relay.addr()),
        &q_pull(lossy_tx(), None),
        &body,
    )
    .await;
    assert_bursts(&relay, body.len(), "our device");
    assert_lossy(&relay);
    assert!(host.log().contains("qblock2=true"), "{}", host.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_falls_back_to_block2_when_go_coap_has_no_q_block() {
    let dir = temp_dir("device-fallback");
    let body = image(20 * 1024 + 5, 2);
    let (_host, addr) = go_host(&dir, "udp", &body, &[]);
    pull_exactly(
        &format!("coap://{addr}/fw"),
        &q_pull(lossy_tx(), None),
        &body,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_go_coap_over_pion_dtls_with_q_block2() {
    let dir = temp_dir("device-dtls");
    let body = image(40 * 1024 + 3, 3);
    let key = key_hex();
    let (_host, addr) = go_host(
        &dir,
        "dtls",
        &body,
        &["-qblock", "-psk-id", IDENTITY, "-psk-key", &key],
    );
    let relay = Relay::start(any(), addr, Faults::default()).expect("relay");
    let dtls = DtlsContext::psk_client(Psk {
        identity: IDENTITY.as_bytes().to_vec(),
        key: KEY.to_vec(),
    })
    .expect("ctx");
    pull_exactly(
        &format!("coaps://{}/fw", relay.addr()),
        &q_pull(TxParams::default(), Some(dtls)),
        &body,
    )
    .await;
    assert_bursts(&relay, body.len(), "our device");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_go_coap_over_pion_dtls_with_certificates() {
    // LwM2M's certificate mode (ECDHE_ECDSA with CCM_8): pion requires and checks the
    // device's certificate, the device checks pion's against 127.0.0.1.
    let dir = temp_dir("device-dtls-pki");
    let pki = Pki::new(&dir.join("pki"), "gocoap-dtls-ca");
    let device = pki.issue("device", "urn:dev:gocoap-1", &[]);
    let host = pki.issue("host", "gocoap", &["IP:127.0.0.1"]);
    let body = image(20 * 1024 + 1, 11);
    let (cert, key, ca) = (
        host.cert_pem.to_string_lossy(),
        host.key_pem.to_string_lossy(),
        pki.ca_pem(),
    );
    let ca = ca.to_string_lossy();
    let (_host, addr) = go_host(
        &dir,
        "dtls",
        &body,
        &["-qblock", "-cert", &cert, "-key", &key, "-ca", &ca],
    );
    let dtls = DtlsContext::cert_client(&pki.identity(&device)).expect("ctx");
    pull_exactly(
        &format!("coaps://{addr}/fw"),
        &q_pull(TxParams::default(), Some(dtls)),
        &body,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_go_coap_over_coap_tcp() {
    let dir = temp_dir("device-tcp");
    let body = image(200 * 1024 + 9, 4);
    let (_host, addr) = go_host(&dir, "tcp", &body, &[]);
    let mut sink = MemSink::default();
    let done = tokio::time::timeout(
        Duration::from_secs(120),
        tcp_pull::fetch(
            &format!("coap+tcp://{addr}/fw"),
            None,
            &TcpPullConfig::default(),
            &mut sink,
        ),
    )
    .await
    .expect("bounded")
    .expect("coap+tcp pull from go-coap");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "the bytes differ");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_coap_pulls_from_our_host_with_q_block2_through_loss() {
    let dir = temp_dir("host-udp");
    let body = image(64 * 1024 + 300, 5);
    let running = shim_host(&dir, true, Some(&our_psk()), &body).await;
    let relay = Relay::start(
        any(),
        running.coap_addr.expect("coap"),
        Faults::lossy(0.05, 0x90c0),
    )
    .expect("relay");
    let uri = format!("coap://{}/fw/fw.bin", relay.addr());
    let (got, summary) = go_get(&dir, &uri, &["-qblock"]).await;
    assert!(got == body, "{} bytes arrived, not the package", got.len());
    assert!(count(&summary, "Q-Block responses") > 0, "{summary}");
    assert_bursts(&relay, body.len(), "go-coap");
    assert_lossy(&relay);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_coap_pulls_from_our_coaps_host_over_pion_dtls() {
    let dir = temp_dir("host-dtls");
    let body = image(30 * 1024 + 7, 6);
    let running = shim_host(&dir, true, Some(&our_psk()), &body).await;
    let uri = format!("coaps://{}/fw/fw.bin", running.coaps_addr.expect("coaps"));
    let key = key_hex();
    let psk = ["-psk-id", IDENTITY, "-psk-key", &key];
    let (got, summary) = go_get(&dir, &uri, &psk).await;
    assert!(
        got == body,
        "{} bytes over Block2, not the package",
        got.len()
    );
    assert!(count(&summary, "Block2 responses") > 0, "{summary}");
    let q: Vec<&str> = psk.iter().copied().chain(["-qblock"]).collect();
    let (got, summary) = go_get(&dir, &uri, &q).await;
    assert!(
        got == body,
        "{} bytes over Q-Block2, not the package",
        got.len()
    );
    assert!(count(&summary, "Q-Block responses") > 0, "{summary}");
    // A ClientHello offering a Connection ID (RFC 9146), as Zephyr's mbedTLS devices send:
    // the listener has no CID and goes on without one.
    let cid: Vec<&str> = psk.iter().copied().chain(["-cid"]).collect();
    let (got, _) = go_get(&dir, &uri, &cid).await;
    assert!(
        got == body,
        "{} bytes with a CID offered, not the package",
        got.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_coap_pulls_from_our_coap_tcp_host() {
    let dir = temp_dir("host-tcp");
    let body = image(256 * 1024 + 123, 7);
    let packages = Arc::new(PackageHost::new(dir.join("packages")).expect("package dir"));
    packages.store("fw.bin", &body).expect("store");
    let listener = TcpPackageHost::start(any(), packages, None, TcpHostLimits::default())
        .await
        .expect("listener");
    let uri = format!("coap+tcp://{}/fw/fw.bin", listener.local_addr());
    let (got, _) = go_get(&dir, &uri, &[]).await;
    assert!(got == body, "{} bytes arrived, not the package", got.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shims_q_block1_push_is_taken_by_go_coap_through_loss() {
    let dir = temp_dir("push");
    let (host, addr) = go_host(&dir, "udp", b"before", &["-qblock"]);
    let relay = Relay::start(any(), addr, Faults::lossy(0.05, 0x9b12)).expect("relay");
    let body = image(60 * 1024 + 99, 8);
    // Block1 would get an answer to each block.
    let answers = q_block1_push(&relay, "fw", &body, || host.log()).await;
    assert!(
        answers < body.len().div_ceil(1024) as u64 / 2,
        "{answers} answers"
    );
    assert!(
        host.log()
            .contains(&format!("PUT /fw: {} bytes", body.len())),
        "{}",
        host.log()
    );
    let (got, _) = go_get(&dir, &format!("coap://{addr}/fw"), &[]).await;
    assert!(got == body, "{} bytes stored, not the body", got.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_go_coap_over_go_tls() {
    let dir = temp_dir("device-tls");
    let pki = Pki::new(&dir.join("pki"), "gocoap-test-ca");
    let host_cert = pki.issue("host", "gocoap", &["IP:127.0.0.1"]);
    let body = image(150 * 1024 + 5, 9);
    let (_host, addr) = go_host(
        &dir,
        "tls",
        &body,
        &[
            "-cert",
            &host_cert.cert_pem.to_string_lossy(),
            "-key",
            &host_cert.key_pem.to_string_lossy(),
        ],
    );
    let config = TcpPullConfig {
        stall: Duration::from_secs(10),
        ca_pem: Some(std::fs::read(pki.ca_pem()).expect("CA")),
        ..TcpPullConfig::default()
    };
    let mut sink = MemSink::default();
    let done = tokio::time::timeout(
        Duration::from_secs(120),
        tcp_pull::fetch(&format!("coaps+tcp://{addr}/fw"), None, &config, &mut sink),
    )
    .await
    .expect("bounded")
    .expect("coaps+tcp pull from go-coap over Go's TLS");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "the bytes differ");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_coap_pulls_from_our_coaps_tcp_host_over_go_tls() {
    let dir = temp_dir("host-tls");
    let body = image(100 * 1024 + 17, 10);
    let packages = Arc::new(PackageHost::new(dir.join("packages")).expect("package dir"));
    packages.store("fw.bin", &body).expect("store");
    let identity = TlsIdentity::self_signed(&[]).expect("certificate");
    let cert = dir.join("shim-cert.pem");
    std::fs::write(&cert, &identity.cert_pem).expect("write certificate");
    let listener = TcpPackageHost::start(
        any(),
        packages,
        Some(&TlsCredentials {
            identity,
            psk: None,
        }),
        TcpHostLimits::default(),
    )
    .await
    .expect("listener");
    let uri = format!("coaps+tcp://{}/fw/fw.bin", listener.local_addr());
    let (got, _) = go_get(&dir, &uri, &["-ca", &cert.to_string_lossy()]).await;
    assert!(got == body, "{} bytes arrived, not the package", got.len());
    let _ = std::fs::remove_dir_all(&dir);
}
