//! Firmware pushes with Q-Block1 (RFC 9177 §4.3) over real loopback sockets: the shim pushes
//! to our device through the fault-injecting relay (loss, delay) and the device installs; a
//! device with Q-Block1 switched off answers 4.02 and gets the package with Block1, the
//! shim remembering that for the registration; and malformed Q-Block1 requests sent to the
//! device as raw datagrams get a clear error while the slot keeps the body being received.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::qblock::{decode_missing, q_block1, request_tag};
use lwm2m_client::codec::BlockOpt;
use lwm2m_client::sim::InThreadDevice;
use lwm2m_server_shim::packages::qblock::QBlockSenderParams;
use sha2::{Digest, Sha256};
use tests::e2e::{Harness, PackageKind};
use tests::leshan::{LaunchOption, LeshanClient};
use tests::relay::{Faults, Relay};

const IDLE: i64 = 0;
const DOWNLOADED: i64 = 2;
const T: Duration = Duration::from_secs(120);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn from_device(relay: &Relay) -> u64 {
    relay.stats().from_client.load(Ordering::Relaxed)
}

fn from_shim(relay: &Relay) -> u64 {
    relay.stats().from_server.load(Ordering::Relaxed)
}

fn assert_changed(what: &str, (status, v): (u16, serde_json::Value)) {
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{what}: {v}"
    );
}

/// A shim that pushes with Q-Block1 (`serve --qblock-push`; Block1 is its default).
fn pushing_q_block1(tag: &str) -> Harness {
    Harness::start_configured(tag, |c| c.push_qblock = Some(QBlockSenderParams::default()))
}

/// A device registered with the shim through a relay with `faults`; the package `name` of
/// `len` bytes, read back from the shim's package directory.
fn behind_relay(
    h: &Harness,
    ep: &str,
    faults: Faults,
    no_qblock1: bool,
    len: usize,
) -> (Relay, InThreadDevice, Vec<u8>) {
    let relay = Relay::start(any(), h.coap, faults).expect("relay");
    let mut opts = h.device_options(ep);
    opts.server = format!("coap://{}", relay.addr());
    opts.slot_kib = 300;
    opts.no_qblock1 = no_qblock1;
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    h.package("fw.suit", &PackageKind::good("3.2.0", 4, len));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).expect("package");
    (relay, dev, pkg)
}

/// A Q-Block1 push of `blocks` through `relay` since it had seen `dev0` datagrams from the
/// device and dropped `dropped0`: about one answer per set of 10 (plus 4.08s; Block1 answers
/// each block), and some datagrams lost.
fn sets_through_loss(relay: &Relay, blocks: u64, dev0: u64, dropped0: u64) {
    let answers = from_device(relay) - dev0;
    assert!(
        relay.stats().dropped.load(Ordering::Relaxed) > dropped0,
        "no loss exercised"
    );
    assert!(
        answers < blocks / 3,
        "{answers} datagrams from the device for {blocks} blocks: not Q-Block1"
    );
}

/// The pushed package is downloaded; Update installs it, `version` runs, Update Result 1.
fn installs(h: &Harness, ep: &str, version: &str) {
    h.wait_state(ep, (DOWNLOADED, 0), T);
    assert_eq!(h.execute(ep, "/5/0/2"), "CHANGED(204)");
    h.wait_until(&format!("{version} to run"), T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some(version)
    });
    h.wait_state(ep, (IDLE, 1), T);
}

/// A 160 KiB push through 10 ms each way and 10 % loss in both directions: Q-Block1 sets
/// of 10 blocks, the lost ones sent again from the device's 4.08 lists; the package verifies,
/// installs and Update Result is 1. Block1 would cost the device an ACK per block.
#[test]
fn a_q_block1_push_through_a_lossy_relay_installs() {
    let h = pushing_q_block1("qb1-lossy");
    let ep = "qb1-lossy";
    let faults = Faults {
        loss: 0.1,
        delay: Duration::from_millis(10),
        seed: 0x0b1_1055,
        ..Faults::default()
    };
    let (relay, _dev, pkg) = behind_relay(&h, ep, faults, false, 160 * 1024);
    let blocks = pkg.len().div_ceil(1024) as u64;
    let (dev0, shim0, dropped0) = (
        from_device(&relay),
        from_shim(&relay),
        relay.stats().dropped.load(Ordering::Relaxed),
    );
    assert_changed("push", h.push(ep, &pkg));
    let sent = from_shim(&relay) - shim0;
    sets_through_loss(&relay, blocks, dev0, dropped0);
    assert!(
        sent >= blocks && sent < blocks * 2,
        "{sent} datagrams from the shim for {blocks} blocks"
    );
    installs(&h, ep, "3.2.0");
}

