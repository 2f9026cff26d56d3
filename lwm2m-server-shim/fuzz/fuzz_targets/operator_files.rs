//! Files an operator or a test lab hands the shim: a conformance profile (`conformance
//! --profile`, TOML or JSON) and a security file (`serve --security-file`, Leshan's
//! SecurityInfo JSON). Any bytes are parsed without panicking and end in a value or an error
//! that displays; every key a security file yields goes into the store and is found again.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lwm2m_server_shim::conformance::profile::Profile;
use lwm2m_server_shim::server::security::store::{
    InMemorySecurityStore, SecurityInfo, SecurityStore,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in ["lab.toml", "lab.json"] {
        match Profile::parse(text, Path::new(name), Path::new("/labs")) {
            Ok(p) => {
                let _ = format!("{:?}", p.expect);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    match SecurityInfo::parse_file(text) {
        Ok(infos) => {
            let store = InMemorySecurityStore::new();
            for info in infos {
                let (endpoint, identity) = (info.endpoint.clone(), info.psk.identity.clone());
                if store.put(info).is_ok() {
                    assert!(store.get_by_endpoint(&endpoint).is_some());
                    assert!(store.get_by_identity(&identity).is_some());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
