//! A Block2 package pull survives any answers from a package host: the input is split into
//! datagrams at 0xFE markers and fed to a pull in progress (with timeouts in between); the
//! first datagram-sized prefix is also parsed as a Package URI. Nothing may panic, and the
//! sink only ever sees contiguous writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::coap::TxParams;
use lwm2m_client::pull::coap::{Block2Pull, CoapUri};
use lwm2m_client::pull::Resume;

#[path = "contiguous.rs"]
mod contiguous;
use contiguous::Contiguous;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(&data[..data.len().min(300)]) {
        let _ = CoapUri::parse(text);
    }
    let uri = CoapUri::parse("coap://127.0.0.1/fw").expect("fixed URI");
    let resume = Resume {
        offset: 2048,
        etag: Some(vec![1, 2]),
    };
    let resume = (data.first().copied().unwrap_or(0) & 1 == 1).then_some(&resume);
    let mut pull = Block2Pull::new(uri, resume, 512, TxParams::default(), 7, 1 << 20);
    let mut sink = Contiguous(0);
    let mut now = 0u64;
    for dgram in data.split(|b| *b == 0xFE) {
        while pull.poll_transmit(now).is_some() {}
        match pull.handle_datagram(dgram, now, &mut sink) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
        now += 1000;
        if pull.handle_timeout(now).is_err() {
            return;
        }
    }
});
