//! A coaps package pull whose NAT mapping changes in the middle of the download (a carrier-grade
//! NAT's mapping expired, or the device moved between cells): the package host (the shim's
//! coaps listener, OpenSSL as any DTLS server without Connection ID) has no session for the new
//! address and drops what comes from it. The pull then handshakes again from where it is and
//! goes on; before, its retransmissions went unanswered until it gave up with the connection
//! lost, the whole download to start over. A mapping that changes twice in one download costs
//! two new handshakes, the second offering the session the first one made.

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Duration;

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::{fetch, CoapPullConfig};
use lwm2m_client::host::dtls::{DtlsContext, Psk};
use lwm2m_client::pull::{MemSink, PackageSink, SinkError};
use tests::e2e::{coaps_package_host, temp_dir};
use tests::nat::Nat;

/// A coaps pull with the PSK `identity`/`key` whose host is taken for lost after 2.1 s of
/// silence (ACK_TIMEOUT 300 ms, MAX_RETRANSMIT 4), with Q-Block2 timers to match if `qblock`.
fn pull_config(identity: &[u8], key: &[u8], qblock: bool) -> CoapPullConfig {
    let ctx = DtlsContext::psk_client(Psk {
        identity: identity.to_vec(),
        key: key.to_vec(),
    })
    .expect("ctx");
    let tx = TxParams {
        ack_timeout_ms: 300,
        max_retransmit: 4,
        ..TxParams::default()
    };
    CoapPullConfig {
        block_size: 1024,
        tx,
        max_size: 1 << 20,
        dtls: Some(ctx),
        qblock: qblock.then(|| lwm2m_client::pull::qblock::QBlockParams {
            non_max_retransmit: tx.max_retransmit,
            ..lwm2m_client::pull::qblock::QBlockParams::scaled(tx.ack_timeout_ms)
        }),
    }
}

/// Pulls `uri` into `sink` within a minute; `what` names the pull if it fails. It must bring
/// `len` bytes.
async fn pull_all(
    uri: &str,
    config: &CoapPullConfig,
    sink: &mut dyn PackageSink,
    what: &str,
    len: usize,
) {
    let done = tokio::time::timeout(Duration::from_secs(60), fetch(uri, None, config, sink))
        .await
        .expect("bounded")
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(done.size, len as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coaps_pull_goes_on_after_its_nat_mapping_changes() {
    let dir = temp_dir("coaps-pull-nat");
    let image: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    let running =
        coaps_package_host(&dir, "dev-n:id-n:6b65792d6e61742d3031", "fw.bin", &image).await;

    // The handshake takes a few datagrams of the device's; Block2 then asks ~200 times,
    // Q-Block2 ~20 (one request per burst of MAX_PAYLOADS blocks).
    for (qblock, rebind_after) in [(false, 60), (true, 12)] {
        let nat = Nat::start_rebinding_after(running.coaps_addr.expect("coaps"), rebind_after)
            .expect("NAT");
        let config = pull_config(b"id-n", b"key-nat-01", qblock);
        let mut sink = MemSink::default();
        let uri = format!("coaps://{}/fw/fw.bin", nat.addr());
        let what = format!("coaps pull (Q-Block2: {qblock}) across the rebinding");
        pull_all(&uri, &config, &mut sink, &what, image.len()).await;
        assert!(sink.data == image, "downloaded bytes differ");
        assert_eq!(nat.rebinds(), 1, "the mapping changed mid-pull");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sink that asks for a NAT rebinding once the bytes stored pass each of `at`.
struct RebindingSink {
    inner: MemSink,
    at: Vec<u64>,
    rebind: Sender<()>,
}

impl PackageSink for RebindingSink {
    fn start(
        &mut self,
        from: u64,
        etag: Option<&[u8]>,
        total: Option<u64>,
    ) -> Result<(), SinkError> {
        self.inner.start(from, etag, total)
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.inner.write(offset, bytes)?;
        let end = offset + bytes.len() as u64;
        if self.at.first().is_some_and(|&a| end >= a) {
            self.at.remove(0);
            let _ = self.rebind.send(());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coaps_pull_goes_on_after_its_nat_mapping_changes_twice() {
    let dir = temp_dir("coaps-pull-nat-twice");
    let image: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let running =
        coaps_package_host(&dir, "dev-t:id-t:6b65792d6e61742d3032", "fw.bin", &image).await;
    let nat = Arc::new(Nat::start(running.coaps_addr.expect("coaps")).expect("NAT"));
    // NAT::rebind waits for the device's next datagram: from a thread of its own.
    let (rebind, asked) = channel::<()>();
    let rebinder = {
        let nat = nat.clone();
        std::thread::spawn(move || {
            while asked.recv().is_ok() {
                nat.rebind();
            }
        })
    };
    let config = pull_config(b"id-t", b"key-nat-02", false);
    let mut sink = RebindingSink {
        inner: MemSink::default(),
        at: vec![50_000, 130_000],
        rebind,
    };
    let uri = format!("coaps://{}/fw/fw.bin", nat.addr());
    pull_all(
        &uri,
        &config,
        &mut sink,
        "coaps pull across two rebindings",
        image.len(),
    )
    .await;
    assert!(sink.inner.data == image, "downloaded bytes differ");
    assert_eq!(nat.rebinds(), 2, "the mapping changed twice mid-pull");
    drop(sink);
    rebinder.join().expect("rebinder");
    let _ = std::fs::remove_dir_all(&dir);
}
