//! A DTLS server without RFC 5746's renegotiation_info extension, as Leshan's Scandium is:
//! our client must still connect (RFC 5746 section 4.1 allows it; the client never
//! renegotiates). OpenSSL 3 refuses such a ServerHello by default with "unsafe legacy
//! renegotiation disabled", which kept the device from registering with Leshan over coaps.
//!
//! OpenSSL's own server always answers the extension, so the test removes it from the
//! ServerHello on the wire, as a server without it would send it.

use std::net::SocketAddr;
use std::sync::Arc;

use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Psk};

/// renegotiation_info (RFC 5746 section 3.2).
const RENEGOTIATION_INFO: u16 = 0xff01;
const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Re-frames one DTLS 1.2 ServerHello record (RFC 6347 section 4.2.2, RFC 5246 section 7.4.1.3)
/// without the renegotiation_info extension; `None` when the record holds no such extension.
fn strip_from_server_hello(record: &[u8]) -> Option<Vec<u8>> {
    let body = &record[RECORD_HEADER + HANDSHAKE_HEADER..];
    // version, random, session id, cipher suite, compression method, then the extensions.
    let ext_len_at = 2 + 32 + 1 + usize::from(body[34]) + 2 + 1;
    let mut kept = Vec::new();
    let mut at = ext_len_at + 2;
    let mut stripped = false;
    while at < body.len() {
        let (ty, len) = (be16(body, at), be16(body, at + 2));
        if ty == usize::from(RENEGOTIATION_INFO) {
            stripped = true;
        } else {
            kept.extend_from_slice(&body[at..at + 4 + len]);
        }
        at += 4 + len;
    }
    if !stripped {
        return None;
    }
    let mut new_body = body[..ext_len_at].to_vec();
    new_body.extend_from_slice(&u16::try_from(kept.len()).unwrap().to_be_bytes());
    new_body.extend_from_slice(&kept);
    let len24 = &u32::try_from(new_body.len()).unwrap().to_be_bytes()[1..];
    let mut handshake = record[RECORD_HEADER..RECORD_HEADER + HANDSHAKE_HEADER].to_vec();
    assert_eq!(
        handshake[6..9],
        [0, 0, 0],
        "ServerHello is not fragmented at this MTU"
    );
    handshake[1..4].copy_from_slice(len24);
    handshake[9..12].copy_from_slice(len24);
    let mut out = record[..RECORD_HEADER].to_vec();
    let record_len = u16::try_from(HANDSHAKE_HEADER + new_body.len()).unwrap();
    out[11..13].copy_from_slice(&record_len.to_be_bytes());
    out.extend_from_slice(&handshake);
    out.extend_from_slice(&new_body);
    Some(out)
}

/// The datagram with renegotiation_info removed from any ServerHello in it; also whether it
/// carried one.
fn without_renegotiation_info(datagram: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut found = false;
    let mut at = 0;
    while at + RECORD_HEADER <= datagram.len() {
        let end = at + RECORD_HEADER + be16(datagram, at + 11);
        let record = &datagram[at..end];
        // Content type 22 = handshake; message type 2 = ServerHello.
        match (record[0], record.get(RECORD_HEADER)) {
            (22, Some(2)) => match strip_from_server_hello(record) {
                Some(r) => {
                    found = true;
                    out.extend_from_slice(&r);
                }
                None => out.extend_from_slice(record),
            },
            _ => out.extend_from_slice(record),
        }
        at = end;
    }
    (out, found)
}

#[test]
fn client_continues_past_a_server_hello_without_renegotiation_info() {
    let psk = Psk {
        identity: b"dev-legacy".to_vec(),
        key: b"0123456789abcdef".to_vec(),
    };
    let known = psk.clone();
    let server_ctx = DtlsContext::psk_server(Arc::new(move |id| {
        (id == known.identity.as_slice()).then(|| known.key.clone())
    }))
    .unwrap();
    let peer: SocketAddr = "127.0.0.1:40100".parse().unwrap();
    let mut c = DtlsSession::client(&DtlsContext::psk_client(psk).unwrap(), None).unwrap();
    let mut s = DtlsSession::server(&server_ctx, peer).unwrap();
    // ClientHello, HelloVerifyRequest, ClientHello with the cookie.
    s.handle_datagram(&c.poll_transmit().unwrap()).unwrap();
    c.handle_datagram(&s.poll_transmit().unwrap()).unwrap();
    s.handle_datagram(&c.poll_transmit().unwrap()).unwrap();
    // The server's flight, as a server without RFC 5746 sends it.
    let mut stripped = false;
    while let Some(d) = s.poll_transmit() {
        let (d, found) = without_renegotiation_info(&d);
        stripped |= found;
        if let Err(e) = c.handle_datagram(&d) {
            panic!("client refused a server without renegotiation_info: {e}");
        }
    }
    assert!(stripped, "the ServerHello carried renegotiation_info");
    // The client went on with its key exchange and Finished (the server, whose transcript
    // differs from the edited one, cannot complete: that is not what is tested here).
    assert!(
        c.poll_transmit().is_some(),
        "client sent its next flight after the ServerHello"
    );
}
