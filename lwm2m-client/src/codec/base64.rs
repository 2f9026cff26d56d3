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
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return Err(CodecError::Malformed("bad base64 length"));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= sextet(*c).ok_or(CodecError::Malformed("bad base64 character"))? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(bytes.get(1..chunk.len()).unwrap_or(&[]));
    }
    Ok(out)
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
    }
}
