//! Device-management Read, Write and Discover (OMA TS Core 1.1 section 6.3) in every content
//! format, the preferred format for reads without Accept, and the error codes.

use coap_lite::{CoapOption, Packet, RequestType, ResponseType};
use lwm2m_client::codec::{self, ContentFormat, Path};
use lwm2m_client::{Engine, Event};

use crate::common::*;
use crate::support::*;

/// A Read of `path` (message id and time `mid`).
fn read(e: &mut Engine<u8>, mid: u16, path: &str) -> Packet {
    call(
        e,
        u64::from(mid),
        &request(RequestType::Get, mid, b"r", path),
    )
}

/// A Read of `path` asking for content format `cf` (Accept), message id and time `mid`.
fn read_as(e: &mut Engine<u8>, mid: u16, path: &str, cf: u32) -> Packet {
    call(
        e,
        u64::from(mid),
        &get_with(mid, b"r", path, CoapOption::Accept, cf),
    )
}

/// [`read_as`] that must come back 2.05 Content in format `cf`.
fn read_in(e: &mut Engine<u8>, mid: u16, path: &str, cf: u32) -> Packet {
    let r = read_as(e, mid, path, cf);
    assert_eq!(code(&r), resp(ResponseType::Content), "{path} in {cf}");
    assert_eq!(
        uint(&r, CoapOption::ContentFormat),
        Some(cf),
        "{path} in {cf}"
    );
    r
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
            let r = read(&mut e, mid, path);
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
fn read_in_every_format_and_error_codes() {
    let mut e = registered();
    let r = read_in(&mut e, 1, "/3/0", 11542);
    let node = codec::tlv::decode(&r.payload, &Path::instance(3, 0), &|_, _| None).unwrap();
    let codec::Node::Instance(inst) = node else {
        panic!()
    };
    assert_eq!(
        inst.resources.iter().map(|r| r.id).collect::<Vec<_>>(),
        [0, 1, 2, 3, 11, 13, 16]
    );
    let r = read_in(&mut e, 2, "/5/0", 110);
    let leaves = codec::senml::decode_json_leaves(&r.payload).unwrap();
    assert!(leaves.contains(&(Path::resource(5, 0, 3), codec::Value::Integer(0))));
    let r = read_as(&mut e, 3, "/5/0/3", 112);
    assert_eq!(
        r.payload,
        [0x81, 0xA2, 0x21, 0x66, b'/', b'5', b'/', b'0', b'/', b'3', 0x02, 0x00]
    );
    let r = read(&mut e, 4, "/3/0/0");
    assert_eq!(
        (uint(&r, CoapOption::ContentFormat), r.payload.as_slice()),
        (Some(0), &b"Acme"[..])
    );
    let accept = |mid, cf| get_with(mid, b"a", "/3/0", CoapOption::Accept, cf);
    let get = |mid, path| request(RequestType::Get, mid, b"a", path);
    let post = |mid, path| request(RequestType::Post, mid, b"a", path);
    for (req, want) in [
        (accept(5, 50), ResponseType::NotAcceptable),
        (accept(6, 0), ResponseType::NotAcceptable),
        (get(7, "/3/1"), ResponseType::NotFound),
        (get(8, "/4"), ResponseType::NotFound),
        (get(9, "/3/0/4"), ResponseType::MethodNotAllowed),
        (get(10, "/0/0"), ResponseType::Unauthorized),
        (post(11, "/3/0/0"), ResponseType::MethodNotAllowed),
        (post(12, "/5/0/2"), ResponseType::MethodNotAllowed),
        (get(13, "/x"), ResponseType::NotFound),
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
    let r = read(&mut e, 2, "/5/0/1");
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
    let r = read(&mut e, 4, "/1/0/3");
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
    let wa = write_attributes(1, "/5/0/3", &["pmin=2", "pmax=10"]);
    assert_eq!(code(&call(&mut e, 1, &wa)), resp(ResponseType::Changed));
    let d = read_in(&mut e, 2, "/5", 40);
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        // A push-only device lists no pull protocol (/5/0/8 has no instance).
        "</5>;ver=1.1,</5/0>,</5/0/0>,</5/0/1>,</5/0/2>,</5/0/3>;pmin=2;pmax=10,</5/0/5>,</5/0/6>,</5/0/7>,</5/0/8>;dim=0,</5/0/9>,</5/0/10>,</5/0/11>,</5/0/12>,</5/0/13>"
    );
    let d = read_as(&mut e, 3, "/3/0/11", 40);
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        "</3/0/11>;dim=1,</3/0/11/0>"
    );
    let bad = write_attributes(4, "/5/0/3", &["pmin=x"]);
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
    let d = read_as(&mut e, 1, "/5/0", 40);
    let listed: Vec<u16> = codec::link::parse(std::str::from_utf8(&d.payload).unwrap())
        .unwrap()
        .iter()
        .filter_map(|l| l.target.strip_prefix("/5/0/")?.parse().ok())
        .collect();
    assert_eq!(listed, V1_1, "Discover /5/0");
    let r = read(&mut e, 2, "/5/0/14");
    assert_eq!(code(&r), resp(ResponseType::NotFound));
    let w = request_with(RequestType::Put, 3, b"w", "/5/0/14", 0, b"1");
    assert_eq!(code(&call(&mut e, 3, &w)), resp(ResponseType::NotFound));
}