/// The same push over coaps (PSK): the Q-Block1 sets, the 4.08 lists and the device's
/// answers all go through the DTLS session, through 5 % loss; the package installs.
#[test]
fn a_q_block1_push_over_coaps_through_a_lossy_relay_installs() {
    let h = Harness::start_secure_configured("qb1-coaps", |c| {
        c.push_qblock = Some(QBlockSenderParams::default())
    });
    let ep = "qb1-coaps";
    let key = "000102030405060708090a0b0c0d0e0f";
    assert_eq!(h.add_psk(ep, "qb1-coaps-id", key), 200);
    let relay = Relay::start(any(), h.coap, Faults::lossy(0.05, 0x0d71_50b1)).expect("relay");
    let mut opts = h.psk_device_options(ep, "qb1-coaps-id", key);
    opts.server = format!("coaps://{}", relay.addr());
    opts.slot_kib = 200;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration over DTLS", T, || h.registered(ep));
    h.package("fw.suit", &PackageKind::good("3.4.0", 5, 90 * 1024));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).expect("package");
    let blocks = pkg.len().div_ceil(1024) as u64;
    let (dev0, dropped0) = (
        from_device(&relay),
        relay.stats().dropped.load(Ordering::Relaxed),
    );
    assert_changed("push", h.push(ep, &pkg));
    sets_through_loss(&relay, blocks, dev0, dropped0);
    installs(&h, ep, "3.4.0");
}

/// A device with Q-Block1 off answers the first block 4.02 Bad Option (RFC 7252 §5.4.1): the
/// shim pushes with Block1 and the package arrives whole; the next push to the same
/// registration goes straight to Block1 (no probe), counted on a loss-free relay.
#[test]
fn a_device_without_q_block1_gets_the_push_with_block1_and_is_remembered() {
    let h = pushing_q_block1("qb1-off");
    let ep = "qb1-off";
    let (relay, _dev, pkg) = behind_relay(&h, ep, Faults::default(), true, 40 * 1024);
    let blocks = pkg.len().div_ceil(1024) as u64;
    let shim0 = from_shim(&relay);
    assert_changed("first push", h.push(ep, &pkg));
    let first = from_shim(&relay) - shim0;
    h.wait_state(ep, (DOWNLOADED, 0), T);
    // Back to Idle (a single NUL byte), then the same package again.
    assert_changed("reset", h.push(ep, &[0]));
    h.wait_state(ep, (IDLE, 0), T);
    let shim1 = from_shim(&relay);
    assert_changed("second push", h.push(ep, &pkg));
    let second = from_shim(&relay) - shim1;
    h.wait_state(ep, (DOWNLOADED, 0), T);
    // Block1 takes one request per block; the first push also probed once with Q-Block1.
    // (State reads between the pushes are not counted: each span covers one push only.)
    assert_eq!(second, blocks, "second push: Block1 at once");
    assert_eq!(
        first,
        blocks + 1,
        "first push: one Q-Block1 probe, then Block1"
    );
    assert_eq!(h.execute(ep, "/5/0/2"), "CHANGED(204)");
    h.wait_state(ep, (IDLE, 1), T);
}

