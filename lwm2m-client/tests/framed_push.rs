//! A package pushed with Block1 to /5/0/0 framed as TLV (OMA TS Core 1.1 section 7.4.3),
//! SenML CBOR or SenML JSON (section 7.4.4-7.4.5, RFC 8428 `vd`), as a single-message write
//! may be: the value is streamed out of its framing into Object 5 block by block. A malformed
//! frame ends the push with 4.00 and the failed-download State / Update Result (Idle, 5).
//! Engine tests with fake time here; the binary over real UDP with libcoap's coap-client
//! pushing a signed package in every framing at the end.

mod common;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use common::*;
use lwm2m_client::codec::{senml, tlv, BlockOpt, Node, Path, Resource, ResourceValue, Value};
use lwm2m_client::objects::{Finished, FirmwareBackend, FirmwareUpdate};
use object5::UpdateResult;
use std::cell::RefCell;
use std::rc::Rc;

/// What the backend saw: the package bytes and how many times a package began.
#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    begins: usize,
}

#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Seen>>);

impl FirmwareBackend for Recorder {
    fn begin(&mut self, _: Option<&[u8]>) -> Result<(), UpdateResult> {
        let mut s = self.0.borrow_mut();
        s.bytes.clear();
        s.begins += 1;
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), UpdateResult> {
        self.0.borrow_mut().bytes.extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Finished, UpdateResult> {
        Ok(Finished::Downloaded {
            name: "fw".into(),
            version: "2".into(),
        })
    }
    fn discard(&mut self, _: UpdateResult) {
        self.0.borrow_mut().bytes.clear();
    }
}

fn engine_recording() -> (lwm2m_client::Engine<u8>, Recorder) {
    let rec = Recorder::default();
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(FirmwareUpdate::new(rec.clone())));
    (engine_with(objs), rec)
}

fn opaque(value: &[u8]) -> Node {
    Node::Resource(Resource {
        id: 0,
        value: ResourceValue::Single(Value::Opaque(value.to_vec())),
    })
}

/// Block `num` of `body` in `size`-byte blocks, as a Block1 PUT to /5/0/0 in format `cf`.
fn block(mid: u16, cf: u32, body: &[u8], num: usize, size: usize) -> Packet {
    let start = (num * size).min(body.len());
    let end = (start + size).min(body.len());
    let mut p = request_with(
        RequestType::Put,
        mid,
        b"pk",
        "/5/0/0",
        cf,
        &body[start..end],
    );
    let szx = BlockOpt::szx_for_size(size);
    p.add_option(
        CoapOption::Block1,
        BlockOpt::new(num as u32, end < body.len(), szx)
            .unwrap()
            .encode(),
    );
    p
}

/// Pushes `body` in 16-byte blocks from block `from` on; returns the code of each answer,
/// up to the first that is not 2.31.
fn push_from(
    e: &mut lwm2m_client::Engine<u8>,
    cf: u32,
    body: &[u8],
    from: usize,
) -> Vec<MessageClass> {
    let blocks = body.len().div_ceil(16).max(1);
    let mut codes = Vec::new();
    for num in from..blocks {
        let r = call(e, num as u64, &block(num as u16, cf, body, num, 16));
        codes.push(code(&r));
        if code(&r) != MessageClass::Response(ResponseType::Continue) {
            break;
        }
    }
    codes
}

fn push(e: &mut lwm2m_client::Engine<u8>, cf: u32, body: &[u8]) -> Vec<MessageClass> {
    push_from(e, cf, body, 0)
}

fn read(e: &mut lwm2m_client::Engine<u8>, mid: u16, path: &str) -> String {
    let r = call(e, 10_000, &request(RequestType::Get, mid, b"r", path));
    String::from_utf8(r.payload).unwrap()
}

const CONTINUE: MessageClass = MessageClass::Response(ResponseType::Continue);
const CHANGED: MessageClass = MessageClass::Response(ResponseType::Changed);
const BAD: MessageClass = MessageClass::Response(ResponseType::BadRequest);

/// The value as SenML CBOR with `vd` as an indefinite byte string of 100-byte chunks and the
/// name in `n` before it: [_ {_ 0: "/5/0/0", 8: (_ h'..', ...)}].
fn senml_cbor_chunked(value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x9f, 0xbf, 0x00, 0x66];
    b.extend_from_slice(b"/5/0/0");
    b.extend([0x08, 0x5f]);
    for c in value.chunks(100) {
        b.extend([0x58, c.len() as u8]);
        b.extend_from_slice(c);
    }
    b.extend([0xff, 0xff, 0xff]);
    b
}

