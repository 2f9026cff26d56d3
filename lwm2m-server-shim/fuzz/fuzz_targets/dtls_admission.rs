//! The coaps listener's admission path ([`DtlsSocket::admit`] and [`DtlsSocket::tick`]) survives
//! any sequence of datagrams from several peer addresses. The input is split at 0xFE bytes;
//! each part is one step: the next flight of a genuine PSK client (so the handshake and
//! application data are reached; its ClientHellos whole, or split into two fragments where
//! the input says, RFC 6347 §4.2.3), one of its datagrams with input bytes XORed in, raw input
//! bytes from one of four addresses, or the timer advanced. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Psk};
use lwm2m_server_shim::coap::dtls_socket::{DtlsLimits, DtlsSocket};

const KEY: &[u8] = b"0123456789abcdef";

struct World {
    rt: tokio::runtime::Runtime,
    server: DtlsContext,
    client: DtlsContext,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime"),
        server: DtlsContext::psk_server(Arc::new(|id: &[u8]| {
            (id == b"dev").then(|| KEY.to_vec())
        }))
        .expect("server context"),
        client: DtlsContext::psk_client(Psk {
            identity: b"dev".to_vec(),
            key: KEY.to_vec(),
        })
        .expect("client context"),
    })
}

/// A whole ClientHello record `d` as two fragment records, the first `at` body bytes long
/// (record sequence numbers kept, then + 1); `None` for any other datagram.
fn split_hello(d: &[u8], at: usize) -> Option<[Vec<u8>; 2]> {
    const REC: usize = 13;
    const HS: usize = 12;
    if d.first() != Some(&22) || d.get(REC) != Some(&1) {
        return None;
    }
    let body = d.get(REC + HS..)?;
    let at = at % body.len().max(1);
    let (a, b) = body.split_at(at);
    let part = |bytes: &[u8], offset: usize, bump: u8| {
        let mut r = d.get(..REC + HS)?.to_vec();
        r[10] = r[10].wrapping_add(bump);
        r[11..13].copy_from_slice(&u16::try_from(HS + bytes.len()).ok()?.to_be_bytes());
        let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        r[REC + 6..REC + 9].copy_from_slice(&u24(offset));
        r[REC + 9..REC + 12].copy_from_slice(&u24(bytes.len()));
        r.extend_from_slice(bytes);
        Some(r)
    };
    Some([part(a, 0, 0)?, part(b, at, 1)?])
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(n % 4)))
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let limits = DtlsLimits {
        max_handshakes: 2,
        idle_timeout: Duration::from_secs(2),
    };
    let Ok(socket) = w.rt.block_on(DtlsSocket::bind(
        "127.0.0.1:0".parse().expect("addr"),
        w.server.clone(),
        limits,
    )) else {
        return;
    };
    let Ok(mut client) = DtlsSession::client(&w.client, None) else {
        return;
    };
    let me = addr(0);
    let mut now = Instant::now();
    for part in data.split(|b| *b == 0xFE).take(64) {
        let Some((&op, rest)) = part.split_first() else {
            continue;
        };
        let mut out = Vec::new();
        match op % 4 {
            0 => {
                while let Some(d) = client.poll_transmit() {
                    let at = usize::from(rest.first().copied().unwrap_or(0));
                    match split_hello(&d, at).filter(|_| op & 0x20 != 0) {
                        Some(parts) => {
                            for p in parts.iter().rev() {
                                out.extend(socket.admit(p, me));
                            }
                        }
                        None => out.extend(socket.admit(&d, me)),
                    }
                }
            }
            1 => {
                if let Some(mut d) = client.poll_transmit() {
                    let len = d.len().max(1);
                    for (i, b) in rest.iter().enumerate() {
                        if let Some(x) = d.get_mut(i.wrapping_mul(7) % len) {
                            *x ^= b;
                        }
                    }
                    if op & 0x40 != 0 {
                        d.truncate(usize::from(op >> 2));
                    }
                    out.extend(socket.admit(&d, me));
                }
            }
            2 => out.extend(socket.admit(rest, addr(op >> 2))),
            _ => {
                now += Duration::from_millis(u64::from(op) * 20);
                out.extend(socket.tick(now));
                if client.timeout().is_some_and(|t| t.is_zero()) {
                    let _ = client.handle_timeout();
                }
            }
        }
        for (d, to) in out {
            if to == me {
                let _ = client.handle_datagram(&d);
            }
        }
        if op & 0x80 != 0 && client.is_established() {
            let _ = client.send(rest);
        }
    }
    let stats = socket.stats();
    assert!(stats.handshakes <= limits.max_handshakes, "{stats:?}");
    let _ = socket.peer_identity(me);
});
