//! CBOR (CF 60, one resource value as one data item) never panics for any declared type, and
//! what decodes re-encodes to bytes that decode and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::cbor;

#[path = "declared.rs"]
mod declared;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the declared type; the rest is the payload.
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let types = |_o: u16, _r: u16| declared::resource_type(u16::from(sel));
    for path in declared::depths() {
        if let Ok(node) = cbor::decode(body, &path, &types) {
            let Ok(bytes) = cbor::encode(&node, &path) else {
                continue;
            };
            let again = cbor::decode(&bytes, &path, &types).expect("CBOR this codec wrote decodes");
            assert_eq!(cbor::encode(&again, &path).ok(), Some(bytes));
        }
    }
});
