//! Q-Block2 (RFC 9177) package pulls over real loopback sockets: our device and the shim's
//! package host through the fault-injecting relay (loss, duplicates, reordering), a reboot in
//! the middle that resumes, coaps, the fall back to Block2 against hosts without Q-Block2
//! (aiocoap's file server, the shim with Q-Block2 disabled), and hosts that send malformed
//! Q-Block2 options or blocks of another ETag, which are refused while the slot stays usable.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use lwm2m_client::coap::TxParams;
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::qblock::{q_block2, q_block2_options, Ask};
use lwm2m_client::codec::BlockOpt;
use lwm2m_client::host::coap_pull::{fetch, CoapPullConfig};
use lwm2m_client::host::dtls::{DtlsContext, Psk};
use lwm2m_client::pull::qblock::QBlockParams;
use lwm2m_client::pull::MemSink;
use lwm2m_client::pull::Resume;
use lwm2m_client::sim::InThreadDevice;
use lwm2m_server_shim::app::{self, ShimConfig};
use lwm2m_server_shim::server::security::store::SecurityInfo;
use tests::e2e::{assert_resumed, Harness, PackageKind};
use tests::process::{aiocoap_fileserver, free_udp_port};
use tests::relay::{Faults, Relay};

const IDLE: i64 = 0;
const DOWNLOADING: i64 = 1;
const DOWNLOADED: i64 = 2;
const T: Duration = Duration::from_secs(90);

fn image(n: usize, salt: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2654435761) >> 9) as u8)
        .collect()
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn sent_by_client(relay: &Relay) -> u64 {
    relay.stats().from_client.load(Ordering::Relaxed)
}

fn sent_by_host(relay: &Relay) -> u64 {
    relay.stats().from_server.load(Ordering::Relaxed)
}

fn qblock_config(tx: TxParams, params: QBlockParams) -> CoapPullConfig {
    CoapPullConfig {
        block_size: 1024,
        tx,
        max_size: 4 << 20,
        dtls: None,
        qblock: Some(params),
    }
}

/// A shim serving packages from a fresh directory over plain CoAP.
async fn shim(tag: &str, qblock: bool) -> (app::RunningShim, PathBuf) {
    let dir = std::env::temp_dir().join(format!("qblock-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = ShimConfig {
        coap_addr: Some(any()),
        coaps_addr: None,
        http_addr: any(),
        package_dir: dir.clone(),
        qblock: qblock.then(Default::default),
        ..ShimConfig::default()
    };
    (app::start(config).await.expect("shim starts"), dir)
}

#[test]
fn a_device_pulls_with_q_block2_through_a_lossy_relay_and_installs() {
    let h = Harness::start("qblock-e2e");
    let ep = "qblock-e2e";
    let mut opts = h.device_options(ep);
    opts.pull_qblock = true;
    opts.slot_kib = 160;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    let len = 120 * 1024;
    h.package("fw.suit", &PackageKind::good("3.0.0", 2, len));
    let relay = Relay::start(
        any(),
        h.coap,
        Faults {
            loss: 0.05,
            duplicate: 0.05,
            reorder: 0.1,
            delay: Duration::from_millis(2),
            seed: 0x9b10c2,
            ..Faults::default()
        },
    )
    .expect("relay");
    h.write_uri(ep, &format!("coap://{}/fw/fw.suit", relay.addr()));
    h.wait_state(ep, (DOWNLOADED, 0), T);
    let blocks = (len / 1024) as u64;
    let requests = sent_by_client(&relay);
    // Block2 sends a request per block; Q-Block2 one per set of 10 plus the lost ones.
    assert!(
        requests < blocks / 3,
        "{requests} datagrams from the device for {blocks}+ blocks: not Q-Block2"
    );
    assert!(
        relay.stats().dropped.load(Ordering::Relaxed) > 0,
        "no loss exercised"
    );
    h.execute(ep, "/5/0/2");
    h.wait_until("3.0.0 to run", T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some("3.0.0")
    });
    h.wait_state(ep, (IDLE, 1), T);
}

