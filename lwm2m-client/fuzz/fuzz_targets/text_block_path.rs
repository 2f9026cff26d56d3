//! Block options, paths, text values and base64 never panic; block options round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::{base64, text, BlockOpt, Path, ResourceType};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = BlockOpt::decode(data) {
        assert_eq!(BlockOpt::decode(&b.encode()), Ok(b));
    }
    if let Ok(s) = core::str::from_utf8(data) {
        if let Ok(p) = Path::parse(s) {
            assert_eq!(Path::parse(&alloc_string(&p)), Ok(p));
        }
        let _ = base64::decode(s);
    }
    for ty in [
        ResourceType::String,
        ResourceType::Integer,
        ResourceType::Unsigned,
        ResourceType::Float,
        ResourceType::Boolean,
        ResourceType::Opaque,
        ResourceType::Time,
        ResourceType::ObjLnk,
    ] {
        if let Ok(v) = text::decode(data, ty) {
            let _ = text::encode(&v);
        }
    }
});

fn alloc_string(p: &Path) -> String {
    format!("{p}")
}
