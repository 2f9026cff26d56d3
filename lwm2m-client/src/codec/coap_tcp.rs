//! CoAP over TCP and TLS (RFC 8323): the message framing of section 3.2, the signaling
//! messages of section 5 (CSM, Ping, Pong, Release, Abort) and the BERT block values of
//! section 6. Shared by the device's coap+tcp pull and the shim's package host.
//!
//! A frame's options and payload are encoded exactly as in a UDP message (RFC 7252 section
//! 3.1); only the header differs: a length nibble (with 0, 1, 2 or 4 extended bytes) and the
//! token length, then the code and the token, and no type, no message id. [`decode`] checks
//! the framing and the option grammar (with the same rules as [`super::message_format`]) and
//! hands back a coap-lite `Packet` whose type and message id mean nothing.
//!
//! Every length is bounded by the receiver's Max-Message-Size before a byte of the body is
//! buffered, so a peer cannot make the receiver hold more than it announced.

use alloc::vec::Vec;
use core::fmt;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};

use super::block::{decode_uint_option, uint_option};
use super::message_format::{self, FormatError};

/// Max-Message-Size a peer may assume before it has the other side's CSM (RFC 8323 §5.3.1).
pub const BASE_MAX_MESSAGE_SIZE: u32 = 1152;

/// Code 7.01 Capabilities and Settings Message (RFC 8323 §5.3).
pub const CODE_CSM: u8 = 0xE1;
/// Code 7.02 Ping (§5.4).
pub const CODE_PING: u8 = 0xE2;
/// Code 7.03 Pong (§5.4).
pub const CODE_PONG: u8 = 0xE3;
/// Code 7.04 Release (§5.5).
pub const CODE_RELEASE: u8 = 0xE4;
/// Code 7.05 Abort (§5.6).
pub const CODE_ABORT: u8 = 0xE5;

/// CSM option 2: Max-Message-Size (uint).
const OPT_MAX_MESSAGE_SIZE: u16 = 2;
/// CSM option 4: Block-Wise-Transfer (empty): the sender can do BERT (§5.3.2).
const OPT_BLOCK_WISE_TRANSFER: u16 = 4;
/// Abort option 2: Bad-CSM-Option (uint), the CSM option that caused the abort (§5.6).
const OPT_BAD_CSM_OPTION: u16 = 2;

/// The BERT block size exponent: SZX 7 in a Block1/Block2 option (RFC 8323 §6).
pub const BERT_SZX: u8 = 7;

/// Units of a BERT block number: NUM counts 1024-byte blocks (§6).
pub const BERT_UNIT: u64 = 1024;

/// Why bytes on a CoAP-over-TCP connection are not a message; each is a connection error
/// that ends in an Abort (RFC 8323 §5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Token length nibble 9-15 (reserved, §3.2).
    TokenLength(u8),
    /// The frame announces more bytes than the receiver's Max-Message-Size.
    TooLong {
        /// Bytes the frame would take.
        len: u64,
        /// The limit it broke.
        max: u32,
    },
    /// The options or payload marker break RFC 7252 §3.1.
    Format(FormatError),
    /// A CSM carries a critical option the receiver does not know (§5.3): its number.
    BadCsmOption(u16),
    /// An Empty message (0.00) with a token, options or payload (RFC 7252 §4.1).
    NonEmptyEmpty,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenLength(n) => write!(f, "reserved token length {n}"),
            Self::TooLong { len, max } => {
                write!(f, "message of {len} bytes over Max-Message-Size {max}")
            }
            Self::Format(e) => write!(f, "malformed options: {e}"),
            Self::BadCsmOption(n) => write!(f, "unknown critical CSM option {n}"),
            Self::NonEmptyEmpty => f.write_str("Empty message with a token, options or payload"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// The length of the complete frame at the start of `buf`: `Ok(None)` while its header is not
/// all there yet, an error as soon as the header is readable and wrong (reserved token length,
/// longer than `max_message_size`).
pub fn frame_len(buf: &[u8], max_message_size: u32) -> Result<Option<usize>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (len_nibble, tkl) = (first >> 4, first & 0x0F);
    if tkl > 8 {
        return Err(FrameError::TokenLength(tkl));
    }
    let ext = match len_nibble {
        13 => 1,
        14 => 2,
        15 => 4,
        _ => 0,
    };
    let Some(ext_bytes) = buf.get(1..1 + ext) else {
        return Ok(None);
    };
    let ext_value = ext_bytes
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    // Options and payload (RFC 8323 §3.2: 13 + one byte, 269 + two, 65805 + four).
    let body = match len_nibble {
        13 => 13 + ext_value,
        14 => 269 + ext_value,
        15 => 65805 + ext_value,
        n => u64::from(n),
    };
    let total = 1 + ext as u64 + 1 + u64::from(tkl) + body;
    if total > u64::from(max_message_size) {
        return Err(FrameError::TooLong {
            len: total,
            max: max_message_size,
        });
    }
    // Within max_message_size, so it fits a usize.
    let total = usize::try_from(total).map_err(|_| FrameError::TooLong {
        len: total,
        max: max_message_size,
    })?;
    Ok((buf.len() >= total).then_some(total))
}

