//! The package host's Q-Block2 face (RFC 9177) survives any sequence of requests from a few
//! devices, with time passing and unasked sets falling due in between: nothing panics, every
//! response encodes, no block is larger than the block size it names or than the host allows,
//! a NON request is answered with at most MAX_PAYLOADS blocks and so is each unasked set (no
//! amplification), and no more transfers are kept than the limit.
//!
//! The input is split at 0xFE bytes; each part is a raw datagram (first byte odd) or a GET of
//! one of the host's packages whose Q-Block2 options (one to three bytes each, up to 12 of
//! them), token, message type and host block size come from the input.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::qblock::q_block2;
use lwm2m_client::codec::BlockOpt;
use lwm2m_server_shim::coap::message::uri_path;
use lwm2m_server_shim::packages::qblock::{QBlockSenderParams, Schedule};

#[path = "packages.rs"]
mod packages;
use packages::host;

const NAMES: [&str; 4] = ["small.bin", "empty.bin", "large.bin", "missing.bin"];
const MAX_PAYLOADS: u32 = 10;
const MAX_TRANSFERS: usize = 3;

/// A GET of a package built from `sel` and `rest`.
fn structured(sel: u8, rest: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.set_type(if sel & 0x02 == 0 {
        MessageType::NonConfirmable
    } else {
        MessageType::Confirmable
    });
    let (&t, rest) = rest.split_first().unwrap_or((&0, &[]));
    p.set_token(rest.iter().take(usize::from(t % 9)).copied().collect());
    p.add_option(CoapOption::UriPath, b"fw".to_vec());
    p.add_option(
        CoapOption::UriPath,
        NAMES[usize::from(sel >> 2) % NAMES.len()]
            .as_bytes()
            .to_vec(),
    );
    let opts = rest.get(usize::from(t % 9)..).unwrap_or_default();
    for chunk in opts.chunks(3).take(12) {
        // A chunk's first byte picks its length: 1 to 3 bytes of option value.
        let len = usize::from(chunk[0] % 3) + 1;
        p.add_option(q_block2(), chunk.iter().take(len).copied().collect());
    }
    p
}

/// Checks one response the host sent; true for a block of the body.
fn check(resp: &Packet, max_szx: u8) -> bool {
    let _ = resp.to_bytes();
    if resp.header.code != MessageClass::Response(ResponseType::Content) {
        return false;
    }
    let szx = resp
        .get_first_option(q_block2())
        .and_then(|b| BlockOpt::decode(b).ok())
        .map_or(max_szx, |b| b.szx);
    assert!(
        szx <= max_szx,
        "block size {szx} above the host's {max_szx}"
    );
    assert!(
        resp.payload.len() <= 1 << (szx + 4),
        "block larger than its size"
    );
    true
}

fuzz_target!(|data: &[u8]| {
    let params = QBlockSenderParams {
        max_payloads: MAX_PAYLOADS,
        max_transfers: MAX_TRANSFERS,
        ..QBlockSenderParams::default()
    };
    let mut schedule = Schedule::new(params);
    let peers: [SocketAddr; 3] = [
        "127.0.0.1:5683".parse().unwrap(),
        "127.0.0.1:5684".parse().unwrap(),
        "[::1]:5683".parse().unwrap(),
    ];
    let mut now = Instant::now();
    for part in data.split(|&b| b == 0xFE).take(64) {
        let Some((&sel, rest)) = part.split_first() else {
            continue;
        };
        // Up to 3.75 s pass before each request: sets fall due and transfers expire.
        now += Duration::from_millis(u64::from(sel >> 4) * 250);
        let request = if sel % 2 == 0 {
            structured(sel, rest)
        } else {
            match Packet::from_bytes(rest) {
                Ok(p) => p,
                Err(_) => continue,
            }
        };
        let max_szx = (sel >> 3) % 7;
        let peer = peers[usize::from(sel >> 5) % peers.len()];
        let path = uri_path(&request);
        let con = request.header.get_type() == MessageType::Confirmable;
        let (first, more) = schedule.answer(host(), &request, &path, max_szx, peer, now);
        if check(&first, max_szx) {
            // A CON request for the whole body gets every later block, one CON at a time:
            // look at the first few. A NON request gets one burst.
            let later = more.take(if con { 64 } else { 4096 });
            let mut blocks = 1u32;
            for r in later {
                assert!(check(&r, max_szx), "a later response that is no block");
                blocks += 1;
            }
            if !con {
                assert!(
                    blocks <= MAX_PAYLOADS,
                    "{blocks} blocks for one NON request"
                );
            }
        }
        for (_, _, set) in schedule.due(host(), now) {
            assert!(
                set.len() as u32 <= MAX_PAYLOADS,
                "{} blocks unasked",
                set.len()
            );
            for r in &set {
                assert!(check(r, 6), "an unasked response that is no block");
            }
        }
        assert!(
            schedule.len() <= MAX_TRANSFERS,
            "{} transfers kept",
            schedule.len()
        );
    }
});
