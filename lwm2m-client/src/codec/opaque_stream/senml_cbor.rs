//! The `vd` of one SenML CBOR record (RFC 8428 sections 4.3 and 6; OMA TS Core 1.1 section
//! 7.4.5): an array (definite with one element, or indefinite) holding one map whose labels
//! are `bn` (-2) and `n` (0) naming the written resource, `vd` (8) a byte string (definite, or
//! indefinite as definite chunks) that is the value, and optionally the numbers `bver` (-1),
//! `bt` (-3), `t` (6) and `ut` (7). Labels may come in any order, so the name is checked when
//! the record ends; any other value field means the write is not one opaque value.

use super::MAX_NAME;
use crate::codec::senml::{BN, BT, BVER, N, T, UT, VD};
use crate::codec::CodecError;
use alloc::vec::Vec;

/// Labels in one record: more is not a record naming one value.
const MAX_PAIRS: u64 = 16;

/// One CBOR data item head (RFC 8949 section 3): major type and argument; `None` is the
/// indefinite length (additional information 31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    major: u8,
    ai: u8,
    arg: Option<u64>,
}

/// What the next bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The array head.
    Array,
    /// The record's map head.
    Record,
    /// A label, or the break of an indefinite map.
    Key,
    /// The value of this label.
    Value(i64),
    /// Text of `bn` (true) or `n` (false), this many bytes still to come.
    Text { bn: bool, remaining: u64 },
    /// `vd` content, this many bytes still to come; `chunked` when in an indefinite string.
    Bytes { remaining: u64, chunked: bool },
    /// The next chunk head or the break of an indefinite `vd`.
    Chunk,
    /// The break of an indefinite array.
    End,
    /// Complete.
    Done,
}

/// Streams `vd` out of a SenML CBOR pack with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdStream {
    target: Vec<u8>,
    state: State,
    head: [u8; 9],
    have: usize,
    array_indefinite: bool,
    /// Label/value pairs left in a definite map; `None` in an indefinite one.
    pairs_left: Option<u64>,
    bn: Vec<u8>,
    n: Vec<u8>,
    vd_seen: bool,
    vd_len: Option<u64>,
}

impl VdStream {
    /// Expects the record to name `target` (e.g. `/5/0/0`).
    pub fn new(target: Vec<u8>) -> Self {
        Self {
            target,
            state: State::Array,
            head: [0; 9],
            have: 0,
            array_indefinite: false,
            pairs_left: None,
            bn: Vec::new(),
            n: Vec::new(),
            vd_seen: false,
            vd_len: None,
        }
    }

    /// Adds one byte to the item head under way; the head once complete.
    fn push_head(&mut self, b: u8) -> Result<Option<Head>, CodecError> {
        if let Some(slot) = self.head.get_mut(self.have) {
            *slot = b;
        }
        self.have += 1;
        let first = self.head[0];
        let ai = first & 0x1f;
        let extra = match ai {
            0..=23 | 31 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => {
                return Err(CodecError::Malformed(
                    "reserved CBOR additional information",
                ))
            }
        };
        if self.have < 1 + extra {
            return Ok(None);
        }
        self.have = 0;
        let arg = match ai {
            0..=23 => Some(u64::from(ai)),
            31 => None,
            _ => Some(
                self.head
                    .get(1..1 + extra)
                    .unwrap_or(&[])
                    .iter()
                    .fold(0u64, |a, x| (a << 8) | u64::from(*x)),
            ),
        };
        Ok(Some(Head {
            major: first >> 5,
            ai,
            arg,
        }))
    }

    /// A label's value is complete: the next label, or the record's end.
    fn value_done(&mut self) -> Result<(), CodecError> {
        if let Some(left) = &mut self.pairs_left {
            *left -= 1;
            if *left == 0 {
                return self.record_done();
            }
        }
        self.state = State::Key;
        Ok(())
    }

    fn record_done(&mut self) -> Result<(), CodecError> {
        if !self.vd_seen {
            return Err(CodecError::Malformed("SenML record without vd"));
        }
        let mut name = self.bn.clone();
        name.extend_from_slice(&self.n);
        if name != self.target {
            return Err(CodecError::Malformed("SenML record of another resource"));
        }
        self.state = if self.array_indefinite {
            State::End
        } else {
            State::Done
        };
        Ok(())
    }

