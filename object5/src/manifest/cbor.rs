//! A minimal, bounded CBOR reader for SUIT: definite lengths only, checked arithmetic, explicit
//! nesting limit, and byte offsets exposed so digests can cover an item's encoded header.
//!
//! SUIT requires canonical (deterministic) CBOR, so indefinite lengths are refused outright;
//! that keeps every item's extent computable without recursion into unknown structure beyond
//! [`MAX_DEPTH`].

use super::SuitError;

/// Deepest nesting `skip` follows; SUIT structures need about 8.
pub const MAX_DEPTH: u8 = 16;

/// CBOR major types.
pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_NINT: u8 = 1;
pub(crate) const MAJOR_BSTR: u8 = 2;
pub(crate) const MAJOR_TSTR: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;
pub(crate) const MAJOR_TAG: u8 = 6;
pub(crate) const MAJOR_SIMPLE: u8 = 7;

/// Simple values.
pub(crate) const SIMPLE_FALSE: u64 = 20;
pub(crate) const SIMPLE_TRUE: u64 = 21;

/// Parses an item head from the start of `buf`: `(major, argument, head length)`.
/// `Ok(None)` means `buf` is too short to hold the whole head (streaming callers wait for more).
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(u8, u64, usize)>, SuitError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let major = first >> 5;
    let info = first & 0x1f;
    let extra = match info {
        0..=23 => return Ok(Some((major, u64::from(info), 1))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Err(SuitError::Malformed),
    };
    let Some(bytes) = buf.get(1..1 + extra) else {
        return Ok(None);
    };
    let mut value = 0u64;
    for b in bytes {
        value = (value << 8) | u64::from(*b);
    }
    // Simple values below 32 must use the one-byte form; float16/32/64 are fine to skip.
    if major == MAJOR_SIMPLE && info == 24 && value < 32 {
        return Err(SuitError::Malformed);
    }
    Ok(Some((major, value, 1 + extra)))
}

