//! A DTLS handshake and a Block2 package download complete between our client's coaps pull and
//! the shim's coaps package host through a loopback relay that drops 20% of the datagrams in
//! each direction (handshake flights are retransmitted on timers, CoAP blocks on ACK timeouts).

use std::sync::atomic::Ordering;
use std::time::Duration;

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::{fetch, CoapPullConfig};
use lwm2m_client::host::dtls::{DtlsContext, Psk};
use lwm2m_client::pull::MemSink;
use tests::e2e::{coaps_package_host, temp_dir};
use tests::relay::{Faults, Relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coaps_handshake_and_download_survive_20_percent_loss() {
    let dir = temp_dir("shim-dtls-relay");
    let image: Vec<u8> = (0..24_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let running = coaps_package_host(
        &dir,
        "dev-r:id-r:6b65792d72656c61792d3031",
        "fw.bin",
        &image,
    )
    .await;

    let relay = Relay::start(
        "127.0.0.1:0".parse().expect("addr"),
        running.coaps_addr.expect("coaps"),
        Faults::lossy(0.2, 0x5eed_d715),
    )
    .expect("relay");
    let ctx = DtlsContext::psk_client(Psk {
        identity: b"id-r".to_vec(),
        key: b"key-relay-01".to_vec(),
    })
    .expect("ctx");
    let config = CoapPullConfig {
        block_size: 1024,
        // Short timers with more attempts: the exchange must survive losing ACKs and
        // responses several times in a row at 20% loss.
        tx: TxParams {
            ack_timeout_ms: 300,
            max_retransmit: 8,
            ..TxParams::default()
        },
        max_size: 1 << 20,
        dtls: Some(ctx),
        qblock: None,
    };
    let mut sink = MemSink::default();
    let uri = format!("coaps://{}/fw/fw.bin", relay.addr());
    let done = tokio::time::timeout(
        Duration::from_secs(120),
        fetch(&uri, None, &config, &mut sink),
    )
    .await
    .expect("bounded")
    .expect("coaps pull through the lossy relay");
    assert_eq!(done.size, image.len() as u64);
    assert!(sink.data == image, "downloaded bytes differ");
    let dropped = relay.stats().dropped.load(Ordering::Relaxed);
    assert!(
        dropped > 0,
        "the relay dropped nothing, so loss was not exercised"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
