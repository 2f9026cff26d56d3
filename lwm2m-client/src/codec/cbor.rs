//! CBOR (CF 60, application/cbor): the LwM2M 1.1 single-value format (OMA TS Core 1.1 section
//! 7.4, "CBOR"), one resource or resource-instance value as one CBOR data item (RFC 8949):
//! Integer and Unsigned as major types 0/1, Float as a float, Boolean as a simple value, String
//! and Object Link (`"o:i"`) as text strings, Opaque as a byte string, Time as tag 1 over
//! integer seconds (RFC 8949 section 3.4.2). Like LwM2M CBOR, which nests these same items in
//! maps and shares the item reader and writer from here, it carries no types: the resource's
//! declared type decides (a float item for an Integer resource must be integral).

use super::senml::typed;
use super::{CodecError, Node, Path, TypeLookup, Value};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use minicbor::data::{Tag, Type};

/// The encoder both CBOR formats write with.
pub(crate) type Enc = minicbor::Encoder<Vec<u8>>;

/// Time as CBOR: tag 1 (epoch seconds) or the bare integer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeItem {
    /// `1(seconds)`, as this format's readers (Leshan's among them) expect a Time.
    Tagged,
    /// The bare integer, as LwM2M CBOR has always been written here.
    Bare,
}

fn enc_err<E>(_: minicbor::encode::Error<E>) -> CodecError {
    CodecError::Unrepresentable
}

pub(crate) fn dec_err(_: minicbor::decode::Error) -> CodecError {
    CodecError::Malformed("bad CBOR")
}

/// Writes one value as one CBOR data item.
pub(crate) fn write_item(e: &mut Enc, v: &Value, time: TimeItem) -> Result<(), CodecError> {
    match v {
        Value::String(s) => e.str(s).map_err(enc_err)?,
        Value::Time(t) if time == TimeItem::Tagged => e
            .tag(Tag::new(1))
            .map_err(enc_err)?
            .i64(*t)
            .map_err(enc_err)?,
        Value::Integer(i) | Value::Time(i) => e.i64(*i).map_err(enc_err)?,
        Value::Unsigned(u) => e.u64(*u).map_err(enc_err)?,
        Value::Float(f) => e.f64(*f).map_err(enc_err)?,
        Value::Boolean(b) => e.bool(*b).map_err(enc_err)?,
        Value::Opaque(o) => e.bytes(o).map_err(enc_err)?,
        Value::ObjLnk(o, i) => {
            let mut s = String::new();
            let _ = write!(s, "{o}:{i}");
            e.str(&s).map_err(enc_err)?
        }
    };
    Ok(())
}

/// Reads a float item of any width. Half precision (RFC 8949 section 3.3) is decoded here,
/// since writers that pick the shortest exact form (Leshan's CBOR library does) send small
/// values such as 1.5 as two bytes.
pub(crate) fn read_float(d: &mut minicbor::Decoder<'_>) -> Result<f64, CodecError> {
    if d.datatype().map_err(dec_err)? != Type::F16 {
        return d.f64().map_err(dec_err);
    }
    let at = d.position();
    let Some(&[_, hi, lo]) = d.input().get(at..at + 3) else {
        return Err(CodecError::Truncated);
    };
    let half = u64::from(u16::from_be_bytes([hi, lo]));
    d.set_position(at + 3);
    let sign = (half >> 15) << 63;
    let (exp, mant) = ((half >> 10) & 0x1f, half & 0x3ff);
    Ok(match exp {
        // Subnormal: mant * 2^-24, exact in f64.
        0 => {
            let v = mant as f64 / 16_777_216.0;
            if sign == 0 {
                v
            } else {
                -v
            }
        }
        // Infinity and NaN keep their payload bits.
        31 => f64::from_bits(sign | (0x7ff << 52) | (mant << 42)),
        _ => f64::from_bits(sign | ((exp + 1023 - 15) << 52) | (mant << 42)),
    })
}

