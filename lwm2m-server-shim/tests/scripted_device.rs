//! Device-management edge cases against a scripted CoAP device on real loopback UDP: the
//! device registers through the registration interface, then answers each request the way a
//! test needs (4.13 renegotiation, slow blocks, silence, 20-bit block numbers), so the shim's
//! behaviour on those paths is observable. Everything goes through the REST API.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{bytes, hex, wait_event, Harness};
use lwm2m_client::codec::block::{decode_uint_option, uint_option};
use lwm2m_client::codec::tlv;
use lwm2m_client::codec::{
    BlockOpt, ContentFormat, Instance, Node, Path, Resource, ResourceType, ResourceValue, Value,
};
use lwm2m_server_shim::content;
use serde_json::json;

type Behaviour = Box<dyn FnMut(&Packet) -> Option<(Packet, Duration)> + Send>;

struct Device {
    sock: UdpSocket,
    shim: SocketAddr,
}

fn reply(code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(code);
    p
}

fn opt_block(p: &Packet, o: CoapOption) -> Option<BlockOpt> {
    p.get_first_option(o).and_then(|v| BlockOpt::decode(v).ok())
}

fn path_of(p: &Packet) -> String {
    p.get_option(CoapOption::UriPath)
        .map(|l| {
            l.iter()
                .map(|s| format!("/{}", String::from_utf8_lossy(s)))
                .collect()
        })
        .unwrap_or_default()
}

impl Device {
    /// Binds a socket and registers `ep` with the shim through CoAP.
    fn register(h: &Harness, ep: &str, links: &str) -> Self {
        Self::register_with(h, ep, &[], links)
    }

    /// Like [`Device::register`] with more Register queries (`lwm2m=1.1`, `b=U`...).
    fn register_with(h: &Harness, ep: &str, query: &[&str], links: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let d = Self { sock, shim: h.coap };
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = 0x1234;
        p.set_token(vec![1, 2, 3, 4]);
        p.add_option(CoapOption::UriPath, b"rd".to_vec());
        p.add_option(CoapOption::UriQuery, format!("ep={ep}").into_bytes());
        p.add_option(CoapOption::UriQuery, b"lt=300".to_vec());
        for q in query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.add_option(CoapOption::ContentFormat, vec![40]);
        p.payload = links.as_bytes().to_vec();
        let bytes = p.to_bytes().expect("encode");
        // Sent twice with the same message id: the shim must treat the copy as a duplicate.
        d.sock.send_to(&bytes, d.shim).expect("send");
        d.sock.send_to(&bytes, d.shim).expect("send");
        let mut locations = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..30 {
            if locations.len() == 2 {
                break;
            }
            if let Ok((n, _)) = d.sock.recv_from(&mut buf) {
                let r = Packet::from_bytes(&buf[..n]).expect("answer decodes");
                assert_eq!(r.header.code, MessageClass::Response(ResponseType::Created));
                assert_eq!(r.header.message_id, 0x1234);
                locations.push(r.get_option(CoapOption::LocationPath).cloned());
            }
        }
        assert_eq!(locations.len(), 2, "both copies answered");
        assert_eq!(
            locations[0], locations[1],
            "the duplicate got the same answer"
        );
        d
    }

    /// Answers requests with `behaviour` until stopped; returns every request seen.
    fn serve(self, mut behaviour: Behaviour) -> (Arc<AtomicBool>, JoinHandle<Vec<Packet>>) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut answered: Vec<(u16, Vec<u8>)> = Vec::new();
            let mut buf = vec![0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                seen.push(req.clone());
                // Duplicate detection (RFC 7252 4.5): a retransmitted CON gets the same answer.
                let mid = req.header.message_id;
                if let Some((_, bytes)) = answered.iter().find(|(m, _)| *m == mid) {
                    let _ = self.sock.send_to(bytes, from);
                    continue;
                }
                if let Some((mut resp, delay)) = behaviour(&req) {
                    std::thread::sleep(delay);
                    resp.header.set_type(MessageType::Acknowledgement);
                    resp.header.message_id = mid;
                    resp.set_token(req.get_token().to_vec());
                    let bytes = resp.to_bytes().expect("encode");
                    let _ = self.sock.send_to(&bytes, from);
                    answered.push((mid, bytes));
                }
            }
            seen
        });
        (stop, handle)
    }
}

fn finish(stop: Arc<AtomicBool>, handle: JoinHandle<Vec<Packet>>) -> Vec<Packet> {
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("device thread")
}

