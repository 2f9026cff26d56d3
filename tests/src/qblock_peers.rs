//! What the RFC 9177 tests against foreign peers (libcoap, go-coap) share: the shim as their
//! package host, our device's pull of a peer's package, the shim's Q-Block1 push into a peer's
//! server, and the check that a transfer went in Q-Block bursts, not one block per round trip.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_client::host::coap_pull::{fetch, CoapPullConfig};
use lwm2m_client::pull::MemSink;
use lwm2m_server_shim::app::{self, RunningShim, ShimConfig};
use lwm2m_server_shim::coap::endpoint::{CoapEndpoint, RequestHandler};
use lwm2m_server_shim::coap::message::response;
use lwm2m_server_shim::coap::timing::CoapTiming;
use lwm2m_server_shim::packages::qblock::QBlockSenderParams;
use lwm2m_server_shim::server::qblock1_push::{push, Pushed};
use lwm2m_server_shim::server::security::store::SecurityInfo;

use crate::relay::Relay;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// `n` bytes of a package, different for each `salt`.
pub fn image(n: usize, salt: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2654435761) >> 11) as u8)
        .collect()
}

/// The shim as a package host serving `body` as `/fw/fw.bin` from `dir`: on plain CoAP with
/// `coap`, and on coaps with `psk` ("endpoint:identity:hexkey") in its security store.
pub async fn shim_host(dir: &Path, coap: bool, psk: Option<&str>, body: &[u8]) -> RunningShim {
    let running = app::start(ShimConfig {
        coap_addr: coap.then(any),
        coaps_addr: psk.map(|_| any()),
        http_addr: any(),
        package_dir: dir.join("packages"),
        ..ShimConfig::default()
    })
    .await
    .expect("shim starts");
    if let Some(psk) = psk {
        running
            .shim
            .security
            .put(SecurityInfo::parse_cli(psk).expect("psk"))
            .expect("stored");
    }
    running.shim.packages.store("fw.bin", body).expect("store");
    running
}

/// Our device's pull of `uri` (within two minutes) brings exactly `body`.
pub async fn pull_exactly(uri: &str, config: &CoapPullConfig, body: &[u8]) {
    let mut sink = MemSink::default();
    let done = tokio::time::timeout(
        Duration::from_secs(120),
        fetch(uri, None, config, &mut sink),
    )
    .await
    .expect("bounded")
    .unwrap_or_else(|e| panic!("pull of {uri}: {e}"));
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "the bytes differ");
}

/// The client behind `relay` asked fewer than a third as many times as there are blocks in
/// `len` bytes (Block2 asks once per block): Q-Block2 bursts.
pub fn assert_bursts(relay: &Relay, len: usize, client: &str) {
    let blocks = len.div_ceil(1024) as u64;
    let requests = relay.stats().from_client.load(Ordering::Relaxed);
    assert!(
        requests < blocks / 3,
        "{requests} datagrams from {client} for {blocks} blocks: not Q-Block2 bursts"
    );
}

/// `relay` dropped datagrams: the loss was exercised.
pub fn assert_lossy(relay: &Relay) {
    assert!(
        relay.stats().dropped.load(Ordering::Relaxed) > 0,
        "no loss exercised"
    );
}

/// The pusher's own endpoint answers nothing: it only sends.
struct NoResources;

impl RequestHandler for NoResources {
    fn handle(&self, _: &Packet, _: SocketAddr) -> Packet {
        response(ResponseType::NotFound)
    }
}

/// The shim's Q-Block1 pusher PUTs `body` as `/<path>` to the peer behind the lossy `relay`
/// (1 KiB blocks, RFC 9177's timers), which must take it (2.01 or 2.04; `log` is shown
/// otherwise) in fewer datagrams than a Block1 push's two per block, answered less often
/// than it was sent to. Returns the answers the peer sent.
pub async fn q_block1_push(
    relay: &Relay,
    path: &str,
    body: &[u8],
    log: impl Fn() -> String,
) -> u64 {
    let endpoint = CoapEndpoint::bind(any(), CoapTiming::default(), Arc::new(NoResources))
        .await
        .expect("endpoint");
    let receiver = tokio::spawn(endpoint.clone().run());
    let mut req = Packet::new();
    req.header.code = MessageClass::Request(RequestType::Put);
    req.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    req.set_content_format(coap_lite::ContentFormat::ApplicationOctetStream);
    // RFC 9177's defaults: libcoap waits its fixed NON_RECEIVE_TIMEOUT (4 s, twice the
    // default NON_TIMEOUT) before it lists missing blocks, so shorter waits give up first.
    let pushed = tokio::time::timeout(
        Duration::from_secs(120),
        push(
            &endpoint,
            relay.addr(),
            &req,
            body,
            6,
            &QBlockSenderParams::default(),
            Duration::from_secs(10),
        ),
    )
    .await
    .expect("bounded")
    .expect("Q-Block1 push");
    receiver.abort();
    let Pushed::Answered(answer) = pushed else {
        panic!("the peer refused Q-Block1: {pushed:?}\n{}", log());
    };
    assert!(
        matches!(
            answer.header.code,
            MessageClass::Response(ResponseType::Created | ResponseType::Changed)
        ),
        "final answer {:?}\n{}",
        answer.header.code,
        log()
    );
    let blocks = body.len().div_ceil(1024) as u64;
    let sent = relay.stats().from_client.load(Ordering::Relaxed);
    let answers = relay.stats().from_server.load(Ordering::Relaxed);
    eprintln!("Q-Block1 push of {blocks} blocks: {sent} datagrams sent, {answers} answers");
    assert!(sent < 2 * blocks, "{sent} datagrams for {blocks} blocks");
    assert!(answers < sent, "{answers} answers to {sent} datagrams");
    assert_lossy(relay);
    answers
}
