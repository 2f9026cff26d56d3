//! The LwM2M registration interface (core TS section 6.2, served at `/rd`): Register, Update and
//! De-register turned into store changes and events. Sans-IO: a request packet and the time in,
//! a response packet and an optional event out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use crate::coap::message::{content_format, response, uri_path, uri_query, with_reason};

use crate::server::events::ServerEvent;
use crate::server::registration::binding::{parse_binding, LwM2mVersion};
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::{
    Registration, RegistrationStore, RegistrationUpdate, DEFAULT_LIFETIME_S,
};

/// CoRE link-format content format (RFC 6690), the only payload Register/Update accept.
const LINK_FORMAT: usize = 40;

fn bad_request(reason: &str) -> Packet {
    with_reason(ResponseType::BadRequest, reason)
}

/// Validates a `b=` value for the client's version (4.00 otherwise); returns whether it asks
/// for queue mode.
fn check_binding(version: LwM2mVersion, binding: &str) -> Result<bool, Packet> {
    parse_binding(version, binding).map_err(|e| bad_request(&e.to_string()))
}

/// Makes registration ids: unique within the process, not guessable from the endpoint name.
pub struct RegistrationIds {
    counter: AtomicU64,
    salt: u64,
}

impl Default for RegistrationIds {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        Self {
            counter: AtomicU64::new(0),
            salt: h.finish(),
        }
    }
}

impl RegistrationIds {
    /// The next id: 10 characters like Leshan's, a salted counter in base 36.
    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut v = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.salt;
        let mut s = String::with_capacity(10);
        for _ in 0..10 {
            let d = (v % 36) as u32;
            s.push(char::from_digit(d, 36).unwrap_or('0'));
            v /= 36;
        }
        s
    }
}

fn link_payload(p: &Packet) -> Result<Option<String>, Packet> {
    if p.payload.is_empty() {
        return Ok(None);
    }
    match content_format(p) {
        None | Some(LINK_FORMAT) => {}
        Some(_) => return Err(response(ResponseType::UnsupportedContentFormat)),
    }
    let text = String::from_utf8(p.payload.clone())
        .map_err(|_| bad_request("link-format payload is not UTF-8"))?;
    ObjectLinks::try_parse(&text).map_err(|e| bad_request(&format!("bad link-format: {e}")))?;
    Ok(Some(text))
}

fn parse_lifetime(v: Option<String>) -> Result<u32, Packet> {
    v.as_deref()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|lt| *lt > 0)
        .ok_or_else(|| bad_request("lt must be a positive integer"))
}

/// Handles a request under `/rd` from `peer`, which came over coaps when `secure`. Returns the
/// response and the event it caused, if any.
pub fn handle(
    store: &dyn RegistrationStore,
    ids: &RegistrationIds,
    request: &Packet,
    peer: SocketAddr,
    secure: bool,
    now: SystemTime,
) -> (Packet, Option<ServerEvent>) {
    let path = uri_path(request);
    let method = match request.header.code {
        MessageClass::Request(m) => m,
        _ => return (bad_request("not a request"), None),
    };
    match (method, path.as_slice()) {
        (RequestType::Post, [rd]) if rd == "rd" => {
            match register(store, ids, request, peer, secure, now) {
                Ok((resp, ev)) => (resp, Some(ev)),
                Err(resp) => (resp, None),
            }
        }
        (RequestType::Post, [rd, id]) if rd == "rd" => {
            match update(store, id, request, peer, now) {
                Ok((resp, ev)) => (resp, Some(ev)),
                Err(resp) => (resp, None),
            }
        }
        (RequestType::Delete, [rd, id]) if rd == "rd" => match store.remove(id) {
            Some(reg) => (
                response(ResponseType::Deleted),
                Some(ServerEvent::Deregistration(reg)),
            ),
            None => (response(ResponseType::NotFound), None),
        },
        (_, [rd, ..]) if rd == "rd" => (response(ResponseType::MethodNotAllowed), None),
        _ => (response(ResponseType::NotFound), None),
    }
}

