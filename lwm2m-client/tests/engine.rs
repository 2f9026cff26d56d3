//! Engine behaviour with fake time: CoAP reliability, registration, device management,
//! observe and block-wise transfer, checked against RFC 7252/7641/7959 and OMA TS Core 1.1.

mod common;

use coap_lite::{CoapOption, MessageClass, MessageType, RequestType, ResponseType};
use common::*;
use lwm2m_client::codec::{self, BlockOpt, ContentFormat, Path};
use lwm2m_client::{Event, RegState};

fn resp(c: ResponseType) -> MessageClass {
    MessageClass::Response(c)
}

#[test]
fn register_carries_query_and_links_then_retransmits_on_rfc7252_schedule() {
    let mut e = engine();
    e.start(0);
    let reg = one(&mut e);
    assert_eq!(reg.header.get_type(), MessageType::Confirmable);
    assert_eq!(code(&reg), MessageClass::Request(RequestType::Post));
    let path = option_values(&reg, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec()]);
    let q = queries(&reg);
    assert_eq!(q, ["ep=ep1", "lt=300", "lwm2m=1.1", "b=U"]);
    assert_eq!(uint(&reg, CoapOption::ContentFormat), Some(40));
    let links = codec::link::parse(std::str::from_utf8(&reg.payload).unwrap()).unwrap();
    let targets: Vec<_> = links.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/", "/1", "/1/0", "/3/0", "/5", "/5/0"],
        "Security is never announced; /5 carries ver=1.1"
    );
    assert_eq!(links[0].get("rt"), Some("oma.lwm2m"));
    assert_eq!(
        strict_ct(std::str::from_utf8(&reg.payload).unwrap()),
        Ok(112),
        "one preferred format, SenML CBOR by default"
    );

    // No answer: retransmissions at T, 3T, 7T, 15T with T in [2 s, 3 s], then give up at 31T.
    let t = e.poll_timeout().unwrap();
    assert!((2000..=3000).contains(&t), "initial timeout {t}");
    let mut at = 0;
    for n in 0..4 {
        let due = e.poll_timeout().unwrap();
        assert_eq!(
            due - at,
            t << n,
            "retransmission {n} waits twice as long as the previous"
        );
        e.handle_timeout(due - 1);
        assert!(sent(&mut e).is_empty(), "nothing before the deadline");
        e.handle_timeout(due);
        let again = one(&mut e);
        assert_eq!(
            again.header.message_id, reg.header.message_id,
            "same message id on retransmission"
        );
        assert_eq!(again.payload, reg.payload);
        at = due;
    }
    let give_up = e.poll_timeout().unwrap();
    assert_eq!(give_up - at, t << 4);
    e.handle_timeout(give_up);
    let ev = events(&mut e);
    assert_eq!(
        ev,
        vec![Event::RegistrationFailed {
            code: None,
            retry_in_ms: 2000
        }]
    );
    // Back-off: the next Register goes out 2 s later, then 4 s after its failure.
    assert_eq!(e.poll_timeout(), Some(give_up + 2000));
    e.handle_timeout(give_up + 2000);
    let second = one(&mut e);
    assert_ne!(second.header.message_id, reg.header.message_id);
    let mut r = ack(&second, ResponseType::Forbidden);
    r.header.message_id = second.header.message_id;
    e.handle_datagram(give_up + 2100, SERVER, &bytes(&r));
    assert_eq!(
        events(&mut e),
        vec![Event::RegistrationFailed {
            code: Some("4.03".into()),
            retry_in_ms: 4000
        }]
    );
}

#[test]
fn register_announces_the_configured_preferred_format_as_one_unquoted_integer() {
    for (name, number) in [
        ("senml-cbor", 112),
        ("senml-json", 110),
        ("tlv", 11542),
        ("lwm2m-cbor", 11544),
    ] {
        let mut cfg = lwm2m_client::Config::new("ep1");
        cfg.preferred_format = ContentFormat::from_data_format_name(name).unwrap();
        let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
        e.start(0);
        let reg = one(&mut e);
        let payload = std::str::from_utf8(&reg.payload).unwrap();
        assert!(
            payload.starts_with(&format!(r#"</>;rt="oma.lwm2m";ct={number},"#)),
            "{payload}"
        );
        assert_eq!(strict_ct(payload), Ok(number), "{name}");
    }
    assert_eq!(ContentFormat::from_data_format_name("json"), None);
    // Announcing one format restricts nothing: a TLV write and a SenML JSON read still work.
    let mut cfg = lwm2m_client::Config::new("ep1");
    cfg.preferred_format = ContentFormat::SenmlCbor;
    let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
    let w = request_with(
        RequestType::Put,
        1,
        b"w",
        "/1/0/1",
        11542,
        &[0xC1, 0x01, 0x3C],
    );
    assert_eq!(code(&call(&mut e, 1, &w)), resp(ResponseType::Changed));
    let r = call(
        &mut e,
        2,
        &get_with(2, b"r", "/1/0/1", CoapOption::Accept, 110),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(110));
}

/// A read without Accept (OMA TS Core 1.1 section 7.4) of an instance or a multiple resource
/// comes in the format announced as preferred at registration, so a server that read the
/// announcement can decode it; a single value stays plain text (or opaque), which every
/// server reads; a preferred format for single values only falls back to TLV.
#[test]
fn reads_without_accept_use_the_preferred_format() {
    let mut cases: Vec<(ContentFormat, u32)> = ["senml-cbor", "senml-json", "tlv", "lwm2m-cbor"]
        .iter()
        .map(|n| {
            let f = ContentFormat::from_data_format_name(n).unwrap();
            (f, u32::from(f.number()))
        })
        .collect();
    cases.push((ContentFormat::Text, 11542));
    for (preferred, want) in cases {
        let mut cfg = lwm2m_client::Config::new("ep1");
        cfg.preferred_format = preferred;
        let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
        for (mid, path, cf) in [
            (1, "/5/0", want),
            (2, "/3/0/11", want),
            (3, "/3", want),
            (4, "/5/0/3", 0),
        ] {
            let r = call(
                &mut e,
                u64::from(mid),
                &request(RequestType::Get, mid, b"r", path),
            );
            assert_eq!(
                code(&r),
                resp(ResponseType::Content),
                "{preferred:?} {path}"
            );
            assert_eq!(
                uint(&r, CoapOption::ContentFormat),
                Some(cf),
                "{preferred:?} {path}"
            );
        }
    }
}

#[test]
fn updates_before_lifetime_and_registers_again_after_404() {
    let mut e = registered();
    assert_eq!(e.registration(), RegState::Registered);
    // lt = 300 s: Update at 300 - 93 = 207 s after registration.
    assert_eq!(e.poll_timeout(), Some(10 + 207_000));
    e.handle_timeout(10 + 207_000);
    let upd = one(&mut e);
    assert_eq!(code(&upd), MessageClass::Request(RequestType::Post));
    let path = option_values(&upd, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec(), b"abc".to_vec()]);
    assert!(
        upd.payload.is_empty(),
        "no payload when objects did not change"
    );
    e.handle_datagram(207_100, SERVER, &bytes(&ack(&upd, ResponseType::NotFound)));
    let reg = one(&mut e);
    let path = option_values(&reg, CoapOption::UriPath);
    assert_eq!(
        path,
        vec![b"rd".to_vec()],
        "4.04 on Update means Register again"
    );

    // Writing the lifetime triggers an Update carrying the new value's schedule.
    let mut e = registered();
    let w = request_with(RequestType::Put, 7, b"t", "/1/0/1", 0, b"60");
    e.handle_datagram(1000, SERVER, &bytes(&w));
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "the 2.04 and then the Update");
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    assert_eq!(code(&out[1].1), MessageClass::Request(RequestType::Post));
    e.handle_datagram(1100, SERVER, &bytes(&ack(&out[1].1, ResponseType::Changed)));
    assert!(events(&mut e).contains(&Event::Updated));
    assert_eq!(
        e.poll_timeout(),
        Some(1100 + 30_000),
        "lt 60 s: update after half"
    );
}