/// Reads one CBOR data item as a value of its natural type (tag 1 over an integer: Time).
pub(crate) fn read_item(d: &mut minicbor::Decoder<'_>) -> Result<Value, CodecError> {
    Ok(match d.datatype().map_err(dec_err)? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            let u = d.u64().map_err(dec_err)?;
            i64::try_from(u)
                .map(Value::Integer)
                .unwrap_or(Value::Unsigned(u))
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::Integer(d.i64().map_err(dec_err)?),
        Type::F16 | Type::F32 | Type::F64 => Value::Float(read_float(d)?),
        Type::Bool => Value::Boolean(d.bool().map_err(dec_err)?),
        Type::String => Value::String(d.str().map_err(dec_err)?.to_string()),
        Type::Bytes => Value::Opaque(d.bytes().map_err(dec_err)?.to_vec()),
        Type::Tag => {
            if d.tag().map_err(dec_err)? != Tag::new(1) {
                return Err(CodecError::Malformed("unsupported CBOR tag"));
            }
            Value::Time(d.i64().map_err(dec_err)?)
        }
        _ => return Err(CodecError::Malformed("unsupported CBOR data item")),
    })
}

/// Encodes the single value of a resource or resource instance read at `base`; anything else
/// (an instance, a multiple resource) is [`CodecError::Unrepresentable`].
pub fn encode(node: &Node, base: &Path) -> Result<Vec<u8>, CodecError> {
    let leaves = node.leaves(base)?;
    let [(p, v)] = leaves[..] else {
        return Err(CodecError::Unrepresentable);
    };
    if p != *base {
        return Err(CodecError::Unrepresentable);
    }
    let mut e: Enc = minicbor::Encoder::new(Vec::new());
    write_item(&mut e, v, TimeItem::Tagged)?;
    Ok(e.into_writer())
}