/// LwM2M JSON (11543, OMA TS Core 1.0 section 6.4.4), the format Leshan's `format=JSON`
/// names: reads of a resource and an instance, a single-resource write and a partial
/// instance update (POST) in it.
#[test]
fn lwm2m_json_read_and_write() {
    let mut e = registered();
    let r = read_in(&mut e, 1, "/5/0/3", 11543);
    assert_eq!(
        std::str::from_utf8(&r.payload).unwrap(),
        r#"{"bn":"/5/0/3","e":[{"v":0}]}"#
    );
    let r = read_in(&mut e, 2, "/3/0", 11543);
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
    assert_eq!(read(&mut e, 4, "/5/0/1").payload, b"coap://h/j");
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
    assert_eq!(read(&mut e, 6, "/1/0/3").payload, b"90");
    let bad = request_with(RequestType::Put, 7, b"j", "/5/0/1", 11543, b"{\"e\":1}");
    assert_eq!(code(&call(&mut e, 7, &bad)), resp(ResponseType::BadRequest));
}

/// Plain CBOR (60, OMA TS Core 1.1 section 7.4): one data item for one resource value, read
/// and written; a whole instance has no CBOR form (4.06), nor does CBOR write one (4.00).
#[test]
fn cbor_single_value_read_and_write() {
    let mut e = registered();
    let r = read_in(&mut e, 1, "/3/0/0", 60);
    assert_eq!(r.payload, b"\x64Acme");
    let r = read_as(&mut e, 2, "/5/0/3", 60);
    assert_eq!(r.payload, [0x00]);
    // Default pmax (Integer) 90 as a CBOR unsigned item.
    let w = request_with(RequestType::Put, 3, b"c", "/1/0/3", 60, &[0x18, 90]);
    assert_eq!(code(&call(&mut e, 3, &w)), resp(ResponseType::Changed));
    assert_eq!(read(&mut e, 4, "/1/0/3").payload, b"90");
    let mut uri = vec![0x6a];
    uri.extend_from_slice(b"coap://h/c");
    let w = request_with(RequestType::Put, 5, b"c", "/5/0/1", 60, &uri);
    assert_eq!(code(&call(&mut e, 5, &w)), resp(ResponseType::Changed));
    assert_eq!(read(&mut e, 6, "/5/0/1").payload, b"coap://h/c");
    let r = read_as(&mut e, 7, "/3/0", 60);
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
    let r = read_in(&mut e, 1, "/5/0/3", 11544);
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
    assert_eq!(read(&mut e, 3, "/5/0/1").payload, b"coap://h/x");
}
