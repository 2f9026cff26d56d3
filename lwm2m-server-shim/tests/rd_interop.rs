//! The registration interface against peers that read the specifications strictly or oddly,
//! as third-party clients do: a raw UDP peer on loopback sends exactly the bytes a test needs
//! and sees exactly what the shim answers (RFC 7252 message format, LwM2M version and binding
//! negotiation, block-wise Register and Update).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{coap_client, wait_event, Harness};
use lwm2m_client::codec::block::{decode_uint_option, uint_option};
use lwm2m_client::codec::BlockOpt;
use serde_json::json;

/// A CoAP peer on its own loopback socket.
struct Peer {
    sock: UdpSocket,
    shim: SocketAddr,
    next_mid: u16,
}

impl Peer {
    fn new(h: &Harness) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        Self {
            sock,
            shim: h.coap,
            next_mid: 0x100,
        }
    }

    fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// The first datagram from the shim within `wait`, if any.
    fn receive(&self, wait: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(buf.get(..n)?.to_vec())
    }

    /// Sends a CON request and returns the answer with its message id.
    fn request(&mut self, mut p: Packet) -> Packet {
        let mid = self.mid();
        p.header.set_type(MessageType::Confirmable);
        p.header.message_id = mid;
        p.set_token(mid.to_be_bytes().to_vec());
        self.sock
            .send_to(&p.to_bytes().expect("encode"), self.shim)
            .expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(d) = self.receive(Duration::from_millis(200)) {
                let r = Packet::from_bytes(&d).expect("answer decodes");
                if r.header.message_id == mid {
                    return r;
                }
            }
        }
        panic!("no answer to message {mid}");
    }
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

fn response(r: ResponseType) -> MessageClass {
    MessageClass::Response(r)
}

/// POST /rd with the given queries and link-format payload.
fn register(query: &[&str], links: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Post);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.payload = links.as_bytes().to_vec();
    p
}

/// An Update (POST) to the location a Register answered with.
fn update_of(created: &Packet) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Post);
    for seg in created
        .get_option(CoapOption::LocationPath)
        .expect("location")
    {
        p.add_option(CoapOption::UriPath, seg.clone());
    }
    p
}

fn clients(h: &Harness) -> serde_json::Value {
    h.get_json("/api/clients").1
}

#[test]
fn a_payload_marker_without_payload_is_a_format_error_not_a_request() {
    let h = Harness::start("rd-marker", |_| {});
    let mut peer = Peer::new(&h);
    // CON POST /rd?ep=m&lt=60 ending in a payload marker (RFC 7252 section 3).
    let mut p = register(&["ep=m", "lt=60"], "");
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = 0x4242;
    let mut bytes = p.to_bytes().expect("encode");
    bytes.push(0xFF);
    peer.sock.send_to(&bytes, h.coap).expect("send");
    let answer = peer
        .receive(Duration::from_secs(5))
        .expect("a CON format error is rejected");
    let r = Packet::from_bytes(&answer).expect("decodes");
    assert_eq!(
        (r.header.get_type(), r.header.code, r.header.message_id),
        (MessageType::Reset, MessageClass::Empty, 0x4242),
        "Reset, not a response"
    );
    // The NON form is ignored: no answer at all.
    p.header.set_type(MessageType::NonConfirmable);
    p.header.message_id = 0x4243;
    let mut bytes = p.to_bytes().expect("encode");
    bytes.push(0xFF);
    peer.sock.send_to(&bytes, h.coap).expect("send");
    assert_eq!(peer.receive(Duration::from_millis(700)), None);
    assert_eq!(clients(&h), json!([]), "never processed as a Register");
    // The same Register without the stray marker goes through.
    let r = peer.request(register(&["ep=m", "lt=60"], ""));
    assert_eq!(code(&r), response(ResponseType::Created));
}