/// A Block1 receiver that wants blocks of at most `max` bytes and says so with `refuse`.
fn block1_sink(
    max: usize,
    refuse: impl Fn(BlockOpt) -> Packet + Send + 'static,
    late_szx: Option<u8>,
    delay: Duration,
    body: Arc<Mutex<Vec<u8>>>,
) -> Behaviour {
    Box::new(move |req| {
        let Some(b) = opt_block(req, CoapOption::Block1) else {
            body.lock().expect("lock").extend_from_slice(&req.payload);
            return Some((reply(ResponseType::Changed), delay));
        };
        if b.size() > max && late_szx.is_none() {
            return Some((refuse(b), delay));
        }
        let mut got = body.lock().expect("lock");
        if b.offset() as usize != got.len() {
            return Some((reply(ResponseType::RequestEntityIncomplete), delay));
        }
        got.extend_from_slice(&req.payload);
        let mut r = reply(if b.more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        });
        let szx = late_szx.map_or(b.szx, |s| s.min(b.szx));
        r.add_option(
            CoapOption::Block1,
            BlockOpt {
                num: b.num,
                more: b.more,
                szx,
            }
            .encode(),
        );
        Some((r, delay))
    })
}

fn push_via_rest(h: &Harness, ep: &str, image: &[u8], timeout_s: u32) -> serde_json::Value {
    let node = json!({"id":0,"kind":"singleResource","type":"opaque","value": hex(image)});
    let (s, r) = h.put(
        &format!("/api/clients/{ep}/5/0/0?format=OPAQUE&timeout={timeout_s}"),
        "application/json",
        node.to_string().as_bytes(),
    );
    assert_eq!(s, 200, "{r}");
    r
}

fn block1_sizes(seen: &[Packet]) -> Vec<usize> {
    seen.iter()
        .filter_map(|p| opt_block(p, CoapOption::Block1))
        .map(BlockOpt::size)
        .collect()
}

#[test]
fn push_renegotiates_smaller_blocks_on_4_13_with_size1() {
    let h = Harness::start("413size1", |_| {});
    let dev = Device::register(&h, "small", "</5/0>");
    let body = Arc::new(Mutex::new(Vec::new()));
    let refuse = |_b: BlockOpt| {
        let mut r = reply(ResponseType::RequestEntityTooLarge);
        r.add_option(CoapOption::Size1, uint_option(64));
        r
    };
    let (stop, t) = dev.serve(block1_sink(64, refuse, None, Duration::ZERO, body.clone()));
    let image = bytes(3000, 1);
    let r = push_via_rest(&h, "small", &image, 5);
    let seen = finish(stop, t);
    assert_eq!(r["status"], "CHANGED(204)", "{r}");
    assert_eq!(*body.lock().expect("lock"), image);
    let sizes = block1_sizes(&seen);
    assert_eq!(sizes[0], 1024);
    assert!(sizes[1..].iter().all(|s| *s == 64), "{sizes:?}");
    assert_eq!(sizes.len(), 1 + 3000usize.div_ceil(64));
    let size1 = seen[0]
        .get_first_option(CoapOption::Size1)
        .map(|v| decode_uint_option(v));
    assert_eq!(
        size1,
        Some(Ok(3000)),
        "first block announces the total size"
    );
}

#[test]
fn push_renegotiates_on_4_13_with_block1_szx_and_follows_late_2_31_szx() {
    let h = Harness::start("413szx", |_| {});
    let dev = Device::register(&h, "szx", "</5/0>");
    let body = Arc::new(Mutex::new(Vec::new()));
    let refuse = |b: BlockOpt| {
        let mut r = reply(ResponseType::RequestEntityTooLarge);
        r.add_option(
            CoapOption::Block1,
            BlockOpt {
                num: b.num,
                more: b.more,
                szx: 3,
            }
            .encode(),
        );
        r
    };
    let (stop, t) = dev.serve(block1_sink(128, refuse, None, Duration::ZERO, body.clone()));
    let image = bytes(1500, 2);
    let r = push_via_rest(&h, "szx", &image, 5);
    let sizes = block1_sizes(&finish(stop, t));
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(*body.lock().expect("lock"), image);
    assert_eq!(sizes[0], 1024);
    assert!(sizes[1..].iter().all(|s| *s == 128), "{sizes:?}");

    // Late negotiation: the device accepts the first 1024-byte block but asks for 256 after it.
    let dev = Device::register(&h, "late", "</5/0>");
    let body = Arc::new(Mutex::new(Vec::new()));
    let never = |_b: BlockOpt| reply(ResponseType::InternalServerError);
    let (stop, t) = dev.serve(block1_sink(
        1024,
        never,
        Some(4),
        Duration::ZERO,
        body.clone(),
    ));
    let image = bytes(3000, 3);
    let r = push_via_rest(&h, "late", &image, 5);
    let sizes = block1_sizes(&finish(stop, t));
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(*body.lock().expect("lock"), image);
    assert_eq!(sizes, [1024, 256, 256, 256, 256, 256, 256, 256, 256]);
}