fn register(
    store: &dyn RegistrationStore,
    ids: &RegistrationIds,
    request: &Packet,
    peer: SocketAddr,
    secure: bool,
    now: SystemTime,
) -> Result<(Packet, ServerEvent), Packet> {
    let mut endpoint = None;
    let mut lifetime_s = DEFAULT_LIFETIME_S;
    let mut lwm2m_version = LwM2mVersion::V1_0;
    let mut binding = None;
    let mut sms_number = None;
    let mut queue_mode = false;
    let mut additional_attributes = BTreeMap::new();
    for (k, v) in uri_query(request) {
        match k.as_str() {
            "ep" => endpoint = v.filter(|e| !e.is_empty()),
            "lt" => lifetime_s = parse_lifetime(v)?,
            "lwm2m" => {
                let v = v.unwrap_or_default();
                lwm2m_version = LwM2mVersion::parse(&v).ok_or_else(|| {
                    with_reason(
                        ResponseType::PreconditionFailed,
                        &format!(
                            "LwM2M version {v:?} not supported; this server implements 1.0 and 1.1"
                        ),
                    )
                })?;
            }
            "b" => binding = Some(v.unwrap_or_default()),
            "sms" => sms_number = v,
            "Q" => queue_mode = true,
            _ => {
                additional_attributes.insert(k, v.unwrap_or_default());
            }
        }
    }
    let endpoint = endpoint.ok_or_else(|| bad_request("missing endpoint name (ep)"))?;
    let binding = binding.unwrap_or_else(|| "U".to_string());
    queue_mode |= check_binding(lwm2m_version, &binding)?;
    let object_links = link_payload(request)?.unwrap_or_default();
    let reg = Registration {
        id: ids.next(),
        endpoint,
        address: peer,
        lifetime_s,
        lwm2m_version: lwm2m_version.as_str().to_string(),
        binding,
        sms_number,
        queue_mode,
        object_links,
        additional_attributes,
        registration_date: now,
        last_update: now,
        secure,
    };
    store.add(reg.clone());
    let mut resp = response(ResponseType::Created);
    resp.add_option(CoapOption::LocationPath, b"rd".to_vec());
    resp.add_option(CoapOption::LocationPath, reg.id.as_bytes().to_vec());
    Ok((resp, ServerEvent::Registration(reg)))
}