#[test]
fn datagrams_of_another_coap_version_get_no_answer() {
    let h = Harness::start("rd-version", |_| {});
    let mut peer = Peer::new(&h);
    for version in [0u8, 2, 3] {
        for kind in [MessageType::Confirmable, MessageType::NonConfirmable] {
            let mut p = register(&["ep=v", "lt=60"], "</3/0>");
            p.header.set_version(version);
            p.header.set_type(kind);
            p.header.message_id = peer.mid();
            p.set_token(vec![9]);
            peer.sock
                .send_to(&p.to_bytes().expect("encode"), h.coap)
                .expect("send");
            assert_eq!(
                peer.receive(Duration::from_millis(400)),
                None,
                "version {version} {kind:?} answered"
            );
        }
    }
    assert_eq!(clients(&h), json!([]));
    let r = peer.request(register(&["ep=v", "lt=60"], "</3/0>"));
    assert_eq!(code(&r), response(ResponseType::Created));
}

#[test]
fn unsupported_lwm2m_versions_get_4_12_and_nonsense_bindings_4_00() {
    let h = Harness::start("rd-negotiate", |_| {});
    let mut peer = Peer::new(&h);
    // LwM2M core TS 1.1 section 6.2.1.1: a version the server does not implement is refused
    // with 4.12 Precondition Failed, so the client falls back to an older one.
    for v in ["9.9", "1.2", "2.0", "1", "1.1.0", ""] {
        let r = peer.request(register(&["ep=neg", "lt=60", &format!("lwm2m={v}")], ""));
        assert_eq!(
            code(&r),
            response(ResponseType::PreconditionFailed),
            "lwm2m={v}"
        );
    }
    assert_eq!(clients(&h), json!([]), "no refused version registered");
    // Binding modes: 1.0 knows U, UQ, S, SQ, US, UQS (TS 1.0 section 5.3.1.1); 1.1 any
    // combination of U, T, S, N with queue mode as its own `Q` parameter.
    let refused: [(&str, &str); 12] = [
        ("1.0", "b=X"),
        ("1.0", "b="),
        ("1.0", "b"),
        ("1.0", "b=Q"),
        ("1.0", "b=QU"),
        ("1.0", "b=UU"),
        ("1.0", "b=u"),
        ("1.0", "b=T"),
        ("1.1", "b=UU"),
        ("1.1", "b=Q"),
        ("1.1", "b=UX"),
        ("1.1", "b=U Q"),
    ];
    for (v, b) in refused {
        let r = peer.request(register(&["ep=neg", "lt=60", &format!("lwm2m={v}"), b], ""));
        assert_eq!(code(&r), response(ResponseType::BadRequest), "{v} {b}");
    }
    assert_eq!(clients(&h), json!([]), "no nonsense binding registered");
    for (v, b) in [
        ("1.0", "b=U"),
        ("1.0", "b=UQS"),
        ("1.0", "b=SQ"),
        ("1.1", "b=U"),
        ("1.1", "b=UT"),
        ("1.1", "b=TSNU"),
    ] {
        let r = peer.request(register(&["ep=neg", "lt=60", &format!("lwm2m={v}"), b], ""));
        assert_eq!(code(&r), response(ResponseType::Created), "{v} {b}");
        let (_, reg) = h.get_json("/api/clients/neg");
        assert_eq!(reg["lwM2mVersion"], v);
        assert_eq!(reg["bindingMode"].as_str(), b.strip_prefix("b="));
    }
    // Without `lwm2m` the client is a 1.0 client (TS 1.0: the parameter defaults to 1.0).
    let r = peer.request(register(&["ep=old", "lt=60"], ""));
    assert_eq!(code(&r), response(ResponseType::Created));
    assert_eq!(h.get_json("/api/clients/old").1["lwM2mVersion"], "1.0");
    // An Update's binding is checked against the registered version.
    let mut update = update_of(&r);
    update.add_option(CoapOption::UriQuery, b"b=T".to_vec());
    let r = peer.request(update);
    assert_eq!(code(&r), response(ResponseType::BadRequest), "1.0 has no T");
    assert_eq!(h.get_json("/api/clients/old").1["bindingMode"], "U");
}