#[test]
fn deregister_sends_delete_to_location() {
    let mut e = registered();
    e.deregister(500);
    let d = one(&mut e);
    assert_eq!(code(&d), MessageClass::Request(RequestType::Delete));
    let path = option_values(&d, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec(), b"abc".to_vec()]);
    e.handle_datagram(600, SERVER, &bytes(&ack(&d, ResponseType::Deleted)));
    assert_eq!(events(&mut e), vec![Event::Deregistered]);
    assert_eq!(e.registration(), RegState::Stopped);
}

#[test]
fn duplicate_request_gets_cached_answer_without_executing_twice() {
    let mut e = registered();
    let x = request(RequestType::Post, 42, b"x1", "/3/0/4");
    let first = call(&mut e, 100, &x);
    assert_eq!(code(&first), resp(ResponseType::Changed));
    assert_eq!(first.header.message_id, 42);
    assert_eq!(first.get_token(), b"x1");
    assert_eq!(
        events(&mut e),
        vec![Event::Executed {
            path: Path::resource(3, 0, 4)
        }]
    );
    let dup = call(&mut e, 2100, &x);
    assert_eq!(bytes(&dup), bytes(&first));
    assert!(
        events(&mut e).is_empty(),
        "a duplicate is not executed again"
    );
    // After EXCHANGE_LIFETIME the id may be reused for a new request.
    e.handle_timeout(100 + 247_001);
    sent(&mut e);
    call(&mut e, 100 + 247_002, &x);
    assert_eq!(events(&mut e).len(), 1);
}

#[test]
fn read_in_every_format_and_error_codes() {
    let mut e = registered();
    let r = call(
        &mut e,
        1,
        &get_with(1, b"a", "/3/0", CoapOption::Accept, 11542),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(11542));
    let node = codec::tlv::decode(&r.payload, &Path::instance(3, 0), &|_, _| None).unwrap();
    let codec::Node::Instance(inst) = node else {
        panic!()
    };
    assert_eq!(
        inst.resources.iter().map(|r| r.id).collect::<Vec<_>>(),
        [0, 1, 2, 3, 11, 13, 16]
    );
    let r = call(
        &mut e,
        1,
        &get_with(2, b"a", "/5/0", CoapOption::Accept, 110),
    );
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(110));
    let leaves = codec::senml::decode_json_leaves(&r.payload).unwrap();
    assert!(leaves.contains(&(Path::resource(5, 0, 3), codec::Value::Integer(0))));
    let r = call(
        &mut e,
        1,
        &get_with(3, b"a", "/5/0/3", CoapOption::Accept, 112),
    );
    assert_eq!(
        r.payload,
        [0x81, 0xA2, 0x21, 0x66, b'/', b'5', b'/', b'0', b'/', b'3', 0x02, 0x00]
    );
    let r = call(&mut e, 1, &request(RequestType::Get, 4, b"a", "/3/0/0"));
    assert_eq!(
        (uint(&r, CoapOption::ContentFormat), r.payload.as_slice()),
        (Some(0), &b"Acme"[..])
    );
    for (req, want) in [
        (
            get_with(5, b"a", "/3/0", CoapOption::Accept, 50),
            ResponseType::NotAcceptable,
        ),
        (
            get_with(6, b"a", "/3/0", CoapOption::Accept, 0),
            ResponseType::NotAcceptable,
        ),
        (
            request(RequestType::Get, 7, b"a", "/3/1"),
            ResponseType::NotFound,
        ),
        (
            request(RequestType::Get, 8, b"a", "/4"),
            ResponseType::NotFound,
        ),
        (
            request(RequestType::Get, 9, b"a", "/3/0/4"),
            ResponseType::MethodNotAllowed,
        ),
        (
            request(RequestType::Get, 10, b"a", "/0/0"),
            ResponseType::Unauthorized,
        ),
        (
            request(RequestType::Post, 11, b"a", "/3/0/0"),
            ResponseType::MethodNotAllowed,
        ),
        (
            request(RequestType::Post, 12, b"a", "/5/0/2"),
            ResponseType::MethodNotAllowed,
        ),
        (
            request(RequestType::Get, 13, b"a", "/x"),
            ResponseType::NotFound,
        ),
    ] {
        assert_eq!(
            code(&call(&mut e, 1, &req)),
            resp(want),
            "{:?}",
            req.get_option(CoapOption::UriPath)
        );
    }
    let bad = request_with(RequestType::Put, 14, b"a", "/1/0/1", 0, b"soon");
    assert_eq!(code(&call(&mut e, 1, &bad)), resp(ResponseType::BadRequest));
    let bad = request_with(RequestType::Put, 15, b"a", "/1/0", 11542, &[0xC8, 0x01]);
    assert_eq!(code(&call(&mut e, 1, &bad)), resp(ResponseType::BadRequest));
}