#[test]
fn block1_push_in_every_framing_streams_the_value_into_object_5() {
    let value: Vec<u8> = (0..3000u32).map(|i| ((i * 31) ^ (i >> 5)) as u8).collect();
    let path = Path::resource(5, 0, 0);
    let framings: [(&str, u32, Vec<u8>); 5] = [
        ("opaque", 42, value.clone()),
        ("TLV", 11542, tlv::encode(&opaque(&value)).unwrap()),
        (
            "SenML CBOR",
            112,
            senml::encode_cbor(&opaque(&value), &path).unwrap(),
        ),
        ("SenML CBOR, chunked vd", 112, senml_cbor_chunked(&value)),
        (
            "SenML JSON",
            110,
            senml::encode_json(&opaque(&value), &path).unwrap(),
        ),
    ];
    for (name, cf, body) in framings {
        let (mut e, rec) = engine_recording();
        let codes = push(&mut e, cf, &body);
        let blocks = body.len().div_ceil(16);
        assert_eq!(codes.len(), blocks, "{name}: {codes:?}");
        assert!(codes[..blocks - 1].iter().all(|c| *c == CONTINUE), "{name}");
        assert_eq!(codes[blocks - 1], CHANGED, "{name}");
        let seen = rec.0.borrow();
        assert!(seen.bytes == value, "{name}: the value, out of its framing");
        assert_eq!(
            seen.begins, 1,
            "{name}: framing-only blocks restart nothing"
        );
        drop(seen);
        assert_eq!(read(&mut e, 900, "/5/0/3"), "2", "{name}: Downloaded");
    }
}

#[test]
fn malformed_frame_ends_the_push_with_4_00_and_idle_result_5() {
    let value: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
    let path = Path::resource(5, 0, 0);
    let tlv_other = tlv::encode(&Node::Resource(Resource {
        id: 1,
        value: ResourceValue::Single(Value::Opaque(value.clone())),
    }))
    .unwrap();
    let mut json_bad_char = senml::encode_json(&opaque(&value), &path).unwrap();
    json_bad_char[200] = b'*';
    let cbor = senml::encode_cbor(&opaque(&value), &path).unwrap();
    let cbor_truncated = cbor[..cbor.len() - 1].to_vec();
    let mut tlv_trailing = tlv::encode(&opaque(&value)).unwrap();
    tlv_trailing.push(0);
    // (name, format, body, the block answered 4.00)
    let cases: [(&str, u32, Vec<u8>, usize); 4] = [
        ("TLV of resource 1", 11542, tlv_other, 0),
        ("SenML JSON, bad base64", 110, json_bad_char, 200 / 16),
        (
            "SenML CBOR, truncated",
            112,
            cbor_truncated.clone(),
            cbor_truncated.len().div_ceil(16) - 1,
        ),
        (
            "TLV, trailing byte",
            11542,
            tlv_trailing.clone(),
            tlv_trailing.len().div_ceil(16) - 1,
        ),
    ];
    for (name, cf, body, bad) in cases {
        let (mut e, rec) = engine_recording();
        let mut codes = vec![code(&call(&mut e, 0, &block(0, cf, &body, 0, 16)))];
        if bad > 0 {
            assert_eq!(codes, [CONTINUE], "{name}");
            assert_eq!(read(&mut e, 800, "/5/0/3"), "1", "{name}: Downloading");
            codes.extend(push_from(&mut e, cf, &body, 1));
        }
        assert_eq!(codes.len(), bad + 1, "{name}: {codes:?}");
        assert_eq!(codes[bad], BAD, "{name}");
        assert_eq!(
            (read(&mut e, 900, "/5/0/3"), read(&mut e, 901, "/5/0/5")),
            ("0".into(), "5".into()),
            "{name}: a failed download, Idle with integrity check failure"
        );
        assert!(
            rec.0.borrow().bytes.is_empty(),
            "{name}: the partial package is discarded"
        );
        // The transfer is over: the next block is out of sequence.
        let r = call(&mut e, 1000, &block(902, cf, &body, bad + 1, 16));
        assert_eq!(
            code(&r),
            MessageClass::Response(ResponseType::RequestEntityIncomplete)
        );
    }
}