#[test]
fn lwm2m_1_0_binding_uq_is_queue_mode() {
    let h = Harness::start("rd-queue", |_| {});
    let mut peer = Peer::new(&h);
    let r = peer.request(register(
        &["ep=q10", "lt=60", "lwm2m=1.0", "b=UQ"],
        "</3/0>",
    ));
    assert_eq!(code(&r), response(ResponseType::Created));
    let (_, reg) = h.get_json("/api/clients/q10");
    assert_eq!(
        (reg["queuemode"].clone(), reg["bindingMode"].clone()),
        (json!(true), json!("UQ"))
    );
    // Leaving queue mode with an Update to b=U (TS 1.0 section 5.3.2).
    let mut update = update_of(&r);
    update.add_option(CoapOption::UriQuery, b"b=U".to_vec());
    assert_eq!(code(&peer.request(update)), response(ResponseType::Changed));
    assert_eq!(h.get_json("/api/clients/q10").1["queuemode"], json!(false));
    // The 1.1 spelling: the Q parameter.
    let r = peer.request(register(&["ep=q11", "lt=60", "lwm2m=1.1", "b=U", "Q"], ""));
    assert_eq!(code(&r), response(ResponseType::Created));
    assert_eq!(h.get_json("/api/clients/q11").1["queuemode"], json!(true));
    let r = peer.request(register(&["ep=u10", "lt=60", "lwm2m=1.0", "b=U"], ""));
    assert_eq!(code(&r), response(ResponseType::Created));
    assert_eq!(h.get_json("/api/clients/u10").1["queuemode"], json!(false));
}

/// `payload` cut into Block1 requests of `size` bytes for `template` (RFC 7959 section 2.5).
fn blocks(template: &Packet, payload: &[u8], size: usize, size1: Option<u32>) -> Vec<Packet> {
    let szx = BlockOpt::szx_for_size(size);
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(n, chunk)| {
            let mut p = template.clone();
            let more = n + 1 < chunks.len();
            let opt = BlockOpt::new(n as u32, more, szx).expect("block");
            p.add_option(CoapOption::Block1, opt.encode());
            if let (0, Some(s)) = (n, size1) {
                p.add_option(CoapOption::Size1, uint_option(s));
            }
            p.payload = chunk.to_vec();
            p
        })
        .collect()
}

fn block1(p: &Packet) -> Option<BlockOpt> {
    p.get_first_option(CoapOption::Block1)
        .and_then(|v| BlockOpt::decode(v).ok())
}

