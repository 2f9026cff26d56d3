//! OMA DDF object definitions (`serve --models DIR`, files a user downloads from OMA's
//! registry or elsewhere): any bytes are parsed without panicking; every model parsed is added
//! to the built-in set, looked up, and shown as the object spec JSON `/api/objectspecs`
//! serves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_server_shim::api::object_specs::object_json;
use lwm2m_server_shim::content::ddf;
use lwm2m_server_shim::content::models::ObjectModels;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let models = match ddf::parse(text) {
        Ok(models) => models,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let mut set = ObjectModels::built_in();
    for m in models {
        let _ = object_json(&m).to_string();
        let (id, version) = (m.id, m.version.clone());
        let resources: Vec<u16> = m.resources.iter().map(|r| r.id).collect();
        set.add(m);
        assert!(set.get(id, &version).is_some(), "an added model is found");
        for r in resources {
            let _ = set.resource_type(id, r);
        }
    }
});
