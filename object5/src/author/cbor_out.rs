//! Deterministic CBOR encoding for the author side (shortest heads, definite lengths).

use crate::manifest::cbor::encode_head as cbor_head;
use std::vec::Vec;

/// A CBOR value tree small enough to build manifests with.
#[derive(Clone, Debug)]
pub enum Value {
    /// Unsigned or negative integer.
    Int(i64),
    /// Byte string.
    Bytes(Vec<u8>),
    /// Text string.
    Text(std::string::String),
    /// Array.
    Array(Vec<Value>),
    /// Map with entries in the order given (callers give canonical order).
    Map(Vec<(Value, Value)>),
    /// Tagged item.
    Tag(u64, std::boxed::Box<Value>),
    /// `null`.
    Null,
    /// Boolean.
    Bool(bool),
}

impl Value {
    /// Encodes into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// A byte string holding `inner`'s encoding (the SUIT `bstr .cbor` wrapping).
    pub fn wrap(inner: &Value) -> Value {
        Value::Bytes(inner.encode())
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(v) if *v >= 0 => head(out, 0, *v as u64),
            Value::Int(v) => head(out, 1, (-1 - *v) as u64),
            Value::Bytes(b) => {
                head(out, 2, b.len() as u64);
                out.extend_from_slice(b);
            }
            Value::Text(t) => {
                head(out, 3, t.len() as u64);
                out.extend_from_slice(t.as_bytes());
            }
            Value::Array(items) => {
                head(out, 4, items.len() as u64);
                for i in items {
                    i.encode_into(out);
                }
            }
            Value::Map(pairs) => {
                head(out, 5, pairs.len() as u64);
                for (k, v) in pairs {
                    k.encode_into(out);
                    v.encode_into(out);
                }
            }
            Value::Tag(t, inner) => {
                head(out, 6, *t);
                inner.encode_into(out);
            }
            Value::Null => out.push(0xf6),
            Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        }
    }
}

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let mut buf = [0u8; 9];
    let n = cbor_head(major, value, &mut buf);
    out.extend_from_slice(&buf[..n]);
}