#[test]
fn slow_blocks_restart_the_request_timeout() {
    let h = Harness::start("slow", |c| c.block_size = 256);
    let dev = Device::register(&h, "slow", "</5/0>");
    let body = Arc::new(Mutex::new(Vec::new()));
    let never = |_b: BlockOpt| reply(ResponseType::InternalServerError);
    // 5 blocks, each answered after 0.6 s: 3 s in total against a 1 s request timeout.
    let (stop, t) = dev.serve(block1_sink(
        1024,
        never,
        None,
        Duration::from_millis(600),
        body.clone(),
    ));
    let image = bytes(1100, 4);
    let started = std::time::Instant::now();
    let r = push_via_rest(&h, "slow", &image, 1);
    let elapsed = started.elapsed();
    finish(stop, t);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(*body.lock().expect("lock"), image);
    assert!(
        elapsed > Duration::from_secs(1),
        "the transfer outlived one timeout: {elapsed:?}"
    );
}

#[test]
fn silent_device_yields_504_after_con_retransmissions() {
    let h = Harness::start("silent", |_| {});
    let dev = Device::register(&h, "mute", "</3/0>");
    let (stop, t) = dev.serve(Box::new(|_| None));
    let (s, body) = h.get("/api/clients/mute/3/0/0?timeout=2");
    let seen = finish(stop, t);
    assert_eq!(s, 504, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), "Request timeout");
    // ACK_TIMEOUT 300 ms (x1..1.5), doubling: copies at ~0, ~0.3-0.45, ~0.9-1.35 s within 2 s.
    assert!(seen.len() >= 3, "retransmitted: {} copies", seen.len());
    assert!(seen
        .iter()
        .all(|p| p.header.message_id == seen[0].header.message_id));
    assert!(seen
        .iter()
        .all(|p| p.header.get_type() == MessageType::Confirmable));
}

#[test]
fn block2_read_beyond_4096_blocks_uses_20_bit_numbers() {
    let h = Harness::start("block2", |_| {});
    let dev = Device::register(&h, "big", "</5/0>");
    let image = Arc::new(bytes(70_000, 5));
    let data = image.clone();
    // Serves /5/0/0 in 16-byte blocks: 4375 blocks, so block numbers pass 4095.
    let (stop, t) = dev.serve(Box::new(move |req| {
        let want = opt_block(req, CoapOption::Block2).unwrap_or(BlockOpt {
            num: 0,
            more: false,
            szx: 0,
        });
        let b = BlockOpt {
            num: want.num,
            more: false,
            szx: 0,
        };
        let start = b.offset() as usize;
        let end = (start + 16).min(data.len());
        let mut r = reply(ResponseType::Content);
        r.add_option(CoapOption::ContentFormat, vec![42]);
        r.add_option(CoapOption::ETag, vec![9, 9]);
        r.add_option(
            CoapOption::Block2,
            BlockOpt {
                more: end < data.len(),
                ..b
            }
            .encode(),
        );
        r.payload = data[start..end].to_vec();
        Some((r, Duration::ZERO))
    }));
    let (s, r) = h.get_json("/api/clients/big/5/0/0?format=OPAQUE&timeout=5");
    let seen = finish(stop, t);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["content"]["value"], json!(hex(&image)));
    let max_num = seen
        .iter()
        .filter_map(|p| opt_block(p, CoapOption::Block2))
        .map(|b| b.num)
        .max();
    assert_eq!(max_num, Some(4374));
}