/// A cursor over one complete CBOR buffer.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Byte offset of the next item.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// True once every byte was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes from `start` to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or(&[])
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Major type of the next item without consuming it.
    pub(crate) fn peek_major(&self) -> Result<u8, SuitError> {
        self.rest()
            .first()
            .map(|b| b >> 5)
            .ok_or(SuitError::Malformed)
    }

    /// Reads an item head.
    pub(crate) fn head(&mut self) -> Result<(u8, u64), SuitError> {
        let (major, value, len) = parse_head(self.rest())?.ok_or(SuitError::Malformed)?;
        self.pos = self.pos.checked_add(len).ok_or(SuitError::Malformed)?;
        Ok((major, value))
    }

    fn expect(&mut self, want: u8) -> Result<u64, SuitError> {
        match self.head()? {
            (major, value) if major == want => Ok(value),
            _ => Err(SuitError::Malformed),
        }
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], SuitError> {
        let len = usize::try_from(len).map_err(|_| SuitError::Malformed)?;
        let end = self.pos.checked_add(len).ok_or(SuitError::Malformed)?;
        let out = self.buf.get(self.pos..end).ok_or(SuitError::Malformed)?;
        self.pos = end;
        Ok(out)
    }

    /// Reads an unsigned integer.
    pub(crate) fn uint(&mut self) -> Result<u64, SuitError> {
        self.expect(MAJOR_UINT)
    }

    /// Reads a signed integer that fits in `i64`.
    pub(crate) fn int(&mut self) -> Result<i64, SuitError> {
        match self.head()? {
            (MAJOR_UINT, v) => i64::try_from(v).map_err(|_| SuitError::Malformed),
            (MAJOR_NINT, v) => i64::try_from(v)
                .map(|v| -1 - v)
                .map_err(|_| SuitError::Malformed),
            _ => Err(SuitError::Malformed),
        }
    }

    /// Reads a byte string's content.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], SuitError> {
        let len = self.expect(MAJOR_BSTR)?;
        self.take(len)
    }

    /// Reads a byte string and returns `(whole encoded item incl. header, content)`.
    pub(crate) fn bytes_with_header(&mut self) -> Result<(&'a [u8], &'a [u8]), SuitError> {
        let start = self.pos;
        let content = self.bytes()?;
        Ok((self.since(start), content))
    }

    /// Reads a text string's content (UTF-8 is not validated: SUIT compares text bytewise).
    pub(crate) fn text(&mut self) -> Result<&'a [u8], SuitError> {
        let len = self.expect(MAJOR_TSTR)?;
        self.take(len)
    }

    /// Reads an array header and returns its length.
    pub(crate) fn array(&mut self) -> Result<u64, SuitError> {
        self.expect(MAJOR_ARRAY)
    }

    /// Reads a map header and returns its number of pairs.
    pub(crate) fn map(&mut self) -> Result<u64, SuitError> {
        self.expect(MAJOR_MAP)
    }

    /// Reads a tag number.
    pub(crate) fn tag(&mut self) -> Result<u64, SuitError> {
        self.expect(MAJOR_TAG)
    }

    /// Reads a boolean.
    pub(crate) fn boolean(&mut self) -> Result<bool, SuitError> {
        match self.head()? {
            (MAJOR_SIMPLE, SIMPLE_TRUE) => Ok(true),
            (MAJOR_SIMPLE, SIMPLE_FALSE) => Ok(false),
            _ => Err(SuitError::Malformed),
        }
    }

    /// Consumes `null` if it is next; returns whether it did.
    pub(crate) fn null(&mut self) -> Result<bool, SuitError> {
        if self.rest().first() == Some(&0xf6) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Skips one complete item of any type, following at most [`MAX_DEPTH`] levels.
    pub(crate) fn skip(&mut self) -> Result<(), SuitError> {
        self.skip_depth(MAX_DEPTH)
    }

    fn skip_depth(&mut self, depth: u8) -> Result<(), SuitError> {
        let depth = depth.checked_sub(1).ok_or(SuitError::TooDeep)?;
        let (major, value) = self.head()?;
        match major {
            MAJOR_UINT | MAJOR_NINT | MAJOR_SIMPLE => Ok(()),
            MAJOR_BSTR | MAJOR_TSTR => self.take(value).map(|_| ()),
            MAJOR_ARRAY | MAJOR_MAP => {
                let items = if major == MAJOR_MAP {
                    value.checked_mul(2).ok_or(SuitError::Malformed)?
                } else {
                    value
                };
                // Every item takes at least one byte: refuse counts the buffer cannot hold
                // before looping over them.
                if items > self.rest().len() as u64 {
                    return Err(SuitError::Malformed);
                }
                for _ in 0..items {
                    self.skip_depth(depth)?;
                }
                Ok(())
            }
            _ => self.skip_depth(depth), // tag: skip its content
        }
    }

    /// Reads the next item and returns its complete encoding.
    pub(crate) fn raw_item(&mut self) -> Result<&'a [u8], SuitError> {
        let start = self.pos;
        self.skip()?;
        Ok(self.since(start))
    }
}

/// Writes a CBOR head into `out` and returns its length (1..=9 bytes), shortest form.
pub(crate) fn encode_head(major: u8, value: u64, out: &mut [u8; 9]) -> usize {
    let m = major << 5;
    if value < 24 {
        out[0] = m | value as u8;
        1
    } else if value <= 0xff {
        out[0] = m | 24;
        out[1] = value as u8;
        2
    } else if value <= 0xffff {
        out[0] = m | 25;
        out[1..3].copy_from_slice(&(value as u16).to_be_bytes());
        3
    } else if value <= 0xffff_ffff {
        out[0] = m | 26;
        out[1..5].copy_from_slice(&(value as u32).to_be_bytes());
        5
    } else {
        out[0] = m | 27;
        out[1..9].copy_from_slice(&value.to_be_bytes());
        9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_in_shortest_form() {
        for value in [
            0u64,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = [0u8; 9];
            let len = encode_head(MAJOR_BSTR, value, &mut out);
            assert_eq!(
                parse_head(&out[..len]).unwrap(),
                Some((MAJOR_BSTR, value, len))
            );
            assert_eq!(parse_head(&out[..len - 1]).unwrap(), None);
        }
    }

    #[test]
    fn indefinite_lengths_and_deep_nesting_are_refused() {
        assert_eq!(Reader::new(&[0x5f, 0xff]).skip(), Err(SuitError::Malformed));
        let deep = [0x81u8; 40];
        assert_eq!(Reader::new(&deep).skip(), Err(SuitError::TooDeep));
        // A huge declared array length in a short buffer fails fast.
        assert_eq!(
            Reader::new(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).skip(),
            Err(SuitError::Malformed)
        );
    }
}