#[test]
fn malformed_frame_while_downloaded_is_refused_and_keeps_the_package() {
    let (mut e, rec) = engine_recording();
    let value = vec![0x5a; 100];
    let body = tlv::encode(&opaque(&value)).unwrap();
    assert_eq!(push(&mut e, 11542, &body).last(), Some(&CHANGED));
    let r = call(&mut e, 1, &block(700, 11542, &[0x00, 0x01, 0x02], 0, 16));
    assert_eq!(code(&r), BAD);
    assert_eq!(
        (read(&mut e, 900, "/5/0/3"), read(&mut e, 901, "/5/0/5")),
        ("2".into(), "0".into()),
        "still Downloaded"
    );
    assert_eq!(rec.0.borrow().bytes, value);
    // Formats with no opaque framing stay refused with 4.15.
    let r = call(&mut e, 2, &block(701, 0, b"text", 0, 16));
    assert_eq!(
        code(&r),
        MessageClass::Response(ResponseType::UnsupportedContentFormat)
    );
}

/// Frames `value` as a write of /5/0/0 in `format` with Python's json, base64 and cbor2 (a
/// SenML encoder we did not write); TLV with the smallest length field.
fn frame_with_python(format: &str, value: &std::path::Path, out: &std::path::Path) {
    const SCRIPT: &str = r#"
import base64, cbor2, json, sys
fmt, src, dst = sys.argv[1:]
v = open(src, 'rb').read()
if fmt == 'opaque':
    out = v
elif fmt == 'tlv':
    n = (len(v).bit_length() + 7) // 8
    out = bytes([0xC0 | n << 3, 0]) + len(v).to_bytes(n, 'big') + v
elif fmt == 'senml-cbor':
    out = cbor2.dumps([{-2: '/5/0/', 0: '0', 8: v}])
else:
    vd = base64.urlsafe_b64encode(v).decode().rstrip('=')
    out = json.dumps([{'bn': '/5/0/', 'n': '0', 'vd': vd}]).encode()
open(dst, 'wb').write(out)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", SCRIPT, format])
        .arg(value)
        .arg(out)
        .status()
        .expect("python3 with cbor2 (scripts/test installs it)");
    assert!(status.success(), "framing {format}: {status}");
}

/// Waits for the device's Register (acknowledging anything else it sends meanwhile) and
/// accepts it; returns the device's address.
fn accept_register(server: &std::net::UdpSocket) -> std::net::SocketAddr {
    loop {
        let (req, from) = net::recv_request(server, "Register");
        let path = option_values(&req, CoapOption::UriPath);
        if path == [b"rd".to_vec()] {
            net::answer(server, from, &req, ResponseType::Created, &["rd", "f"]);
            return from;
        }
        let code = if code(&req) == MessageClass::Request(RequestType::Delete) {
            ResponseType::Deleted
        } else {
            ResponseType::Changed
        };
        net::answer(server, from, &req, code, &[]);
    }
}

fn read_text(
    server: &std::net::UdpSocket,
    device: std::net::SocketAddr,
    mid: u16,
    path: &str,
) -> String {
    let r = net::request_to(server, device, mid, RequestType::Get, path, None, &[]);
    assert_eq!(
        code(&r),
        MessageClass::Response(ResponseType::Content),
        "{path}"
    );
    String::from_utf8(r.payload).unwrap()
}

