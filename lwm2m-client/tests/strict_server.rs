//! The `lwm2m-client` binary against a strict LwM2M server scripted on a raw UDP socket: it
//! refuses what the specifications do not allow instead of reading it leniently, as widely
//! deployed servers do. Register `ct` must be one unquoted integer (OMA TS Core 1.1 section
//! 6.2.1), else 4.00; a Register over the server's size limit gets 4.13 with Block1 and is
//! reassembled from blocks (RFC 7959); a payload marker with no payload is a message format error (RFC 7252
//! section 3).

mod common;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::net::{answer, recv_request, server_socket, spawn_client, temp_dir};
use common::{ack, option_values, queries, request, strict_ct};
use lwm2m_client::codec::BlockOpt;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

/// The device registers at the first Register with a server that refuses a `ct` list.
#[test]
fn strict_server_accepts_the_first_register_in_each_preferred_format() {
    for (flag, want) in [(None, 112), (Some("senml-json"), 110), (Some("tlv"), 11542)] {
        let server = server_socket("127.0.0.1:0").unwrap();
        let uri = format!("coap://{}", server.local_addr().unwrap());
        let state = temp_dir("strict-ct");
        let mut args = vec![
            "--server",
            &uri,
            "--endpoint",
            "strict-ep",
            "--log-level",
            "warn",
        ];
        if let Some(f) = flag {
            args.extend(["--preferred-format", f]);
        }
        let _child = spawn_client(&args, &state);
        let (reg, from) = recv_request(&server, "Register");
        let payload = String::from_utf8(reg.payload.clone()).unwrap();
        match strict_ct(&payload) {
            Ok(ct) => {
                answer(&server, from, &reg, ResponseType::Created, &["rd", "s"]);
                assert_eq!(ct, want, "{flag:?}: {payload}");
            }
            Err(e) => {
                answer(&server, from, &reg, ResponseType::BadRequest, &[]);
                panic!("the strict server refused the Register with 4.00 ({e}): {payload}");
            }
        }
        let _ = std::fs::remove_dir_all(&state);
    }
}