#[test]
fn discover_execute_create_delete_and_write_attributes_map_to_coap() {
    let h = Harness::start("ops", |_| {});
    let events = h.events("");
    let dev = Device::register(&h, "ops", "</1/0>,</3/0>,</5/0>");
    wait_event(&events, Duration::from_secs(5), |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "ops"
    });
    let (stop, t) = dev.serve(Box::new(|req| {
        let method = match req.header.code {
            MessageClass::Request(m) => m,
            _ => return None,
        };
        let r = match (method, path_of(req).as_str()) {
            (RequestType::Get, "/5/0") => {
                let mut r = reply(ResponseType::Content);
                r.add_option(CoapOption::ContentFormat, vec![40]);
                r.payload = b"</5/0>,</5/0/1>,</5/0/3>;pmin=2".to_vec();
                r
            }
            (RequestType::Post, "/5/0/2") => reply(ResponseType::Changed),
            (RequestType::Post, "/3/0/4") => reply(ResponseType::MethodNotAllowed),
            (RequestType::Post, "/1") => {
                let mut r = reply(ResponseType::Created);
                r.add_option(CoapOption::LocationPath, b"1".to_vec());
                r.add_option(CoapOption::LocationPath, b"7".to_vec());
                r
            }
            (RequestType::Delete, "/1/7") => reply(ResponseType::Deleted),
            (RequestType::Put, "/5/0") => reply(ResponseType::Changed),
            (RequestType::Post, "/5/0") => reply(ResponseType::Changed),
            _ => reply(ResponseType::NotFound),
        };
        Some((r, Duration::ZERO))
    }));
    let (s, r) = h.get_json("/api/clients/ops/5/0/discover");
    assert_eq!(s, 200);
    assert_eq!(
        r["objectLinks"][2],
        json!({"url":"/5/0/3","attributes":{"pmin":"2"}})
    );
    let (s, r) = h.post("/api/clients/ops/5/0/2", b"");
    assert_eq!((s, r["status"].as_str()), (200, Some("CHANGED(204)")));
    let (s, r) = h.post("/api/clients/ops/3/0/4", b"");
    assert_eq!(
        (s, r["status"].as_str(), r["failure"].as_bool()),
        (200, Some("METHOD_NOT_ALLOWED(405)"), Some(true))
    );
    let create = json!({"kind":"instance","resources":[{"kind":"singleResource","id":1,"type":"integer","value":"300"}]});
    let (s, r) = h.post(
        "/api/clients/ops/1?format=TLV",
        create.to_string().as_bytes(),
    );
    assert_eq!(
        (s, r["status"].as_str(), r["location"].as_str()),
        (200, Some("CREATED(201)"), Some("1/7"))
    );
    let (s, b) = h.delete("/api/clients/ops/1/7");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let (s, r) = h.put(
        "/api/clients/ops/5/0/attributes?pmin=2&pmax=10",
        "application/json",
        b"",
    );
    assert_eq!((s, r["success"].as_bool()), (200, Some(true)));
    let inst = json!({"kind":"instance","id":0,"resources":[{"kind":"singleResource","id":1,"type":"string","value":"coap://h/fw"}]});
    assert_eq!(
        h.put(
            "/api/clients/ops/5/0?format=SENML_JSON&replace=false",
            "application/json",
            inst.to_string().as_bytes()
        )
        .0,
        200
    );
    let seen = finish(stop, t);

    let find = |m: RequestType, p: &str| {
        seen.iter()
            .find(|q| q.header.code == MessageClass::Request(m) && path_of(q) == p)
            .unwrap_or_else(|| panic!("device saw {m:?} {p}"))
    };
    assert_eq!(
        find(RequestType::Get, "/5/0").get_first_option(CoapOption::Accept),
        Some(&vec![40])
    );
    let created = find(RequestType::Post, "/1");
    assert_eq!(
        created.get_first_option(CoapOption::ContentFormat),
        Some(&uint_option(11542))
    );
    // TLV: the instance the body described, resource 1 = 300 (id 0: the body gave none).
    let lookup = |_o: u16, _r: u16| Some(ResourceType::Integer);
    let decoded = tlv::decode(&created.payload, &Path::object(1), &lookup).expect("TLV payload");
    assert_eq!(
        decoded,
        Node::Object {
            id: 1,
            instances: vec![Instance {
                id: 0,
                resources: vec![Resource {
                    id: 1,
                    value: ResourceValue::Single(Value::Integer(300))
                }],
            }],
        }
    );
    let attrs: Vec<_> = find(RequestType::Put, "/5/0")
        .get_option(CoapOption::UriQuery)
        .map(|l| {
            l.iter()
                .map(|q| String::from_utf8_lossy(q).into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(attrs, ["pmin=2", "pmax=10"]);
    let partial = find(RequestType::Post, "/5/0");
    assert_eq!(
        partial.get_first_option(CoapOption::ContentFormat),
        Some(&uint_option(110))
    );
    assert!(String::from_utf8_lossy(&partial.payload).contains("coap://h/fw"));
}

#[test]
fn malformed_datagrams_are_dropped_and_the_endpoint_keeps_serving() {
    let h = Harness::start("garbage", |_| {});
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x40],
        vec![0x4F, 0x01, 0x00, 0x01],       // token length 15 (reserved)
        vec![0x40, 0x02, 0x00, 0x01, 0xFF], // payload marker without payload
        vec![0x40, 0x02, 0x00, 0x01, 0xDD, 0x00], // option delta extension cut short
        vec![0x80, 0x01, 0x00, 0x01],       // version 2
    ];
    junk.extend((0..200u64).map(|i| bytes(1 + (i as usize * 7) % 300, i + 1)));
    for d in &junk {
        sock.send_to(d, h.coap).expect("send");
    }
    // A CoAP ping (empty CON) is answered with a Reset carrying its message id.
    sock.send_to(&[0x40, 0x00, 0xAB, 0xCD], h.coap)
        .expect("send");
    let mut buf = [0u8; 1500];
    let mut got_reset = false;
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        if let Ok(p) = Packet::from_bytes(&buf[..n]) {
            if p.header.message_id == 0xABCD {
                got_reset = p.header.get_type() == MessageType::Reset;
                break;
            }
        }
    }
    assert!(got_reset, "ping answered with RST");
    // A CON response with an unknown token is rejected with a Reset (RFC 7641 3.6).
    let mut stray = reply(ResponseType::Content);
    stray.header.set_type(MessageType::Confirmable);
    stray.header.message_id = 0x7777;
    stray.set_token(vec![0xEE; 8]);
    sock.send_to(&stray.to_bytes().expect("encode"), h.coap)
        .expect("send");
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("answer to stray notification");
    let r = Packet::from_bytes(&buf[..n]).expect("decodes");
    assert_eq!(
        (r.header.get_type(), r.header.message_id),
        (MessageType::Reset, 0x7777)
    );
    // Still registering afterwards.
    Device::register(&h, "after-junk", "</3/0>");
    assert_eq!(h.get_json("/api/clients/after-junk").0, 200);
}

