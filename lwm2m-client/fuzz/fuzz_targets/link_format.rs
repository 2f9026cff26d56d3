//! Link-format parsing never panics; parse(encode(parse(x))) == parse(x).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::link;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(links) = link::parse(s) {
        // Targets containing '>' cannot be written back; everything else must round-trip.
        if links.iter().all(|l| {
            !l.target.contains('>') && l.attrs.iter().all(|(n, _)| !n.contains(['"', '<', ' ']))
        }) {
            let again = link::parse(&link::encode(&links));
            assert_eq!(again.as_ref().ok(), Some(&links));
        }
    }
});
