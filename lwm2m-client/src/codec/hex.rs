//! Hex text for opaque values: Leshan's JSON form of opaque resources and the usual way
//! PSK keys are written (CLI, security store). Lives here, below the client and the shim.

use alloc::string::String;
use alloc::vec::Vec;

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}

/// Decodes hex (either case); `None` on odd length or a non-hex digit.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    // `from_str_radix` would take a sign ("+1"); only hex digits are hex.
    if !b.len().is_multiple_of(2) || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    b.chunks(2)
        .map(|pair| {
            let s = core::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_input() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
        assert_eq!(decode("00FFaB").unwrap(), [0x00, 0xFF, 0xAB]);
        for bad in ["0", "zz", "0g", "+1", "é1"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
