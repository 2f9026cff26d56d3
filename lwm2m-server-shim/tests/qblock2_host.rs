//! The package host's Q-Block2 answers on the wire (RFC 9177 §4.4), to a client scripted
//! here on a loopback UDP socket: a CON request for the whole body gets every later block as
//! a CON response, one at a time, each retransmitted until acknowledged (a body's blocks are
//! all CON or all NON, §7; Appendix A.2), and nothing after; a NON request gets its set as a
//! NON burst. CON bursts under way are capped.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{bytes, Harness};
use lwm2m_client::codec::qblock::{q_block2, q_block2_options};
use lwm2m_client::codec::BlockOpt;
use lwm2m_server_shim::coap::endpoint::{
    CoapEndpoint, RequestHandler, Responses, MAX_CONFIRMABLE_BURSTS,
};
use lwm2m_server_shim::coap::message::response;
use lwm2m_server_shim::coap::timing::CoapTiming;
use lwm2m_server_shim::packages::qblock::QBlockSenderParams;

/// Sends `GET /fw/x.bin` with one Q-Block2 option asking blocks of 1 KiB from `num` on
/// (M set), then waits up to 5 s for each datagram.
fn ask(sock: &UdpSocket, to: SocketAddr, kind: MessageType, mid: u16, token: &[u8], num: u32) {
    let opt = BlockOpt::new(num, true, 6).expect("block");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&request(kind, mid, token, opt), to)
        .expect("send");
}

fn request(kind: MessageType, mid: u16, token: &[u8], ask: BlockOpt) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(kind);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::UriPath, b"fw".to_vec());
    p.add_option(CoapOption::UriPath, b"x.bin".to_vec());
    p.add_option(q_block2(), ask.encode());
    p.to_bytes().expect("encode")
}

/// The next datagram from the host, if one comes within the socket's timeout.
fn receive(sock: &UdpSocket) -> Option<Packet> {
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(Packet::from_bytes(&buf[..n]).expect("the host's datagram decodes"))
}

fn num(p: &Packet) -> u32 {
    let o = q_block2_options(p).expect("Q-Block2 option");
    assert_eq!(o.len(), 1, "one Q-Block2 option per block");
    o[0].num
}

fn acknowledge(sock: &UdpSocket, to: SocketAddr, p: &Packet) {
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = p.header.message_id;
    sock.send_to(&ack.to_bytes().expect("encode"), to)
        .expect("send");
}

