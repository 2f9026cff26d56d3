//! Base64 for opaque values in text/plain (standard alphabet) and SenML `vd` (RFC 8428 section
//! 4.3: URL-safe alphabet, no padding). The decoder accepts either alphabet, with or without padding.

use super::CodecError;
use alloc::string::String;
use alloc::vec::Vec;

/// Which 64-character alphabet to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// RFC 4648 section 4 with `=` padding.
    Standard,
    /// RFC 4648 section 5, unpadded.
    UrlSafe,
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes bytes.
pub fn encode(data: &[u8], alphabet: Alphabet) -> String {
    let table = if alphabet == Alphabet::Standard {
        STD
    } else {
        URL
    };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
            out.push(char::from(table.get(idx).copied().unwrap_or(b'A')));
        }
        if alphabet == Alphabet::Standard {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decodes base64 in either alphabet; padding is optional.
pub fn decode(s: &str) -> Result<Vec<u8>, CodecError> {
    let mut d = StreamDecoder::default();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for c in s.bytes() {
        d.push(c, &mut out)?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

/// Decodes base64 one character at a time (either alphabet, padding optional), emitting each
/// 3-byte group as soon as its 4 characters are in: a SenML JSON `vd` cut across CoAP blocks
/// decodes block by block without holding the whole text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamDecoder {
    /// Sextets of the group under way, most significant first.
    acc: u32,
    /// Characters in the group under way (0..=3).
    n: u8,
    /// `=` seen after them.
    pad: u8,
}

impl StreamDecoder {
    /// Takes one character; complete groups are appended to `out`.
    pub fn push(&mut self, c: u8, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if c == b'=' {
            if self.n < 2 || self.n + self.pad >= 4 {
                return Err(CodecError::Malformed("bad base64 length"));
            }
            self.pad += 1;
            return Ok(());
        }
        if self.pad > 0 {
            return Err(CodecError::Malformed("base64 after padding"));
        }
        self.acc =
            (self.acc << 6) | sextet(c).ok_or(CodecError::Malformed("bad base64 character"))?;
        self.n += 1;
        if self.n == 4 {
            out.extend_from_slice(self.acc.to_be_bytes().get(1..).unwrap_or(&[]));
            self.acc = 0;
            self.n = 0;
        }
        Ok(())
    }

    /// Ends the text: a final group of 2 or 3 characters gives 1 or 2 bytes; 1 is an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let bytes = (self.acc << (6 * (4 - u32::from(self.n)))).to_be_bytes();
        match self.n {
            0 => {}
            2 => out.extend_from_slice(bytes.get(1..2).unwrap_or(&[])),
            3 => out.extend_from_slice(bytes.get(1..3).unwrap_or(&[])),
            _ => return Err(CodecError::Malformed("bad base64 length")),
        }
        *self = Self::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(raw.as_bytes(), Alphabet::Standard), enc);
            assert_eq!(decode(enc).unwrap(), raw.as_bytes());
            assert_eq!(decode(enc.trim_end_matches('=')).unwrap(), raw.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff], Alphabet::UrlSafe), "-_8");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode("A").is_err());
        assert!(decode("A*==").is_err());
        assert!(decode("Zg===").is_err());
        assert!(decode("====").is_err());
        assert!(decode("Zg==Zg").is_err());
        assert_eq!(decode("Zg=").unwrap(), b"f", "partial padding, as before");
    }

    #[test]
    fn stream_decoder_emits_each_group_as_it_completes() {
        let mut d = StreamDecoder::default();
        let mut out = Vec::new();
        for c in b"Zm9vYm".iter() {
            d.push(*c, &mut out).unwrap();
        }
        assert_eq!(out, b"foo", "the second group is incomplete");
        d.push(b'F', &mut out).unwrap();
        d.finish(&mut out).unwrap();
        assert_eq!(out, b"fooba");
    }
}
