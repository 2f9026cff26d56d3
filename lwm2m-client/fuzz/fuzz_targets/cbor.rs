//! CBOR (CF 60, one resource value as one data item) never panics for any declared type, and
//! what decodes re-encodes to bytes that decode and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::{cbor, Path, ResourceType};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the declared type; the rest is the payload.
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ty = match sel % 9 {
        0 => Some(ResourceType::String),
        1 => Some(ResourceType::Integer),
        2 => Some(ResourceType::Unsigned),
        3 => Some(ResourceType::Float),
        4 => Some(ResourceType::Boolean),
        5 => Some(ResourceType::Time),
        6 => Some(ResourceType::ObjLnk),
        7 => Some(ResourceType::Opaque),
        _ => None,
    };
    let types = |_o: u16, _r: u16| ty;
    for path in [
        Path::object(3),
        Path::instance(3, 0),
        Path::resource(3, 0, 1),
        Path::resource_instance(3, 0, 1, 0),
    ] {
        if let Ok(node) = cbor::decode(body, &path, &types) {
            let Ok(bytes) = cbor::encode(&node, &path) else {
                continue;
            };
            let again = cbor::decode(&bytes, &path, &types).expect("CBOR this codec wrote decodes");
            assert_eq!(cbor::encode(&again, &path).ok(), Some(bytes));
        }
    }
});
