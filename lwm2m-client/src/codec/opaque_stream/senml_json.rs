//! The `vd` of one SenML JSON record (RFC 8428 sections 4.3 and 5; OMA TS Core 1.1 section
//! 7.4.4): `[{"bn":"/5/0/","n":"0","vd":"<base64>"}]` with any whitespace, labels in any
//! order, `bn` / `n` naming the written resource and the numbers `bver`, `bt`, `t`, `ut`
//! allowed. `vd` is decoded from base64 (URL-safe or standard, padding optional) as its
//! characters arrive; a JSON encoder may escape its `/` as `\/`.

use super::MAX_NAME;
use crate::codec::base64::StreamDecoder;
use crate::codec::json::simple_escape;
use crate::codec::CodecError;
use alloc::vec::Vec;

/// Longest label accepted (`bver`).
const MAX_LABEL: usize = 4;
/// Longest number accepted in a numeric field.
const MAX_NUMBER: usize = 32;

/// Which string is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Str {
    Label,
    Bn,
    N,
    Vd,
}

/// Inside a string: after a backslash, or in the hex digits of `\uXXXX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    Backslash,
    Unicode { digits: u8, code: u32 },
}

/// What the next bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Array,
    Record,
    /// A label's opening quote (or `}` for an empty record when `first`).
    Label {
        first: bool,
    },
    /// The `:` after a label.
    Colon,
    /// A value for the label just read.
    Value,
    /// Inside a string.
    InString(Str),
    /// Inside a number, this many characters so far.
    Number(usize),
    /// `,` or `}` after a value.
    AfterValue,
    /// `]` after the record.
    AfterRecord,
    /// Complete: only whitespace may follow.
    Done,
}

/// Streams `vd` out of a SenML JSON pack with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdStream {
    target: Vec<u8>,
    state: State,
    escape: Escape,
    label: Vec<u8>,
    bn: Vec<u8>,
    n: Vec<u8>,
    vd_seen: bool,
    base64: StreamDecoder,
}

fn malformed(what: &'static str) -> CodecError {
    CodecError::Malformed(what)
}

impl VdStream {
    /// Expects the record to name `target` (e.g. `/5/0/0`).
    pub fn new(target: Vec<u8>) -> Self {
        Self {
            target,
            state: State::Array,
            escape: Escape::None,
            label: Vec::new(),
            bn: Vec::new(),
            n: Vec::new(),
            vd_seen: false,
            base64: StreamDecoder::default(),
        }
    }

    fn record_done(&mut self) -> Result<(), CodecError> {
        if !self.vd_seen {
            return Err(malformed("SenML record without vd"));
        }
        let mut name = self.bn.clone();
        name.extend_from_slice(&self.n);
        if name != self.target {
            return Err(malformed("SenML record of another resource"));
        }
        self.state = State::AfterRecord;
        Ok(())
    }

    /// A value starts with `b` for the label just read.
    fn value(&mut self, b: u8) -> Result<(), CodecError> {
        self.state = match (self.label.as_slice(), b) {
            (b"bn", b'"') => {
                self.bn.clear();
                State::InString(Str::Bn)
            }
            (b"n", b'"') => {
                self.n.clear();
                State::InString(Str::N)
            }
            (b"vd", b'"') if !self.vd_seen => {
                self.vd_seen = true;
                State::InString(Str::Vd)
            }
            (b"vd", b'"') => return Err(malformed("SenML record with two vd")),
            (b"bver" | b"bt" | b"t" | b"ut", b'-' | b'0'..=b'9') => State::Number(1),
            (b"bn" | b"n", _) => return Err(malformed("SenML name not a string")),
            (b"vd", _) => return Err(malformed("vd not a string")),
            _ => {
                return Err(malformed(
                    "SenML field other than bn, n, vd, bt, t, ut, bver",
                ))
            }
        };
        Ok(())
    }

