//! The value of one TLV resource entry (OMA TS Core 1.1 section 7.4.3): a type byte (bits 7-6
//! = 11, resource with value), a 1 or 2 byte identifier that must be the written resource's,
//! a 0-3 byte length, then exactly that many value bytes and nothing after.

use crate::codec::CodecError;
use alloc::vec::Vec;

/// Streams the value out of a resource TLV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlvValue {
    id: u16,
    head: [u8; 6],
    have: usize,
    /// Value bytes still to come, once the header is complete.
    remaining: Option<u64>,
    len: Option<u64>,
}

impl TlvValue {
    /// Expects the entry of resource `id`.
    pub fn new(id: u16) -> Self {
        Self {
            id,
            head: [0; 6],
            have: 0,
            remaining: None,
            len: None,
        }
    }

    /// The header's size as far as its type byte tells it.
    fn head_len(&self) -> usize {
        match self.head.first() {
            Some(&ty) if self.have > 0 => {
                1 + if ty & 0x20 != 0 { 2 } else { 1 } + usize::from((ty >> 3) & 0x03)
            }
            _ => 1,
        }
    }

    fn parse_head(&mut self) -> Result<u64, CodecError> {
        let be = |b: &[u8]| b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
        let ty = self.head[0];
        if ty >> 6 != 0b11 {
            return Err(CodecError::Malformed("not a single resource TLV"));
        }
        let id_len = if ty & 0x20 != 0 { 2 } else { 1 };
        let id = be(self.head.get(1..1 + id_len).unwrap_or(&[]));
        if id != u64::from(self.id) {
            return Err(CodecError::Malformed("TLV of another resource"));
        }
        let len_len = usize::from((ty >> 3) & 0x03);
        Ok(if len_len == 0 {
            u64::from(ty & 0x07)
        } else {
            be(self
                .head
                .get(1 + id_len..1 + id_len + len_len)
                .unwrap_or(&[]))
        })
    }

    /// Takes the next chunk; value bytes go to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        while !chunk.is_empty() {
            match self.remaining {
                None => {
                    let take = (self.head_len() - self.have).min(chunk.len());
                    let (h, rest) = chunk.split_at(take);
                    if let Some(dst) = self.head.get_mut(self.have..self.have + take) {
                        dst.copy_from_slice(h);
                    }
                    self.have += take;
                    chunk = rest;
                    // The type byte alone may announce more header bytes.
                    if self.have == self.head_len() {
                        let len = self.parse_head()?;
                        self.len = Some(len);
                        self.remaining = Some(len);
                    }
                }
                Some(0) => return Err(CodecError::Malformed("bytes after the TLV value")),
                Some(r) => {
                    let n = usize::try_from(r).unwrap_or(usize::MAX).min(chunk.len());
                    let (v, rest) = chunk.split_at(n);
                    out.extend_from_slice(v);
                    self.remaining = Some(r - n as u64);
                    chunk = rest;
                }
            }
        }
        Ok(())
    }

    /// Ok once header and value are complete.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining {
            Some(0) => Ok(()),
            _ => Err(CodecError::Truncated),
        }
    }

    /// The value's length, once the header has been read.
    pub fn value_len(&self) -> Option<u64> {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::super::{every_cut, Deframer};
    use super::*;
    use crate::codec::{tlv, Node, Path, Resource, ResourceValue, Value};
    use crate::codec::{CodecError, ContentFormat};

    fn deframer(rid: u16) -> Deframer {
        Deframer::new(ContentFormat::Tlv, &Path::resource(5, 0, rid)).unwrap()
    }

    fn framed(rid: u16, value: &[u8]) -> Vec<u8> {
        tlv::encode(&Node::Resource(Resource {
            id: rid,
            value: ResourceValue::Single(Value::Opaque(value.to_vec())),
        }))
        .unwrap()
    }

    #[test]
    fn every_length_field_size_and_every_cut() {
        // 0-byte (short), 1, 2 and 3 byte length fields; 8 and 16-bit identifiers.
        for (rid, len) in [(0u16, 0usize), (0, 7), (0, 200), (0, 1000), (300, 70_000)] {
            let value: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let body = framed(rid, &value);
            let d = deframer(rid);
            if len <= 1000 {
                assert_eq!(every_cut(&d, &body), Ok(value), "len {len}");
            } else {
                let got = super::super::run_cut(d, &body, &[1, 2, 3, 4, 5, 6, 1000, 1001]);
                assert_eq!(got, Ok(value));
            }
        }
        let mut d = deframer(0);
        let mut out = Vec::new();
        d.feed(&framed(0, &[1; 300])[..4], &mut out).unwrap();
        assert_eq!(
            (d.value_len(), out.len()),
            (Some(300), 0),
            "length known from the header"
        );
    }

    #[test]
    fn malformed_frames_fail_at_every_cut() {
        let good = framed(0, b"package bytes");
        let mut trailing = good.clone();
        trailing.push(0);
        let mut other_kind = good.clone();
        other_kind[0] &= 0x3f; // object instance
        let cases: [(&[u8], CodecError); 5] = [
            (&good[..good.len() - 1], CodecError::Truncated),
            (&good[..1], CodecError::Truncated),
            (
                &trailing,
                CodecError::Malformed("bytes after the TLV value"),
            ),
            (
                &other_kind,
                CodecError::Malformed("not a single resource TLV"),
            ),
            (
                &framed(1, b"x"),
                CodecError::Malformed("TLV of another resource"),
            ),
        ];
        for (body, err) in cases {
            assert_eq!(every_cut(&deframer(0), body), Err(err), "{body:?}");
        }
        assert_eq!(every_cut(&deframer(0), &[]), Err(CodecError::Truncated));
    }
}
