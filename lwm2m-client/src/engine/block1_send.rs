//! Block-wise Register and Update (RFC 7959): a server that finds the link-format payload too
//! large answers 4.13 with a Block1 option giving the block size it accepts (section 2.9.3).
//! The same request then goes out again in blocks of that size, each a confirmable request
//! with Block1 (M set on all but the last, Size1 on the first), the server answering 2.31
//! Continue per block and 2.01 / 2.04 to the last. A 2.31 with a smaller size switches to it
//! for the rest (section 2.5); a 4.13 during a transfer restarts it only at a smaller size, so
//! the retries end.

use super::{Engine, Purpose};
use crate::coap;
use crate::codec::BlockOpt;
use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};

/// A registration request being sent block-wise.
#[derive(Debug)]
pub(crate) struct Block1Tx {
    /// Size exponent of the blocks (RFC 7959 section 2.2).
    szx: u8,
    /// Offset of the block in flight.
    offset: usize,
    /// Bytes in the block in flight.
    len: usize,
}

impl<P: Clone + PartialEq> Engine<P> {
    /// Takes the answer to a Register or Update that concerns block-wise transfer: a 4.13 with
    /// Block1 starts (or restarts smaller) the transfer, a 2.31 sends the next block. True
    /// when the answer was consumed; any other answer ends the transfer and is handled as
    /// a whole request's answer.
    pub(crate) fn registration_block1(
        &mut self,
        now: u64,
        purpose: &Purpose,
        resp: &Packet,
    ) -> bool {
        let block = resp
            .get_first_option(CoapOption::Block1)
            .and_then(|v| BlockOpt::decode(v).ok());
        let running = self.reg.block1_tx.take();
        let next = match (resp.header.code, block, running) {
            (MessageClass::Response(ResponseType::RequestEntityTooLarge), Some(b), running)
                if running.as_ref().is_none_or(|tx| b.szx < tx.szx) =>
            {
                Block1Tx {
                    szx: b.szx.min(self.config.max_block_szx),
                    offset: 0,
                    len: 0,
                }
            }
            (MessageClass::Response(ResponseType::Continue), Some(b), Some(tx)) => Block1Tx {
                szx: b.szx.min(tx.szx),
                offset: tx.offset + tx.len,
                len: 0,
            },
            _ => return false,
        };
        self.send_registration_block(now, purpose, next)
    }

    /// Sends the block of the last Register / Update payload starting at `tx.offset`; false
    /// (nothing sent) when there is no such block.
    fn send_registration_block(&mut self, now: u64, purpose: &Purpose, mut tx: Block1Tx) -> bool {
        let Some(whole) = self.reg.last_request.as_ref() else {
            return false;
        };
        let size = 1usize << (tx.szx + 4);
        let total = whole.payload.len();
        let Some(rest) = whole.payload.get(tx.offset..).filter(|r| !r.is_empty()) else {
            return false;
        };
        let Ok(num) = u32::try_from(tx.offset >> (tx.szx + 4)) else {
            return false;
        };
        tx.len = rest.len().min(size);
        let more = tx.len < rest.len();
        let Ok(block) = BlockOpt::new(num, more, tx.szx) else {
            return false;
        };
        let mut p = whole.clone();
        p.payload = rest.get(..tx.len).map(<[u8]>::to_vec).unwrap_or_default();
        p.header.message_id = self.mid();
        p.set_token(self.token());
        p.add_option(CoapOption::Block1, block.encode());
        if num == 0 {
            coap::set_uint(
                &mut p,
                CoapOption::Size1,
                u32::try_from(total).unwrap_or(u32::MAX),
            );
        }
        self.reg.block1_tx = Some(tx);
        let server = self.server.clone();
        self.send_confirmable(now, server, p, purpose.clone());
        true
    }
}
