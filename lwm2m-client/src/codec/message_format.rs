//! The RFC 7252 section 3 message-format rules a CoAP parser must enforce before a datagram is
//! taken for a message, which coap-lite's `Packet::from_bytes` does not: the version field
//! must be 1 and a payload marker must be followed by a payload. Shared by both ends, so the
//! client and the server shim reject the same datagrams.

use core::fmt;

/// Why a datagram is not a well-formed CoAP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer than the 4 header bytes: no message id to reject it by.
    NoHeader,
    /// The version field is not 1: the datagram is silently ignored (RFC 7252 section 3).
    UnknownVersion(u8),
    /// Token length 9-15, or a token or option running past the datagram.
    Truncated,
    /// Option delta or length nibble 15 outside the payload marker.
    ReservedNibble,
    /// A payload marker with nothing after it: "MUST be processed as a message format error"
    /// (RFC 7252 section 3).
    EmptyPayload,
}

impl FormatError {
    /// Whether the datagram must get no answer at all, not even a Reset: only messages of a
    /// known version can be rejected (RFC 7252 section 3, "silently ignored").
    pub fn is_silent(self) -> bool {
        matches!(self, Self::NoHeader | Self::UnknownVersion(_))
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHeader => f.write_str("shorter than a CoAP header"),
            Self::UnknownVersion(v) => write!(f, "CoAP version {v} (only 1 is defined)"),
            Self::Truncated => f.write_str("token or option runs past the datagram"),
            Self::ReservedNibble => f.write_str("reserved option delta or length 15"),
            Self::EmptyPayload => f.write_str("payload marker followed by no payload"),
        }
    }
}

/// Reads an extended option delta or length (RFC 7252 section 3.1) after its nibble.
fn extended(nibble: u8, d: &[u8], at: &mut usize) -> Result<usize, FormatError> {
    let byte = |i: usize| d.get(i).copied().map(usize::from);
    match nibble {
        13 => {
            let v = byte(*at).ok_or(FormatError::Truncated)?;
            *at += 1;
            Ok(v + 13)
        }
        14 => {
            let hi = byte(*at).ok_or(FormatError::Truncated)?;
            let lo = byte(*at + 1).ok_or(FormatError::Truncated)?;
            *at += 2;
            Ok((hi << 8 | lo) + 269)
        }
        15 => Err(FormatError::ReservedNibble),
        n => Ok(usize::from(n)),
    }
}

/// Checks the header, token and option framing of `datagram` and that a payload marker is
/// followed by at least one byte. Option semantics (numbers, repeated or critical options)
/// are left to the message layer.
pub fn check(datagram: &[u8]) -> Result<(), FormatError> {
    let first = *datagram.first().ok_or(FormatError::NoHeader)?;
    let version = first >> 6;
    if version != 1 {
        return Err(FormatError::UnknownVersion(version));
    }
    if datagram.len() < 4 {
        return Err(FormatError::NoHeader);
    }
    let tkl = usize::from(first & 0x0F);
    if tkl > 8 {
        return Err(FormatError::Truncated);
    }
    let mut at = 4 + tkl;
    if at > datagram.len() {
        return Err(FormatError::Truncated);
    }
    while let Some(&b) = datagram.get(at) {
        if b == 0xFF {
            return if at + 1 < datagram.len() {
                Ok(())
            } else {
                Err(FormatError::EmptyPayload)
            };
        }
        at += 1;
        extended(b >> 4, datagram, &mut at)?;
        let len = extended(b & 0x0F, datagram, &mut at)?;
        at = at.checked_add(len).ok_or(FormatError::Truncated)?;
        if at > datagram.len() {
            return Err(FormatError::Truncated);
        }
    }
    Ok(())
}

