//! Multiple-instance resources: Write replaces all instances (PUT /o/i/r), a partial update
//! adds or replaces only the given ones (POST /o/i/r), a resource instance reads alone.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::{Resource, ResourceType, ResourceValue, Value};
use lwm2m_client::{Completion, Config, Engine, ObjectHandler, OpError, Ops, ResourceDef};

/// An object with one writable multiple string resource.
#[derive(Default)]
struct Tags(Vec<(u16, Value)>);

impl ObjectHandler for Tags {
    fn id(&self) -> u16 {
        33010
    }
    fn model(&self) -> &'static [ResourceDef] {
        const M: &[ResourceDef] = &[ResourceDef::new(0, Ops::RW, true, ResourceType::String)];
        M
    }
    fn instances(&self) -> Vec<u16> {
        vec![0]
    }
    fn read(&mut self, _: u64, _: u16, _: u16) -> Result<ResourceValue, OpError> {
        Ok(ResourceValue::Multiple(self.0.clone()))
    }
    fn write(&mut self, _: u64, _: u16, r: &Resource) -> Result<Completion, OpError> {
        match &r.value {
            ResourceValue::Multiple(items) => self.0 = items.clone(),
            ResourceValue::Single(_) => return Err(OpError::BadRequest),
        }
        Ok(Completion::Done)
    }
}

fn req(method: RequestType, mid: u16, path: &str, cf: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(vec![1]);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    if let Some(cf) = cf {
        p.add_option(CoapOption::ContentFormat, uint_option(cf));
    }
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

fn call(e: &mut Engine<u8>, data: &[u8]) -> Packet {
    e.handle_datagram(1, 1, data);
    let t = e.poll_transmit().expect("an answer");
    Packet::from_bytes(&t.data).unwrap()
}

#[test]
fn replace_then_partial_update_then_read_one_instance() {
    let mut e = Engine::new(
        Config::new("ep"),
        1u8,
        vec![Box::new(Tags::default()) as Box<dyn ObjectHandler>],
    );
    let put = req(
        RequestType::Put,
        1,
        "/33010/0/0",
        Some(110),
        br#"[{"bn":"/33010/0/0/","n":"0","vs":"a"},{"n":"1","vs":"b"}]"#,
    );
    assert_eq!(
        call(&mut e, &put).header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    let post = req(
        RequestType::Post,
        2,
        "/33010/0/0",
        Some(110),
        br#"[{"bn":"/33010/0/0/","n":"1","vs":"B"},{"n":"5","vs":"e"}]"#,
    );
    assert_eq!(
        call(&mut e, &post).header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    let mut get = Packet::from_bytes(&req(RequestType::Get, 3, "/33010/0/0", None, &[])).unwrap();
    get.add_option(CoapOption::Accept, uint_option(110));
    let r = call(&mut e, &get.to_bytes().unwrap());
    assert_eq!(
        std::str::from_utf8(&r.payload).unwrap(),
        r#"[{"bn":"/33010/0/0/","n":"0","vs":"a"},{"n":"1","vs":"B"},{"n":"5","vs":"e"}]"#
    );
    let r = call(&mut e, &req(RequestType::Get, 4, "/33010/0/0/5", None, &[]));
    assert_eq!(r.payload, b"e");
    // PUT replaces every instance.
    let put = req(
        RequestType::Put,
        5,
        "/33010/0/0",
        Some(110),
        br#"[{"n":"/33010/0/0/7","vs":"z"}]"#,
    );
    assert_eq!(
        call(&mut e, &put).header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    assert_eq!(
        call(&mut e, &req(RequestType::Get, 6, "/33010/0/0/0", None, &[]))
            .header
            .code,
        MessageClass::Response(ResponseType::NotFound)
    );
}
