//! The Block1/Block2 option value of RFC 7959 section 2.2, with the full 20-bit NUM.
//!
//! coap-lite's `BlockValue` keeps NUM in a `u16`, which silently truncates block numbers of
//! 4096 and above and so caps a transfer at 4 MiB; this codec is the one the engine uses.

use super::CodecError;
use alloc::vec::Vec;

/// Largest block number a 3-byte option can carry (2^20 - 1).
pub const MAX_NUM: u32 = (1 << 20) - 1;

/// One Block1 or Block2 option: block number, more flag and size exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOpt {
    /// Block number (0..=2^20-1).
    pub num: u32,
    /// More blocks follow (M bit).
    pub more: bool,
    /// Size exponent: the block holds 2^(szx+4) bytes (0..=6).
    pub szx: u8,
}

impl BlockOpt {
    /// Builds an option, rejecting a NUM above 20 bits or a reserved SZX (7).
    pub fn new(num: u32, more: bool, szx: u8) -> Result<Self, CodecError> {
        if num > MAX_NUM {
            return Err(CodecError::BadValue("block NUM above 2^20-1"));
        }
        if szx > 6 {
            return Err(CodecError::BadValue("reserved block SZX 7"));
        }
        Ok(Self { num, more, szx })
    }

    /// Block size in bytes (16..=1024).
    pub const fn size(self) -> usize {
        1usize << (self.szx as u32 + 4)
    }

    /// Byte offset of this block in the whole body (NUM * size).
    pub const fn offset(self) -> u64 {
        (self.num as u64) << (self.szx as u32 + 4)
    }

    /// The size exponent for a block size, rounding down to a power of two in 16..=1024.
    pub fn szx_for_size(size: usize) -> u8 {
        let mut szx = 6u8;
        while szx > 0 && (1usize << (szx + 4)) > size {
            szx -= 1;
        }
        szx
    }

    /// Decodes an option value of 0-3 bytes (an empty value is NUM 0, M 0, SZX 0).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() > 3 {
            return Err(CodecError::Malformed("block option longer than 3 bytes"));
        }
        let v = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        Self::new(v >> 4, v & 0x08 != 0, (v & 0x07) as u8)
    }

    /// Encodes as the shortest option value (RFC 7252 uint encoding).
    pub fn encode(self) -> Vec<u8> {
        let v = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x07);
        uint_option(v)
    }
}

/// Encodes a CoAP uint option value in the fewest bytes (0 bytes for zero).
pub fn uint_option(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(skip..).map(<[u8]>::to_vec).unwrap_or_default()
}

/// Decodes a CoAP uint option value of at most 4 bytes.
pub fn decode_uint_option(bytes: &[u8]) -> Result<u32, CodecError> {
    if bytes.len() > 4 {
        return Err(CodecError::Malformed("uint option longer than 4 bytes"));
    }
    Ok(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_block_numbers_beyond_4096() {
        for num in [0, 1, 15, 16, 4095, 4096, 4097, 65535, 65536, MAX_NUM] {
            for szx in 0..=6 {
                for more in [false, true] {
                    let b = BlockOpt::new(num, more, szx).unwrap();
                    assert_eq!(BlockOpt::decode(&b.encode()).unwrap(), b);
                }
            }
        }
    }

    #[test]
    fn matches_rfc7959_byte_layout() {
        // NUM 4096, M 1, SZX 6: 0x01000E -> three bytes.
        let b = BlockOpt::new(4096, true, 6).unwrap();
        assert_eq!(b.encode(), [0x01, 0x00, 0x0E]);
        assert_eq!(b.offset(), 4096 * 1024);
        // Zero encodes as the empty value (RFC 7252 uint).
        assert!(BlockOpt::new(0, false, 0).unwrap().encode().is_empty());
        assert_eq!(
            BlockOpt::decode(&[0x0E]).unwrap(),
            BlockOpt::new(0, true, 6).unwrap()
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(BlockOpt::decode(&[0, 0, 0, 0]).is_err());
        assert!(BlockOpt::decode(&[0x07]).is_err());
        assert!(BlockOpt::new(MAX_NUM + 1, false, 0).is_err());
        assert_eq!(BlockOpt::szx_for_size(1000), 5);
        assert_eq!(BlockOpt::szx_for_size(1), 0);
    }
}