/// A format the client cannot announce is refused at start with one line and a failure code.
#[test]
fn unknown_preferred_format_is_refused_at_start() {
    let state = temp_dir("strict-ct-bad");
    let out = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(["--preferred-format", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("senml-cbor, senml-json, tlv, lwm2m-cbor"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// The next datagram from the device (bounded wait), skipping nothing.
fn next_datagram(sock: &UdpSocket) -> Packet {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Packet::from_bytes(&buf[..n]).expect("the device sends valid CoAP");
        }
    }
    panic!("no datagram from the device within 10 s");
}

/// A payload marker with no payload is a message format error (RFC 7252 section 3): over a
/// real socket the device answers a confirmable one with RST and ignores a non-confirmable
/// one; neither is processed as a request.
#[test]
fn payload_marker_without_payload_gets_rst_over_udp() {
    let server = server_socket("127.0.0.1:0").unwrap();
    let uri = format!("coap://{}", server.local_addr().unwrap());
    let state = temp_dir("strict-marker");
    let _child = spawn_client(
        &[
            "--server",
            &uri,
            "--endpoint",
            "marker-ep",
            "--log-level",
            "warn",
        ],
        &state,
    );
    let (reg, device) = recv_request(&server, "Register");
    answer(&server, device, &reg, ResponseType::Created, &["rd", "m"]);

    let mut get = request(RequestType::Get, 0x3001, b"g", "/3/0/0");
    let mut raw = get.to_bytes().unwrap();
    raw.push(0xff);
    server.send_to(&raw, device).unwrap();
    let r = next_datagram(&server);
    assert_eq!(
        (r.header.get_type(), r.header.code, r.header.message_id),
        (MessageType::Reset, MessageClass::Empty, 0x3001),
        "RST, not a 2.05 answer"
    );

    // NON with the marker, then a CoAP ping: the ping's RST is the next datagram, so the NON
    // got no answer (the device handles datagrams in order).
    get.header.set_type(MessageType::NonConfirmable);
    get.header.message_id = 0x3002;
    let mut raw = get.to_bytes().unwrap();
    raw.push(0xff);
    server.send_to(&raw, device).unwrap();
    server.send_to(&[0x40, 0x00, 0x30, 0x03], device).unwrap();
    let r = next_datagram(&server);
    assert_eq!(
        (r.header.get_type(), r.header.message_id),
        (MessageType::Reset, 0x3003),
        "only the ping is answered"
    );

    // Well-formed, the same read is answered.
    get.header.set_type(MessageType::Confirmable);
    get.header.message_id = 0x3004;
    server.send_to(&get.to_bytes().unwrap(), device).unwrap();
    let r = next_datagram(&server);
    assert_eq!(
        (r.header.code, r.header.message_id),
        (MessageClass::Response(ResponseType::Content), 0x3004)
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// Answers `req` with `code` and a Block1 option.
fn answer_block(sock: &UdpSocket, to: SocketAddr, req: &Packet, code: ResponseType, b: BlockOpt) {
    let mut p = ack(req, code);
    p.add_option(CoapOption::Block1, b.encode());
    if code == ResponseType::Created {
        p.add_option(CoapOption::LocationPath, b"rd".to_vec());
        p.add_option(CoapOption::LocationPath, b"big".to_vec());
    }
    sock.send_to(&p.to_bytes().unwrap(), to).unwrap();
}

/// A server that takes at most 32 bytes per request answers a larger Register 4.13 with
/// Block1 SZX 1 (RFC 7959 section 2.9.3) and reassembles the blocks: the device retries at
/// that size, every block in order, and is registered at the end.
#[test]
fn register_too_large_for_a_strict_server_is_retried_block_wise() {
    const LIMIT: usize = 32;
    let server = server_socket("127.0.0.1:0").unwrap();
    let uri = format!("coap://{}", server.local_addr().unwrap());
    let state = temp_dir("strict-block1");
    let _child = spawn_client(
        &[
            "--server",
            &uri,
            "--endpoint",
            "block1-ep",
            "--log-level",
            "warn",
        ],
        &state,
    );
    let (whole, device) = recv_request(&server, "Register");
    assert!(whole.get_first_option(CoapOption::Block1).is_none());
    assert!(whole.payload.len() > 2 * LIMIT, "{}", whole.payload.len());
    let szx = BlockOpt::szx_for_size(LIMIT);
    answer_block(
        &server,
        device,
        &whole,
        ResponseType::RequestEntityTooLarge,
        BlockOpt::new(0, false, szx).unwrap(),
    );
    let mut body = Vec::new();
    let mut blocks = 0;
    loop {
        let (req, _) = recv_request(&server, "Register block");
        let b = BlockOpt::decode(
            req.get_first_option(CoapOption::Block1)
                .expect("the retry is block-wise"),
        )
        .unwrap();
        assert_eq!(b.size(), LIMIT, "the size the server indicated");
        assert_eq!(b.offset(), body.len() as u64, "in order, no gap");
        assert_eq!(queries(&req), queries(&whole));
        assert!(req.payload.len() <= LIMIT);
        if b.more {
            assert_eq!(req.payload.len(), LIMIT);
        }
        body.extend_from_slice(&req.payload);
        blocks += 1;
        if !b.more {
            let text = String::from_utf8(body.clone()).unwrap();
            assert_eq!(strict_ct(&text), Ok(112), "{text}");
            answer_block(&server, device, &req, ResponseType::Created, b);
            break;
        }
        answer_block(&server, device, &req, ResponseType::Continue, b);
    }
    assert_eq!(body, whole.payload);
    assert_eq!(blocks, whole.payload.len().div_ceil(LIMIT));
    // Registered at /rd/big: a Registration Update Trigger (/1/0/8) sends the Update there.
    let exec = request(RequestType::Post, 0x4001, b"u", "/1/0/8");
    server.send_to(&exec.to_bytes().unwrap(), device).unwrap();
    let (update, _) = recv_request(&server, "Update");
    assert_eq!(
        option_values(&update, CoapOption::UriPath),
        [b"rd".to_vec(), b"big".to_vec()]
    );
    let _ = std::fs::remove_dir_all(&state);
}