#[test]
fn separate_response_and_a_block2_notification() {
    let h = Harness::start("separate", |_| {});
    let events = h.events("?ep=sep");
    let dev = Device::register(&h, "sep", "</3/0>");
    let long = "firmware-version-string-longer-than-one-16-byte-block".to_string();
    let sock = dev.sock;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let body = long.clone();
    let device = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (mut sep_requests, mut acked_mids) = (0usize, Vec::new());
        let send = |p: &Packet, to: SocketAddr| {
            let _ = sock.send_to(&p.to_bytes().expect("encode"), to);
        };
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if req.header.code == MessageClass::Empty {
                acked_mids.push(req.header.message_id);
                continue;
            }
            let mut ack = reply(ResponseType::Content);
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.message_id = req.header.message_id;
            ack.set_token(req.get_token().to_vec());
            match path_of(&req).as_str() {
                "/3/0/1" => {
                    sep_requests += 1;
                    // Empty ACK now, the answer 1 s later as a separate CON response.
                    let mut empty = Packet::new();
                    empty.header.code = MessageClass::Empty;
                    empty.header.set_type(MessageType::Acknowledgement);
                    empty.header.message_id = req.header.message_id;
                    send(&empty, from);
                    std::thread::sleep(Duration::from_secs(1));
                    let mut r = reply(ResponseType::Content);
                    r.header.set_type(MessageType::Confirmable);
                    r.header.message_id = 0x5000;
                    r.set_token(req.get_token().to_vec());
                    r.payload = b"model-x".to_vec();
                    send(&r, from);
                }
                "/3/0/3" if req.get_first_option(CoapOption::Observe).is_some() => {
                    ack.add_option(CoapOption::Observe, vec![1]);
                    ack.payload = b"v1".to_vec();
                    send(&ack, from);
                    std::thread::sleep(Duration::from_millis(200));
                    let mut n = reply(ResponseType::Content);
                    n.header.set_type(MessageType::Confirmable);
                    n.header.message_id = 0x6000;
                    n.set_token(req.get_token().to_vec());
                    n.add_option(CoapOption::Observe, vec![2]);
                    n.add_option(CoapOption::ETag, vec![7]);
                    n.add_option(
                        CoapOption::Block2,
                        BlockOpt {
                            num: 0,
                            more: true,
                            szx: 0,
                        }
                        .encode(),
                    );
                    n.payload = body.as_bytes()[..16].to_vec();
                    send(&n, from);
                }
                "/3/0/3" => {
                    let b =
                        opt_block(&req, CoapOption::Block2).expect("follow-up GET names a block");
                    let start = b.offset() as usize;
                    let end = (start + 16).min(body.len());
                    ack.add_option(CoapOption::ETag, vec![7]);
                    ack.add_option(
                        CoapOption::Block2,
                        BlockOpt {
                            num: b.num,
                            more: end < body.len(),
                            szx: 0,
                        }
                        .encode(),
                    );
                    ack.payload = body.as_bytes()[start..end].to_vec();
                    send(&ack, from);
                }
                _ => {}
            }
        }
        (sep_requests, acked_mids)
    });
    let (s, r) = h.get_json("/api/clients/sep/3/0/1?timeout=3");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["content"]["value"], "model-x");
    let (s, r) = h.post("/api/clients/sep/3/0/3/observe", b"");
    assert_eq!(
        (s, r["content"]["value"].as_str()),
        (200, Some("v1")),
        "{r}"
    );
    let n = wait_event(&events, Duration::from_secs(5), |n, _| n == "NOTIFICATION");
    assert_eq!(n["val"]["value"], json!(long));
    stop.store(true, Ordering::Relaxed);
    let (sep_requests, acked) = device.join().expect("device thread");
    assert_eq!(sep_requests, 1, "no retransmission after the empty ACK");
    assert!(acked.contains(&0x5000), "separate response acknowledged");
    assert!(acked.contains(&0x6000), "notification acknowledged");
}

