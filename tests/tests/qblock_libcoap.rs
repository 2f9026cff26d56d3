//! RFC 9177 Q-Block judged by an implementation we did not write: libcoap 4.3.4 (Debian 13's
//! build, unpacked by `scripts/fetch-libcoap-qblock`), through the fault-injecting relay.
//!
//! - libcoap's coap-client pulls a package from the shim's host with Q-Block2: its support
//!   probe (a Q-Block2 GET of `/`) must find Q-Block2, its "Continue" and missing-block
//!   requests must be understood, and the file must arrive byte for byte.
//! - Asked with a CON request (no `-N`), the host sends the body's blocks as CON, each
//!   acknowledged by libcoap before the next.
//! - Our device pulls from libcoap's coap-server with Q-Block2 and recovers lost blocks.
//! - The shim's Q-Block1 pusher writes a body to libcoap's coap-server, which is read back.
//! - Both pulls again over coaps (PSK). libcoap 4.3.4 is built with OpenSSL 3.5, whose default
//!   list has no CCM_8 suite: the shim takes GCM and CBC too, and our device offers GCM after
//!   CCM_8.
//!
//! Each test checks that Q-Block was used (datagrams per block, libcoap's own log), not a
//! silent fall back to Block1/Block2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::CoapPullConfig;
use lwm2m_client::host::dtls::{DtlsContext, Psk};
use lwm2m_client::pull::qblock::QBlockParams;
use tests::process::{free_udp_port_pair, libcoap_qblock, wait_for_coap, LoggedChild};
use tests::qblock_peers::{
    assert_bursts, assert_lossy, image, pull_exactly, q_block1_push, shim_host,
};
use tests::relay::{Faults, Relay};

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qblock-libcoap-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs libcoap's coap-client (debug log, 1024-byte blocks, Q-Block with `-L 5`) and returns
/// its output; `args` come before the URI.
fn coap_client(args: &[&str], uri: &str) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg(libcoap_qblock("coap-client"))
        .args(["-b", "1024", "-v", "7", "-B", "100"])
        .args(args)
        .arg(uri)
        .stdin(Stdio::null())
        .output()
        .expect("coap-client runs")
}

fn log_of(out: &Output) -> String {
    // The debug log without the hex dumps of payloads.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.starts_with("<<"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The PSK identity and key of the coaps tests.
const IDENTITY: &str = "qblock-id";
const KEY: &str = "qblock-dtls-key1";

/// libcoap's coap-server with Q-Block (`-L 5`) on loopback, creating resources on PUT; with
/// `psk`, coaps on the port after the returned one, with [`KEY`].
fn coap_server(dir: &Path, psk: bool) -> (LoggedChild, u16) {
    let port = free_udp_port_pair();
    let mut cmd = Command::new(libcoap_qblock("coap-server"));
    cmd.args(["-A", "127.0.0.1", "-p", &port.to_string()])
        .args(["-L", "5", "-d", "4", "-v", "7"]);
    if psk {
        cmd.args(["-k", KEY]);
    }
    let server = LoggedChild::spawn(
        "coap-server 4.3.4",
        &mut cmd,
        dir.join("coap-server.log"),
        false,
    );
    wait_for_coap(port);
    (server, port)
}

/// libcoap's coap-client (`-L 5 -N`, then `args`) pulls `uri` into `dir`: it must find
/// Q-Block2 on the host (its probe) and bring exactly `body`.
async fn libcoap_pulls_with_q_block2(dir: &Path, uri: &str, args: &[&str], body: &[u8]) {
    let out_file = dir.join("out.bin");
    let out_arg = out_file.to_string_lossy();
    let all: Vec<String> = ["-L", "5", "-N", "-o", &out_arg]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect();
    let uri = uri.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        coap_client(&all, &uri)
    })
    .await
    .expect("join");
    let log = log_of(&out);
    assert!(out.status.success(), "coap-client failed:\n{log}");
    assert!(
        log.contains("Q-Block support available"),
        "libcoap did not find Q-Block2 on our host:\n{log}"
    );
    let got = std::fs::read(&out_file).expect("output file");
    assert!(got == body, "{} bytes arrived, not the package", got.len());
}