    /// Bytes of a label or name, bounded.
    fn push_name(&mut self, s: Str, bytes: &[u8]) -> Result<(), CodecError> {
        let (buf, max) = match s {
            Str::Label => (&mut self.label, MAX_LABEL),
            Str::Bn => (&mut self.bn, MAX_NAME),
            _ => (&mut self.n, MAX_NAME),
        };
        if buf.len() + bytes.len() > max {
            return Err(malformed(if s == Str::Label {
                "SenML field other than bn, n, vd, bt, t, ut, bver"
            } else {
                "SenML name too long"
            }));
        }
        buf.extend_from_slice(bytes);
        Ok(())
    }

    /// One character of a label or name written as an escape.
    fn push_char(&mut self, s: Str, c: char) -> Result<(), CodecError> {
        let mut utf8 = [0u8; 4];
        self.push_name(s, c.encode_utf8(&mut utf8).as_bytes())
    }

    /// One byte inside string `s`.
    fn in_string(&mut self, s: Str, b: u8, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match (self.escape, b) {
            (Escape::None, b'"') => {
                self.state = match s {
                    Str::Label => State::Colon,
                    Str::Vd => {
                        self.base64.finish(out)?;
                        State::AfterValue
                    }
                    Str::Bn | Str::N => State::AfterValue,
                };
            }
            (Escape::None, b'\\') => self.escape = Escape::Backslash,
            (Escape::None, 0..=0x1f) => return Err(malformed("control character in a string")),
            (Escape::None, b) if s == Str::Vd => self.base64.push(b, out)?,
            // Names are compared byte for byte with the path, so they are kept as written.
            (Escape::None, b) => self.push_name(s, &[b])?,
            (Escape::Backslash, b'/') if s == Str::Vd => {
                self.escape = Escape::None;
                self.base64.push(b'/', out)?;
            }
            (Escape::Backslash, _) if s == Str::Vd => {
                return Err(malformed("escape other than \\/ in vd"))
            }
            (Escape::Backslash, b'u') => self.escape = Escape::Unicode { digits: 0, code: 0 },
            (Escape::Backslash, b) => {
                let c = simple_escape(b).ok_or(malformed("bad JSON escape"))?;
                self.escape = Escape::None;
                self.push_char(s, c)?;
            }
            (Escape::Unicode { digits, code }, b) => {
                let d = char::from(b)
                    .to_digit(16)
                    .ok_or(malformed("bad JSON escape"))?;
                let code = code << 4 | d;
                if digits < 3 {
                    self.escape = Escape::Unicode {
                        digits: digits + 1,
                        code,
                    };
                } else {
                    self.escape = Escape::None;
                    // Surrogate pairs never occur in a path; a lone surrogate is no character.
                    let c = char::from_u32(code).ok_or(malformed("bad JSON escape"))?;
                    self.push_char(s, c)?;
                }
            }
        }
        Ok(())
    }