#[test]
fn a_reboot_in_the_middle_of_a_q_block2_pull_resumes() {
    let h = Harness::start("qblock-resume");
    let ep = "qblock-resume";
    let mut opts = h.device_options(ep);
    opts.pull_qblock = true;
    opts.slot_kib = 200;
    opts.pull_block_size = 512;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    let len = 180 * 1024;
    h.package("big.suit", &PackageKind::good("2.5.0", 2, len));
    // 20 ms each way: one set of 10 blocks per 40 ms, so the reset lands mid-transfer.
    let relay = Relay::start(
        any(),
        h.coap,
        Faults {
            delay: Duration::from_millis(20),
            ..Faults::default()
        },
    )
    .expect("relay");
    let blocks = (len / 512) as u64;
    h.write_uri(ep, &format!("coap://{}/fw/big.suit", relay.addr()));
    h.wait_until("a third of the package", T, || {
        sent_by_host(&relay) > blocks / 3
    });
    assert_eq!(h.state_result(ep), Some((DOWNLOADING, 0)));
    let before = sent_by_host(&relay);
    assert!(before < blocks, "the pull finished before the reset");
    assert!(
        sent_by_client(&relay) < before / 3,
        "{} requests for {before} blocks: not Q-Block2",
        sent_by_client(&relay)
    );
    assert_eq!(h.execute(ep, "/3/0/4"), "CHANGED(204)");
    h.wait_state(ep, (DOWNLOADED, 0), T);
    // After the reset only the rest of the package (from the last persisted sector) came.
    assert_resumed(before, sent_by_host(&relay) - before, blocks);
    h.install(ep, "2.5.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_loss_costs_about_a_quarter_more_datagrams_not_a_round_trip_per_block() {
    let (running, dir) = shim("heavy", true).await;
    let body = image(200 * 1024, 1);
    running.shim.packages.store("fw.bin", &body).expect("store");
    let host = running.coap_addr.expect("coap");
    let tx = TxParams {
        ack_timeout_ms: 100,
        ..TxParams::default()
    };
    // More retries than NON_MAX_RETRANSMIT's 4: at 20% each way five failed rounds in a row
    // are likely somewhere in 20 sets.
    let params = QBlockParams {
        non_max_retransmit: 8,
        ..QBlockParams::scaled(tx.ack_timeout_ms)
    };
    let mut counts = Vec::new();
    for loss in [0.0, 0.2] {
        let relay = Relay::start(
            any(),
            host,
            Faults {
                loss,
                seed: 0xfeed_0020,
                ..Faults::default()
            },
        )
        .expect("relay");
        let mut sink = MemSink::default();
        let uri = format!("coap://{}/fw/fw.bin", relay.addr());
        let done = tokio::time::timeout(
            Duration::from_secs(120),
            fetch(&uri, None, &qblock_config(tx, params), &mut sink),
        )
        .await
        .expect("bounded")
        .expect("pull");
        assert_eq!(done.size, body.len() as u64);
        assert!(sink.data == body, "pulled bytes differ at {loss}");
        counts.push(sent_by_client(&relay) + sent_by_host(&relay));
    }
    // Loss-free: the probe and its 16-byte answer, then 20 requests for 200 blocks.
    assert_eq!(counts[0], 2 + 220, "one request per set of 10");
    assert!(
        counts[1] * 2 <= counts[0] * 3,
        "{} datagrams at 20% loss, {} without",
        counts[1],
        counts[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_block2_over_coaps_through_a_lossy_relay() {
    let dir = std::env::temp_dir().join(format!("qblock-coaps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let running = app::start(ShimConfig {
        coap_addr: None,
        coaps_addr: Some(any()),
        http_addr: any(),
        package_dir: dir.clone(),
        ..ShimConfig::default()
    })
    .await
    .expect("shim starts");
    running
        .shim
        .security
        .put(SecurityInfo::parse_cli("dev-q:id-q:6b65792d71626c6f636b2d31").expect("psk"))
        .expect("stored");
    let body = image(100 * 1024, 2);
    running.shim.packages.store("fw.bin", &body).expect("store");
    let relay = Relay::start(
        any(),
        running.coaps_addr.expect("coaps"),
        Faults::lossy(0.05, 0xc0a95),
    )
    .expect("relay");
    let tx = TxParams {
        ack_timeout_ms: 300,
        max_retransmit: 6,
        ..TxParams::default()
    };
    let mut config = qblock_config(tx, QBlockParams::scaled(300));
    config.dtls = Some(
        DtlsContext::psk_client(Psk {
            identity: b"id-q".to_vec(),
            key: b"key-qblock-1".to_vec(),
        })
        .expect("ctx"),
    );
    let mut sink = MemSink::default();
    let uri = format!("coaps://{}/fw/fw.bin", relay.addr());
    let done = tokio::time::timeout(
        Duration::from_secs(120),
        fetch(&uri, None, &config, &mut sink),
    )
    .await
    .expect("bounded")
    .expect("coaps Q-Block2 pull");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body);
    // Handshake flights plus about one request per set, not one per block.
    let from_device = sent_by_client(&relay);
    assert!(
        from_device < 40,
        "{from_device} datagrams from the device for 100 blocks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_and_the_shim_without_q_block2_get_the_pull_over_block2() {
    let tx = TxParams {
        ack_timeout_ms: 500,
        ..TxParams::default()
    };
    let config = qblock_config(tx, QBlockParams::default());

    // aiocoap's file server ignores the Q-Block2 option and answers with Block2.
    let dir = std::env::temp_dir().join(format!("qblock-aiocoap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let body = image(64 * 1024 + 77, 3);
    std::fs::write(dir.join("fw.suit"), &body).expect("write");
    let port = free_udp_port();
    let _server = aiocoap_fileserver(&dir, port);
    let relay = Relay::start(
        any(),
        SocketAddr::from(([127, 0, 0, 1], port)),
        Faults::default(),
    )
    .expect("relay");
    let uri = format!("coap://{}/fw.suit", relay.addr());
    let mut sink = MemSink::default();
    let done = fetch(&uri, None, &config, &mut sink).await.expect("pull");
    assert!(sink.data == body, "bytes from aiocoap differ");
    let blocks = body.len().div_ceil(1024) as u64;
    // The Q-Block2 request, then one Block2 request per block.
    assert_eq!(sent_by_client(&relay), 1 + blocks);
    // And a resume with aiocoap's ETag continues over Block2 too.
    let resume = Resume {
        offset: 32 * 1024,
        etag: done.etag,
    };
    let mut sink = MemSink {
        data: body[..32 * 1024].to_vec(),
        starts: vec![],
    };
    let done = fetch(&uri, Some(&resume), &config, &mut sink)
        .await
        .expect("resumed pull");
    assert!(done.resumed);
    assert_eq!(sink.starts, vec![32 * 1024]);
    assert!(sink.data == body);
    let _ = std::fs::remove_dir_all(&dir);

    // The shim with Q-Block2 disabled serves Block2 as before.
    let (running, dir) = shim("disabled", false).await;
    running.shim.packages.store("fw.bin", &body).expect("store");
    let relay =
        Relay::start(any(), running.coap_addr.expect("coap"), Faults::default()).expect("relay");
    let mut sink = MemSink::default();
    let uri = format!("coap://{}/fw/fw.bin", relay.addr());
    fetch(&uri, None, &config, &mut sink).await.expect("pull");
    assert!(sink.data == body);
    assert_eq!(sent_by_client(&relay), 1 + blocks);
    let _ = std::fs::remove_dir_all(&dir);
}

/// How a scripted host misbehaves.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Blocks from number 13 on carry a Q-Block2 value of four bytes.
    MalformedOption,
    /// Every request is answered with another ETag, as if the package changed each time.
    EtagPerRequest,
}

/// A package host on a thread that speaks Q-Block2 (bursts of up to 10 blocks) for `body`,
/// misbehaving as told.
struct ScriptedHost {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedHost {
    fn start(body: Vec<u8>, how: Misbehaviour) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut requests = 0u32;
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if req.header.code == MessageClass::Empty {
                    continue;
                }
                requests += 1;
                for r in answer(&req, &body, requests, how) {
                    let _ = socket.send_to(&r, from);
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ScriptedHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The scripted host's burst for one request.
fn answer(req: &Packet, body: &[u8], n: u32, how: Misbehaviour) -> Vec<Vec<u8>> {
    let Ok(asks) = q_block2_options(req) else {
        return Vec::new();
    };
    let Some(szx) = asks.first().map(|a| a.szx) else {
        return Vec::new();
    };
    let bs = 1usize << (szx + 4);
    let total = body.len().div_ceil(bs) as u32;
    let mut nums: Vec<u32> = asks
        .iter()
        .flat_map(|a| Ask::of(*a, 10).blocks(10, total))
        .collect();
    nums.sort_unstable();
    nums.dedup();
    nums.truncate(10);
    let etag = match how {
        Misbehaviour::EtagPerRequest => n.to_be_bytes().to_vec(),
        Misbehaviour::MalformedOption => b"stable".to_vec(),
    };
    nums.iter()
        .enumerate()
        .map(|(i, &num)| {
            let mut p = Packet::new();
            let con = req.header.get_type() == MessageType::Confirmable;
            if i == 0 && con {
                p.header.set_type(MessageType::Acknowledgement);
                p.header.message_id = req.header.message_id;
            } else {
                p.header.set_type(MessageType::NonConfirmable);
                p.header.message_id = (n * 16 + i as u32) as u16;
            }
            p.header.code = MessageClass::Response(ResponseType::Content);
            p.set_token(req.get_token().to_vec());
            p.add_option(CoapOption::ETag, etag.clone());
            let value = match how {
                Misbehaviour::MalformedOption if num >= 13 => vec![0, 0, 0, 0x0E],
                _ => BlockOpt::new(num, num + 1 < total, szx)
                    .expect("block")
                    .encode(),
            };
            p.add_option(q_block2(), value);
            p.add_option(CoapOption::Size2, uint_option(body.len() as u32));
            let start = num as usize * bs;
            p.payload = body[start..(start + bs).min(body.len())].to_vec();
            p.to_bytes().expect("encode")
        })
        .collect()
}

#[test]
fn malformed_options_and_changing_etags_are_refused_and_the_slot_still_takes_an_update() {
    let h = Harness::start("qblock-refuse");
    let ep = "qblock-refuse";
    let mut opts = h.device_options(ep);
    opts.pull_qblock = true;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    h.package("fw.suit", &PackageKind::good("2.0.0", 2, 40_000));
    let package = std::fs::read(h.dir.join("packages/fw.suit")).expect("package");

    // A malformed Q-Block2 option mid-transfer: connection lost (Update Result 4).
    let bad = ScriptedHost::start(package.clone(), Misbehaviour::MalformedOption);
    h.write_uri(ep, &format!("coap://{}/fw/fw.suit", bad.addr));
    h.wait_state(ep, (IDLE, 4), T);
    drop(bad);

    // A package that changes with every request: restarted, then refused (Update Result 5).
    let flapping = ScriptedHost::start(package, Misbehaviour::EtagPerRequest);
    h.write_uri(ep, &format!("coap://{}/fw/fw.suit", flapping.addr));
    h.wait_state(ep, (IDLE, 5), T);
    drop(flapping);

    // The slot was not left half-written with mixed versions: a good pull installs.
    h.write_uri(ep, &h.package_uri("fw.suit"));
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.execute(ep, "/5/0/2");
    h.wait_until("2.0.0 to run", T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some("2.0.0")
    });
    h.wait_state(ep, (IDLE, 1), T);
}
