//! LwM2M JSON (CF 11543, the 1.0 format Leshan still writes) never panics at any path depth,
//! and what decodes re-encodes to bytes that decode and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::lwm2m_json;

#[path = "declared.rs"]
mod declared;

fuzz_target!(|data: &[u8]| {
    let types = |_o: u16, r: u16| declared::resource_type(r);
    for path in declared::depths() {
        if let Ok(node) = lwm2m_json::decode(data, &path, &types) {
            let Ok(bytes) = lwm2m_json::encode(&node, &path) else {
                continue;
            };
            let again = lwm2m_json::decode(&bytes, &path, &types)
                .expect("LwM2M JSON this codec wrote decodes");
            // NaN floats compare unequal; compare the bytes instead.
            assert_eq!(lwm2m_json::encode(&again, &path).ok(), Some(bytes));
        }
    }
});