#[test]
fn write_tlv_senml_and_partial_update() {
    let mut e = registered();
    let w = request_with(
        RequestType::Put,
        1,
        b"w",
        "/5/0/1",
        110,
        br#"[{"bn":"/5/0/1","vs":"coap://127.0.0.1/fw"}]"#,
    );
    assert_eq!(code(&call(&mut e, 1, &w)), resp(ResponseType::Changed));
    assert!(events(&mut e).contains(&Event::Written {
        path: Path::resource(5, 0, 1)
    }));
    let r = call(&mut e, 2, &request(RequestType::Get, 2, b"r", "/5/0/1"));
    assert_eq!(r.payload, b"coap://127.0.0.1/fw");
    // Partial update of /1/0 with TLV: default pmin (2) and pmax (3).
    let w = request_with(
        RequestType::Post,
        3,
        b"w",
        "/1/0",
        11542,
        &[0xC1, 0x02, 0x05, 0xC1, 0x03, 0x3C],
    );
    assert_eq!(code(&call(&mut e, 3, &w)), resp(ResponseType::Changed));
    let r = call(&mut e, 4, &request(RequestType::Get, 4, b"r", "/1/0/3"));
    assert_eq!(r.payload, b"60");
    // Read-only resource: 4.05.
    let w = request_with(RequestType::Put, 5, b"w", "/3/0/0", 0, b"x");
    assert_eq!(
        code(&call(&mut e, 5, &w)),
        resp(ResponseType::MethodNotAllowed)
    );
    // Unsupported content format: 4.15.
    let w = request_with(RequestType::Put, 6, b"w", "/5/0/1", 50, b"x");
    assert_eq!(
        code(&call(&mut e, 6, &w)),
        resp(ResponseType::UnsupportedContentFormat)
    );
}

#[test]
fn discover_lists_resources_with_dim_and_attributes() {
    let mut e = registered();
    let mut wa = request(RequestType::Put, 1, b"a", "/5/0/3");
    wa.add_option(CoapOption::UriQuery, b"pmin=2".to_vec());
    wa.add_option(CoapOption::UriQuery, b"pmax=10".to_vec());
    assert_eq!(code(&call(&mut e, 1, &wa)), resp(ResponseType::Changed));
    let d = call(&mut e, 2, &get_with(2, b"d", "/5", CoapOption::Accept, 40));
    assert_eq!(uint(&d, CoapOption::ContentFormat), Some(40));
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        // A push-only device lists no pull protocol (/5/0/8 has no instance).
        "</5>;ver=1.1,</5/0>,</5/0/0>,</5/0/1>,</5/0/2>,</5/0/3>;pmin=2;pmax=10,</5/0/5>,</5/0/6>,</5/0/7>,</5/0/8>;dim=0,</5/0/9>,</5/0/10>,</5/0/11>,</5/0/12>,</5/0/13>"
    );
    let d = call(
        &mut e,
        3,
        &get_with(3, b"d", "/3/0/11", CoapOption::Accept, 40),
    );
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        "</3/0/11>;dim=1,</3/0/11/0>"
    );
    let mut bad = request(RequestType::Put, 4, b"a", "/5/0/3");
    bad.add_option(CoapOption::UriQuery, b"pmin=x".to_vec());
    assert_eq!(code(&call(&mut e, 4, &bad)), resp(ResponseType::BadRequest));
}

/// Object 5 is announced as version 1.1 (`</5>;ver=1.1`) and shows exactly the resources of
/// that version (0-3, 5-13): /5/0/14, Automatic Upgrade at Download, exists only from 1.2 on
/// and is not there to discover, read or write.
#[test]
fn object5_shows_exactly_the_resources_of_its_announced_version() {
    const V1_1: [u16; 13] = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13];
    let mut e = engine();
    e.start(0);
    let reg = one(&mut e);
    let links = codec::link::parse(std::str::from_utf8(&reg.payload).unwrap()).unwrap();
    let five = links
        .iter()
        .find(|l| l.target == "/5")
        .expect("</5> announced");
    assert_eq!(five.get("ver"), Some("1.1"));
    let mut created = ack(&reg, ResponseType::Created);
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    created.add_option(CoapOption::LocationPath, b"v".to_vec());
    e.handle_datagram(10, SERVER, &bytes(&created));
    sent(&mut e);
    let d = call(
        &mut e,
        1,
        &get_with(1, b"d", "/5/0", CoapOption::Accept, 40),
    );
    let listed: Vec<u16> = codec::link::parse(std::str::from_utf8(&d.payload).unwrap())
        .unwrap()
        .iter()
        .filter_map(|l| l.target.strip_prefix("/5/0/")?.parse().ok())
        .collect();
    assert_eq!(listed, V1_1, "Discover /5/0");
    let r = call(&mut e, 2, &request(RequestType::Get, 2, b"r", "/5/0/14"));
    assert_eq!(code(&r), resp(ResponseType::NotFound));
    let w = request_with(RequestType::Put, 3, b"w", "/5/0/14", 0, b"1");
    assert_eq!(code(&call(&mut e, 3, &w)), resp(ResponseType::NotFound));
}

