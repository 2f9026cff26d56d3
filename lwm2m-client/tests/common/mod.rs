//! A scripted LwM2M server for driving the engine with fake time.
#![allow(dead_code)]

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::{ResourceType, ResourceValue, Value};
use lwm2m_client::objects::{Device, DeviceInfo, DiscardBackend, FirmwareUpdate, Security, Server};
use lwm2m_client::{Config, Engine, ObjectHandler, OpError, Ops, ResourceDef};

pub mod net;

pub const SERVER: u8 = 1;

/// Object 33000 whose one read-only opaque resource /33000/0/0 is `len` bytes, byte `i` being
/// `pattern(i)`: in 16-byte blocks more than 4096 of them, for Block2 reads past block 4096
/// (RFC 7959 section 2.2: block numbers up to 2^20 - 1).
pub struct BigOpaque {
    pub len: usize,
    pub pattern: fn(usize) -> u8,
}

impl ObjectHandler for BigOpaque {
    fn id(&self) -> u16 {
        33000
    }
    fn model(&self) -> &'static [ResourceDef] {
        const M: &[ResourceDef] = &[ResourceDef::new(0, Ops::R, false, ResourceType::Opaque)];
        M
    }
    fn instances(&self) -> Vec<u16> {
        vec![0]
    }
    fn read(&mut self, _: u64, _: u16, _: u16) -> Result<ResourceValue, OpError> {
        let bytes = (0..self.len).map(self.pattern).collect();
        Ok(ResourceValue::Single(Value::Opaque(bytes)))
    }
}

/// The Register `ct` as a strict LwM2M server reads it (OMA TS Core 1.1 section 6.2.1,
/// `</>;rt="oma.lwm2m";ct=11543`): the `</>` link carries exactly one `ct`, an unquoted
/// integer. A quoted or space-separated list is an error (such servers answer 4.00).
pub fn strict_ct(payload: &str) -> Result<u16, String> {
    let root = payload
        .split(',')
        .find(|l| l.starts_with("</>"))
        .ok_or("no </> link")?;
    let cts: Vec<&str> = root
        .split(';')
        .filter_map(|p| p.strip_prefix("ct="))
        .collect();
    let [ct] = cts[..] else {
        return Err(format!("{} ct parameters in {root:?}", cts.len()));
    };
    if ct.is_empty() || !ct.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("ct {ct:?} is not one unquoted integer"));
    }
    ct.parse().map_err(|e| format!("ct {ct:?}: {e}"))
}

pub fn device_info() -> DeviceInfo {
    DeviceInfo {
        manufacturer: "Acme".into(),
        model: "Sim-1".into(),
        serial: "SN-0001".into(),
        firmware_version: "1.0.0".into(),
    }
}

pub fn objects() -> Vec<Box<dyn ObjectHandler>> {
    vec![
        Box::new(Security::no_sec("coap://127.0.0.1:5683")),
        Box::new(Server::new(300)),
        Box::new(Device::new(device_info())),
        Box::new(FirmwareUpdate::new(DiscardBackend::default())),
    ]
}

pub fn engine() -> Engine<u8> {
    engine_with(objects())
}

/// An engine for endpoint `ep1` with its own set of objects (a stand-in for one of them).
pub fn engine_with(objects: Vec<Box<dyn ObjectHandler>>) -> Engine<u8> {
    Engine::new(Config::new("ep1"), SERVER, objects)
}

/// Drains transmissions as parsed packets.
pub fn sent(e: &mut Engine<u8>) -> Vec<(u8, Packet)> {
    let mut out = Vec::new();
    while let Some(t) = e.poll_transmit() {
        out.push((
            t.peer,
            Packet::from_bytes(&t.data).expect("engine sends valid CoAP"),
        ));
    }
    out
}

pub fn one(e: &mut Engine<u8>) -> Packet {
    let mut s = sent(e);
    assert_eq!(s.len(), 1, "expected exactly one datagram, got {:?}", s);
    s.remove(0).1
}

pub fn events(e: &mut Engine<u8>) -> Vec<lwm2m_client::Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

pub fn code(p: &Packet) -> MessageClass {
    p.header.code
}

pub fn uint(p: &Packet, o: CoapOption) -> Option<u32> {
    p.get_first_option(o)
        .map(|v| v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

/// The values of option `o` in order, e.g. the Uri-Path segments; panics if it is absent.
pub fn option_values(p: &Packet, o: CoapOption) -> Vec<Vec<u8>> {
    p.get_option(o)
        .expect("option present")
        .iter()
        .cloned()
        .collect()
}

/// The Uri-Query parameters (`ep=...`, `lt=...`) as text; panics if there are none.
pub fn queries(p: &Packet) -> Vec<String> {
    option_values(p, CoapOption::UriQuery)
        .into_iter()
        .map(|v| String::from_utf8(v).expect("UTF-8 query"))
        .collect()
}

/// A request from the server.
pub fn request(method: RequestType, mid: u16, token: &[u8], path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

/// A request carrying `payload` in content format `cf` (Write, Bootstrap-Write, Block1 PUT).
pub fn request_with(
    method: RequestType,
    mid: u16,
    token: &[u8],
    path: &str,
    cf: u32,
    payload: &[u8],
) -> Packet {
    let mut p = with_uint(
        request(method, mid, token, path),
        CoapOption::ContentFormat,
        cf,
    );
    p.payload = payload.to_vec();
    p
}

/// A GET carrying one uint option: Accept, Observe or Block2.
pub fn get_with(mid: u16, token: &[u8], path: &str, o: CoapOption, v: u32) -> Packet {
    with_uint(request(RequestType::Get, mid, token, path), o, v)
}

pub fn with_uint(mut p: Packet, o: CoapOption, v: u32) -> Packet {
    p.add_option(o, uint_option(v));
    p
}

pub fn bytes(p: &Packet) -> Vec<u8> {
    p.to_bytes_unlimited().unwrap()
}

/// Answers `req` (an engine request) with a piggybacked response.
pub fn ack(req: &Packet, code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Response(code);
    p.header.message_id = req.header.message_id;
    p.set_token(req.get_token().to_vec());
    p
}

/// An empty ACK (`MessageType::Acknowledgement`) or RST (`MessageType::Reset`) to `req`:
/// how the server confirms or refuses a confirmable notification or separate response.
pub fn empty(req: &Packet, t: MessageType) -> Packet {
    let mut p = ack(req, ResponseType::Content);
    p.header.set_type(t);
    p.header.code = MessageClass::Empty;
    p.set_token(vec![]);
    p
}

/// Starts the engine and completes registration at time 0; returns the engine.
pub fn registered() -> Engine<u8> {
    let mut e = engine();
    e.start(0);
    accept_register(&mut e, 10);
    e
}

/// Answers the Register the engine just sent with 2.01 Created, location `rd/abc`, at `now`.
pub fn accept_register(e: &mut Engine<u8>, now: u64) {
    let reg = one(e);
    let mut resp = ack(&reg, ResponseType::Created);
    resp.add_option(CoapOption::LocationPath, b"rd".to_vec());
    resp.add_option(CoapOption::LocationPath, b"abc".to_vec());
    e.handle_datagram(now, SERVER, &bytes(&resp));
    assert!(events(e).contains(&lwm2m_client::Event::Registered {
        location: "rd/abc".into()
    }));
}

/// Sends a request and returns the single reply.
pub fn call(e: &mut Engine<u8>, now: u64, req: &Packet) -> Packet {
    e.handle_datagram(now, SERVER, &bytes(req));
    one(e)
}
