//! The engine survives any sequence of datagrams. The input is split at 0xFE bytes; each part
//! is either sent as raw bytes or, when its first byte is even, turned into a well-formed CoAP
//! request (method, LwM2M path, Accept/Content-Format/Observe/Block1/Block2, queries, payload)
//! so the device-management code is reached too. When the input starts with an odd byte the
//! engine is bootstrapping instead, so the requests are Bootstrap-Delete, -Write, -Discover,
//! -Read and (POST /bs) -Finish from its bootstrap server; when it starts with 2 modulo 4 the
//! engine is in Queue Mode and sleeps between datagrams. Nothing may panic.
#![no_main]

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::block::uint_option;

#[path = "device_engine.rs"]
mod device_engine;
use device_engine::{bootstrapping_engine, device_engine, sleepy_engine};

const FORMATS: [u32; 8] = [0, 40, 42, 60, 110, 112, 11542, 11544];
const QUERIES: [&[u8]; 6] = [b"pmin=1", b"pmax=2", b"gt=5", b"lt=1", b"st=0.5", b"pmin"];

fn structured(d: &[u8], mid: u16) -> Option<Vec<u8>> {
    let (&sel, rest) = d.split_first()?;
    let (&a, rest) = rest.split_first()?;
    let (&b, rest) = rest.split_first()?;
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(if sel & 2 == 0 {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.code = MessageClass::Request(match (sel >> 2) % 4 {
        0 => RequestType::Get,
        1 => RequestType::Put,
        2 => RequestType::Post,
        _ => RequestType::Delete,
    });
    p.header.message_id = mid;
    p.set_token(vec![sel]);
    let objects = [0u16, 1, 3, 5, 4];
    let depth = usize::from(a % 5);
    let ids = [
        objects[usize::from(a >> 5) % objects.len()],
        u16::from(b % 2),
        u16::from(b >> 1) % 16,
        u16::from(b >> 5),
    ];
    if a >> 5 == 7 {
        // The Bootstrap-Finish path (a POST there ends a bootstrap).
        p.add_option(CoapOption::UriPath, b"bs".to_vec());
    } else {
        for id in ids.iter().take(depth) {
            p.add_option(CoapOption::UriPath, id.to_string().into_bytes());
        }
    }
    if a & 0x08 != 0 {
        p.add_option(
            CoapOption::Accept,
            uint_option(FORMATS[usize::from(b) % FORMATS.len()]),
        );
    }
    if a & 0x10 != 0 {
        p.add_option(
            CoapOption::ContentFormat,
            uint_option(FORMATS[usize::from(sel >> 5) % FORMATS.len()]),
        );
    }
    if sel & 0x40 != 0 {
        p.add_option(CoapOption::Observe, uint_option(u32::from(sel & 1)));
    }
    if sel & 0x80 != 0 {
        let opt = if a & 1 == 0 {
            CoapOption::Block1
        } else {
            CoapOption::Block2
        };
        p.add_option(opt, uint_option(u32::from(b) << 4 | u32::from(a & 0x0f)));
    }
    if b & 0x80 != 0 {
        p.add_option(
            CoapOption::UriQuery,
            QUERIES[usize::from(a) % QUERIES.len()].to_vec(),
        );
    }
    p.payload = rest.to_vec();
    p.to_bytes().ok()
}

fuzz_target!(|data: &[u8]| {
    let mut e = match data.first() {
        Some(b) if b % 2 == 1 => bootstrapping_engine(),
        Some(b) if b % 4 == 2 => sleepy_engine(),
        _ => device_engine(),
    };
    let mut now = 0u64;
    for (i, part) in data.split(|b| *b == 0xFE).enumerate() {
        now += 700;
        let dgram = match part.first() {
            Some(x) if x % 2 == 0 => structured(part, i as u16),
            _ => None,
        };
        e.handle_datagram(now, (i % 2) as u8, dgram.as_deref().unwrap_or(part));
        while e.poll_transmit().is_some() {}
        while e.poll_event().is_some() {}
        if let Some(t) = e.poll_timeout() {
            if t <= now + 5000 {
                e.handle_timeout(t.max(now));
            }
        }
    }
});