#[test]
fn observe_honours_pmin_and_pmax_and_cancels_on_rst() {
    let mut e = registered();
    let mut wa = request(RequestType::Put, 1, b"a", "/5/0/3");
    wa.add_option(CoapOption::UriQuery, b"pmin=2".to_vec());
    wa.add_option(CoapOption::UriQuery, b"pmax=10".to_vec());
    call(&mut e, 0, &wa);
    let t0 = 1_000;
    let obs = get_with(2, b"ob", "/5/0/3", CoapOption::Observe, 0);
    let r = call(&mut e, t0, &obs);
    assert_eq!(uint(&r, CoapOption::Observe), Some(0));
    assert_eq!(r.payload, b"0");
    events(&mut e);
    // A package write changes State to Downloaded at t0 + 500 ms: the notification waits for pmin.
    let w = request_with(RequestType::Put, 3, b"w", "/5/0/0", 42, b"small image");
    let r = call(&mut e, t0 + 500, &w);
    assert_eq!(code(&r), resp(ResponseType::Changed));
    assert_eq!(e.poll_timeout(), Some(t0 + 2_000), "due at pmin");
    e.handle_timeout(t0 + 1_999);
    assert!(sent(&mut e).is_empty());
    e.handle_timeout(t0 + 2_000);
    let n = one(&mut e);
    assert_eq!(n.header.get_type(), MessageType::Confirmable);
    assert_eq!(n.get_token(), b"ob");
    assert_eq!(uint(&n, CoapOption::Observe), Some(1));
    assert_eq!(n.payload, b"2", "State = Downloaded");
    let a = empty(&n, MessageType::Acknowledgement);
    e.handle_datagram(t0 + 2_010, SERVER, &bytes(&a));
    // Unchanged value: the next notification comes at pmax.
    assert_eq!(e.poll_timeout(), Some(t0 + 12_000));
    e.handle_timeout(t0 + 12_000);
    let n2 = one(&mut e);
    assert_eq!(uint(&n2, CoapOption::Observe), Some(2));
    events(&mut e);
    // RST to the notification cancels the observation.
    let rst = empty(&n2, MessageType::Reset);
    e.handle_datagram(t0 + 12_050, SERVER, &bytes(&rst));
    assert_eq!(
        events(&mut e),
        vec![Event::ObserveCancelled {
            path: Path::resource(5, 0, 3)
        }]
    );
    e.handle_timeout(t0 + 30_000);
    assert!(sent(&mut e).iter().all(|(_, p)| p.get_token() != b"ob"));
}

#[test]
fn observe_cancel_with_observe_1() {
    let mut e = registered();
    call(
        &mut e,
        0,
        &get_with(2, b"ob", "/3/0/13", CoapOption::Observe, 0),
    );
    let r = call(
        &mut e,
        5,
        &get_with(3, b"ob", "/3/0/13", CoapOption::Observe, 1),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::Observe), None);
    let ev = events(&mut e);
    assert!(ev.contains(&Event::ObserveCancelled {
        path: Path::resource(3, 0, 13)
    }));
}

/// A sink that checks every byte of a pushed package against a generator.
struct Checker {
    expect_len: u64,
    got: u64,
}

fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

impl lwm2m_client::objects::FirmwareBackend for Checker {
    fn begin(&mut self, _etag: Option<&[u8]>) -> Result<(), object5::UpdateResult> {
        self.got = 0;
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), object5::UpdateResult> {
        let offset = self.got;
        for (k, b) in data.iter().enumerate() {
            if *b != pattern(offset + k as u64) {
                return Err(object5::UpdateResult::IntegrityFailure);
            }
        }
        self.got += data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<lwm2m_client::objects::Finished, object5::UpdateResult> {
        if self.got == self.expect_len {
            Ok(lwm2m_client::objects::Finished::Downloaded {
                name: "fw".into(),
                version: "2".into(),
            })
        } else {
            Err(object5::UpdateResult::IntegrityFailure)
        }
    }
    fn discard(&mut self, _: object5::UpdateResult) {}
    fn capacity(&self) -> Option<u32> {
        Some(1 << 20)
    }
}

fn block_put(mid: u16, num: u32, more: bool, szx: u8, data: &[u8]) -> coap_lite::Packet {
    let mut p = request_with(RequestType::Put, mid, b"pk", "/5/0/0", 42, data);
    p.add_option(
        CoapOption::Block1,
        BlockOpt::new(num, more, szx).unwrap().encode(),
    );
    p
}

#[test]
fn block1_push_beyond_4096_blocks_restart_and_out_of_order() {
    let blocks: u32 = 5000;
    let len = u64::from(blocks - 1) * 16 + 5;
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(lwm2m_client::objects::FirmwareUpdate::new(
        Checker {
            expect_len: len,
            got: 0,
        },
    )));
    let mut e = engine_with(objs);
    let data: Vec<u8> = (0..len).map(pattern).collect();
    // Restart: blocks 0-1, then block 0 again resets the transfer.
    for (mid, num) in [(1u16, 0u32), (2, 1), (3, 0)] {
        let r = call(
            &mut e,
            1,
            &block_put(
                mid,
                num,
                true,
                0,
                &data[num as usize * 16..num as usize * 16 + 16],
            ),
        );
        assert_eq!(code(&r), resp(ResponseType::Continue));
    }
    // Out of order (block 5 when 1 is expected): 4.08.
    let r = call(&mut e, 1, &block_put(4, 5, true, 0, &data[80..96]));
    assert_eq!(code(&r), resp(ResponseType::RequestEntityIncomplete));
    let mut mid = 10u16;
    for num in 1..blocks {
        let start = num as usize * 16;
        let more = num + 1 < blocks;
        let end = (start + 16).min(data.len());
        let r = call(&mut e, 2, &block_put(mid, num, more, 0, &data[start..end]));
        mid = mid.wrapping_add(1);
        let b = BlockOpt::decode(r.get_first_option(CoapOption::Block1).unwrap()).unwrap();
        assert_eq!(
            (b.num, b.more, b.szx),
            (num, more, 0),
            "Block1 echo for block {num}"
        );
        let want = if more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(code(&r), resp(want), "block {num}");
    }
    let r = call(&mut e, 3, &request(RequestType::Get, 60000, b"s", "/5/0/3"));
    assert_eq!(r.payload, b"2", "Downloaded after the last block");
    let r = call(&mut e, 3, &request(RequestType::Get, 60001, b"s", "/5/0/7"));
    assert_eq!(r.payload, b"2");
}