/// Leshan's client library (2.0.0-M18 on Californium) as the device. It does not implement
/// Q-Block1 and, against RFC 7252 §5.4.1, does not refuse the unknown critical option either:
/// it takes the probe's block 0 for the whole body and answers 2.04 (its log shows a 1024-byte
/// package). The shim reads a 2.04 to block 0 of a longer body as "not understood" and pushes
/// again with Block1, whose block 0 restarts the body: Leshan ends up with the package byte
/// for byte.
#[test]
fn a_leshan_client_gets_the_push_with_block1() {
    let h = pushing_q_block1("qb1-leshan");
    let ep = "qb1-leshan";
    h.package("fw.suit", &PackageKind::good("3.5.0", 8, 20 * 1024));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).expect("package");
    let client = LeshanClient::start_plain(
        &h.dir,
        ep,
        &format!("coap://{}", h.coap),
        300,
        LaunchOption::Firmware,
    );
    h.wait_until("Leshan's registration", T, || h.registered(ep));
    assert_changed("push to Leshan", h.push(ep, &pkg));
    let digest: String = Sha256::digest(&pkg)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let want = format!("package {} bytes sha256={digest}", pkg.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.log().contains(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = client.stop(Duration::from_secs(30));
    let packages: Vec<&str> = log.lines().filter(|l| l.starts_with("package ")).collect();
    assert_eq!(
        packages.last(),
        Some(&want.as_str()),
        "Leshan's last package is not the one pushed:\n{log}"
    );
}

/// A fake LwM2M server on a raw socket: takes the device's Register, then sends requests.
struct RawServer {
    socket: UdpSocket,
    device: SocketAddr,
    mid: u16,
}

impl RawServer {
    fn accept(socket: UdpSocket) -> Self {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = socket.recv_from(&mut buf).expect("register");
            let p = Packet::from_bytes(&buf[..n]).expect("coap");
            if p.header.code == MessageClass::Request(RequestType::Post) {
                let mut ack = Packet::new();
                ack.header.set_type(MessageType::Acknowledgement);
                ack.header.code = MessageClass::Response(ResponseType::Created);
                ack.header.message_id = p.header.message_id;
                ack.set_token(p.get_token().to_vec());
                ack.add_option(CoapOption::LocationPath, b"rd".to_vec());
                ack.add_option(CoapOption::LocationPath, b"raw1".to_vec());
                socket.send_to(&ack.to_bytes().unwrap(), from).unwrap();
                return Self {
                    socket,
                    device: from,
                    mid: 0x4000,
                };
            }
        }
    }

    /// Sends `p` as a CON with a fresh message id and token; the device's answer.
    fn exchange(&mut self, mut p: Packet) -> Packet {
        self.mid = self.mid.wrapping_add(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.message_id = self.mid;
        p.set_token(self.mid.to_be_bytes().to_vec());
        let bytes = p.to_bytes().expect("encode");
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(20);
        self.socket.send_to(&bytes, self.device).unwrap();
        while Instant::now() < deadline {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                self.socket.send_to(&bytes, self.device).unwrap();
                continue;
            };
            let r = Packet::from_bytes(&buf[..n]).expect("coap");
            if matches!(r.header.code, MessageClass::Response(_)) && r.get_token() == p.get_token()
            {
                return r;
            }
        }
        panic!("no answer from the device");
    }
}

/// A device whose server is a [`RawServer`], registered, and a package of `len` bytes.
fn raw_device(
    h: &Harness,
    ep: &str,
    no_qblock1: bool,
    len: usize,
) -> (RawServer, InThreadDevice, Vec<u8>) {
    h.package("fw.suit", &PackageKind::good("3.3.0", 6, len));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).expect("package");
    let socket = UdpSocket::bind(any()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut opts = h.device_options(ep);
    opts.server = format!("coap://{}", socket.local_addr().unwrap());
    opts.no_qblock1 = no_qblock1;
    let dev = InThreadDevice::start(opts);
    (RawServer::accept(socket), dev, pkg)
}

fn block(pkg: &[u8], num: u32, tag: &[u8]) -> Packet {
    let total = pkg.len().div_ceil(1024) as u32;
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Put);
    for s in ["5", "0", "0"] {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    p.add_option(CoapOption::ContentFormat, vec![42]);
    let opt = BlockOpt::new(num, num + 1 < total, 6).unwrap();
    p.add_option(q_block1(), opt.encode());
    p.add_option(request_tag(), tag.to_vec());
    p.add_option(CoapOption::Size1, uint_option(pkg.len() as u32));
    let start = num as usize * 1024;
    p.payload = pkg[start..(start + 1024).min(pkg.len())].to_vec();
    p
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        _ => ResponseType::UnKnown,
    }
}