#[test]
fn a_new_message_reusing_a_message_id_is_not_taken_for_a_duplicate() {
    // A pull socket on a recycled ephemeral port may reuse a message id the port's previous
    // owner sent within EXCHANGE_LIFETIME. Only a retransmission (same token) may get the
    // cached answer: an old empty RST/ACK would end or silence the new request.
    let h = Harness::start("mid-reuse", |_| {});
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    let mut answer = |p: &Packet| {
        sock.send_to(&p.to_bytes().expect("encode"), h.coap)
            .expect("send");
        let (n, _) = sock.recv_from(&mut buf).expect("answer");
        Packet::from_bytes(&buf[..n]).expect("decodes")
    };
    // The previous owner: a CON notification nobody observes, answered with a Reset.
    let mut stray = reply(ResponseType::Content);
    stray.header.set_type(MessageType::Confirmable);
    stray.header.message_id = 0x4242;
    stray.set_token(vec![0xAA; 4]);
    assert_eq!(answer(&stray).header.get_type(), MessageType::Reset);
    // The new owner: a GET with the same message id and its own token gets a real answer.
    let mut get = Packet::new();
    get.header.set_type(MessageType::Confirmable);
    get.header.code = MessageClass::Request(RequestType::Get);
    get.header.message_id = 0x4242;
    get.set_token(vec![0xBB; 4]);
    get.add_option(CoapOption::UriPath, b"fw".to_vec());
    get.add_option(CoapOption::UriPath, b"no-such.suit".to_vec());
    let r = answer(&get);
    assert_eq!(
        (r.header.get_type(), r.header.code, r.get_token().to_vec()),
        (
            MessageType::Acknowledgement,
            MessageClass::Response(ResponseType::NotFound),
            vec![0xBB; 4]
        )
    );
    // A true retransmission of the stray notification still gets the cached Reset.
    assert_eq!(answer(&stray).header.get_type(), MessageType::Reset);
}

/// The first request with `method` the device saw.
fn first(seen: &[Packet], method: RequestType) -> &Packet {
    seen.iter()
        .find(|q| q.header.code == MessageClass::Request(method))
        .unwrap_or_else(|| panic!("the device saw no {method:?}"))
}

fn uri_write(value: &str) -> Vec<u8> {
    json!({"kind":"singleResource","id":1,"type":"string","value":value})
        .to_string()
        .into_bytes()
}

#[test]
fn lwm2m_json_reads_and_writes_end_to_end_and_link_reads_are_refused_before_sending() {
    let h = Harness::start("lwm2m-json", |_| {});
    let dev = Device::register_with(&h, "json", &["lwm2m=1.0"], "</3/0>,</5/0>");
    // Written by hand after OMA TS 1.0 section 6.4.4, not by the codec under test.
    let (stop, t) = dev.serve(Box::new(|req| {
        let r = match req.header.code {
            MessageClass::Request(RequestType::Get) => {
                let mut r = reply(ResponseType::Content);
                r.add_option(CoapOption::ContentFormat, uint_option(11543));
                r.payload = br#"{"bn":"/3/0/","e":[{"n":"0","sv":"Acme"},{"n":"3","sv":"1.0.0"}]}"#
                    .to_vec();
                r
            }
            _ => reply(ResponseType::Changed),
        };
        Some((r, Duration::ZERO))
    }));
    let (s, r) = h.get_json("/api/clients/json/3/0?format=JSON");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["content"]["resources"][0]["value"], "Acme", "{r}");
    let (s, r) = h.put(
        "/api/clients/json/5/0/1?format=JSON",
        "application/json",
        &uri_write("coap://h/fw"),
    );
    assert_eq!((s, r["success"].as_bool()), (200, Some(true)), "{r}");
    // A read in link-format cannot be turned into a node: refused before the device is asked.
    let (s, _) = h.get("/api/clients/json/3/0?format=LINK");
    assert_eq!(s, 400);
    let seen = finish(stop, t);
    let gets: Vec<_> = seen
        .iter()
        .filter(|q| q.header.code == MessageClass::Request(RequestType::Get))
        .map(|q| q.get_first_option(CoapOption::Accept).cloned())
        .collect();
    assert_eq!(
        gets,
        [Some(uint_option(11543))],
        "only the JSON read went out"
    );
    let write = first(&seen, RequestType::Put);
    assert_eq!(
        write.get_first_option(CoapOption::ContentFormat),
        Some(&uint_option(11543))
    );
    assert_eq!(
        String::from_utf8_lossy(&write.payload),
        r#"{"bn":"/5/0/1","e":[{"sv":"coap://h/fw"}]}"#
    );
}
/// Answers a Read with `node` in the format the request accepts (TLV without Accept), and a
/// Write with 2.04.
fn reads_in_the_accepted_format(node: Node, at: Path) -> Behaviour {
    Box::new(move |req| {
        let r = match req.header.code {
            MessageClass::Request(RequestType::Get) => {
                let cf = req
                    .get_first_option(CoapOption::Accept)
                    .and_then(|v| ContentFormat::from_option(v))
                    .unwrap_or(ContentFormat::Tlv);
                let mut r = reply(ResponseType::Content);
                r.add_option(CoapOption::ContentFormat, cf.to_option());
                r.payload = content::encode(cf, &at, &node).expect("device encodes");
                r
            }
            MessageClass::Request(RequestType::Put | RequestType::Post) => {
                reply(ResponseType::Changed)
            }
            _ => reply(ResponseType::MethodNotAllowed),
        };
        Some((r, Duration::ZERO))
    })
}