/// The `lwm2m-client` binary takes a signed package pushed by libcoap's coap-client with
/// Block1 in each framing, verifies it, installs it on Execute and boots the new version;
/// then a malformed frame pushed block-wise gets 4.00 and leaves State 0 / Update Result 5.
#[test]
fn framed_push_over_udp_completes_an_update_in_every_framing() {
    use object5::author::{self, Delivery, PackageSpec, SignAlg};
    let dir = net::temp_dir("framed-push");
    let (key_pem, public) = author::generate_key_pem().unwrap();
    let anchor = dir.join("signer.pub.pem");
    std::fs::write(&anchor, public).unwrap();
    let key = author::signing_key_from_pem(&key_pem).unwrap();
    let mut server = net::server_socket("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let uri = format!("coap://{server_addr}");
    let state = dir.join("state");
    let _child = net::spawn_client(
        &[
            "--server",
            &uri,
            "--endpoint",
            "framed-ep",
            "--trust-anchor",
            anchor.to_str().unwrap(),
            "--log-level",
            "warn",
        ],
        &state,
    );
    let mut device = accept_register(&server);
    let mut mid = 0x5000u16;
    let mut next_mid = || {
        mid += 1;
        mid
    };
    for (k, (format, cf)) in [
        ("opaque", 42),
        ("tlv", 11542),
        ("senml-cbor", 112),
        ("senml-json", 110),
    ]
    .into_iter()
    .enumerate()
    {
        let version = format!("2.{k}.0");
        let image = device_port::image::ImageBuilder::new("sim-fw", &version)
            .total_len(12 * 1024)
            .build();
        let vendor = author::vendor_id("sim.example");
        let spec = PackageSpec {
            vendor_id: vendor,
            class_id: author::class_id("sim-device", &vendor),
            sequence_number: 2 + k as u64,
            version: version.clone(),
            name: "sim-fw".into(),
            image: &image,
            delivery: Delivery::Integrated,
            alg: SignAlg::Esp256,
        };
        let envelope = dir.join(format!("{format}.suit"));
        std::fs::write(&envelope, author::build_envelope(&spec, &key).unwrap()).unwrap();
        let framed = dir.join(format!("{format}.framed"));
        frame_with_python(format, &envelope, &framed);
        // coap-client pushes from the server's address: the device answers its server only.
        drop(server);
        let status = net::coap_client_from(server_addr)
            .args([
                "-m",
                "put",
                "-b",
                "256",
                "-B",
                "60",
                "-t",
                &cf.to_string(),
                "-f",
            ])
            .arg(&framed)
            .arg(format!("coap://{device}/5/0/0"))
            .status()
            .expect("coap-client-openssl is installed (Debian libcoap3-bin)");
        server = net::server_socket(&server_addr.to_string()).unwrap();
        assert!(status.success(), "{format}: coap-client {status}");
        assert_eq!(
            read_text(&server, device, next_mid(), "/5/0/3"),
            "2",
            "{format}: Downloaded"
        );
        assert_eq!(
            read_text(&server, device, next_mid(), "/5/0/7"),
            version,
            "{format}"
        );
        let r = net::request_to(
            &server,
            device,
            next_mid(),
            RequestType::Post,
            "/5/0/2",
            None,
            &[],
        );
        assert_eq!(code(&r), CHANGED, "{format}: Execute Update");
        device = accept_register(&server);
        assert_eq!(
            read_text(&server, device, next_mid(), "/3/0/3"),
            version,
            "{format}: booted"
        );
        assert_eq!(
            (
                read_text(&server, device, next_mid(), "/5/0/3"),
                read_text(&server, device, next_mid(), "/5/0/5")
            ),
            ("0".to_string(), "1".to_string()),
            "{format}: Idle, updated successfully"
        );
    }

    // A SenML JSON push whose base64 breaks in its third block: 4.00 there, then Idle / 5.
    let mut body = br#"[{"bn":"/5/0/","n":"0","vd":""#.to_vec();
    body.extend(std::iter::repeat_n(b'A', 600));
    body[300] = b'*';
    body.extend_from_slice(br#""}]"#);
    let mut codes = Vec::new();
    for num in 0..body.len().div_ceil(128) {
        let r = net::exchange(&server, device, &block(next_mid(), 110, &body, num, 128));
        codes.push(code(&r));
        if code(&r) != CONTINUE {
            break;
        }
    }
    assert_eq!(codes, [CONTINUE, CONTINUE, BAD], "300 / 128 = block 2");
    assert_eq!(
        (
            read_text(&server, device, next_mid(), "/5/0/3"),
            read_text(&server, device, next_mid(), "/5/0/5")
        ),
        ("0".to_string(), "5".to_string())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_block_after_a_cancel_is_out_of_sequence_and_keeps_result_10() {
    let (mut e, _rec) = engine_recording();
    let mut body = br#"[{"bn":"/5/0/","n":"0","vd":""#.to_vec();
    body.extend([b'A'; 40]);
    body[40] = b'*';
    body.extend_from_slice(br#""}]"#);
    assert_eq!(
        code(&call(&mut e, 0, &block(1, 110, &body, 0, 16))),
        CONTINUE
    );
    let r = call(&mut e, 1, &request(RequestType::Post, 2, b"c", "/5/0/10"));
    assert_eq!(code(&r), CHANGED, "Cancel");
    assert_eq!(
        code(&call(&mut e, 2, &block(3, 110, &body, 1, 16))),
        CONTINUE
    );
    let r = call(&mut e, 3, &block(4, 110, &body, 2, 16));
    assert_eq!(
        code(&r),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    assert_eq!(
        (read(&mut e, 900, "/5/0/3"), read(&mut e, 901, "/5/0/5")),
        ("0".into(), "10".into()),
        "Idle, cancelled"
    );
}
