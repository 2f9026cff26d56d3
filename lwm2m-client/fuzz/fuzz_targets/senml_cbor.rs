//! SenML CBOR and LwM2M CBOR decoding never panic, and decoded nodes re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::{lwm2m_cbor, senml, Path, ResourceType};

fuzz_target!(|data: &[u8]| {
    let types = |_o: u16, r: u16| {
        if r % 2 == 0 {
            Some(ResourceType::Float)
        } else {
            None
        }
    };
    let _ = senml::decode_cbor_leaves(data);
    for path in [
        Path::object(5),
        Path::instance(5, 0),
        Path::resource(5, 0, 1),
    ] {
        if let Ok(node) = senml::decode_cbor(data, &path, &types) {
            let _ = senml::encode_cbor(&node, &path);
        }
        if let Ok(node) = lwm2m_cbor::decode(data, &path, &types) {
            let _ = lwm2m_cbor::encode(&node, &path);
        }
    }
});