#[test]
fn a_confirmable_request_gets_the_body_as_confirmable_blocks_one_at_a_time_and_a_non_one_a_burst() {
    let h = Harness::start("qb2con", |c| {
        // A short NON_TIMEOUT: a set sent unasked would show within the wait below.
        c.qblock = Some(QBlockSenderParams {
            non_timeout: Duration::from_millis(200),
            ..QBlockSenderParams::default()
        });
    });
    // 16 blocks of 1 KiB: a set of 10, then 6.
    let body = bytes(15 * 1024 + 100, 7);
    h.running()
        .shim
        .packages
        .store("x.bin", &body)
        .expect("store");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // The whole body (block 0, M set).
    ask(&sock, h.coap, MessageType::Confirmable, 0x0100, &[7, 7], 0);

    let first = receive(&sock).expect("an answer");
    assert_eq!(
        (first.header.get_type(), first.header.message_id),
        (MessageType::Acknowledgement, 0x0100),
        "block 0 piggybacked on the ACK"
    );
    assert_eq!(
        first.header.code,
        MessageClass::Response(ResponseType::Content)
    );
    assert_eq!(num(&first), 0);
    let mut got = first.payload.clone();

    // Block 1 comes as CON. Left unacknowledged it is sent again, and block 2 waits for it.
    let one = receive(&sock).expect("block 1");
    assert_eq!(one.header.get_type(), MessageType::Confirmable);
    assert_eq!((num(&one), one.get_token()), (1, &[7u8, 7][..]));
    let again = receive(&sock).expect("block 1 retransmitted");
    assert_eq!(
        (num(&again), again.header.message_id),
        (1, one.header.message_id),
        "the same message again, not block 2"
    );
    acknowledge(&sock, h.coap, &one);
    got.extend_from_slice(&one.payload);

    // Blocks 2 to 15: the rest of the body, past the first set of 10, with no "Continue".
    let mut next = 2;
    while next < 16 {
        let p = receive(&sock).expect("the rest of the body");
        assert_eq!(
            p.header.get_type(),
            MessageType::Confirmable,
            "block {}",
            num(&p)
        );
        assert_eq!(p.get_token(), &[7u8, 7][..]);
        acknowledge(&sock, h.coap, &p);
        // A retransmission that crossed the ACK is acknowledged again and skipped.
        if num(&p) < next {
            continue;
        }
        assert_eq!(num(&p), next, "in order, one at a time");
        got.extend_from_slice(&p.payload);
        next += 1;
    }
    assert!(got == body, "{} bytes arrived, not the package", got.len());

    // Nothing more, and no NON set unasked.
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    while let Some(p) = receive(&sock) {
        assert_eq!(
            p.header.get_type(),
            MessageType::Confirmable,
            "sent unasked"
        );
        acknowledge(&sock, h.coap, &p);
    }

    // A NON request for the second set: a NON burst with that request's token.
    ask(
        &sock,
        h.coap,
        MessageType::NonConfirmable,
        0x0200,
        &[8, 8],
        10,
    );
    let mut again = Vec::new();
    for expected in 10..16 {
        let p = receive(&sock).expect("the NON burst");
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!((num(&p), p.get_token()), (expected, &[8u8, 8][..]));
        again.extend_from_slice(&p.payload);
    }
    assert!(again == body[10 * 1024..], "the second set differs");
}

/// Answers every request with a response and three more (a burst, as the Q-Block2 face does).
struct Bursts;

impl RequestHandler for Bursts {
    fn handle(&self, _: &Packet, _: SocketAddr) -> Packet {
        response(ResponseType::Content)
    }

    fn handle_burst(&self, request: &Packet, peer: SocketAddr) -> (Packet, Responses) {
        let more = (1..4u8).map(|i| {
            let mut p = response(ResponseType::Content);
            p.payload = vec![i];
            p
        });
        (self.handle(request, peer), Box::new(more))
    }
}

#[test]
fn confirmable_bursts_never_acknowledged_are_capped() {
    // Clients that never acknowledge (or spoofed requests) hold a task each for up to
    // MAX_TRANSMIT_WAIT: past the cap a CON request gets its response alone.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = rt
        .block_on(CoapEndpoint::bind(
            "127.0.0.1:0".parse().expect("addr"),
            CoapTiming::default(),
            Arc::new(Bursts),
        ))
        .expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let _running = rt.spawn(endpoint.clone().run());
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let requests = MAX_CONFIRMABLE_BURSTS + 20;
    let mut bursts = std::collections::HashSet::new();
    let note = |p: &Packet, bursts: &mut std::collections::HashSet<Vec<u8>>| {
        if p.header.get_type() == MessageType::Confirmable {
            bursts.insert(p.get_token().to_vec());
        }
    };
    // One request at a time, each sent once its response came, so no datagram is dropped.
    for i in 0..requests {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = i as u16;
        p.set_token((i as u32).to_be_bytes().to_vec());
        sock.send_to(&p.to_bytes().expect("encode"), addr)
            .expect("send");
        loop {
            let p = receive(&sock).expect("the response");
            note(&p, &mut bursts);
            if p.header.get_type() == MessageType::Acknowledgement {
                assert_eq!(p.header.message_id, i as u16);
                break;
            }
        }
    }
    // The first CON of each burst that started; nothing is acknowledged, so no burst ends
    // (ACK_TIMEOUT 2 s: no retransmission within this wait either).
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    while let Some(p) = receive(&sock) {
        note(&p, &mut bursts);
    }
    assert_eq!(bursts.len(), MAX_CONFIRMABLE_BURSTS);
    drop(rt);
}