/// A link-format payload of `n` objects, long enough to need several blocks.
fn many_links(n: u16) -> String {
    (0..n)
        .map(|i| format!("</{}/0>", 1000 + i))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_block_wise_register_and_update_count_only_once_complete() {
    let h = Harness::start("rd-block1", |_| {});
    let events = h.events("?ep=blk");
    let mut peer = Peer::new(&h);
    let links = many_links(12);
    let parts = blocks(
        &register(&["ep=blk", "lt=60"], ""),
        links.as_bytes(),
        32,
        None,
    );
    assert!(parts.len() >= 3);
    let last = parts.len() - 1;
    let mut answers = Vec::new();
    for (n, p) in parts.into_iter().enumerate() {
        let r = peer.request(p);
        if n < last {
            // RFC 7959 section 2.3: 2.31 Continue, echoing the block, nothing registered yet.
            assert_eq!(code(&r), response(ResponseType::Continue), "block {n}");
            assert_eq!(
                block1(&r),
                Some(BlockOpt::new(n as u32, true, 1).expect("opt"))
            );
            assert_eq!(clients(&h), json!([]), "registered from block {n}");
        }
        answers.push(r);
    }
    let done = answers.pop().expect("final answer");
    assert_eq!(code(&done), response(ResponseType::Created));
    assert_eq!(
        block1(&done),
        Some(BlockOpt::new(last as u32, false, 1).expect("opt"))
    );
    let reg = wait_event(&events, Duration::from_secs(5), |n, _| n == "REGISTRATION");
    assert_eq!(
        reg["objectLinks"].as_array().map(Vec::len),
        Some(12),
        "the whole payload registered"
    );
    // Block-wise Update on the location the Register answered.
    let mut update = update_of(&done);
    update.add_option(CoapOption::ContentFormat, vec![40]);
    let links = many_links(9);
    let parts = blocks(&update, links.as_bytes(), 16, Some(links.len() as u32));
    let last = parts.len() - 1;
    for (n, p) in parts.into_iter().enumerate() {
        let r = peer.request(p);
        let want = if n < last {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(code(&r), response(want), "update block {n}");
    }
    let (_, reg) = h.get_json("/api/clients/blk");
    assert_eq!(reg["objectLinks"].as_array().map(Vec::len), Some(9));
}

#[test]
fn a_block_wise_register_out_of_order_or_too_large_is_refused() {
    let h = Harness::start("rd-block1-bad", |_| {});
    let mut peer = Peer::new(&h);
    let links = many_links(40);
    // Size1 announces more than the shim takes: 4.13 with its limit in Size1 (RFC 7959 2.9.3).
    let parts = blocks(
        &register(&["ep=big", "lt=60"], ""),
        links.as_bytes(),
        64,
        Some(10_000_000),
    );
    let r = peer.request(parts[0].clone());
    assert_eq!(code(&r), response(ResponseType::RequestEntityTooLarge));
    let limit = r
        .get_first_option(CoapOption::Size1)
        .map(|v| decode_uint_option(v).expect("uint"))
        .expect("Size1 in the 4.13");
    assert!((1024..10_000_000).contains(&limit), "{limit}");
    // A block that skips ahead: 4.08 Request Entity Incomplete (RFC 7959 2.9.2).
    let parts = blocks(
        &register(&["ep=gap", "lt=60"], ""),
        links.as_bytes(),
        64,
        None,
    );
    assert_eq!(
        code(&peer.request(parts[0].clone())),
        response(ResponseType::Continue)
    );
    assert_eq!(
        code(&peer.request(parts[2].clone())),
        response(ResponseType::RequestEntityIncomplete)
    );
    assert_eq!(clients(&h), json!([]));
    // A body that grows past the limit without Size1 is cut off with 4.13 too.
    let huge = "</1/0>,".repeat(limit as usize / 7 + 200);
    let parts = blocks(
        &register(&["ep=huge", "lt=60"], ""),
        huge.as_bytes(),
        1024,
        None,
    );
    let mut refused = false;
    for p in parts {
        let r = peer.request(p);
        if code(&r) == response(ResponseType::RequestEntityTooLarge) {
            refused = true;
            break;
        }
        assert_eq!(code(&r), response(ResponseType::Continue));
    }
    assert!(refused, "grew past the limit");
    assert_eq!(clients(&h), json!([]));
}

#[test]
fn libcoap_registers_block_wise() {
    let h = Harness::start("rd-block1-libcoap", |_| {});
    let events = h.events("?ep=libblk");
    let links = many_links(20);
    let rd = format!("coap://{}/rd?ep=libblk&lt=60&lwm2m=1.1", h.coap);
    let (ok, _) = coap_client(&["-m", "post", "-b", "32", &rd, "-t", "40", "-e", &links]);
    assert!(ok, "coap-client registers block-wise");
    let reg = wait_event(&events, Duration::from_secs(10), |n, _| n == "REGISTRATION");
    assert_eq!(reg["objectLinks"].as_array().map(Vec::len), Some(20));
}
