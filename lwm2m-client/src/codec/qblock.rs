//! The Q-Block2 option of RFC 9177 and what a request's Q-Block2 options ask a server to send,
//! shared by the device's windowed pull and the shim's package host.
//!
//! Q-Block2 (option 31; Q-Block1 is 19, RFC 9177 §3 Table 1) carries the same NUM/M/SZX value
//! as Block2 ([`BlockOpt`]) but is repeatable, so one request can ask for several missing
//! blocks. In a request (§4.4) the M bit picks between "this block only" and a run of blocks:
//! NUM 0 with M set is the whole body, a NUM at a MAX_PAYLOADS boundary with M set is
//! "Continue" (the set starting there), any other NUM with M set is the rest of its set.

use alloc::vec::Vec;
use core::ops::Range;

use coap_lite::{CoapOption, Packet};

use super::{BlockOpt, CodecError};

/// Option number of Q-Block1 (RFC 9177 §3, Table 1).
pub const Q_BLOCK1: u16 = 19;
/// Option number of Q-Block2 (RFC 9177 §3, Table 1).
pub const Q_BLOCK2: u16 = 31;

/// MAX_PAYLOADS default: blocks sent back to back before the sender waits (RFC 9177 §7.2).
pub const MAX_PAYLOADS: u32 = 10;
/// NON_TIMEOUT default in ms: the sender's wait after a set before sending the next one
/// unasked (RFC 9177 §7.2; ACK_TIMEOUT's default).
pub const NON_TIMEOUT_MS: u64 = 2000;
/// NON_RECEIVE_TIMEOUT default in ms (2 * NON_TIMEOUT): the receiver's wait for a missing
/// payload before asking for it again, doubled per retry (RFC 9177 §7.2).
pub const NON_RECEIVE_TIMEOUT_MS: u64 = 4000;
/// NON_MAX_RETRANSMIT default: how often a receiver asks again without getting anything new.
pub const NON_MAX_RETRANSMIT: u8 = 4;
/// NON_PARTIAL_TIMEOUT default in ms (EXCHANGE_LIFETIME): how long a partly received body is
/// kept without progress (RFC 9177 §7.2).
pub const NON_PARTIAL_TIMEOUT_MS: u64 = 247_000;

/// The coap-lite option of Q-Block2.
pub const fn q_block2() -> CoapOption {
    CoapOption::Unknown(Q_BLOCK2)
}

/// First block number of the MAX_PAYLOADS set holding `num`.
pub fn set_start(num: u32, max_payloads: u32) -> u32 {
    let mp = max_payloads.max(1);
    num / mp * mp
}

/// One past the last block number of the MAX_PAYLOADS set holding `num`.
pub fn set_end(num: u32, max_payloads: u32) -> u32 {
    set_start(num, max_payloads).saturating_add(max_payloads.max(1))
}

/// What one Q-Block2 option of a request asks for (RFC 9177 §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// M unset: only this block.
    Block(u32),
    /// NUM 0, M set: the whole body, one MAX_PAYLOADS set at a time.
    Body,
    /// NUM at a set boundary (not 0), M set: the previous set arrived, send the set from NUM.
    Continue(u32),
    /// Any other NUM with M set: this block and the rest of its set.
    RestOfSet(u32),
}

impl Ask {
    /// Reads a request's option value.
    pub fn of(opt: BlockOpt, max_payloads: u32) -> Self {
        match (opt.more, opt.num) {
            (false, n) => Self::Block(n),
            (true, 0) => Self::Body,
            (true, n) if n % max_payloads.max(1) == 0 => Self::Continue(n),
            (true, n) => Self::RestOfSet(n),
        }
    }

    /// The option value that asks this, with blocks of size exponent `szx`.
    pub fn option(self, szx: u8) -> Result<BlockOpt, CodecError> {
        match self {
            Self::Block(n) => BlockOpt::new(n, false, szx),
            Self::Body => BlockOpt::new(0, true, szx),
            Self::Continue(n) | Self::RestOfSet(n) => BlockOpt::new(n, true, szx),
        }
    }

    /// The block numbers asked for now, clipped to a body of `total_blocks` blocks: at most
    /// one MAX_PAYLOADS set (the whole body too starts with its first set).
    pub fn blocks(self, max_payloads: u32, total_blocks: u32) -> Range<u32> {
        let range = match self {
            Self::Block(n) => n..n.saturating_add(1),
            Self::Body => 0..max_payloads.max(1),
            Self::Continue(n) | Self::RestOfSet(n) => n..set_end(n, max_payloads),
        };
        range.start.min(total_blocks)..range.end.min(total_blocks)
    }
}

/// Every Q-Block2 value of `p`, decoded in order; a malformed one (longer than 3 bytes, or
/// the reserved SZX 7) fails the whole message.
pub fn q_block2_options(p: &Packet) -> Result<Vec<BlockOpt>, CodecError> {
    p.get_option(q_block2())
        .map(|values| values.iter().map(|v| BlockOpt::decode(v)).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(num: u32, more: bool) -> BlockOpt {
        BlockOpt::new(num, more, 6).unwrap()
    }

    #[test]
    fn request_values_read_as_rfc_9177_section_4_4_says() {
        assert_eq!(Ask::of(opt(0, true), 10), Ask::Body);
        assert_eq!(Ask::of(opt(20, true), 10), Ask::Continue(20));
        assert_eq!(Ask::of(opt(23, true), 10), Ask::RestOfSet(23));
        assert_eq!(Ask::of(opt(23, false), 10), Ask::Block(23));
        assert_eq!(Ask::of(opt(0, false), 10), Ask::Block(0));
        assert_eq!(Ask::Body.blocks(10, 256), 0..10);
        assert_eq!(Ask::Continue(250).blocks(10, 256), 250..256);
        assert_eq!(Ask::RestOfSet(23).blocks(10, 256), 23..30);
        assert_eq!(Ask::Block(300).blocks(10, 256), 256..256);
        for ask in [
            Ask::Body,
            Ask::Continue(30),
            Ask::RestOfSet(31),
            Ask::Block(7),
        ] {
            assert_eq!(Ask::of(ask.option(6).unwrap(), 10), ask);
        }
    }

    #[test]
    fn options_are_repeatable_and_malformed_ones_fail() {
        let mut p = Packet::new();
        assert_eq!(q_block2_options(&p), Ok(Vec::new()));
        p.add_option(q_block2(), opt(3, false).encode());
        p.add_option(q_block2(), opt(5, false).encode());
        assert_eq!(
            q_block2_options(&p),
            Ok(alloc::vec![opt(3, false), opt(5, false)])
        );
        p.add_option(q_block2(), alloc::vec![0, 0, 0, 0x36]);
        assert!(q_block2_options(&p).is_err());
        let mut p = Packet::new();
        p.add_option(q_block2(), alloc::vec![0x07]);
        assert!(q_block2_options(&p).is_err());
        assert_eq!((set_start(27, 10), set_end(27, 10)), (20, 30));
    }
}