fn read_state(s: &mut RawServer) -> String {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    for seg in ["5", "0", "3"] {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.add_option(CoapOption::Accept, vec![0]);
    String::from_utf8(s.exchange(p).payload).unwrap()
}

/// Malformed Q-Block1 requests in the middle of a push (raw datagrams from the device's
/// server): each is refused with a clear code and diagnostic, nothing of it reaches the slot,
/// and the push then completes and verifies (State 2, Update Result 0).
#[test]
fn malformed_q_block1_requests_are_refused_and_the_slot_stays_intact() {
    let h = Harness::start("qb1-raw");
    let (mut s, _dev, pkg) = raw_device(&h, "qb1-raw", false, 30 * 1024);
    let tag = [7, 7];
    // Blocks 0..=4 in order (CON: each answered 2.31 with its Q-Block1).
    for n in 0..5 {
        let r = s.exchange(block(&pkg, n, &tag));
        assert_eq!(code(&r), ResponseType::Continue, "block {n}");
    }
    let refusals: Vec<(&str, Packet, ResponseType, &str)> = vec![
        (
            "4-byte Q-Block1",
            {
                let mut p = block(&pkg, 5, &tag);
                p.clear_option(q_block1());
                p.add_option(q_block1(), vec![0, 0, 0x05, 0x6e]);
                p
            },
            ResponseType::BadOption,
            "malformed Q-Block1",
        ),
        (
            "reserved SZX 7",
            {
                let mut p = block(&pkg, 5, &tag);
                p.clear_option(q_block1());
                p.add_option(q_block1(), vec![0x5f]);
                p
            },
            ResponseType::BadOption,
            "malformed Q-Block1",
        ),
        (
            "repeated Q-Block1",
            {
                let mut p = block(&pkg, 5, &tag);
                p.add_option(q_block1(), BlockOpt::new(6, true, 6).unwrap().encode());
                p
            },
            ResponseType::BadOption,
            "malformed Q-Block1",
        ),
        (
            "Q-Block1 with Block1",
            {
                let mut p = block(&pkg, 5, &tag);
                p.add_option(
                    CoapOption::Block1,
                    BlockOpt::new(5, true, 6).unwrap().encode(),
                );
                p
            },
            ResponseType::BadOption,
            "Q-Block1 with Block1",
        ),
        (
            "another Size1",
            {
                let mut p = block(&pkg, 5, &tag);
                p.clear_option(CoapOption::Size1);
                p.add_option(CoapOption::Size1, uint_option(pkg.len() as u32 + 1));
                p
            },
            ResponseType::BadRequest,
            "body changed mid-transfer",
        ),
        (
            "another Content-Format",
            {
                let mut p = block(&pkg, 5, &tag);
                p.clear_option(CoapOption::ContentFormat);
                p.add_option(CoapOption::ContentFormat, vec![0]);
                p
            },
            ResponseType::BadRequest,
            "body changed mid-transfer",
        ),
        (
            "short block with M set",
            {
                let mut p = block(&pkg, 5, &tag);
                p.payload.truncate(100);
                p
            },
            ResponseType::BadRequest,
            "block size mismatch",
        ),
        (
            "Request-Tag of 9 bytes",
            {
                let mut p = block(&pkg, 5, &tag);
                p.clear_option(request_tag());
                p.add_option(request_tag(), vec![1; 9]);
                p
            },
            ResponseType::BadRequest,
            "malformed Request-Tag",
        ),
    ];
    for (what, p, want, why) in refusals {
        let r = s.exchange(p);
        assert_eq!(code(&r), want, "{what}");
        assert_eq!(String::from_utf8_lossy(&r.payload), why, "{what}");
    }
    // A block of another body (other Request-Tag, not block 0) is asked for from block 0
    // and leaves this body alone.
    let r = s.exchange(block(&pkg, 7, &[9]));
    assert_eq!(code(&r), ResponseType::RequestEntityIncomplete);
    assert_eq!(
        decode_missing(&r.payload, 10).unwrap(),
        (0..8).collect::<Vec<_>>()
    );
    // A block after a gap is not kept: the device asks for everything from the gap on.
    let r = s.exchange(block(&pkg, 7, &tag));
    assert_eq!(code(&r), ResponseType::RequestEntityIncomplete);
    assert_eq!(
        decode_missing(&r.payload, 10).unwrap(),
        (5..10).collect::<Vec<_>>()
    );
    assert_eq!(read_state(&mut s), "1", "still downloading");
    // The rest of the body, in order: the package verifies.
    let total = pkg.len().div_ceil(1024) as u32;
    for n in 5..total {
        let r = s.exchange(block(&pkg, n, &tag));
        let want = if n + 1 == total {
            ResponseType::Changed
        } else {
            ResponseType::Continue
        };
        assert_eq!(code(&r), want, "block {n}");
    }
    assert_eq!(read_state(&mut s), "2", "downloaded and verified");
}

/// With Q-Block1 switched off the device refuses a Q-Block1 request with 4.02 instead of
/// taking its block for the whole package (RFC 7252 §5.4.1: Q-Block1 is critical).
#[test]
fn a_device_with_q_block1_off_answers_bad_option() {
    let h = Harness::start("qb1-402");
    let (mut s, _dev, pkg) = raw_device(&h, "qb1-402", true, 8 * 1024);
    let r = s.exchange(block(&pkg, 0, &[1]));
    assert_eq!(code(&r), ResponseType::BadOption);
    assert_eq!(read_state(&mut s), "0", "nothing written");
}