/// Uploads `body` as `/fw` to libcoap's server on plain CoAP `port`, with its own client.
async fn put_to_libcoap(dir: &Path, port: u16, body: &[u8]) {
    let file = dir.join("fw.bin");
    std::fs::write(&file, body).expect("file");
    let put_file = file.to_string_lossy().into_owned();
    let put = tokio::task::spawn_blocking(move || {
        coap_client(
            &["-m", "put", "-f", &put_file],
            &format!("coap://127.0.0.1:{port}/fw"),
        )
    })
    .await
    .expect("join");
    assert!(put.status.success(), "PUT failed:\n{}", log_of(&put));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_pulls_a_package_from_our_host_with_q_block2_through_loss() {
    let dir = temp_dir("pull");
    let body = image(64 * 1024 + 300, 1);
    let running = shim_host(&dir, true, None, &body).await;
    let relay = Relay::start(
        any(),
        running.coap_addr.expect("coap"),
        Faults::lossy(0.05, 0x11bc0a9),
    )
    .expect("relay");
    let uri = format!("coap://{}/fw/fw.bin", relay.addr());
    libcoap_pulls_with_q_block2(&dir, &uri, &[], &body).await;
    assert_bursts(&relay, body.len(), "libcoap");
    assert_lossy(&relay);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_pulls_with_confirmable_q_block2_and_gets_confirmable_blocks() {
    // Without `-N` libcoap asks with a CON request; the host sends every later block as CON
    // (each ACKed before the next), as libcoap's own server does: a body's blocks are all CON
    // or all NON (RFC 9177 §7, Appendix A.2), and libcoap sends no "Continue" in CON.
    let dir = temp_dir("con-pull");
    // Three sets of 10.
    let body = image(29 * 1024 + 77, 6);
    let running = shim_host(&dir, true, None, &body).await;
    let uri = format!("coap://{}/fw/fw.bin", running.coap_addr.expect("coap"));
    let out_file = dir.join("out.bin");
    let out_arg = out_file.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || coap_client(&["-L", "5", "-o", &out_arg], &uri))
        .await
        .expect("join");
    let log = log_of(&out);
    assert!(out.status.success(), "coap-client failed:\n{log}");
    assert!(log.contains("Q-Block support available"), "{log}");
    let got = std::fs::read(&out_file).expect("output file");
    assert!(got == body, "{} bytes arrived, not the package", got.len());
    let blocks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" c:2.05 ") && l.contains("Q-Block2:") && !l.contains("/16 ]"))
        .collect();
    assert_eq!(blocks.len(), 30, "30 blocks:\n{log}");
    assert!(
        blocks[0].contains("t:ACK"),
        "block 0 on the ACK: {}",
        blocks[0]
    );
    assert!(
        blocks[1..].iter().all(|l| l.contains("t:CON")),
        "blocks 1-29 as CON:\n{}",
        blocks.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_libcoap_with_q_block2_through_loss() {
    let dir = temp_dir("device");
    let (_server, port) = coap_server(&dir, false);
    let body = image(80 * 1024 + 11, 2);
    put_to_libcoap(&dir, port, &body).await;

    let relay = Relay::start(
        any(),
        ([127, 0, 0, 1], port).into(),
        Faults::lossy(0.05, 0x5e12),
    )
    .expect("relay");
    let config = CoapPullConfig {
        block_size: 1024,
        tx: TxParams {
            ack_timeout_ms: 500,
            max_retransmit: 6,
            ..TxParams::default()
        },
        max_size: 4 << 20,
        dtls: None,
        qblock: Some(QBlockParams::scaled(500)),
    };
    pull_exactly(&format!("coap://{}/fw", relay.addr()), &config, &body).await;
    assert_bursts(&relay, body.len(), "our device");
    assert_lossy(&relay);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shims_q_block1_push_is_taken_by_libcoap_through_loss() {
    let dir = temp_dir("push");
    let (server, port) = coap_server(&dir, false);
    let relay = Relay::start(
        any(),
        ([127, 0, 0, 1], port).into(),
        Faults::lossy(0.05, 0x9b11),
    )
    .expect("relay");
    let body = image(60 * 1024 + 99, 3);
    // A Block1 push sends each block once and gets an answer to each; a Q-Block1 push
    // through 5 % loss sends its blocks plus the lost ones and some libcoap already had
    // (it sends a 2.31 for a block inside a set after a 4.08, and the rest of the set goes
    // again), and is answered far less often.
    q_block1_push(&relay, "up", &body, || server.log()).await;
    // Read it back with libcoap's own client, over Block2.
    let out_file = dir.join("back.bin");
    let out_arg = out_file.to_string_lossy().into_owned();
    let get = tokio::task::spawn_blocking(move || {
        coap_client(&["-o", &out_arg], &format!("coap://127.0.0.1:{port}/up"))
    })
    .await
    .expect("join");
    assert!(get.status.success(), "GET back failed:\n{}", log_of(&get));
    let got = std::fs::read(&out_file).expect("read back");
    assert!(got == body, "{} bytes stored, not the body", got.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_pulls_from_our_coaps_host_with_q_block2() {
    let dir = temp_dir("coaps-pull");
    let key_hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    let body = image(40 * 1024 + 9, 4);
    let psk = format!("dev-q:{IDENTITY}:{key_hex}");
    let running = shim_host(&dir, false, Some(&psk), &body).await;
    let uri = format!("coaps://{}/fw/fw.bin", running.coaps_addr.expect("coaps"));
    libcoap_pulls_with_q_block2(&dir, &uri, &["-u", IDENTITY, "-k", KEY], &body).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_device_pulls_from_libcoaps_coaps_server_with_q_block2() {
    let dir = temp_dir("coaps-device");
    let (_server, port) = coap_server(&dir, true);
    let body = image(30 * 1024 + 3, 5);
    put_to_libcoap(&dir, port, &body).await;
    let relay =
        Relay::start(any(), ([127, 0, 0, 1], port + 1).into(), Faults::default()).expect("relay");
    let config = CoapPullConfig {
        block_size: 1024,
        tx: TxParams::default(),
        max_size: 4 << 20,
        dtls: Some(
            DtlsContext::psk_client(Psk {
                identity: IDENTITY.as_bytes().to_vec(),
                key: KEY.as_bytes().to_vec(),
            })
            .expect("ctx"),
        ),
        qblock: Some(QBlockParams::default()),
    };
    pull_exactly(&format!("coaps://{}/fw", relay.addr()), &config, &body).await;
    // Handshake flights, the probe, then one request per set of 10: not one per block.
    let requests = relay.stats().from_client.load(Ordering::Relaxed);
    assert!(
        requests < 12,
        "{requests} datagrams from the device for 31 blocks: not Q-Block2"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
