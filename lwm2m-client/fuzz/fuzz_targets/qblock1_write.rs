//! Q-Block1 writes of /5/0/0 (RFC 9177 §4.3) reach the engine in any order and shape: the
//! input is split at 0xFE bytes, each part a PUT with a Q-Block1 option (NUM, M, SZX from the
//! part, sometimes malformed or repeated, sometimes beside Block1), a Request-Tag of one of a
//! few bodies (sometimes over 8 bytes), maybe Size1, CON or NON, and the rest as payload;
//! timers fire in between. The missing-blocks list decoder the shim uses sees each part too.
//! Nothing may panic, and every transmit must be a well-formed CoAP message.
#![no_main]

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::qblock::{decode_missing, q_block1, request_tag};

#[path = "device_engine.rs"]
mod device_engine;
use device_engine::device_engine;

fn request(d: &[u8], mid: u16) -> Option<Vec<u8>> {
    let (&sel, rest) = d.split_first()?;
    let (&a, rest) = rest.split_first()?;
    let (&b, rest) = rest.split_first()?;
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(if sel & 1 == 0 {
        MessageType::NonConfirmable
    } else {
        MessageType::Confirmable
    });
    p.header.code = MessageClass::Request(RequestType::Put);
    p.header.message_id = mid;
    p.set_token(vec![sel, a]);
    for s in ["5", "0", "0"] {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    p.add_option(CoapOption::ContentFormat, uint_option(if sel & 2 == 0 { 42 } else { 0 }));
    // NUM 0..63, M from a bit, SZX 0..7 (7 is reserved).
    let value = u32::from(b & 0x3f) << 4 | u32::from(a & 0x08) | u32::from(a & 0x07);
    match sel >> 5 {
        0 => p.add_option(q_block1(), vec![0, 0, 0, b]),
        1 => {
            p.add_option(q_block1(), uint_option(value));
            p.add_option(q_block1(), uint_option(value + 16));
        }
        2 => {
            p.add_option(q_block1(), uint_option(value));
            p.add_option(CoapOption::Block1, uint_option(value));
        }
        _ => p.add_option(q_block1(), uint_option(value)),
    }
    let tag_len = if sel & 4 == 0 { 1 } else { 9 };
    p.add_option(request_tag(), vec![a >> 6; tag_len]);
    if sel & 8 != 0 {
        p.add_option(CoapOption::Size1, uint_option(u32::from(a) << 8));
    }
    let size = 16usize << (a & 0x07).min(6);
    let payload: Vec<u8> = rest.iter().copied().cycle().take(if sel & 16 == 0 { size } else { rest.len() }).collect();
    p.payload = payload;
    p.to_bytes().ok()
}

fuzz_target!(|data: &[u8]| {
    let mut e = device_engine();
    let mut now = 0u64;
    for (i, part) in data.split(|b| *b == 0xFE).enumerate() {
        let _ = decode_missing(part, 64);
        now += u64::from(part.first().copied().unwrap_or(0)) * 40;
        if let Some(dgram) = request(part, i as u16) {
            e.handle_datagram(now, 1, &dgram);
        }
        if let Some(t) = e.poll_timeout() {
            if t <= now + 10_000 {
                now = now.max(t);
                e.handle_timeout(now);
            }
        }
        while let Some(t) = e.poll_transmit() {
            assert!(Packet::from_bytes(&t.data).is_ok(), "engine sent a malformed datagram");
        }
        while e.poll_event().is_some() {}
    }
});
