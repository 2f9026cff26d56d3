//! The `lwm2m-client` binary against a strict LwM2M server scripted on a raw UDP socket: it
//! refuses what the specifications do not allow instead of reading it leniently, as widely
//! deployed servers do. Register `ct` must be one unquoted integer (OMA TS Core 1.1 section
//! 6.2.1), else 4.00; a payload marker with no payload is a message format error (RFC 7252
//! section 3).

mod common;

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::net::{answer, recv_request, server_socket, spawn_client, temp_dir};
use common::{request, strict_ct};
use std::net::UdpSocket;
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