    /// Takes one byte.
    fn byte(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::InString(s) => return self.in_string(s, b, out),
            State::Number(len) => {
                if matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    if len >= MAX_NUMBER {
                        return Err(malformed("SenML number too long"));
                    }
                    self.state = State::Number(len + 1);
                    return Ok(());
                }
                // The number ended: this byte follows the value.
                self.state = State::AfterValue;
            }
            _ => {}
        }
        if ws {
            return Ok(());
        }
        match (self.state, b) {
            (State::Array, b'[') => self.state = State::Record,
            (State::Array, _) => return Err(malformed("not a SenML pack of one record")),
            (State::Record, b'{') => self.state = State::Label { first: true },
            (State::Record, _) => return Err(malformed("SenML record not an object")),
            (State::Label { .. }, b'"') => {
                self.label.clear();
                self.state = State::InString(Str::Label);
            }
            (State::Label { first: true }, b'}') => self.record_done()?,
            (State::Label { .. }, _) => return Err(malformed("SenML label")),
            (State::Colon, b':') => self.state = State::Value,
            (State::Colon, _) => return Err(malformed("expected : after a SenML label")),
            (State::Value, b) => self.value(b)?,
            (State::AfterValue, b',') => self.state = State::Label { first: false },
            (State::AfterValue, b'}') => self.record_done()?,
            (State::AfterValue, _) => return Err(malformed("expected , or } after a SenML value")),
            (State::AfterRecord, b']') => self.state = State::Done,
            (State::AfterRecord, _) => return Err(malformed("not a SenML pack of one record")),
            (State::Done | State::InString(_) | State::Number(_), _) => {
                return Err(malformed("bytes after the SenML pack"))
            }
        }
        Ok(())
    }

    /// Takes the next chunk; decoded `vd` bytes go to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        chunk.iter().try_for_each(|b| self.byte(*b, out))
    }

    /// Ok once the pack is complete.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(CodecError::Truncated)
        }
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
        Deframer::new(ContentFormat::SenmlJson, &Path::resource(5, 0, 0)).unwrap()
    }

    #[test]
    fn what_our_encoder_writes_and_every_cut() {
        for len in [0usize, 1, 2, 3, 4, 100] {
            let value: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let node = Node::Resource(Resource {
                id: 0,
                value: ResourceValue::Single(Value::Opaque(value.clone())),
            });
            let body = senml::encode_json(&node, &Path::resource(5, 0, 0)).unwrap();
            assert_eq!(every_cut(&deframer(), &body), Ok(value), "len {len}");
        }
    }

    #[test]
    fn whitespace_order_escapes_padding_and_numbers() {
        // Standard alphabet with padding and an escaped '/', labels in another order, the
        // name written with a \u escape, numbers of every shape.
        let body = br#" [ { "vd" : "+/\/+/w==" , "t":-1.5e3, "n" : "\u0030" ,"bt":0,
            "bn":"/5/0/", "bver":10 } ] "#;
        assert_eq!(
            every_cut(&deframer(), body),
            Ok(vec![0xfb, 0xff, 0xfe, 0xff])
        );
        let body = br#"[{"n":"/5/0/0","vd":"-_8"}]"#;
        assert_eq!(every_cut(&deframer(), body), Ok(vec![0xfb, 0xff]));
    }

    #[test]
    fn malformed_packs_fail_at_every_cut() {
        let m = CodecError::Malformed;
        let cases: [(&[u8], CodecError); 16] = [
            (br#"[{"bn":"/5/0/0","vd":"AAAA"}"#, CodecError::Truncated),
            (br#"[{"bn":"/5/0/0","vd":"AAAA"#, CodecError::Truncated),
            (
                br#"[{"bn":"/5/0/0","vd":"AAAA"}] x"#,
                m("bytes after the SenML pack"),
            ),
            (
                br#"[{"bn":"/5/0/0","vd":"AAAA"},{"n":"1"}]"#,
                m("not a SenML pack of one record"),
            ),
            (
                br#"[{"bn":"/5/0/1","vd":"AAAA"}]"#,
                m("SenML record of another resource"),
            ),
            (br#"[{"bn":"/5/0/0"}]"#, m("SenML record without vd")),
            (br#"[{}]"#, m("SenML record without vd")),
            (
                br#"[{"bn":"/5/0/0","vd":"AA","vd":"AA"}]"#,
                m("SenML record with two vd"),
            ),
            (
                br#"[{"bn":"/5/0/0","v":1}]"#,
                m("SenML field other than bn, n, vd, bt, t, ut, bver"),
            ),
            (br#"[{"bn":"/5/0/0","vd":"A"}]"#, m("bad base64 length")),
            (
                br#"[{"bn":"/5/0/0","vd":"AA*A"}]"#,
                m("bad base64 character"),
            ),
            (
                br#"[{"bn":"/5/0/0","vd":"AA\nA"}]"#,
                m("escape other than \\/ in vd"),
            ),
            (br#"[{"bn":"/5/0/0","vd":1}]"#, m("vd not a string")),
            (br#"[{"bn":"/5/0/0\x"}]"#, m("bad JSON escape")),
            (br#"{"bn":"/5/0/0"}"#, m("not a SenML pack of one record")),
            (
                br#"[{"bn":"/5/0/0","vd":"AAAA" "t":1}]"#,
                m("expected , or } after a SenML value"),
            ),
        ];
        for (body, err) in cases {
            assert_eq!(
                every_cut(&deframer(), body),
                Err(err),
                "{}",
                core::str::from_utf8(body).unwrap()
            );
        }
        let long = [&br#"[{"bn":""#[..], &[b'/'; 65], br#"","vd":""}]"#].concat();
        assert_eq!(every_cut(&deframer(), &long), Err(m("SenML name too long")));
    }
}
