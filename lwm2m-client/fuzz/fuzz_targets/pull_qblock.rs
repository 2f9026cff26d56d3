//! A Q-Block2 package pull survives any answers from a package host: the input is split into
//! datagrams at 0xFE markers and fed to a pull in progress (with timeouts in between), each
//! datagram also with the pull's own token put in, so its block handling is reached. Nothing
//! may panic, and the sink only ever sees contiguous writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::coap::TxParams;
use lwm2m_client::pull::coap::CoapUri;
use lwm2m_client::pull::qblock::{QBlock2Pull, QBlockParams};
use lwm2m_client::pull::Resume;

#[path = "contiguous.rs"]
mod contiguous;
use contiguous::Contiguous;

/// `d` with the token of `request` (a CoAP header is 4 bytes, then the token).
fn with_token(d: &[u8], request: &[u8]) -> Vec<u8> {
    let (Some(&h), Some(&rh)) = (d.first(), request.first()) else {
        return d.to_vec();
    };
    let tkl = usize::from(h & 0x0F).min(d.len().saturating_sub(4));
    let rtkl = usize::from(rh & 0x0F);
    let mut out = vec![(h & 0xF0) | (rh & 0x0F)];
    out.extend_from_slice(d.get(1..4).unwrap_or_default());
    out.extend_from_slice(request.get(4..4 + rtkl).unwrap_or_default());
    out.extend_from_slice(d.get(4 + tkl..).unwrap_or_default());
    out
}

fuzz_target!(|data: &[u8]| {
    let uri = CoapUri::parse("coap://127.0.0.1/fw").expect("fixed URI");
    let resume = Resume { offset: 2048, etag: Some(vec![1, 2]) };
    let resume = (data.first().copied().unwrap_or(0) & 1 == 1).then_some(&resume);
    let params = QBlockParams { window_blocks: 4, max_payloads: 3, ..QBlockParams::default() };
    let mut pull =
        QBlock2Pull::new(uri, resume, 512, TxParams::default(), Some(params), 7, 1 << 20);
    let mut sink = Contiguous(0);
    let mut now = 0u64;
    let mut last_request = Vec::new();
    for dgram in data.split(|b| *b == 0xFE) {
        while let Some(d) = pull.poll_transmit(now) {
            if d.get(1).is_some_and(|c| *c != 0) {
                last_request = d;
            }
        }
        for d in [dgram.to_vec(), with_token(dgram, &last_request)] {
            match pull.handle_datagram(&d, now, &mut sink) {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {}
            }
        }
        now += 700;
        if pull.handle_timeout(now).is_err() {
            return;
        }
    }
});