fn device_instance() -> Node {
    Node::Instance(Instance {
        id: 0,
        resources: vec![
            Resource {
                id: 0,
                value: ResourceValue::Single(Value::String("Acme".into())),
            },
            Resource {
                id: 3,
                value: ResourceValue::Single(Value::String("1.0.0".into())),
            },
        ],
    })
}

#[test]
fn reads_and_writes_default_to_the_format_the_client_registered_with() {
    let h = Harness::start("default-format", |_| {});
    // (endpoint, Register queries, object links, the format the shim must use)
    let cases: [(&str, &[&str], &str, u16); 5] = [
        // Announced SenML JSON only: no SenML CBOR it would answer with 4.06.
        (
            "sj",
            &["lwm2m=1.1"],
            r#"</>;rt="oma.lwm2m";ct=110,</3/0>,</5/0>"#,
            110,
        ),
        // A list in the old quoted form: the first one the shim speaks.
        (
            "list",
            &["lwm2m=1.1"],
            r#"</>;rt="oma.lwm2m";ct="11544 11542 112",</3/0>"#,
            11542,
        ),
        // Nothing announced: the version's mandatory format.
        ("v10", &["lwm2m=1.0"], "</3/0>,</5/0>", 11542),
        ("v11", &["lwm2m=1.1"], "</3/0>,</5/0>", 112),
        // LwM2M 1.0 announcing its JSON support (TS 1.0 section 5.3.1.1).
        (
            "j10",
            &["lwm2m=1.0"],
            r#"</>;rt="oma.lwm2m";ct=11543,</3/0>"#,
            11543,
        ),
    ];
    for (ep, query, links, want) in cases {
        let dev = Device::register_with(&h, ep, query, links);
        let (stop, t) = dev.serve(reads_in_the_accepted_format(
            device_instance(),
            Path::instance(3, 0),
        ));
        let (s, r) = h.get_json(&format!("/api/clients/{ep}/3/0"));
        assert_eq!(
            (s, r["content"]["resources"][1]["value"].as_str()),
            (200, Some("1.0.0")),
            "{ep}: {r}"
        );
        let (s, r) = h.put(
            &format!("/api/clients/{ep}/5/0/1"),
            "application/json",
            &uri_write("coap://h/fw"),
        );
        assert_eq!((s, r["success"].as_bool()), (200, Some(true)), "{ep}: {r}");
        let seen = finish(stop, t);
        let read = first(&seen, RequestType::Get);
        assert_eq!(
            read.get_first_option(CoapOption::Accept),
            Some(&uint_option(u32::from(want))),
            "{ep}: Accept on the read"
        );
        let write = first(&seen, RequestType::Put);
        assert_eq!(
            write.get_first_option(CoapOption::ContentFormat),
            Some(&uint_option(u32::from(want))),
            "{ep}: Content-Format of the write"
        );
    }
}

/// The Observe option's value (0 register, 1 deregister), when the request has one.
fn observe_value(p: &Packet) -> Option<u32> {
    p.get_first_option(CoapOption::Observe)
        .and_then(|v| decode_uint_option(v).ok())
}

#[test]
fn observe_cancel_is_active_with_the_observation_token_or_passive() {
    let h = Harness::start("cancel", |_| {});
    let events = h.events("?ep=cancel");
    let dev = Device::register(&h, "cancel", "</3/0>");
    let (stop, t) = dev.serve(Box::new(|req| {
        let mut r = reply(ResponseType::Content);
        r.add_option(CoapOption::ContentFormat, vec![0]);
        match (path_of(req).as_str(), observe_value(req)) {
            ("/3/0/9", Some(0)) => {
                r.add_option(CoapOption::Observe, vec![5]);
                r.payload = b"80".to_vec();
            }
            // Observe = 1: the device stops notifying and answers as a read.
            ("/3/0/9", Some(1)) => r.payload = b"79".to_vec(),
            ("/3/0/10", Some(0)) => {
                r.add_option(CoapOption::Observe, vec![5]);
                r.payload = b"1024".to_vec();
            }
            _ => r = reply(ResponseType::NotFound),
        }
        Some((r, Duration::ZERO))
    }));
    let (s, b) = h.delete("/api/clients/cancel/3/0/9/observe?active");
    assert_eq!(
        (s, String::from_utf8_lossy(&b).as_ref()),
        (404, "no observation for path /3/0/9 for  client 'cancel'"),
        "nothing observed yet"
    );
    for p in ["9", "10"] {
        let (s, r) = h.post(&format!("/api/clients/cancel/3/0/{p}/observe"), b"");
        assert_eq!(
            (s, r["status"].as_str()),
            (200, Some("CONTENT(205)")),
            "{r}"
        );
    }
    let (s, r) = h.delete("/api/clients/cancel/3/0/9/observe?active");
    let r: serde_json::Value = serde_json::from_slice(&r).expect("JSON answer");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "CONTENT(205)");
    assert_eq!(r["content"]["value"], "79");
    // Passive: forgotten here only, nothing sent; unobserved paths are fine too.
    assert_eq!(h.delete("/api/clients/cancel/3/0/10/observe").0, 200);
    assert_eq!(h.delete("/api/clients/cancel/3/0/11/observe").0, 200);
    let (s, _) = h.delete("/api/clients/cancel/3/0/10/observe?active");
    assert_eq!(s, 404, "a passively cancelled observation is gone");
    let (s, _) = h.delete("/api/clients/cancel/3/0/9/observe?active");
    assert_eq!(s, 404, "an actively cancelled observation is gone");
    let seen = finish(stop, t);
    drop(events);

    let observes: Vec<&Packet> = seen
        .iter()
        .filter(|p| path_of(p) == "/3/0/9" && observe_value(p).is_some())
        .collect();
    assert_eq!(observes.len(), 2, "one registration, one cancel");
    assert_eq!(
        (observe_value(observes[0]), observe_value(observes[1])),
        (Some(0), Some(1))
    );
    assert_eq!(
        observes[0].get_token(),
        observes[1].get_token(),
        "the cancel carries the observation's token (RFC 7641 section 3.6)"
    );
    assert!(
        !seen
            .iter()
            .any(|p| path_of(p) == "/3/0/10" && observe_value(p) == Some(1)),
        "a passive cancel sends nothing"
    );
}