    fn on_head(&mut self, h: Head) -> Result<(), CodecError> {
        let is_break = h.major == 7 && h.arg.is_none();
        match (self.state, h.major, h.arg) {
            (State::Array, 4, Some(1)) => self.state = State::Record,
            (State::Array, 4, None) => {
                self.array_indefinite = true;
                self.state = State::Record;
            }
            (State::Array, _, _) => {
                return Err(CodecError::Malformed("not a SenML pack of one record"))
            }
            (State::Record, 5, Some(0)) => return self.record_done(),
            (State::Record, 5, Some(n)) if n <= MAX_PAIRS => {
                self.pairs_left = Some(n);
                self.state = State::Key;
            }
            (State::Record, 5, None) => self.state = State::Key,
            (State::Record, _, _) => return Err(CodecError::Malformed("SenML record not a map")),
            (State::Key, _, _) if is_break && self.pairs_left.is_none() => {
                return self.record_done()
            }
            (State::Key, 0, Some(k)) => {
                self.state = State::Value(i64::try_from(k).unwrap_or(i64::MAX))
            }
            (State::Key, 1, Some(k)) => {
                self.state = State::Value(i64::try_from(k).map_or(i64::MIN, |k| -1 - k))
            }
            (State::Key, _, _) => return Err(CodecError::Malformed("SenML label")),
            (State::Value(BN | N), 3, Some(len)) if len <= MAX_NAME as u64 => {
                let bn = self.state == State::Value(BN);
                if bn { &mut self.bn } else { &mut self.n }.clear();
                if len == 0 {
                    return self.value_done();
                }
                self.state = State::Text { bn, remaining: len };
            }
            (State::Value(BN | N), _, _) => {
                return Err(CodecError::Malformed("SenML name not a short text"))
            }
            (State::Value(VD), _, _) if self.vd_seen => {
                return Err(CodecError::Malformed("SenML record with two vd"))
            }
            (State::Value(VD), 2, len) => {
                self.vd_seen = true;
                self.vd_len = len;
                match len {
                    None => self.state = State::Chunk,
                    Some(0) => return self.value_done(),
                    Some(remaining) => {
                        self.state = State::Bytes {
                            remaining,
                            chunked: false,
                        }
                    }
                }
            }
            (State::Value(VD), _, _) => return Err(CodecError::Malformed("vd not a byte string")),
            (State::Value(BVER | BT | T | UT), 0 | 1, Some(_)) => return self.value_done(),
            (State::Value(BVER | BT | T | UT), 7, Some(_)) if (25..=27).contains(&h.ai) => {
                return self.value_done()
            }
            (State::Value(_), _, _) => {
                return Err(CodecError::Malformed(
                    "SenML field other than bn, n, vd, bt, t, ut, bver",
                ))
            }
            (State::Chunk, 2, Some(0)) => {}
            (State::Chunk, 2, Some(remaining)) => {
                self.state = State::Bytes {
                    remaining,
                    chunked: true,
                }
            }
            (State::Chunk, _, _) if is_break => return self.value_done(),
            (State::Chunk, _, _) => {
                return Err(CodecError::Malformed("vd chunk not a byte string"))
            }
            (State::End, _, _) if is_break => self.state = State::Done,
            (State::End, _, _) => {
                return Err(CodecError::Malformed("not a SenML pack of one record"))
            }
            (State::Text { .. } | State::Bytes { .. } | State::Done, _, _) => {
                return Err(CodecError::Malformed("bytes after the SenML pack"))
            }
        }
        Ok(())
    }

    /// Takes the next chunk; `vd` bytes go to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        while let Some((&b, rest)) = chunk.split_first() {
            match self.state {
                State::Bytes { remaining, chunked } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    let (v, rest) = chunk.split_at(n);
                    out.extend_from_slice(v);
                    chunk = rest;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Bytes { remaining, chunked };
                    } else if chunked {
                        self.state = State::Chunk;
                    } else {
                        self.value_done()?;
                    }
                }
                State::Text { bn, remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    let (v, rest) = chunk.split_at(n);
                    if bn { &mut self.bn } else { &mut self.n }.extend_from_slice(v);
                    chunk = rest;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Text { bn, remaining };
                    } else {
                        self.value_done()?;
                    }
                }
                State::Done => return Err(CodecError::Malformed("bytes after the SenML pack")),
                _ => {
                    chunk = rest;
                    if let Some(h) = self.push_head(b)? {
                        self.on_head(h)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ok once the pack is complete.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(CodecError::Truncated)
        }
    }

    /// The value's length once a definite `vd` head has been read.
    pub fn value_len(&self) -> Option<u64> {
        self.vd_len
    }
}

#[cfg(test)]
mod tests {
    use super::super::{every_cut, Deframer};
    use crate::codec::{
        senml, CodecError, ContentFormat, Node, Path, Resource, ResourceValue, Value,
    };
    use alloc::vec;
    use alloc::vec::Vec;