/// The first complete message of `buf` and the bytes it took, `Ok(None)` while it is not all
/// there. The packet's type and message id are placeholders (TCP has neither). An Empty
/// message (0.00, which the receiver ignores, RFC 8323 §3.4 keep-alives) comes back as a packet
/// with code Empty; one with anything in it is an error.
pub fn decode(buf: &[u8], max_message_size: u32) -> Result<Option<(Packet, usize)>, FrameError> {
    let Some(total) = frame_len(buf, max_message_size)? else {
        return Ok(None);
    };
    let frame = buf.get(..total).unwrap_or_default();
    let tkl = usize::from(frame.first().copied().unwrap_or(0) & 0x0F);
    let ext = match frame.first().copied().unwrap_or(0) >> 4 {
        13 => 1,
        14 => 2,
        15 => 4,
        _ => 0,
    };
    let code = frame.get(1 + ext).copied().unwrap_or(0);
    let rest = frame.get(2 + ext..).unwrap_or_default();
    if code == 0 && !rest.is_empty() {
        return Err(FrameError::NonEmptyEmpty);
    }
    // The same options and payload behind a UDP header, so one option grammar serves both.
    let mut udp = Vec::with_capacity(4 + rest.len());
    udp.extend_from_slice(&[0x40 | tkl as u8, code, 0, 0]);
    udp.extend_from_slice(rest);
    message_format::check(&udp).map_err(FrameError::Format)?;
    let packet =
        Packet::from_bytes(&udp).map_err(|_| FrameError::Format(FormatError::Truncated))?;
    Ok(Some((packet, total)))
}

/// Encodes `packet` (its code, token, options and payload; type and message id are ignored)
/// as one frame.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let mut p = packet.clone();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = 0;
    // Only an option value over 65804 bytes fails, which no caller builds.
    let udp = p.to_bytes_unlimited().unwrap_or_default();
    let tkl = packet.get_token().len().min(8);
    let code = udp.get(1).copied().unwrap_or(0);
    let body = udp.get(4 + tkl..).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 6 + tkl + 1);
    let n = body.len() as u64;
    let (nibble, ext): (u8, Vec<u8>) = if n < 13 {
        (n as u8, Vec::new())
    } else if n < 269 {
        (13, alloc::vec![(n - 13) as u8])
    } else if n < 65805 {
        (14, ((n - 269) as u16).to_be_bytes().to_vec())
    } else {
        (15, ((n - 65805) as u32).to_be_bytes().to_vec())
    };
    out.push(nibble << 4 | tkl as u8);
    out.extend_from_slice(&ext);
    out.push(code);
    out.extend_from_slice(packet.get_token().get(..tkl).unwrap_or_default());
    out.extend_from_slice(body);
    out
}