#[test]
fn block1_larger_than_ours_is_renegotiated_and_sink_errors_map_to_4_13() {
    let mut cfg = lwm2m_client::Config::new("ep1");
    cfg.max_block_szx = 4; // 256 bytes
    let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
    let r = call(&mut e, 1, &block_put(1, 0, true, 6, &[7u8; 1024]));
    assert_eq!(code(&r), resp(ResponseType::Continue));
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block1).unwrap()).unwrap();
    assert_eq!(
        (b.num, b.szx),
        (0, 4),
        "server is asked for 256-byte blocks"
    );
    // The server continues at byte 1024 = block 4 of 256 bytes.
    let r = call(&mut e, 1, &block_put(2, 4, false, 4, &[7u8; 10]));
    assert_eq!(code(&r), resp(ResponseType::Changed));

    struct Full;
    impl lwm2m_client::objects::FirmwareBackend for Full {
        fn begin(&mut self, _: Option<&[u8]>) -> Result<(), object5::UpdateResult> {
            Ok(())
        }
        fn write(&mut self, _: &[u8]) -> Result<(), object5::UpdateResult> {
            Ok(())
        }
        fn finish(&mut self) -> Result<lwm2m_client::objects::Finished, object5::UpdateResult> {
            Ok(lwm2m_client::objects::Finished::Downloaded {
                name: String::new(),
                version: String::new(),
            })
        }
        fn discard(&mut self, _: object5::UpdateResult) {}
        fn capacity(&self) -> Option<u32> {
            Some(100)
        }
    }
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(lwm2m_client::objects::FirmwareUpdate::new(Full)));
    let mut e = engine_with(objs);
    let r = call(
        &mut e,
        1,
        &with_uint(
            block_put(1, 0, true, 2, &[0u8; 64]),
            CoapOption::Size1,
            5000,
        ),
    );
    assert_eq!(code(&r), resp(ResponseType::RequestEntityTooLarge));
    assert_eq!(uint(&r, CoapOption::Size1), Some(100));
    let r = call(&mut e, 2, &request(RequestType::Get, 3, b"s", "/5/0/5"));
    assert_eq!(r.payload, b"2", "Update Result: not enough flash");
}

/// An object whose opaque resource is larger than 4096 blocks of 16 bytes.
struct Big;
const BIG: usize = 70_000;
impl lwm2m_client::ObjectHandler for Big {
    fn id(&self) -> u16 {
        33000
    }
    fn model(&self) -> &'static [lwm2m_client::ResourceDef] {
        const M: &[lwm2m_client::ResourceDef] = &[lwm2m_client::ResourceDef::new(
            0,
            lwm2m_client::Ops::R,
            false,
            codec::ResourceType::Opaque,
        )];
        M
    }
    fn instances(&self) -> Vec<u16> {
        vec![0]
    }
    fn read(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
    ) -> Result<codec::ResourceValue, lwm2m_client::OpError> {
        Ok(codec::ResourceValue::Single(codec::Value::Opaque(
            (0..BIG as u64).map(pattern).collect(),
        )))
    }
}

#[test]
fn block2_read_beyond_block_4096() {
    let mut objs = objects();
    objs.push(Box::new(Big));
    let mut e = engine_with(objs);
    // Without Block2 the body is cut into 1024-byte blocks with Size2.
    let r = call(&mut e, 1, &request(RequestType::Get, 1, b"b", "/33000/0/0"));
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.szx, r.payload.len()), (0, true, 6, 1024));
    assert_eq!(uint(&r, CoapOption::Size2), Some(BIG as u32));
    // Block 4500 of 16 bytes (offset 72000 > 70000): past the end.
    let far = get_with(
        2,
        b"b",
        "/33000/0/0",
        CoapOption::Block2,
        (4500 << 4) as u32,
    );
    assert_eq!(code(&call(&mut e, 1, &far)), resp(ResponseType::BadRequest));
    // Block 4300 (offset 68800): correct bytes, more follow; the last block has M = 0.
    let r = call(
        &mut e,
        1,
        &get_with(3, b"b", "/33000/0/0", CoapOption::Block2, 4300 << 4),
    );
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.szx), (4300, true, 0));
    let want: Vec<u8> = (68_800..68_816).map(pattern).collect();
    assert_eq!(r.payload, want);
    let last = (BIG as u32 - 1) / 16;
    let r = call(
        &mut e,
        1,
        &get_with(4, b"b", "/33000/0/0", CoapOption::Block2, last << 4),
    );
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more), (last, false));
    assert_eq!(r.payload.len(), BIG - last as usize * 16);
}

/// A one-resource object whose work is slow (a flash erase): every Execute and the first
/// block of a Block1 write complete later, so the engine must ACK first. Which of the two a
/// test reaches is chosen by the resource's `Ops` in `model`.
struct Deferring {
    id: u16,
    model: &'static [lwm2m_client::ResourceDef],
}
impl lwm2m_client::ObjectHandler for Deferring {
    fn id(&self) -> u16 {
        self.id
    }
    fn model(&self) -> &'static [lwm2m_client::ResourceDef] {
        self.model
    }
    fn instances(&self) -> Vec<u16> {
        vec![0]
    }
    fn read(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
    ) -> Result<codec::ResourceValue, lwm2m_client::OpError> {
        Err(lwm2m_client::OpError::NotFound)
    }
    fn execute(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
        _: &[u8],
    ) -> Result<lwm2m_client::Completion, lwm2m_client::OpError> {
        Ok(lwm2m_client::Completion::Deferred)
    }
    fn write_block(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
        c: &lwm2m_client::BlockChunk<'_>,
    ) -> Result<lwm2m_client::Completion, lwm2m_client::OpError> {
        Ok(if c.offset == 0 {
            lwm2m_client::Completion::Deferred
        } else {
            lwm2m_client::Completion::Done
        })
    }
}

/// A slow executable resource /33001/0/1.
const SLOW: Deferring = Deferring {
    id: 33001,
    model: &[lwm2m_client::ResourceDef::new(
        1,
        lwm2m_client::Ops::E,
        false,
        codec::ResourceType::None,
    )],
};