#[test]
fn delete_reaches_the_device_at_any_depth() {
    let h = Harness::start("delete-any", |_| {});
    let dev = Device::register(&h, "del", "</1/0>,</3/0>");
    let (stop, t) = dev.serve(Box::new(|req| {
        let code = match path_of(req).as_str() {
            "/3/0/11/1" | "/1" => ResponseType::Deleted,
            _ => ResponseType::MethodNotAllowed,
        };
        Some((reply(code), Duration::ZERO))
    }));
    for (path, status) in [
        ("/3/0/11/1", "DELETED(202)"),
        ("/1", "DELETED(202)"),
        ("/3/0/13", "METHOD_NOT_ALLOWED(405)"),
    ] {
        let (s, b) = h.delete(&format!("/api/clients/del{path}"));
        let r: serde_json::Value = serde_json::from_slice(&b)
            .unwrap_or_else(|_| panic!("{path}: {}", String::from_utf8_lossy(&b)));
        assert_eq!((s, r["status"].as_str()), (200, Some(status)), "{path}");
    }
    let seen = finish(stop, t);
    let deletes: Vec<String> = seen
        .iter()
        .filter(|p| p.header.code == MessageClass::Request(RequestType::Delete))
        .map(path_of)
        .collect();
    assert_eq!(deletes, ["/3/0/11/1", "/1", "/3/0/13"]);
}

/// A device that resets right after its last notification (State = Updating before the
/// bootloader runs) registers again within a millisecond; the new registration drops its
/// observations (as Leshan does), but a notification that arrived before it is still reported.
#[test]
fn a_notification_that_arrived_before_a_new_registration_is_reported() {
    let h = Harness::start("renotify", |_| {});
    let events = h.events("?ep=renotify");
    for round in 0..10u16 {
        let dev = Device::register(&h, "renotify", "</5/0>");
        let sock = dev.sock.try_clone().expect("clone socket");
        let token = Arc::new(Mutex::new(Vec::new()));
        let seen_token = token.clone();
        let (stop, t) = dev.serve(Box::new(move |req| {
            let mut r = reply(ResponseType::Content);
            r.add_option(CoapOption::ContentFormat, vec![0]);
            if path_of(req) == "/5/0/3" && observe_value(req) == Some(0) {
                *seen_token.lock().expect("token") = req.get_token().to_vec();
                r.add_option(CoapOption::Observe, vec![1]);
                r.payload = b"2".to_vec();
                Some((r, Duration::ZERO))
            } else {
                Some((reply(ResponseType::NotFound), Duration::ZERO))
            }
        }));
        let (s, r) = h.post("/api/clients/renotify/5/0/3/observe", b"");
        assert_eq!((s, r["content"]["value"].as_str()), (200, Some("2")), "{r}");
        finish(stop, t);
        let mut n = reply(ResponseType::Content);
        n.header.set_type(MessageType::Confirmable);
        n.header.message_id = 0x7000 + round;
        n.set_token(token.lock().expect("token").clone());
        n.add_option(CoapOption::Observe, vec![2]);
        n.add_option(CoapOption::ContentFormat, vec![0]);
        n.payload = b"3".to_vec();
        sock.send_to(&n.to_bytes().expect("encode"), h.coap)
            .expect("send");
        // The reset: a new socket registers at once.
        let _again = Device::register(&h, "renotify", "</5/0>");
        let got = wait_event(&events, Duration::from_secs(5), |name, data| {
            name == "NOTIFICATION" && data["val"]["value"] == "3"
        });
        assert_eq!(got["res"], "/5/0/3", "round {round}");
    }
}
