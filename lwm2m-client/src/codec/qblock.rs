//! The Q-Block1 and Q-Block2 options of RFC 9177, what a request's Q-Block2 options ask a
//! server to send, and the list of missing blocks a 4.08 carries: shared by the device's
//! windowed pull and Q-Block1 push receiver and by the shim's package host and pusher.
//!
//! Q-Block2 (option 31; Q-Block1 is 19, RFC 9177 §3 Table 1) carries the same NUM/M/SZX value
//! as Block2 ([`BlockOpt`]) but is repeatable, so one request can ask for several missing
//! blocks. In a request (§4.4) the M bit picks between "this block only" and a run of blocks:
//! NUM 0 with M set is the whole body, a NUM at a MAX_PAYLOADS boundary with M set is
//! "Continue" (the set starting there), any other NUM with M set is the rest of its set.

use alloc::vec::Vec;
use core::ops::Range;

use coap_lite::{CoapOption, Packet};

use super::block::MAX_NUM;
use super::{BlockOpt, CodecError};

/// Option number of Q-Block1 (RFC 9177 §3, Table 1).
pub const Q_BLOCK1: u16 = 19;
/// Option number of Q-Block2 (RFC 9177 §3, Table 1).
pub const Q_BLOCK2: u16 = 31;

/// Option number of Request-Tag (RFC 9175 §3.2): names the body a Q-Block1 block belongs to
/// (RFC 9177 §4.3); elective, repeatable, 0 to 8 bytes.
pub const REQUEST_TAG: u16 = 292;
/// Longest Request-Tag value (RFC 9175 §3.2).
pub const REQUEST_TAG_MAX_LEN: usize = 8;
/// Content-Format of `application/missing-blocks+cbor-seq` (RFC 9177 §12.3): the payload of
/// a 4.08 that lists the blocks a Q-Block1 receiver still needs (§5).
pub const MISSING_BLOCKS_CBOR_SEQ: u16 = 272;

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

/// The coap-lite option of Q-Block1.
pub const fn q_block1() -> CoapOption {
    CoapOption::Unknown(Q_BLOCK1)
}

/// The coap-lite option of Request-Tag.
pub const fn request_tag() -> CoapOption {
    CoapOption::Unknown(REQUEST_TAG)
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

/// The Q-Block1 option of a request, `None` without one. A request carries one block, so a
/// repeated option is as malformed as a value longer than 3 bytes or the reserved SZX 7.
pub fn q_block1_option(p: &Packet) -> Result<Option<BlockOpt>, CodecError> {
    match p.get_option(q_block1()) {
        None => Ok(None),
        Some(values) if values.len() > 1 => Err(CodecError::Malformed("repeated Q-Block1")),
        Some(values) => values.front().map(|v| BlockOpt::decode(v)).transpose(),
    }
}

/// The Request-Tag of a request: its values joined (the option is repeatable, RFC 9175
/// §3.2), empty without one; a value longer than 8 bytes is malformed.
pub fn request_tag_of(p: &Packet) -> Result<Vec<u8>, CodecError> {
    let mut tag = Vec::new();
    for v in p.get_option(request_tag()).into_iter().flatten() {
        if v.len() > REQUEST_TAG_MAX_LEN {
            return Err(CodecError::Malformed("Request-Tag longer than 8 bytes"));
        }
        tag.push(u8::try_from(v.len()).unwrap_or(u8::MAX));
        tag.extend_from_slice(v);
    }
    Ok(tag)
}

/// Appends block numbers as a CBOR Sequence of unsigned integers, the payload of
/// `application/missing-blocks+cbor-seq` (RFC 9177 §5, RFC 8742).
pub fn encode_missing(nums: impl IntoIterator<Item = u32>, out: &mut Vec<u8>) {
    for n in nums {
        // Preferred (shortest) encoding of major type 0 (RFC 8949 §3.1, §4.2.1).
        match n {
            0..=23 => out.push(n as u8),
            24..=0xff => out.extend_from_slice(&[0x18, n as u8]),
            0x100..=0xffff => {
                out.push(0x19);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(0x1a);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
}

/// Reads a missing-blocks CBOR Sequence (RFC 9177 §5): unsigned integers that are block
/// numbers (at most 2^20 - 1), at most `limit` of them; anything else fails the whole list.
pub fn decode_missing(mut bytes: &[u8], limit: usize) -> Result<Vec<u32>, CodecError> {
    let mut nums = Vec::new();
    while let Some((&head, rest)) = bytes.split_first() {
        if nums.len() >= limit {
            return Err(CodecError::Malformed("more missing blocks than asked for"));
        }
        let (len, value) = match head {
            0..=23 => (0, u64::from(head)),
            0x18..=0x1b => {
                let len = 1usize << (head - 0x18);
                let raw = rest.get(..len).ok_or(CodecError::Truncated)?;
                (len, raw.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)))
            }
            _ => {
                return Err(CodecError::Malformed(
                    "missing block is not an unsigned integer",
                ))
            }
        };
        let num = u32::try_from(value)
            .ok()
            .filter(|n| *n <= MAX_NUM)
            .ok_or(CodecError::BadValue("block number beyond 2^20 - 1"))?;
        nums.push(num);
        bytes = rest.get(len..).unwrap_or_default();
    }
    Ok(nums)
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

    #[test]
    fn one_q_block1_per_request_and_request_tags_of_at_most_8_bytes() {
        let mut p = Packet::new();
        assert_eq!(q_block1_option(&p), Ok(None));
        assert_eq!(request_tag_of(&p), Ok(Vec::new()));
        p.add_option(q_block1(), opt(4, true).encode());
        p.add_option(request_tag(), alloc::vec![1, 2]);
        assert_eq!(q_block1_option(&p), Ok(Some(opt(4, true))));
        assert_eq!(request_tag_of(&p), Ok(alloc::vec![2, 1, 2]));
        p.add_option(q_block1(), opt(5, true).encode());
        assert!(q_block1_option(&p).is_err());
        let mut p = Packet::new();
        p.add_option(request_tag(), alloc::vec![0; 9]);
        assert!(request_tag_of(&p).is_err());
    }

    #[test]
    fn missing_block_lists_round_trip_as_cbor_sequences() {
        let nums = [0, 23, 24, 255, 256, 65_535, 65_536, MAX_NUM];
        let mut out = Vec::new();
        encode_missing(nums, &mut out);
        assert_eq!(out.get(..4), Some(&[0x00, 0x17, 0x18, 0x18][..]));
        assert_eq!(decode_missing(&out, 8), Ok(nums.to_vec()));
        assert!(decode_missing(&out, 7).is_err());
        // Truncated, not an unsigned integer, beyond 2^20 - 1.
        assert_eq!(decode_missing(&[0x19, 0x01], 8), Err(CodecError::Truncated));
        assert!(decode_missing(&[0x20], 8).is_err());
        assert!(decode_missing(&[0x1a, 0, 0x10, 0, 0], 8).is_err());
        assert!(decode_missing(&[0x1b, 0, 0, 0, 1, 0, 0, 0, 0], 8).is_err());
        assert_eq!(decode_missing(&[], 8), Ok(Vec::new()));
    }
}
