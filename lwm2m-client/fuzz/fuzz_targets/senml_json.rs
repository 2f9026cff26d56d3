//! SenML JSON (and the JSON reader under it) never panics on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::{senml, Path, ResourceType};

fuzz_target!(|data: &[u8]| {
    let types = |_o: u16, r: u16| {
        if r % 2 == 0 {
            Some(ResourceType::Integer)
        } else {
            None
        }
    };
    let _ = senml::decode_json_leaves(data);
    for path in [
        Path::object(5),
        Path::instance(5, 0),
        Path::resource(5, 0, 1),
    ] {
        if let Ok(node) = senml::decode_json(data, &path, &types) {
            // Whatever decodes can be written back.
            let _ = senml::encode_json(&node, &path);
        }
    }
});