fn update(
    store: &dyn RegistrationStore,
    id: &str,
    request: &Packet,
    peer: SocketAddr,
    now: SystemTime,
) -> Result<(Packet, ServerEvent), Packet> {
    let mut upd = RegistrationUpdate {
        address: Some(peer),
        at: Some(now),
        ..Default::default()
    };
    let version = store
        .get_by_id(id)
        .and_then(|r| LwM2mVersion::parse(&r.lwm2m_version))
        .unwrap_or(LwM2mVersion::V1_0);
    for (k, v) in uri_query(request) {
        match k.as_str() {
            "lt" => upd.lifetime_s = Some(parse_lifetime(v)?),
            "b" => {
                let b = v.unwrap_or_default();
                let queue = check_binding(version, &b)?;
                // 1.0 says queue mode only in the binding; 1.1 only turns it on there.
                upd.queue_mode = (version == LwM2mVersion::V1_0 || queue).then_some(queue);
                upd.binding = Some(b);
            }
            "sms" => upd.sms_number = v,
            _ => {
                upd.additional_attributes.insert(k, v.unwrap_or_default());
            }
        }
    }
    upd.object_links = link_payload(request)?;
    let (_, after) = store
        .update(id, &upd)
        .ok_or_else(|| response(ResponseType::NotFound))?;
    Ok((
        response(ResponseType::Changed),
        ServerEvent::Updated {
            registration: after,
            update: upd,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::registration::store::InMemoryStore;
    use coap_lite::RequestType as M;

    fn req(method: M, path: &[&str], query: &[&str], payload: &str) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(method);
        for s in path {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.payload = payload.as_bytes().to_vec();
        p
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().expect("literal")
    }

    #[test]
    fn register_update_deregister_round_trip() {
        let store = InMemoryStore::new();
        let ids = RegistrationIds::default();
        let t = SystemTime::UNIX_EPOCH;
        let (resp, ev) = handle(
            &store,
            &ids,
            &req(
                M::Post,
                &["rd"],
                &["ep=dev1", "lt=60", "lwm2m=1.1", "b=U", "Q"],
                "</3/0>,</5/0>",
            ),
            peer(),
            true,
            t,
        );
        assert_eq!(
            resp.header.code,
            MessageClass::Response(ResponseType::Created)
        );
        let loc: Vec<_> = resp
            .get_option(CoapOption::LocationPath)
            .expect("location")
            .iter()
            .cloned()
            .collect();
        assert_eq!(loc.len(), 2);
        assert_eq!(loc[0], b"rd");
        let id = String::from_utf8(loc[1].clone()).expect("utf8");
        // Update and Deregister go to the location the Register answered.
        let send = |method, query: &[&str]| {
            handle(
                &store,
                &ids,
                &req(method, &["rd", &id], query, ""),
                peer(),
                false,
                t,
            )
        };
        assert!(
            matches!(ev, Some(ServerEvent::Registration(ref r)) if r.endpoint == "dev1" && r.queue_mode && r.lifetime_s == 60 && r.secure)
        );
        let (resp, ev) = send(M::Post, &["lt=120"]);
        assert_eq!(
            resp.header.code,
            MessageClass::Response(ResponseType::Changed)
        );
        assert!(
            matches!(ev, Some(ServerEvent::Updated { ref registration, .. }) if registration.lifetime_s == 120 && registration.object_links == "</3/0>,</5/0>")
        );
        let (resp, ev) = send(M::Delete, &[]);
        assert_eq!(
            resp.header.code,
            MessageClass::Response(ResponseType::Deleted)
        );
        assert!(matches!(ev, Some(ServerEvent::Deregistration(_))));
        let (resp, _) = send(M::Delete, &[]);
        assert_eq!(
            resp.header.code,
            MessageClass::Response(ResponseType::NotFound)
        );
    }

    #[test]
    fn register_rejects_missing_endpoint_and_bad_lifetime() {
        let store = InMemoryStore::new();
        let ids = RegistrationIds::default();
        let t = SystemTime::UNIX_EPOCH;
        for q in [
            &["lt=60"][..],
            &["ep=x", "lt=abc"][..],
            &["ep=x", "lt=0"][..],
            &["ep="][..],
        ] {
            let (resp, ev) = handle(
                &store,
                &ids,
                &req(M::Post, &["rd"], q, ""),
                peer(),
                false,
                t,
            );
            assert_eq!(
                resp.header.code,
                MessageClass::Response(ResponseType::BadRequest),
                "{q:?}"
            );
            assert!(ev.is_none());
        }
        assert!(store.all().is_empty());
    }

    #[test]
    fn random_packets_never_panic_the_handler() {
        let store = InMemoryStore::new();
        let ids = RegistrationIds::default();
        let words: [&[u8]; 8] = [
            b"rd",
            b"ep=a",
            b"lt=",
            b"lt=99999999999",
            b"Q",
            b"\xff\xfe",
            b"",
            b"b=UQ",
        ];
        for p in crate::coap::message::random_packets(20_000, &words) {
            let _ = handle(&store, &ids, &p, peer(), false, SystemTime::UNIX_EPOCH);
        }
    }

    #[test]
    fn ids_are_unique() {
        let ids = RegistrationIds::default();
        let a: std::collections::HashSet<_> = (0..1000).map(|_| ids.next()).collect();
        assert_eq!(a.len(), 1000);
    }
}
