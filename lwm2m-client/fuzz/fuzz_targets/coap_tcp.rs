//! CoAP over TCP (RFC 8323) framing and the coap+tcp pull survive any bytes from a peer:
//! frames decoded from the input re-encode to frames that decode to the same message, signals
//! never panic, and a pull fed the input (after a valid CSM, in pieces cut at 0xFE markers)
//! only ever writes contiguous bytes to its sink and never buffers more than its
//! Max-Message-Size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::coap_tcp;
use lwm2m_client::pull::coap_tcp::{TcpPull, TcpPullParams, TcpUri};
use lwm2m_client::pull::Resume;

#[path = "contiguous.rs"]
mod contiguous;
use contiguous::Contiguous;

fuzz_target!(|data: &[u8]| {
    // The codec alone: every frame it accepts round-trips.
    let max = 64 + u32::from(data.first().copied().unwrap_or(0)) * 64;
    let mut rest = data;
    while let Ok(Some((p, n))) = coap_tcp::decode(rest, max) {
        assert!(n > 0 && n <= rest.len());
        let _ = coap_tcp::signal(&p);
        let again = coap_tcp::encode(&p);
        let (q, m) = coap_tcp::decode(&again, u32::MAX)
            .expect("re-encoded frame decodes")
            .expect("whole");
        assert_eq!(m, again.len());
        assert_eq!(
            (q.header.code, q.get_token(), &q.payload),
            (p.header.code, p.get_token(), &p.payload)
        );
        assert_eq!(q.options().count(), p.options().count());
        rest = &rest[n..];
    }
    if let Ok(text) = core::str::from_utf8(&data[..data.len().min(300)]) {
        let _ = TcpUri::parse(text);
    }

    // A pull fed the input as the host's bytes.
    let uri = TcpUri::parse("coap+tcp://127.0.0.1/fw/p")
        .expect("fixed URI")
        .coap;
    let resume = Resume {
        offset: 3000,
        etag: Some(vec![1, 2]),
    };
    let resume = (data.first().copied().unwrap_or(0) & 1 == 1).then_some(&resume);
    let params = TcpPullParams {
        max_message_size: 4096,
        window: 3,
        max_size: 1 << 20,
    };
    let mut pull = TcpPull::new(uri, resume, params, 7);
    let mut sink = Contiguous(0);
    let _ = pull.poll_transmit();
    if pull
        .handle_bytes(&coap_tcp::csm(4096, data.len() % 3 != 0), &mut sink)
        .is_err()
    {
        return;
    }
    for piece in data.split(|b| *b == 0xFE) {
        let _ = pull.poll_transmit();
        match pull.handle_bytes(piece, &mut sink) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
    }
});