/// Object 5 stand-in whose first package block needs a slow flash erase.
const ERASING_SINK: Deferring = Deferring {
    id: 5,
    model: &[lwm2m_client::ResourceDef::new(
        0,
        lwm2m_client::Ops::W,
        false,
        codec::ResourceType::Opaque,
    )],
};

/// The id of the deferred operation the engine reported since the last poll.
fn deferred_id(e: &mut lwm2m_client::Engine<u8>) -> lwm2m_client::DeferredId {
    events(e)
        .iter()
        .find_map(|x| match x {
            Event::Deferred { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a Deferred event")
}

#[test]
fn slow_operation_gets_empty_ack_then_separate_confirmable_response() {
    let mut objs = objects();
    objs.push(Box::new(SLOW));
    let mut e = engine_with(objs);
    let x = request(RequestType::Post, 77, b"slow", "/33001/0/1");
    let a = call(&mut e, 1, &x);
    assert_eq!(
        (a.header.get_type(), code(&a), a.header.message_id),
        (MessageType::Acknowledgement, MessageClass::Empty, 77)
    );
    let id = deferred_id(&mut e);
    // A retransmitted request while still working gets the empty ACK again.
    let again = call(&mut e, 2000, &x);
    assert_eq!(code(&again), MessageClass::Empty);
    e.complete_deferred(5000, id, Ok(()));
    let s = one(&mut e);
    assert_eq!(s.header.get_type(), MessageType::Confirmable);
    assert_eq!(code(&s), resp(ResponseType::Changed));
    assert_eq!(s.get_token(), b"slow");
    assert_ne!(s.header.message_id, 77);
    // Retransmitted until acknowledged.
    let due = e.poll_timeout().unwrap();
    e.handle_timeout(due);
    assert_eq!(one(&mut e).header.message_id, s.header.message_id);
    let a = empty(&s, MessageType::Acknowledgement);
    e.handle_datagram(due + 1, SERVER, &bytes(&a));
    e.handle_timeout(due + 100_000);
    assert!(sent(&mut e)
        .iter()
        .all(|(_, p)| p.header.message_id != s.header.message_id));
}

#[test]
fn malformed_datagrams_are_dropped_and_ping_gets_reset() {
    let mut e = registered();
    for junk in [
        &b""[..],
        &[0x40],
        &[0x4f, 1, 0, 0],
        &[0xff; 40],
        &[0x44, 0x01, 0, 1, 1, 2, 3, 4, 0xdd],
    ] {
        e.handle_datagram(1, SERVER, junk);
    }
    let ping = [0x40, 0x00, 0x12, 0x34];
    e.handle_datagram(1, SERVER, &ping);
    let r = one(&mut e);
    assert_eq!(
        (r.header.get_type(), r.header.message_id),
        (MessageType::Reset, 0x1234)
    );
    let _ = ContentFormat::Tlv;
}

#[test]
fn payload_marker_without_payload_is_a_format_error_not_a_request() {
    let mut e = registered();
    let get = request(RequestType::Get, 0x2001, b"g", "/3/0/0");
    let mut marked = bytes(&get);
    marked.push(0xff);
    // Confirmable: rejected with a matching RST (RFC 7252 sections 3 and 4.2), not answered.
    e.handle_datagram(20, SERVER, &marked);
    let r = one(&mut e);
    assert_eq!(
        (r.header.get_type(), code(&r), r.header.message_id),
        (MessageType::Reset, MessageClass::Empty, 0x2001)
    );
    // The same message id arriving well-formed later is new: the bad one was not processed.
    let r = call(&mut e, 21, &get);
    assert_eq!(code(&r), resp(ResponseType::Content));
    // Non-confirmable: ignored (nothing sent, no Update triggered by the Execute).
    let mut non = request(RequestType::Post, 0x2002, b"n", "/1/0/8");
    non.header.set_type(MessageType::NonConfirmable);
    let mut marked = bytes(&non);
    marked.push(0xff);
    e.handle_datagram(22, SERVER, &marked);
    assert!(sent(&mut e).is_empty());
    assert!(events(&mut e).is_empty());
    // An option value ending in 0xFF (Size2 = 255) is no marker: the read is answered.
    let get = with_uint(
        request(RequestType::Get, 0x2003, b"s", "/3/0/0"),
        CoapOption::Size2,
        255,
    );
    let raw = bytes(&get);
    assert_eq!(raw.last(), Some(&0xff));
    e.handle_datagram(23, SERVER, &raw);
    assert_eq!(code(&one(&mut e)), resp(ResponseType::Content));
}

#[test]
fn server_default_pmax_applies_without_attributes() {
    let mut e = registered();
    let w = request_with(RequestType::Put, 1, b"w", "/1/0/3", 0, b"5");
    assert_eq!(code(&call(&mut e, 100, &w)), resp(ResponseType::Changed));
    let r = call(
        &mut e,
        1_000,
        &get_with(2, b"ob", "/5/0/3", CoapOption::Observe, 0),
    );
    assert_eq!(uint(&r, CoapOption::Observe), Some(0));
    assert_eq!(
        e.poll_timeout(),
        Some(6_000),
        "default pmax (/1/0/3 = 5 s) arms the timer"
    );
    e.handle_timeout(6_000);
    let n = one(&mut e);
    assert_eq!(
        (n.get_token(), uint(&n, CoapOption::Observe)),
        (&b"ob"[..], Some(1))
    );
}

#[test]
fn large_notification_carries_first_block2_block() {
    let mut cfg = lwm2m_client::Config::new("ep1");
    cfg.max_block_szx = 0; // 16-byte blocks
    let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
    let obs = with_uint(
        get_with(1, b"o", "/3/0", CoapOption::Accept, 110),
        CoapOption::Observe,
        0,
    );
    let first = call(&mut e, 0, &obs);
    assert_eq!(first.payload.len(), 16, "initial response is block 0");
    e.notify_changed(1_000, &Path::resource(3, 0, 13));
    let n = one(&mut e);
    let b = BlockOpt::decode(n.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.szx, n.payload.len()), (0, true, 0, 16));
    assert!(uint(&n, CoapOption::Size2).unwrap() > 16);
}

#[test]
fn update_trigger_and_object_changes_send_update() {
    let mut e = registered();
    let x = request(RequestType::Post, 9, b"u", "/1/0/8");
    e.handle_datagram(100, SERVER, &bytes(&x));
    let out = sent(&mut e);
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    let upd = &out[1].1;
    assert_eq!(code(upd), MessageClass::Request(RequestType::Post));
    assert!(upd.payload.is_empty());
    e.handle_datagram(150, SERVER, &bytes(&ack(upd, ResponseType::Changed)));
    events(&mut e);
    // Objects changed: the Update carries the link-format payload.
    e.objects_changed(200);
    let upd = one(&mut e);
    assert_eq!(uint(&upd, CoapOption::ContentFormat), Some(40));
    assert!(std::str::from_utf8(&upd.payload)
        .unwrap()
        .contains("</5/0>"));
}

#[test]
fn slow_first_block_is_acked_then_continued_by_separate_response() {
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(ERASING_SINK));
    let mut e = engine_with(objs);
    let a = call(&mut e, 1, &block_put(1, 0, true, 0, &[1; 16]));
    assert_eq!(
        (a.header.get_type(), code(&a)),
        (MessageType::Acknowledgement, MessageClass::Empty)
    );
    let id = deferred_id(&mut e);
    e.complete_deferred(3_000, id, Ok(()));
    let s = one(&mut e);
    assert_eq!(
        (s.header.get_type(), code(&s)),
        (MessageType::Confirmable, resp(ResponseType::Continue))
    );
    assert_eq!(s.get_token(), b"pk");
    let b = BlockOpt::decode(s.get_first_option(CoapOption::Block1).unwrap()).unwrap();
    assert_eq!((b.num, b.more), (0, true));
    let r = call(&mut e, 3_100, &block_put(2, 1, false, 0, &[2; 3]));
    assert_eq!(code(&r), resp(ResponseType::Changed));
}

/// LwM2M JSON (11543, OMA TS Core 1.0 section 6.4.4), the format Leshan's `format=JSON`
/// names: reads of a resource and an instance, a single-resource write and a partial
/// instance update (POST) in it.
#[test]
fn lwm2m_json_read_and_write() {
    let mut e = registered();
    let r = call(
        &mut e,
        1,
        &get_with(1, b"j", "/5/0/3", CoapOption::Accept, 11543),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(11543));
    assert_eq!(
        std::str::from_utf8(&r.payload).unwrap(),
        r#"{"bn":"/5/0/3","e":[{"v":0}]}"#
    );
    let r = call(
        &mut e,
        2,
        &get_with(2, b"j", "/3/0", CoapOption::Accept, 11543),
    );
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(11543));
    let doc = std::str::from_utf8(&r.payload).unwrap();
    assert!(
        doc.starts_with(r#"{"bn":"/3/0/","e":[{"n":"0","sv":"Acme"},"#),
        "{doc}"
    );
    assert!(doc.contains(r#"{"n":"3","sv":"1.0.0"}"#), "{doc}");
    let w = request_with(
        RequestType::Put,
        3,
        b"j",
        "/5/0/1",
        11543,
        br#"{"bn":"/5/0/1","e":[{"sv":"coap://h/j"}]}"#,
    );
    assert_eq!(code(&call(&mut e, 3, &w)), resp(ResponseType::Changed));
    assert_eq!(
        call(&mut e, 4, &request(RequestType::Get, 4, b"r", "/5/0/1")).payload,
        b"coap://h/j"
    );
    // Partial update of /1/0: default pmin (2) and pmax (3).
    let w = request_with(
        RequestType::Post,
        5,
        b"j",
        "/1/0",
        11543,
        br#"{"bn":"/1/0/","e":[{"n":"2","v":7},{"n":"3","v":90}]}"#,
    );
    assert_eq!(code(&call(&mut e, 5, &w)), resp(ResponseType::Changed));
    assert_eq!(
        call(&mut e, 6, &request(RequestType::Get, 6, b"r", "/1/0/3")).payload,
        b"90"
    );
    let bad = request_with(RequestType::Put, 7, b"j", "/5/0/1", 11543, b"{\"e\":1}");
    assert_eq!(code(&call(&mut e, 7, &bad)), resp(ResponseType::BadRequest));
}

/// Plain CBOR (60, OMA TS Core 1.1 section 7.4): one data item for one resource value, read
/// and written; a whole instance has no CBOR form (4.06), nor does CBOR write one (4.00).
#[test]
fn cbor_single_value_read_and_write() {
    let mut e = registered();
    let r = call(
        &mut e,
        1,
        &get_with(1, b"c", "/3/0/0", CoapOption::Accept, 60),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(60));
    assert_eq!(r.payload, b"\x64Acme");
    let r = call(
        &mut e,
        2,
        &get_with(2, b"c", "/5/0/3", CoapOption::Accept, 60),
    );
    assert_eq!(r.payload, [0x00]);
    // Default pmax (Integer) 90 as a CBOR unsigned item.
    let w = request_with(RequestType::Put, 3, b"c", "/1/0/3", 60, &[0x18, 90]);
    assert_eq!(code(&call(&mut e, 3, &w)), resp(ResponseType::Changed));
    assert_eq!(
        call(&mut e, 4, &request(RequestType::Get, 4, b"r", "/1/0/3")).payload,
        b"90"
    );
    let mut uri = vec![0x6a];
    uri.extend_from_slice(b"coap://h/c");
    let w = request_with(RequestType::Put, 5, b"c", "/5/0/1", 60, &uri);
    assert_eq!(code(&call(&mut e, 5, &w)), resp(ResponseType::Changed));
    assert_eq!(
        call(&mut e, 6, &request(RequestType::Get, 6, b"r", "/5/0/1")).payload,
        b"coap://h/c"
    );
    let r = call(
        &mut e,
        7,
        &get_with(7, b"c", "/3/0", CoapOption::Accept, 60),
    );
    assert_eq!(code(&r), resp(ResponseType::NotAcceptable));
    for (mid, path, payload) in [
        (8, "/1/0", &[0x18, 90][..]),
        (9, "/1/0/3", &b"\x62no"[..]),
        (10, "/1/0/3", &[0x18, 90, 0][..]),
    ] {
        let w = request_with(RequestType::Put, mid, b"c", path, 60, payload);
        assert_eq!(
            code(&call(&mut e, u64::from(mid), &w)),
            resp(ResponseType::BadRequest),
            "{path} {payload:?}"
        );
    }
}

#[test]
fn lwm2m_cbor_read_and_write() {
    let mut e = registered();
    let r = call(
        &mut e,
        1,
        &get_with(1, b"c", "/5/0/3", CoapOption::Accept, 11544),
    );
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(11544));
    assert_eq!(
        r.payload,
        [0xA1, 0x05, 0xA1, 0x00, 0xA1, 0x03, 0x00],
        "{{5: {{0: {{3: 0}}}}}}"
    );
    // {[5, 0, 1]: "coap://h/x"} (path compression)
    let mut payload = vec![0xA1, 0x83, 0x05, 0x00, 0x01, 0x6A];
    payload.extend_from_slice(b"coap://h/x");
    let w = request_with(RequestType::Put, 2, b"c", "/5/0/1", 11544, &payload);
    assert_eq!(code(&call(&mut e, 2, &w)), resp(ResponseType::Changed));
    assert_eq!(
        call(&mut e, 3, &request(RequestType::Get, 3, b"r", "/5/0/1")).payload,
        b"coap://h/x"
    );
}

#[test]
fn client_initiated_bootstrap_then_register_with_the_provisioned_server() {
    use lwm2m_client::objects::{Device, FirmwareUpdate, Security, Server};
    let mut server_obj = Server::new(300);
    server_obj.present = false;
    let objs: Vec<Box<dyn lwm2m_client::ObjectHandler>> = vec![
        Box::new(Security::bootstrap("coap://127.0.0.1:5783")),
        Box::new(server_obj),
        Box::new(Device::new(device_info())),
        Box::new(FirmwareUpdate::new(
            lwm2m_client::objects::DiscardBackend::default(),
        )),
    ];
    let mut e = engine_with(objs);
    e.bootstrap(0);
    assert_eq!(e.registration(), RegState::Bootstrapping);
    let bs = one(&mut e);
    assert_eq!(code(&bs), MessageClass::Request(RequestType::Post));
    let path = option_values(&bs, CoapOption::UriPath);
    assert_eq!(path, vec![b"bs".to_vec()]);
    assert_eq!(
        bs.get_first_option(CoapOption::UriQuery).unwrap(),
        b"ep=ep1"
    );
    e.handle_datagram(10, SERVER, &bytes(&ack(&bs, ResponseType::Changed)));
    // Bootstrap-Delete "/" keeps the bootstrap account.
    let r = call(&mut e, 20, &request(RequestType::Delete, 100, b"b", "/"));
    assert_eq!(code(&r), resp(ResponseType::Deleted));
    // Bootstrap-Write /0/1: a NoSec account for the management server, SSID 7.
    let uri = b"coap://127.0.0.1:5683";
    let mut payload = vec![0xC8, 0x00, uri.len() as u8];
    payload.extend_from_slice(uri);
    payload.extend_from_slice(&[0xC1, 0x01, 0x00, 0xC1, 0x02, 0x03, 0xC1, 0x0A, 0x07]);
    let w = request_with(RequestType::Put, 101, b"b", "/0/1", 11542, &payload);
    assert_eq!(code(&call(&mut e, 30, &w)), resp(ResponseType::Changed));
    // Bootstrap-Write /1/0: SSID 7 (read-only to management servers), lifetime 120 s.
    let w = request_with(
        RequestType::Put,
        102,
        b"b",
        "/1/0",
        11542,
        &[0xC1, 0x00, 0x07, 0xC1, 0x01, 0x78, 0xC1, 0x07, b'U'],
    );
    assert_eq!(code(&call(&mut e, 40, &w)), resp(ResponseType::Changed));
    let d = call(
        &mut e,
        45,
        &get_with(103, b"b", "/", CoapOption::Accept, 40),
    );
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        "</>;lwm2m=1.1,</0/0>,</0/1>,</1/0>,</3/0>,</5/0>"
    );
    // Bootstrap-Finish.
    let f = call(&mut e, 50, &request(RequestType::Post, 104, b"b", "/bs"));
    assert_eq!(code(&f), resp(ResponseType::Changed));
    assert_eq!(
        events(&mut e),
        vec![Event::Bootstrapped {
            server_uri: "coap://127.0.0.1:5683".into()
        }]
    );
    // Register with the management server using the provisioned lifetime.
    e.set_server(2);
    e.start(60);
    let mut out = sent(&mut e);
    assert_eq!(out.len(), 1);
    let (peer, reg) = out.remove(0);
    assert_eq!(peer, 2);
    let q = queries(&reg);
    assert!(q.contains(&"lt=120".to_string()), "{q:?}");
    // The management server may not read Security.
    let mut e2 = e;
    let r = call(&mut e2, 70, &request(RequestType::Get, 105, b"x", "/0/1"));
    assert_eq!(code(&r), resp(ResponseType::Unauthorized));
}

#[test]
fn bootstrap_request_failure_backs_off() {
    let mut e = engine();
    e.bootstrap(0);
    let bs = one(&mut e);
    e.handle_datagram(5, SERVER, &bytes(&ack(&bs, ResponseType::BadRequest)));
    assert_eq!(
        events(&mut e),
        vec![Event::BootstrapFailed {
            code: Some("4.00".into()),
            retry_in_ms: 2000
        }]
    );
    assert_eq!(e.poll_timeout(), Some(2005));
    e.handle_timeout(2005);
    let again = one(&mut e);
    assert_eq!(
        again.get_first_option(CoapOption::UriQuery).unwrap(),
        b"ep=ep1"
    );
    e.handle_datagram(2010, SERVER, &bytes(&ack(&again, ResponseType::Changed)));
    // No Bootstrap-Finish within EXCHANGE_LIFETIME: request again after back-off.
    assert_eq!(e.poll_timeout(), Some(2010 + 247_000));
    e.handle_timeout(2010 + 247_000);
    assert_eq!(
        events(&mut e),
        vec![Event::BootstrapFailed {
            code: None,
            retry_in_ms: 4000
        }]
    );
}
