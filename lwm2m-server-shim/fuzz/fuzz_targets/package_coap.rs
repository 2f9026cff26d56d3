//! The package host's CoAP face (`GET /fw/<name>`, RFC 7959 Block2) answers any request
//! without panicking, and a 2.05 never carries more than the negotiated block. The host serves
//! a small package (kept in memory), an empty one and one too large to keep (read from its
//! file handle). Each input is one request: raw, or (first byte even) a GET of one of those
//! packages with a Block2 option and the host's block size taken from the input.
#![no_main]

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::BlockOpt;
use lwm2m_server_shim::coap::message::uri_path;
use lwm2m_server_shim::packages::coap as package_coap;

#[path = "packages.rs"]
mod packages;
use packages::host;

const NAMES: [&str; 5] = [
    "small.bin",
    "empty.bin",
    "large.bin",
    "missing.bin",
    "../etc",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let request = if sel % 2 == 0 {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(if sel & 2 == 0 {
            RequestType::Get
        } else {
            RequestType::Post
        });
        p.add_option(CoapOption::UriPath, b"fw".to_vec());
        p.add_option(
            CoapOption::UriPath,
            NAMES[usize::from(sel >> 2) % NAMES.len()]
                .as_bytes()
                .to_vec(),
        );
        if sel & 0x80 != 0 {
            p.add_option(CoapOption::Block2, rest.iter().take(4).copied().collect());
        }
        p
    } else {
        match Packet::from_bytes(rest) {
            Ok(p) => p,
            Err(_) => return,
        }
    };
    let max_szx = (sel >> 5) % 7;
    let path = uri_path(&request);
    let resp = package_coap::handle(host(), &request, &path, max_szx);
    if resp.header.code == MessageClass::Response(ResponseType::Content) {
        let szx = resp
            .get_first_option(CoapOption::Block2)
            .and_then(|b| BlockOpt::decode(b).ok())
            .map_or(max_szx, |b| b.szx);
        assert!(szx <= max_szx);
        assert!(resp.payload.len() <= 1 << (szx + 4));
    }
    let _ = resp.to_bytes();
});
