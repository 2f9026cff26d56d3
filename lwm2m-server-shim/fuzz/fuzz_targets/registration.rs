//! The registration interface (`/rd`, LwM2M core TS 6.2) survives any sequence of requests.
//! The input is split at 0xFE bytes; each part is either a raw datagram or, when its first
//! byte is even, a well-formed request to `/rd`, `/rd/<id of the last registration>` or
//! `/rd/<fuzzed id>` with Uri-Query options and a link-format payload taken from the input,
//! so Register, Update and De-register are reached. Every stored registration is then turned
//! into the REST API's JSON, as `GET /api/clients` does. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use libfuzzer_sys::fuzz_target;
use lwm2m_server_shim::server::registration::interface::{self as registration, RegistrationIds};
use lwm2m_server_shim::api::event_stream::{server_event_data, sse_record};
use lwm2m_server_shim::api::registration_json::registration_json;
use lwm2m_server_shim::server::registration::store::{InMemoryStore, RegistrationStore};

const METHODS: [RequestType; 4] = [
    RequestType::Post,
    RequestType::Post,
    RequestType::Delete,
    RequestType::Put,
];

/// `sel` bit layout: 0 even (structured), 1..2 method, 3..4 path form, 5 adds `ep=`, 6 adds a
/// Content-Format, 7 secure. The rest is `queries|payload`, queries separated by `&`.
fn structured(part: &[u8], last_id: Option<&str>) -> Option<Packet> {
    let (&sel, rest) = part.split_first()?;
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(METHODS[usize::from(sel >> 1) % 4]);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    let (queries, payload) = match rest.iter().position(|b| *b == b'|') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    match (sel >> 3) % 4 {
        0 => {}
        1 => p.add_option(CoapOption::UriPath, last_id.unwrap_or("x").as_bytes().to_vec()),
        2 => {
            let (id, _) = queries.split_at(queries.len().min(10));
            p.add_option(CoapOption::UriPath, id.to_vec());
        }
        _ => {
            p.add_option(CoapOption::UriPath, last_id.unwrap_or("x").as_bytes().to_vec());
            p.add_option(CoapOption::UriPath, b"extra".to_vec());
        }
    }
    if sel & 0x20 != 0 {
        p.add_option(CoapOption::UriQuery, format!("ep=dev{}", sel & 3).into_bytes());
    }
    for q in queries.split(|b| *b == b'&').filter(|q| !q.is_empty()) {
        p.add_option(CoapOption::UriQuery, q.to_vec());
    }
    if sel & 0x40 != 0 {
        let cf = if sel & 0x10 != 0 { vec![40] } else { vec![sel] };
        p.add_option(CoapOption::ContentFormat, cf);
    }
    p.payload = payload.to_vec();
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    let store = InMemoryStore::new();
    let ids = RegistrationIds::default();
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut last_id: Option<String> = None;
    for part in data.split(|b| *b == 0xFE).take(64) {
        let Some(&sel) = part.first() else { continue };
        let request = if sel % 2 == 0 {
            structured(part, last_id.as_deref())
        } else {
            Packet::from_bytes(&part[1..]).ok()
        };
        let Some(request) = request else { continue };
        let peer = SocketAddr::from(([127, 0, 0, 1], 5000 + u16::from(sel & 3)));
        let (resp, event) =
            registration::handle(&store, &ids, &request, peer, sel & 0x80 != 0, now);
        if resp.header.code == MessageClass::Response(ResponseType::Created) {
            last_id = resp
                .get_option(CoapOption::LocationPath)
                .and_then(|l| l.iter().nth(1))
                .map(|id| String::from_utf8_lossy(id).into_owned());
        }
        let _ = resp.to_bytes();
        if let Some(e) = event {
            let _ = sse_record(e.name(), &server_event_data(&e));
        }
        now += Duration::from_secs(u64::from(sel));
    }
    for r in store.all() {
        assert!(!r.endpoint.is_empty());
        assert_eq!(store.get_by_endpoint(&r.endpoint).map(|x| x.id), Some(r.id.clone()));
        let _ = registration_json(&r).to_string();
    }
    let _ = store.remove_expired(now + Duration::from_secs(u64::from(u32::MAX)));
    assert!(store.all().is_empty(), "every lifetime is at most u32::MAX seconds");
});
