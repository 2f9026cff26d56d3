//! Helpers shared by the engine tests of several operations.

use coap_lite::{MessageClass, ResponseType};
use lwm2m_client::codec;
use lwm2m_client::Event;

use crate::common::*;

/// The message class of response code `c`.
pub fn resp(c: ResponseType) -> MessageClass {
    MessageClass::Response(c)
}

/// A one-resource object whose work is slow (a flash erase): every Execute and the first
/// block of a Block1 write complete later, so the engine must ACK first. Which of the two a
/// test reaches is chosen by the resource's `Ops` in `model`.
pub struct Deferring {
    pub id: u16,
    pub model: &'static [lwm2m_client::ResourceDef],
}

impl lwm2m_client::ObjectHandler for Deferring {
    fn id(&self) -> u16 {
        self.id
    }
    fn model(&self) -> &'static [lwm2m_client::ResourceDef] {
        self.model
    }
    fn instances(&self) -> Vec<u16> {
        vec![0]
    }
    fn read(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
    ) -> Result<codec::ResourceValue, lwm2m_client::OpError> {
        Err(lwm2m_client::OpError::NotFound)
    }
    fn execute(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
        _: &[u8],
    ) -> Result<lwm2m_client::Completion, lwm2m_client::OpError> {
        Ok(lwm2m_client::Completion::Deferred)
    }
    fn write_block(
        &mut self,
        _: u64,
        _: u16,
        _: u16,
        c: &lwm2m_client::BlockChunk<'_>,
    ) -> Result<lwm2m_client::Completion, lwm2m_client::OpError> {
        Ok(if c.offset == 0 {
            lwm2m_client::Completion::Deferred
        } else {
            lwm2m_client::Completion::Done
        })
    }
}

/// The id of the deferred operation the engine reported since the last poll.
pub fn deferred_id(e: &mut lwm2m_client::Engine<u8>) -> lwm2m_client::DeferredId {
    events(e)
        .iter()
        .find_map(|x| match x {
            Event::Deferred { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a Deferred event")
}