/// A signaling message (code class 7, RFC 8323 §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// 7.01 CSM: the sender's Max-Message-Size (`None`: the 1152-byte default) and whether it
    /// supports BERT (Block-Wise-Transfer).
    Csm {
        /// Largest message the sender accepts.
        max_message_size: Option<u32>,
        /// The sender can do block-wise transfers with BERT.
        block_wise: bool,
    },
    /// 7.02 Ping: answer with a Pong echoing the token.
    Ping,
    /// 7.03 Pong.
    Pong,
    /// 7.04 Release: the peer closes the connection gracefully.
    Release,
    /// 7.05 Abort: the peer closes the connection on an error.
    Abort,
    /// Another 7.xx code (unassigned): ignored.
    Other(u8),
}

fn option_numbers(p: &Packet) -> impl Iterator<Item = (u16, &[u8])> {
    p.options()
        .flat_map(|(n, vs)| vs.iter().map(move |v| (*n, v.as_slice())))
}

/// The signal `packet` carries, `None` for a request or response. An unknown critical
/// option in a CSM is [`FrameError::BadCsmOption`] (§5.3: abort); unknown elective options
/// are ignored.
pub fn signal(packet: &Packet) -> Option<Result<Signal, FrameError>> {
    let code = u8::from(packet.header.code);
    if code >> 5 != 7 {
        return None;
    }
    Some(match code {
        CODE_CSM => csm_of(packet),
        CODE_PING => Ok(Signal::Ping),
        CODE_PONG => Ok(Signal::Pong),
        CODE_RELEASE => Ok(Signal::Release),
        CODE_ABORT => Ok(Signal::Abort),
        other => Ok(Signal::Other(other)),
    })
}

/// The settings a CSM carries.
fn csm_of(packet: &Packet) -> Result<Signal, FrameError> {
    let mut max_message_size = None;
    let mut block_wise = false;
    for (n, v) in option_numbers(packet) {
        match n {
            OPT_MAX_MESSAGE_SIZE => {
                max_message_size = Some(
                    decode_uint_option(v)
                        .map_err(|_| FrameError::Format(FormatError::Truncated))?,
                )
            }
            OPT_BLOCK_WISE_TRANSFER => block_wise = true,
            n if n % 2 == 1 => return Err(FrameError::BadCsmOption(n)),
            _ => {}
        }
    }
    Ok(Signal::Csm {
        max_message_size,
        block_wise,
    })
}

fn signal_packet(code: u8, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::from(code);
    p.set_token(token.to_vec());
    p
}

/// A CSM frame announcing `max_message_size` and, with `block_wise`, BERT support.
pub fn csm(max_message_size: u32, block_wise: bool) -> Vec<u8> {
    let mut p = signal_packet(CODE_CSM, &[]);
    p.add_option(
        CoapOption::from(OPT_MAX_MESSAGE_SIZE),
        uint_option(max_message_size),
    );
    if block_wise {
        p.add_option(CoapOption::from(OPT_BLOCK_WISE_TRANSFER), Vec::new());
    }
    encode(&p)
}

/// A Pong answering a Ping with `token` (§5.4: the token is echoed).
pub fn pong(token: &[u8]) -> Vec<u8> {
    encode(&signal_packet(CODE_PONG, token))
}

/// A Ping with `token`.
pub fn ping(token: &[u8]) -> Vec<u8> {
    encode(&signal_packet(CODE_PING, token))
}

/// An Abort with a diagnostic payload and, for a CSM refused for one option, that option's
/// number as Bad-CSM-Option (§5.6).
pub fn abort(diagnostic: &str, bad_csm_option: Option<u16>) -> Vec<u8> {
    let mut p = signal_packet(CODE_ABORT, &[]);
    if let Some(n) = bad_csm_option {
        p.add_option(
            CoapOption::from(OPT_BAD_CSM_OPTION),
            uint_option(u32::from(n)),
        );
    }
    p.payload = diagnostic.as_bytes().to_vec();
    encode(&p)
}

/// A Release (§5.5): this side closes the connection and will send nothing more.
pub fn release() -> Vec<u8> {
    encode(&signal_packet(CODE_RELEASE, &[]))
}

