//! Our CoAP Block2 pull against real package hosts on loopback: aiocoap's file server (PyPI)
//! over plain CoAP, including an ETag-checked resume, and libcoap's coap-server (Debian
//! libcoap3-bin, OpenSSL build) over coaps:// with PSK and with certificates, also across a NAT
//! rebinding.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::{fetch, CoapPullConfig};
use lwm2m_client::host::dtls::{DtlsContext, Psk};
use lwm2m_client::pull::{MemSink, Resume};
use tests::nat::Nat;
use tests::pki::Pki;
use tests::process::{aiocoap_fileserver, free_udp_port, free_udp_port_pair, wait_for_coap};

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{tag}-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn image(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(7919) >> 3) as u8).collect()
}

fn fast_tx() -> TxParams {
    TxParams {
        ack_timeout_ms: 500,
        max_retransmit: 3,
        ..TxParams::default()
    }
}

#[tokio::test]
async fn pull_from_aiocoap_fileserver_then_resume_with_its_etag() {
    let dir = temp_dir("aiocoap-fw");
    let body = image(300 * 1024 + 77);
    std::fs::write(dir.join("fw.suit"), &body).unwrap();
    let port = free_udp_port();
    let _server = aiocoap_fileserver(&dir, port);
    let uri = format!("coap://127.0.0.1:{port}/fw.suit");
    let config = CoapPullConfig {
        block_size: 1024,
        tx: fast_tx(),
        max_size: 1 << 20,
        dtls: None,
        qblock: None,
    };
    let mut sink = MemSink::default();
    let done = fetch(&uri, None, &config, &mut sink).await.expect("pull");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "pulled bytes differ");
    let etag = done.etag.clone().expect("aiocoap-fileserver sends an ETag");

    // Resume from 64 KiB with the same ETag: only the rest is fetched.
    let mut sink = MemSink {
        data: body[..65536].to_vec(),
        starts: vec![],
    };
    let resume = Resume {
        offset: 65536,
        etag: Some(etag),
    };
    let done = fetch(&uri, Some(&resume), &config, &mut sink)
        .await
        .unwrap();
    assert!(done.resumed);
    assert_eq!(sink.starts, vec![65536]);
    assert!(sink.data == body);

    // A stale ETag restarts from 0.
    let mut sink = MemSink::default();
    let stale = Resume {
        offset: 65536,
        etag: Some(b"stale".to_vec()),
    };
    let done = fetch(&uri, Some(&stale), &config, &mut sink).await.unwrap();
    assert!(!done.resumed);
    assert_eq!(sink.starts, vec![0]);
    assert!(sink.data == body);

    // A missing file is Update Result 7.
    let missing = format!("coap://127.0.0.1:{port}/nope.suit");
    let e = fetch(&missing, None, &config, &mut MemSink::default())
        .await
        .unwrap_err();
    assert_eq!(e.update_result(), object5::UpdateResult::InvalidUri, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// libcoap's coap-server (coaps on the port after its coap port) with `options` (its PSK or
/// PKI ones) and dynamic resources, holding `body` at /fw, uploaded by libcoap's own client
/// (Block1 PUT); the server and its coaps port.
fn libcoap_host(options: &[&str], body: &[u8], dir: &std::path::Path) -> (Peer, u16) {
    let port = free_udp_port_pair();
    let server = Peer(
        Command::new("coap-server-openssl")
            .args([
                "-A",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                "4",
                "-v",
                "0",
            ])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coap-server-openssl (libcoap3-bin) must be installed"),
    );
    wait_for_coap(port);
    let file = dir.join("fw.suit");
    std::fs::write(&file, body).unwrap();
    let put = Command::new("coap-client-openssl")
        .args(["-m", "put", "-b", "1024", "-B", "20", "-f"])
        .arg(&file)
        .arg(format!("coap://127.0.0.1:{port}/fw"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(put.success(), "upload to coap-server failed");
    (server, port + 1)
}

/// A coaps pull in 512-byte blocks with `fast_tx` timers and the PSK (`identity`, `key`).
fn psk_pull(identity: &[u8], key: &str) -> CoapPullConfig {
    let ctx = DtlsContext::psk_client(Psk {
        identity: identity.to_vec(),
        key: key.as_bytes().to_vec(),
    })
    .unwrap();
    CoapPullConfig {
        block_size: 512,
        tx: fast_tx(),
        max_size: 1 << 20,
        dtls: Some(ctx),
        qblock: None,
    }
}

#[tokio::test]
async fn coaps_pull_from_libcoap_server_with_psk() {
    const KEY: &str = "pull-psk-secret1";
    let dir = temp_dir("libcoap-fw");
    let body = image(96 * 1024 + 5);
    let (_server, coaps) = libcoap_host(&["-k", KEY], &body, &dir);

    let config = psk_pull(b"device-7", KEY);
    let mut sink = MemSink::default();
    let uri = format!("coaps://127.0.0.1:{coaps}/fw");
    let done = fetch(&uri, None, &config, &mut sink)
        .await
        .expect("coaps pull");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "pulled bytes differ");

    // Without credentials coaps:// is an unsupported protocol (Update Result 9).
    let plain = CoapPullConfig {
        dtls: None,
        ..config
    };
    let e = fetch(&uri, None, &plain, &mut MemSink::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.update_result(),
        object5::UpdateResult::UnsupportedProtocol
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// libcoap's coap-server judges the pull's new handshake: a NAT in front of it gives the
/// device a new port after its 60th datagram, libcoap has no DTLS session for that address and
/// drops what comes from it, and the pull (silent host for half its retransmissions) handshakes
/// again with libcoap and finishes the download from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coaps_pull_from_libcoap_goes_on_after_a_nat_rebinding() {
    const KEY: &str = "pull-psk-nat-01";
    let dir = temp_dir("libcoap-fw-nat");
    let body = image(96 * 1024 + 5);
    let (_server, coaps) = libcoap_host(&["-k", KEY], &body, &dir);
    let nat = Nat::start_rebinding_after(([127, 0, 0, 1], coaps).into(), 60).expect("NAT");
    let config = psk_pull(b"device-8", KEY);
    let mut sink = MemSink::default();
    let uri = format!("coaps://{}/fw", nat.addr());
    let done = fetch(&uri, None, &config, &mut sink)
        .await
        .expect("coaps pull across the rebinding");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "pulled bytes differ");
    assert_eq!(nat.rebinds(), 1, "the mapping changed mid-pull");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Certificate mode: the device's certificate and libcoap's from one CA, which libcoap checks
/// ours against. The pull takes the host's name from the URI: a libcoap certificate naming
/// 127.0.0.1 serves the package, one naming another address ends the pull before any
/// request (a lost connection naming the mismatch, Update Result 4 like any failed handshake).
#[tokio::test]
async fn coaps_pull_from_libcoap_server_with_certificates() {
    let dir = temp_dir("libcoap-fw-pki");
    let pki = Pki::new(&dir.join("pki"), "pull-test-ca");
    let device = pki.issue("device", "urn:dev:pull-1", &[]);
    let ctx = DtlsContext::cert_client(&pki.identity(&device)).unwrap();
    let config = CoapPullConfig {
        block_size: 1024,
        tx: fast_tx(),
        max_size: 1 << 20,
        dtls: Some(ctx),
        qblock: None,
    };
    let body = image(40 * 1024 + 9);
    for (file, name, served) in [
        ("right", "IP:127.0.0.1", true),
        ("wrong", "IP:127.0.0.2", false),
    ] {
        let options = pki.libcoap_options(&pki.issue(file, "libcoap", &[name]));
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let (_server, coaps) = libcoap_host(&options, &body, &dir);
        let uri = format!("coaps://127.0.0.1:{coaps}/fw");
        let mut sink = MemSink::default();
        match fetch(&uri, None, &config, &mut sink).await {
            Ok(done) if served => {
                assert_eq!(done.size, body.len() as u64);
                assert!(sink.data == body, "pulled bytes differ");
            }
            Err(e) if !served => {
                assert!(e.to_string().contains("IP address mismatch"), "{e}");
                assert_eq!(e.update_result(), object5::UpdateResult::ConnectionLost);
                assert!(sink.data.is_empty(), "nothing reached the sink");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