    fn deframer() -> Deframer {
        Deframer::new(ContentFormat::SenmlCbor, &Path::resource(5, 0, 0)).unwrap()
    }

    /// `"text"` as CBOR.
    fn text(s: &str) -> Vec<u8> {
        let mut v = vec![0x60 | s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn what_our_encoder_writes_and_every_cut() {
        for len in [0usize, 1, 23, 24, 300] {
            let value: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let node = Node::Resource(Resource {
                id: 0,
                value: ResourceValue::Single(Value::Opaque(value.clone())),
            });
            let body = senml::encode_cbor(&node, &Path::resource(5, 0, 0)).unwrap();
            assert_eq!(every_cut(&deframer(), &body), Ok(value), "len {len}");
        }
    }

    #[test]
    fn indefinite_lengths_any_label_order_and_numbers() {
        // [_ {_ 8: (_ h'0102', h'', h'03'), 0: "0", -3: 1.5 (half), -2: "/5/0/", 6: -1} ]
        let mut body = vec![0x9f, 0xbf, 0x08, 0x5f, 0x42, 1, 2, 0x40, 0x41, 3, 0xff];
        body.extend([0x00]);
        body.extend(text("0"));
        body.extend([0x22, 0xf9, 0x3e, 0x00, 0x21]);
        body.extend(text("/5/0/"));
        body.extend([0x06, 0x20, 0xff, 0xff]);
        assert_eq!(every_cut(&deframer(), &body), Ok(vec![1, 2, 3]));
        // Full name in n, definite map, bt as a 64-bit float, bver 10.
        let mut body = vec![0x81, 0xa4, 0x00];
        body.extend(text("/5/0/0"));
        body.extend([
            0x22, 0xfb, 0x41, 0xd8, 0, 0, 0, 0, 0, 0, 0x20, 0x0a, 0x08, 0x43, 7, 8, 9,
        ]);
        assert_eq!(every_cut(&deframer(), &body), Ok(vec![7, 8, 9]));
    }

    #[test]
    fn malformed_packs_fail_at_every_cut() {
        let mut name = vec![0x21];
        name.extend(text("/5/0/0"));
        let pack = |fields: &[&[u8]], pairs: u8| {
            let mut b = vec![0x81, 0xa0 | pairs];
            for f in fields {
                b.extend_from_slice(f);
            }
            b
        };
        let vd: &[u8] = &[0x08, 0x41, 0xaa];
        let good = pack(&[&name, vd], 2);
        assert_eq!(every_cut(&deframer(), &good), Ok(vec![0xaa]));
        let mut other = vec![0x21];
        other.extend(text("/5/0/1"));
        let mut trailing = good.clone();
        trailing.push(0x00);
        let two = {
            let mut b = good.clone();
            b[0] = 0x82;
            b
        };
        let cases: Vec<(Vec<u8>, CodecError)> = vec![
            (good[..good.len() - 1].to_vec(), CodecError::Truncated),
            (
                trailing,
                CodecError::Malformed("bytes after the SenML pack"),
            ),
            (two, CodecError::Malformed("not a SenML pack of one record")),
            (
                pack(&[&other, vd], 2),
                CodecError::Malformed("SenML record of another resource"),
            ),
            (
                pack(&[&name], 1),
                CodecError::Malformed("SenML record without vd"),
            ),
            (
                pack(&[&name, vd, vd], 3),
                CodecError::Malformed("SenML record with two vd"),
            ),
            (
                pack(&[&name, &[0x02, 0x01]], 2),
                CodecError::Malformed("SenML field other than bn, n, vd, bt, t, ut, bver"),
            ),
            (
                pack(&[&name, &[0x08, 0x61, b'x']], 2),
                CodecError::Malformed("vd not a byte string"),
            ),
            (
                pack(&[&name, &[0x08, 0x5f, 0x61, b'x', 0xff]], 2),
                CodecError::Malformed("vd chunk not a byte string"),
            ),
            (
                vec![0x81, 0xa1, 0x1c],
                CodecError::Malformed("reserved CBOR additional information"),
            ),
            (
                vec![0xa1],
                CodecError::Malformed("not a SenML pack of one record"),
            ),
            (
                vec![0x81, 0x80],
                CodecError::Malformed("SenML record not a map"),
            ),
            (
                vec![0x81, 0xa1, 0x61, b'n'],
                CodecError::Malformed("SenML label"),
            ),
            (
                vec![0x81, 0xa1, 0x21, 0x78, 65],
                CodecError::Malformed("SenML name not a short text"),
            ),
        ];
        for (body, err) in cases {
            assert_eq!(every_cut(&deframer(), &body), Err(err), "{body:02x?}");
        }
    }
}
