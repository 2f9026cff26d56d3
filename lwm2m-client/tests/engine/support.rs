//! Helpers shared by the engine tests of several operations.

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_client::codec::ResourceValue;
use lwm2m_client::{BlockChunk, Completion, DeferredId, Engine, Event};
use lwm2m_client::{ObjectHandler, OpError, ResourceDef};

use crate::common::*;

/// The message class of response code `c`.
pub fn resp(c: ResponseType) -> MessageClass {
    MessageClass::Response(c)
}

/// A Write-Attributes request (OMA TS Core 1.1 section 5.4.4): PUT of `path` without payload,
/// each of `attributes` (`pmin=2`) a Uri-Query option.
pub fn write_attributes(mid: u16, path: &str, attributes: &[&str]) -> Packet {
    let mut w = request(RequestType::Put, mid, b"a", path);
    for a in attributes {
        w.add_option(CoapOption::UriQuery, a.as_bytes().to_vec());
    }
    w
}

/// A one-resource object whose work is slow (a flash erase): every Execute and the first
/// block of a Block1 write complete later, so the engine must ACK first. Which of the two a
/// test reaches is chosen by the resource's `Ops` in `model`.
pub struct Deferring {
    pub id: u16,
    pub model: &'static [ResourceDef],
}

impl ObjectHandler for Deferring {
    fn id(&self) -> u16 {
        self.id
    }
    fn model(&self) -> &'static [ResourceDef] {
        self.model
    }
    fn instances(&self) -> Vec<u16> {
        vec![0]
    }
    fn read(&mut self, _: u64, _: u16, _: u16) -> Result<ResourceValue, OpError> {
        Err(OpError::NotFound)
    }
    fn execute(&mut self, _: u64, _: u16, _: u16, _: &[u8]) -> Result<Completion, OpError> {
        Ok(Completion::Deferred)
    }
    fn write_block(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
        c: &BlockChunk,
    ) -> Result<Completion, OpError> {
        Ok(if c.offset == 0 {
            Completion::Deferred
        } else {
            Completion::Done
        })
    }
}

/// The id of the deferred operation the engine reported since the last poll.
pub fn deferred_id(e: &mut Engine<u8>) -> DeferredId {
    events(e)
        .iter()
        .find_map(|x| match x {
            Event::Deferred { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a Deferred event")
}