/// Decodes one data item written to the resource or resource instance `base`, converted to
/// the declared type; trailing bytes or a shorter path are refused.
pub fn decode(bytes: &[u8], base: &Path, types: TypeLookup<'_>) -> Result<Node, CodecError> {
    if base.resource_id().is_none() {
        return Err(CodecError::Unrepresentable);
    }
    let mut d = minicbor::Decoder::new(bytes);
    let value = read_item(&mut d)?;
    if d.position() != bytes.len() {
        return Err(CodecError::Malformed("trailing data after the CBOR value"));
    }
    Node::from_leaves(base, typed(alloc::vec![(*base, value)], types)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Resource, ResourceType, ResourceValue};
    use alloc::vec;

    fn types(_o: u16, r: u16) -> Option<ResourceType> {
        Some(match r {
            0 | 1 => ResourceType::String,
            2 => ResourceType::Float,
            3 => ResourceType::Integer,
            4 => ResourceType::Opaque,
            5 => ResourceType::Boolean,
            6 => ResourceType::Time,
            7 => ResourceType::ObjLnk,
            8 => ResourceType::Unsigned,
            _ => return None,
        })
    }

    fn single(id: u16, v: Value) -> Node {
        Node::Resource(Resource {
            id,
            value: ResourceValue::Single(v),
        })
    }

    /// Each LwM2M type as the RFC 8949 item the format names, and back.
    #[test]
    fn every_type_is_one_data_item_and_round_trips() {
        for (rid, v, item) in [
            (0, Value::String("Acme".into()), &b"\x64Acme"[..]),
            (3, Value::Integer(-2), b"\x21"),
            (3, Value::Integer(1000), b"\x19\x03\xe8"),
            (
                2,
                Value::Float(2.5),
                b"\xfb\x40\x04\x00\x00\x00\x00\x00\x00",
            ),
            (4, Value::Opaque(vec![0xfb, 0xff]), b"\x42\xfb\xff"),
            (5, Value::Boolean(true), b"\xf5"),
            (6, Value::Time(1_700_000_000), b"\xc1\x1a\x65\x53\xf1\x00"),
            (7, Value::ObjLnk(3, 0), b"\x633:0"),
            (
                8,
                Value::Unsigned(u64::MAX),
                b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
            ),
        ] {
            let p = Path::resource(9, 0, rid);
            let node = single(rid, v);
            let bytes = encode(&node, &p).unwrap();
            assert_eq!(bytes, item, "{node:?}");
            assert_eq!(decode(&bytes, &p, &types), Ok(node));
        }
        // A resource instance.
        let p = Path::resource_instance(9, 0, 3, 1);
        let ri = Node::ResourceInstance {
            id: 1,
            value: Value::Integer(7),
        };
        assert_eq!(encode(&ri, &p).unwrap(), [0x07]);
        assert_eq!(decode(&[0x07], &p, &types), Ok(ri));
    }

    /// Items of another CBOR type are converted to the declared type when lossless, as
    /// writers that know no model send them (an integral float, an untagged time).
    #[test]
    fn items_take_the_declared_type() {
        let p = |r| Path::resource(9, 0, r);
        // 3.0 as a half float for the Integer resource 3; 1 for the Float resource 2.
        assert_eq!(
            decode(&[0xf9, 0x42, 0x00], &p(3), &types),
            Ok(single(3, Value::Integer(3)))
        );
        assert_eq!(
            decode(&[0x01], &p(2), &types),
            Ok(single(2, Value::Float(1.0)))
        );
        assert_eq!(
            decode(&[0x1a, 0x65, 0x53, 0xf1, 0x00], &p(6), &types),
            Ok(single(6, Value::Time(1_700_000_000)))
        );
        assert_eq!(
            decode(b"\x633:0", &p(7), &types),
            Ok(single(7, Value::ObjLnk(3, 0)))
        );
        // Unknown resource: the item's own type.
        assert_eq!(
            decode(b"\x41\x00", &p(99), &types),
            Ok(single(99, Value::Opaque(vec![0])))
        );
    }

    /// Half floats (RFC 8949 appendix D examples): normal, subnormal, signed zero, infinity.
    #[test]
    fn half_floats_decode() {
        let half = |b: [u8; 2]| {
            let bytes = [0xf9, b[0], b[1]];
            read_float(&mut minicbor::Decoder::new(&bytes)).unwrap()
        };
        assert_eq!(half([0x3c, 0x00]), 1.0);
        assert_eq!(half([0x3e, 0x00]), 1.5);
        assert_eq!(half([0x7b, 0xff]), 65504.0);
        assert_eq!(half([0xc4, 0x00]), -4.0);
        assert_eq!(half([0x00, 0x01]), 5.960_464_477_539_063e-8);
        assert_eq!(half([0x04, 0x00]), 6.103_515_625e-5);
        assert!(half([0x80, 0x00]) == 0.0 && half([0x80, 0x00]).is_sign_negative());
        assert_eq!(half([0x7c, 0x00]), f64::INFINITY);
        assert_eq!(half([0xfc, 0x00]), f64::NEG_INFINITY);
        assert!(half([0x7e, 0x00]).is_nan());
        assert_eq!(
            read_float(&mut minicbor::Decoder::new(&[0xf9, 0x3c])),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn malformed_and_unrepresentable_inputs_are_refused() {
        let p = Path::resource(9, 0, 3);
        for bad in [
            &b""[..],
            b"\x01\x02",
            b"\x64Acm",
            b"\x64Acme",
            b"\xf9\x42\x40",
            b"\xc0\x01",
            b"\x80",
            b"\xa0",
            b"\xf6",
            b"\x1c",
        ] {
            assert!(decode(bad, &p, &types).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode(&[0x01], &Path::instance(9, 0), &types),
            Err(CodecError::Unrepresentable)
        );
        let multiple = Node::Resource(Resource {
            id: 3,
            value: ResourceValue::Multiple(vec![(0, Value::Integer(1))]),
        });
        assert_eq!(encode(&multiple, &p), Err(CodecError::Unrepresentable));
        let empty = Node::Resource(Resource {
            id: 3,
            value: ResourceValue::Multiple(vec![]),
        });
        assert_eq!(encode(&empty, &p), Err(CodecError::Unrepresentable));
    }
}