/// A Block2 value that may use BERT: NUM, the M bit and SZX 0-7, where SZX 7 means blocks of
/// 1024-byte units whose payload may be any multiple of 1024 bytes (RFC 8323 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BertBlock {
    /// Block number, in units of [`BertBlock::unit`] bytes.
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent; 7 is BERT.
    pub szx: u8,
}

impl BertBlock {
    /// Decodes a Block1/Block2 option value of 0-3 bytes with any SZX.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let v = decode_uint_option(bytes).ok()?;
        Some(Self {
            num: v >> 4,
            more: v & 0x08 != 0,
            szx: (v & 0x07) as u8,
        })
    }

    /// Encodes as the shortest option value; `None` for a NUM above 20 bits.
    pub fn encode(self) -> Option<Vec<u8>> {
        if self.num > super::block::MAX_NUM {
            return None;
        }
        Some(uint_option(
            (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x07),
        ))
    }

    /// Whether this is a BERT block.
    pub fn is_bert(self) -> bool {
        self.szx == BERT_SZX
    }

    /// Bytes one NUM step stands for: 1024 for BERT, else 2^(SZX+4).
    pub fn unit(self) -> u64 {
        if self.is_bert() {
            BERT_UNIT
        } else {
            1u64 << (self.szx + 4)
        }
    }

    /// Byte offset of the block in the body.
    pub fn offset(self) -> u64 {
        u64::from(self.num) * self.unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{RequestType, ResponseType};

    fn get(token: &[u8], path: &str, payload_len: usize) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.set_token(token.to_vec());
        p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
        p.payload = alloc::vec![0x5A; payload_len];
        p
    }

    #[test]
    fn rfc8323_figure_examples_and_length_forms() {
        // A GET with token 0x01 and no options: Len 0, TKL 1, code 0x01, token.
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.set_token(alloc::vec![1]);
        assert_eq!(encode(&p), [0x01, 0x01, 0x01]);
        // Each length form round-trips at its boundaries.
        for n in [
            0usize, 1, 11, 12, 13, 267, 268, 269, 65803, 65804, 65805, 70_000,
        ] {
            let p = get(&[9, 8, 7], "fw", n);
            let f = encode(&p);
            // Uri-Path "fw" is 3 bytes, the marker 1 byte when there is a payload.
            let body = 3 + usize::from(n > 0) + n;
            let ext = match body {
                0..=12 => 0,
                13..=268 => 1,
                269..=65804 => 2,
                _ => 4,
            };
            assert_eq!(f.len(), 1 + ext + 1 + 3 + body, "payload {n}");
            assert_eq!(frame_len(&f, u32::MAX), Ok(Some(f.len())));
            let (q, used) = decode(&f, u32::MAX).unwrap().unwrap();
            assert_eq!(used, f.len());
            assert_eq!(q.get_token(), &[9, 8, 7]);
            assert_eq!(q.payload.len(), n);
            assert_eq!(
                q.get_first_option(CoapOption::UriPath),
                Some(&b"fw".to_vec())
            );
        }
    }

    #[test]
    fn partial_frames_wait_and_bad_headers_fail_early() {
        let f = encode(&get(&[1, 2], "fw", 500));
        for cut in 0..f.len() {
            assert_eq!(decode(&f[..cut], 4096), Ok(None), "cut at {cut}");
        }
        // Two frames back to back: the first is taken alone.
        let two = [f.clone(), f.clone()].concat();
        assert_eq!(decode(&two, 4096).unwrap().unwrap().1, f.len());
        // Reserved TKL 9-15 is an error as soon as the first byte is there.
        assert_eq!(frame_len(&[0x09], 4096), Err(FrameError::TokenLength(9)));
        // Over the limit before the body arrives: a 4-byte length of 1 GiB.
        let huge = [0xF0, 0x3F, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            frame_len(&huge, 1 << 20),
            Err(FrameError::TooLong { .. })
        ));
        assert!(matches!(
            frame_len(&f, 100),
            Err(FrameError::TooLong { max: 100, .. })
        ));
        // An Empty message is fine bare, an error with anything in it (a fuzzer's find: the
        // re-encoded message lost its payload).
        assert!(decode(&[0x00, 0x00], 4096).unwrap().is_some());
        assert_eq!(
            decode(&[0x20, 0x00, 0xFF, 0xFF], 4096),
            Err(FrameError::NonEmptyEmpty)
        );
        assert_eq!(
            decode(&[0x01, 0x00, 0x07], 4096),
            Err(FrameError::NonEmptyEmpty)
        );
        // Options running past the frame, a lone payload marker, reserved nibble 15.
        assert!(matches!(
            decode(&[0x20, 0x01, 0xB5, b'x'], 4096),
            Err(FrameError::Format(_))
        ));
        assert_eq!(
            decode(&[0x10, 0x45, 0xFF], 4096),
            Err(FrameError::Format(FormatError::EmptyPayload))
        );
        assert!(matches!(
            decode(&[0x10, 0x45, 0xF0], 4096),
            Err(FrameError::Format(FormatError::ReservedNibble))
        ));
    }

    #[test]
    fn signals_round_trip() {
        let (p, _) = decode(&csm(70_000, true), 4096).unwrap().unwrap();
        assert_eq!(
            signal(&p),
            Some(Ok(Signal::Csm {
                max_message_size: Some(70_000),
                block_wise: true
            }))
        );
        let (p, _) = decode(&csm(1152, false), 4096).unwrap().unwrap();
        assert_eq!(
            signal(&p),
            Some(Ok(Signal::Csm {
                max_message_size: Some(1152),
                block_wise: false
            }))
        );
        let (p, _) = decode(&ping(&[7, 7]), 4096).unwrap().unwrap();
        assert_eq!(signal(&p), Some(Ok(Signal::Ping)));
        let (p, _) = decode(&pong(&[7, 7]), 4096).unwrap().unwrap();
        assert_eq!(
            (signal(&p), p.get_token()),
            (Some(Ok(Signal::Pong)), &[7u8, 7][..])
        );
        let (p, _) = decode(&abort("bad", Some(3)), 4096).unwrap().unwrap();
        assert_eq!(signal(&p), Some(Ok(Signal::Abort)));
        assert_eq!(p.payload, b"bad");
        let (p, _) = decode(&release(), 4096).unwrap().unwrap();
        assert_eq!(signal(&p), Some(Ok(Signal::Release)));
        // A critical unknown CSM option (odd number) aborts; an elective one is ignored.
        let mut c = signal_packet(CODE_CSM, &[]);
        c.add_option(CoapOption::from(6), alloc::vec![1]);
        let (p, _) = decode(&encode(&c), 4096).unwrap().unwrap();
        assert!(matches!(signal(&p), Some(Ok(Signal::Csm { .. }))));
        c.add_option(CoapOption::from(5), alloc::vec![1]);
        let (p, _) = decode(&encode(&c), 4096).unwrap().unwrap();
        assert_eq!(signal(&p), Some(Err(FrameError::BadCsmOption(5))));
        // Requests and responses are no signals.
        let mut r = Packet::new();
        r.header.code = MessageClass::Response(ResponseType::Content);
        assert_eq!(signal(&r), None);
    }

    #[test]
    fn bert_block_values() {
        let b = BertBlock::decode(&[0x01, 0x0F]).unwrap();
        assert_eq!((b.num, b.more, b.szx), (16, true, 7));
        assert!(b.is_bert());
        assert_eq!(b.offset(), 16 * 1024);
        assert_eq!(BertBlock::decode(&b.encode().unwrap()), Some(b));
        let small = BertBlock::decode(&[0x22]).unwrap();
        assert_eq!((small.num, small.szx, small.offset()), (2, 2, 128));
        assert_eq!(BertBlock::decode(&[0, 0, 0, 0]), None);
        assert_eq!(
            BertBlock {
                num: 1 << 20,
                more: false,
                szx: 7
            }
            .encode(),
            None
        );
    }
}
