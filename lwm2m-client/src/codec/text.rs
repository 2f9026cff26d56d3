//! text/plain (CF 0) and opaque (CF 42) single values (OMA TS Core 1.1, sections 7.3.1-7.3.2).

use super::{base64, CodecError, ResourceType, Value};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Encodes one value as text/plain: decimal numbers, `0`/`1` booleans, `o:i` object links,
/// base64 for opaque.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = match value {
        Value::String(v) => s.write_str(v),
        Value::Integer(v) | Value::Time(v) => write!(s, "{v}"),
        Value::Unsigned(v) => write!(s, "{v}"),
        Value::Float(v) => write!(s, "{v}"),
        Value::Boolean(v) => s.write_str(if *v { "1" } else { "0" }),
        Value::Opaque(v) => s.write_str(&base64::encode(v, base64::Alphabet::Standard)),
        Value::ObjLnk(o, i) => write!(s, "{o}:{i}"),
    };
    s.into_bytes()
}

/// Decodes a text/plain payload as a value of type `ty`.
pub fn decode(bytes: &[u8], ty: ResourceType) -> Result<Value, CodecError> {
    let s = core::str::from_utf8(bytes).map_err(|_| CodecError::Malformed("text is not UTF-8"))?;
    let bad = |what| CodecError::BadValue(what);
    Ok(match ty {
        ResourceType::String => Value::String(String::from(s)),
        ResourceType::Integer => {
            Value::Integer(s.trim().parse().map_err(|_| bad("not an integer"))?)
        }
        ResourceType::Time => Value::Time(s.trim().parse().map_err(|_| bad("not a time"))?),
        ResourceType::Unsigned => Value::Unsigned(
            s.trim()
                .parse()
                .map_err(|_| bad("not an unsigned integer"))?,
        ),
        ResourceType::Float => {
            let f: f64 = s.trim().parse().map_err(|_| bad("not a float"))?;
            if !f.is_finite() {
                return Err(bad("float is not finite"));
            }
            Value::Float(f)
        }
        ResourceType::Boolean => match s.trim() {
            "0" | "false" => Value::Boolean(false),
            "1" | "true" => Value::Boolean(true),
            _ => return Err(bad("not a boolean")),
        },
        ResourceType::Opaque => Value::Opaque(base64::decode(s.trim())?),
        ResourceType::ObjLnk => {
            let (o, i) = s
                .trim()
                .split_once(':')
                .ok_or(bad("object link is not o:i"))?;
            Value::ObjLnk(
                o.parse().map_err(|_| bad("bad object id"))?,
                i.parse().map_err(|_| bad("bad instance id"))?,
            )
        }
        ResourceType::None => return Err(CodecError::Unrepresentable),
    })
}

/// Encodes an opaque value for CF 42: the raw bytes. Other types are not representable.
pub fn encode_opaque(value: &Value) -> Result<Vec<u8>, CodecError> {
    match value {
        Value::Opaque(v) => Ok(v.clone()),
        _ => Err(CodecError::Unrepresentable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let cases = [
            (
                Value::String("Open Mobile Alliance".into()),
                ResourceType::String,
                &b"Open Mobile Alliance"[..],
            ),
            (Value::Integer(-42), ResourceType::Integer, b"-42"),
            (
                Value::Unsigned(u64::MAX),
                ResourceType::Unsigned,
                b"18446744073709551615",
            ),
            (Value::Float(1.5), ResourceType::Float, b"1.5"),
            (Value::Boolean(true), ResourceType::Boolean, b"1"),
            (
                Value::Opaque(alloc::vec![1, 2, 3]),
                ResourceType::Opaque,
                b"AQID",
            ),
            (
                Value::Time(1_700_000_000),
                ResourceType::Time,
                b"1700000000",
            ),
            (Value::ObjLnk(3, 0), ResourceType::ObjLnk, b"3:0"),
        ];
        for (v, t, wire) in cases {
            assert_eq!(encode(&v), wire);
            assert_eq!(decode(wire, t).unwrap(), v);
        }
        assert!(decode(b"x", ResourceType::Integer).is_err());
        assert!(decode(b"2", ResourceType::Boolean).is_err());
        assert!(decode(b"inf", ResourceType::Float).is_err());
        assert!(decode(&[0xff], ResourceType::String).is_err());
    }
}