/// The message id of a datagram with a readable header, to reject it with a Reset.
pub fn message_id(datagram: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_messages_pass() {
        // CON GET, token 0x01, Uri-Path "rd", no payload.
        assert_eq!(check(&[0x41, 0x01, 0, 1, 7, 0xB2, b'r', b'd']), Ok(()));
        // With a payload.
        assert_eq!(check(&[0x40, 0x02, 0, 1, 0xFF, b'x']), Ok(()));
        // An option value that ends in 0xFF is not a payload marker.
        assert_eq!(check(&[0x40, 0x01, 0, 1, 0x61, 0xFF]), Ok(()));
        // Extended delta (13 + 1 = Size1 60 region) and length.
        assert_eq!(check(&[0x40, 0x01, 0, 1, 0xD1, 1, 9]), Ok(()));
        assert_eq!(check(&[0x40, 0x00, 0, 1]), Ok(()));
    }

    /// The marker is found by walking header, token and options: an option value may itself
    /// end in 0xFF, so the last byte alone says nothing (moved from the client's coap module
    /// when both ends came to share this check).
    #[test]
    fn empty_payload_is_found_by_walking_the_options() {
        // CON GET, token 0xAB, Uri-Path "3": header, token, option 0xB1 '3'.
        let base = [0x41, 0x01, 0x12, 0x34, 0xab, 0xb1, b'3'];
        assert_eq!(check(&base), Ok(()));
        let with = |tail: &[u8]| [&base[..], tail].concat();
        assert_eq!(check(&with(&[0xff])), Err(FormatError::EmptyPayload));
        assert_eq!(check(&with(&[0xff, 0x00])), Ok(()));
        // Size2 (28 = 11 + 13 + 4) = 0x00FF, then a 13-byte Uri-Query (extended length) of
        // 0xFF bytes: values, not markers.
        assert_eq!(check(&with(&[0xd2, 4, 0x00, 0xff])), Ok(()));
        let mut query = with(&[0x4d, 0x00]);
        query.extend_from_slice(&[0xff; 13]);
        assert_eq!(check(&query), Ok(()));
        query.push(0xff);
        assert_eq!(check(&query), Err(FormatError::EmptyPayload));
        // Two-byte extended length (269 + 0): a 269-byte value.
        let mut long = with(&[0x4e, 0x00, 0x00]);
        long.extend_from_slice(&[0xff; 269]);
        assert_eq!(check(&long), Ok(()));
        long.push(0xff);
        assert_eq!(check(&long), Err(FormatError::EmptyPayload));
        // A token length past the datagram hides no marker.
        assert_eq!(check(&[0x48, 1, 0, 0, 0xff]), Err(FormatError::Truncated));
    }

    #[test]
    fn format_errors_are_named() {
        assert_eq!(
            check(&[0x40, 0x02, 0, 1, 0xFF]),
            Err(FormatError::EmptyPayload)
        );
        assert_eq!(
            check(&[0x40, 0x02, 0, 1, 0xB2, b'r', b'd', 0xFF]),
            Err(FormatError::EmptyPayload)
        );
        assert_eq!(
            check(&[0x80, 0x01, 0, 1]),
            Err(FormatError::UnknownVersion(2))
        );
        assert_eq!(check(&[0x00]), Err(FormatError::UnknownVersion(0)));
        assert_eq!(check(&[]), Err(FormatError::NoHeader));
        assert_eq!(check(&[0x40, 0x01]), Err(FormatError::NoHeader));
        assert_eq!(check(&[0x4F, 0x01, 0, 1]), Err(FormatError::Truncated));
        assert_eq!(check(&[0x42, 0x01, 0, 1, 9]), Err(FormatError::Truncated));
        assert_eq!(
            check(&[0x40, 0x01, 0, 1, 0x13]),
            Err(FormatError::Truncated)
        );
        assert_eq!(
            check(&[0x40, 0x01, 0, 1, 0xD0]),
            Err(FormatError::Truncated)
        );
        assert_eq!(
            check(&[0x40, 0x01, 0, 1, 0xF0]),
            Err(FormatError::ReservedNibble)
        );
        assert!(FormatError::UnknownVersion(3).is_silent());
        assert!(!FormatError::EmptyPayload.is_silent());
        assert_eq!(message_id(&[0x40, 0x01, 0xAB, 0xCD]), Some(0xABCD));
        assert_eq!(message_id(&[0x40, 0x01, 0xAB]), None);
    }
}
