//! OMA LwM2M TLV (CF 11542; OMA TS Core 1.1 section 7.4.3).
//!
//! Each entry: a type byte (bits 7-6 kind, bit 5 16-bit identifier, bits 4-3 length-field size,
//! bits 2-0 short length), the identifier, the length, then the value or nested entries.

use super::{
    CodecError, Instance, Node, Path, Resource, ResourceType, ResourceValue, TypeLookup, Value,
};
use alloc::vec::Vec;

/// The four TLV entry kinds (type byte bits 7-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 00: object instance, value = resource entries.
    ObjectInstance = 0,
    /// 01: resource instance, value = the value bytes.
    ResourceInstance = 1,
    /// 10: multiple resource, value = resource instance entries.
    MultipleResource = 2,
    /// 11: resource with a value.
    ResourceValue = 3,
}

/// One raw entry borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Entry kind.
    pub kind: Kind,
    /// Identifier.
    pub id: u16,
    /// Value bytes (nested entries for instances and multiple resources).
    pub value: &'a [u8],
}

/// Splits a TLV byte string into its top-level entries.
pub fn entries(mut buf: &[u8]) -> Result<Vec<Entry<'_>>, CodecError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (entry, rest) = next_entry(buf)?;
        out.push(entry);
        buf = rest;
    }
    Ok(out)
}

fn take(buf: &[u8], n: usize) -> Result<(&[u8], &[u8]), CodecError> {
    if buf.len() < n {
        return Err(CodecError::Truncated);
    }
    Ok(buf.split_at(n))
}

fn be(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
}

fn next_entry(buf: &[u8]) -> Result<(Entry<'_>, &[u8]), CodecError> {
    let (ty, rest) = take(buf, 1)?;
    let ty = ty.first().copied().ok_or(CodecError::Truncated)?;
    let kind = match ty >> 6 {
        0 => Kind::ObjectInstance,
        1 => Kind::ResourceInstance,
        2 => Kind::MultipleResource,
        _ => Kind::ResourceValue,
    };
    let id_len = if ty & 0x20 != 0 { 2 } else { 1 };
    let (id, rest) = take(rest, id_len)?;
    let id = u16::try_from(be(id)).map_err(|_| CodecError::Malformed("TLV identifier"))?;
    let len_len = usize::from((ty >> 3) & 0x03);
    let (len, rest) = if len_len == 0 {
        (usize::from(ty & 0x07), rest)
    } else {
        let (l, rest) = take(rest, len_len)?;
        (be(l), rest)
    };
    let (value, rest) = take(rest, len)?;
    Ok((Entry { kind, id, value }, rest))
}

fn write_header(out: &mut Vec<u8>, kind: Kind, id: u16, len: usize) -> Result<(), CodecError> {
    let mut ty = (kind as u8) << 6;
    if id > 0xff {
        ty |= 0x20;
    }
    let len_bytes: usize = match len {
        0..=7 => {
            ty |= len as u8;
            0
        }
        8..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xff_ffff => 3,
        _ => return Err(CodecError::Unrepresentable),
    };
    ty |= (len_bytes as u8) << 3;
    out.push(ty);
    if id > 0xff {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    let lb = (len as u32).to_be_bytes();
    out.extend_from_slice(lb.get(4 - len_bytes..).unwrap_or(&[]));
    Ok(())
}

fn write_entry(out: &mut Vec<u8>, kind: Kind, id: u16, value: &[u8]) -> Result<(), CodecError> {
    write_header(out, kind, id, value.len())?;
    out.extend_from_slice(value);
    Ok(())
}

/// Encodes one value's bytes (integers in the fewest of 1/2/4/8 bytes, floats in 4 bytes when
/// exact, else 8).
pub fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) | Value::Time(i) => {
            let i = *i;
            if let Ok(x) = i8::try_from(i) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = i16::try_from(i) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = i32::try_from(i) {
                x.to_be_bytes().to_vec()
            } else {
                i.to_be_bytes().to_vec()
            }
        }
        Value::Unsigned(u) => {
            let u = *u;
            if let Ok(x) = u8::try_from(u) {
                alloc::vec![x]
            } else if let Ok(x) = u16::try_from(u) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = u32::try_from(u) {
                x.to_be_bytes().to_vec()
            } else {
                u.to_be_bytes().to_vec()
            }
        }
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                narrow.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => alloc::vec![u8::from(*b)],
        Value::Opaque(o) => o.clone(),
        Value::ObjLnk(o, i) => {
            let mut v = o.to_be_bytes().to_vec();
            v.extend_from_slice(&i.to_be_bytes());
            v
        }
    }
}

/// Decodes one value's bytes as type `ty`.
pub fn decode_value(b: &[u8], ty: ResourceType) -> Result<Value, CodecError> {
    let bad = CodecError::BadValue;
    Ok(match ty {
        ResourceType::String => Value::String(alloc::string::String::from(
            core::str::from_utf8(b).map_err(|_| bad("string is not UTF-8"))?,
        )),
        ResourceType::Integer | ResourceType::Time => {
            // Sign-extend a 1, 2, 4 or 8-byte big-endian two's complement value.
            if !matches!(b.len(), 1 | 2 | 4 | 8) {
                return Err(bad("integer is not 1, 2, 4 or 8 bytes"));
            }
            let negative = b.first().is_some_and(|x| x & 0x80 != 0);
            let start = if negative { -1i64 } else { 0 };
            let i = b.iter().fold(start, |acc, x| (acc << 8) | i64::from(*x));
            if ty == ResourceType::Time {
                Value::Time(i)
            } else {
                Value::Integer(i)
            }
        }
        ResourceType::Unsigned => match b.len() {
            1 | 2 | 4 | 8 => {
                Value::Unsigned(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
            }
            _ => return Err(bad("unsigned integer is not 1, 2, 4 or 8 bytes")),
        },
        ResourceType::Float => {
            if let Ok(x) = <[u8; 4]>::try_from(b) {
                Value::Float(f64::from(f32::from_be_bytes(x)))
            } else if let Ok(x) = <[u8; 8]>::try_from(b) {
                Value::Float(f64::from_be_bytes(x))
            } else {
                return Err(bad("float is not 4 or 8 bytes"));
            }
        }
        ResourceType::Boolean => match b {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(bad("boolean is not one byte 0 or 1")),
        },
        ResourceType::Opaque | ResourceType::None => Value::Opaque(b.to_vec()),
        ResourceType::ObjLnk => match b {
            [a, c, d, e] => {
                Value::ObjLnk(u16::from_be_bytes([*a, *c]), u16::from_be_bytes([*d, *e]))
            }
            _ => return Err(bad("object link is not 4 bytes")),
        },
    })
}

fn encode_resource(out: &mut Vec<u8>, r: &Resource) -> Result<(), CodecError> {
    match &r.value {
        ResourceValue::Single(v) => write_entry(out, Kind::ResourceValue, r.id, &encode_value(v)),
        ResourceValue::Multiple(items) => {
            let mut inner = Vec::new();
            for (ri, v) in items {
                write_entry(&mut inner, Kind::ResourceInstance, *ri, &encode_value(v))?;
            }
            write_entry(out, Kind::MultipleResource, r.id, &inner)
        }
    }
}

fn encode_instance_body(inst: &Instance) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    for r in &inst.resources {
        encode_resource(&mut out, r)?;
    }
    Ok(out)
}

/// Encodes a node. An instance is written as its bare resources (what Leshan and Wakaama
/// send for `/o/i`); an object as object-instance entries.
pub fn encode(node: &Node) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    match node {
        Node::Object { instances, .. } => {
            for inst in instances {
                write_entry(
                    &mut out,
                    Kind::ObjectInstance,
                    inst.id,
                    &encode_instance_body(inst)?,
                )?;
            }
        }
        Node::Instance(inst) => out = encode_instance_body(inst)?,
        Node::Resource(r) => encode_resource(&mut out, r)?,
        Node::ResourceInstance { id, value } => {
            write_entry(&mut out, Kind::ResourceInstance, *id, &encode_value(value))?
        }
    }
    Ok(out)
}

fn decode_resource(
    e: &Entry<'_>,
    object: u16,
    types: TypeLookup<'_>,
) -> Result<Resource, CodecError> {
    let ty = types(object, e.id).unwrap_or(ResourceType::Opaque);
    let value = match e.kind {
        Kind::ResourceValue => ResourceValue::Single(decode_value(e.value, ty)?),
        Kind::MultipleResource => {
            let mut items = Vec::new();
            for ri in entries(e.value)? {
                if ri.kind != Kind::ResourceInstance {
                    return Err(CodecError::Malformed(
                        "multiple resource holds a non-instance entry",
                    ));
                }
                items.push((ri.id, decode_value(ri.value, ty)?));
            }
            ResourceValue::Multiple(items)
        }
        _ => return Err(CodecError::Malformed("expected a resource entry")),
    };
    Ok(Resource { id: e.id, value })
}

fn decode_instance(
    id: u16,
    body: &[u8],
    object: u16,
    types: TypeLookup<'_>,
) -> Result<Instance, CodecError> {
    let mut resources = Vec::new();
    for e in entries(body)? {
        resources.push(decode_resource(&e, object, types)?);
    }
    Ok(Instance { id, resources })
}

/// Decodes a TLV payload addressed to `path` (the request's target). Types come from `types`;
/// unknown resources decode as opaque.
pub fn decode(buf: &[u8], path: &Path, types: TypeLookup<'_>) -> Result<Node, CodecError> {
    let object = path.object_id().ok_or(CodecError::Unrepresentable)?;
    let top = entries(buf)?;
    match path.depth() {
        1 => {
            let mut instances = Vec::new();
            for e in top {
                if e.kind != Kind::ObjectInstance {
                    return Err(CodecError::Malformed(
                        "object payload holds a non-instance entry",
                    ));
                }
                instances.push(decode_instance(e.id, e.value, object, types)?);
            }
            Ok(Node::Object {
                id: object,
                instances,
            })
        }
        2 => {
            let iid = path.instance_id().unwrap_or(0);
            // Either bare resources or one object-instance wrapper with the same id.
            match top.as_slice() {
                [e] if e.kind == Kind::ObjectInstance => {
                    if e.id != iid {
                        return Err(CodecError::Malformed("instance id differs from the path"));
                    }
                    Ok(Node::Instance(decode_instance(
                        iid, e.value, object, types,
                    )?))
                }
                _ => Ok(Node::Instance(decode_instance(iid, buf, object, types)?)),
            }
        }
        3 => match top.as_slice() {
            [e] if e.kind == Kind::ResourceValue || e.kind == Kind::MultipleResource => {
                if Some(e.id) != path.resource_id() {
                    return Err(CodecError::Malformed("resource id differs from the path"));
                }
                Ok(Node::Resource(decode_resource(e, object, types)?))
            }
            _ => Err(CodecError::Malformed("expected one resource entry")),
        },
        4 => match top.as_slice() {
            [e] if e.kind == Kind::ResourceInstance
                && Some(e.id) == path.resource_instance_id() =>
            {
                let ty =
                    types(object, path.resource_id().unwrap_or(0)).unwrap_or(ResourceType::Opaque);
                Ok(Node::ResourceInstance {
                    id: e.id,
                    value: decode_value(e.value, ty)?,
                })
            }
            _ => Err(CodecError::Malformed(
                "expected one resource instance entry",
            )),
        },
        _ => Err(CodecError::Unrepresentable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn device_types(_o: u16, r: u16) -> Option<ResourceType> {
        Some(match r {
            0 | 1 | 2 | 3 | 14 | 15 => ResourceType::String,
            13 => ResourceType::Time,
            _ => ResourceType::Integer,
        })
    }

    #[test]
    fn spec_example_device_instance() {
        // OMA TS Core 1.1 section 7.4.3.2, Table 7.4.3.2-2 (first entries of /3/0).
        let node = Node::Instance(Instance {
            id: 0,
            resources: vec![
                Resource {
                    id: 0,
                    value: ResourceValue::Single(Value::String("Open Mobile Alliance".into())),
                },
                Resource {
                    id: 6,
                    value: ResourceValue::Multiple(vec![
                        (0, Value::Integer(1)),
                        (1, Value::Integer(5)),
                    ]),
                },
                Resource {
                    id: 9,
                    value: ResourceValue::Single(Value::Integer(100)),
                },
                Resource {
                    id: 13,
                    value: ResourceValue::Single(Value::Time(0x5182_428F)),
                },
            ],
        });
        let bytes = encode(&node).unwrap();
        let mut expect = vec![0xC8, 0x00, 0x14];
        expect.extend_from_slice(b"Open Mobile Alliance");
        expect.extend_from_slice(&[0x86, 0x06, 0x41, 0x00, 0x01, 0x41, 0x01, 0x05]);
        expect.extend_from_slice(&[0xC1, 0x09, 0x64]);
        expect.extend_from_slice(&[0xC4, 0x0D, 0x51, 0x82, 0x42, 0x8F]);
        assert_eq!(bytes, expect);
        assert_eq!(
            decode(&bytes, &Path::instance(3, 0), &device_types).unwrap(),
            node
        );
        // The same instance wrapped in an object instance entry decodes identically.
        let obj = Node::Object {
            id: 3,
            instances: vec![match node.clone() {
                Node::Instance(i) => i,
                _ => unreachable!(),
            }],
        };
        let wrapped = encode(&obj).unwrap();
        assert_eq!(&wrapped[..2], &[0x08, 0x00]);
        assert_eq!(
            decode(&wrapped, &Path::object(3), &device_types).unwrap(),
            obj
        );
        assert_eq!(
            decode(&wrapped, &Path::instance(3, 0), &device_types).unwrap(),
            node
        );
    }

    #[test]
    fn long_ids_and_lengths() {
        let big = vec![0xAB; 300];
        let node = Node::Resource(Resource {
            id: 1000,
            value: ResourceValue::Single(Value::Opaque(big.clone())),
        });
        let bytes = encode(&node).unwrap();
        assert_eq!(&bytes[..5], &[0xF0, 0x03, 0xE8, 0x01, 0x2C]);
        assert_eq!(
            decode(&bytes, &Path::resource(5, 0, 1000), &|_, _| None).unwrap(),
            node
        );
    }

    #[test]
    fn integers_sign_extend_at_every_width() {
        for v in [
            0i64,
            1,
            -1,
            127,
            -128,
            128,
            -129,
            32767,
            -32768,
            70000,
            -70000,
            i64::MAX,
            i64::MIN,
        ] {
            let bytes = encode_value(&Value::Integer(v));
            assert_eq!(
                decode_value(&bytes, ResourceType::Integer).unwrap(),
                Value::Integer(v),
                "{v}"
            );
        }
        assert_eq!(
            decode_value(&[0xFF, 0xFE], ResourceType::Integer).unwrap(),
            Value::Integer(-2)
        );
        assert!(decode_value(&[0, 0, 0], ResourceType::Integer).is_err());
    }

    #[test]
    fn rejects_malformed() {
        let t = &device_types;
        assert_eq!(
            decode(&[0xC8, 0x00, 0x14, b'a'], &Path::instance(3, 0), t),
            Err(CodecError::Truncated)
        );
        assert!(decode(&[0xC3, 0x09, 1, 2, 3], &Path::resource(3, 0, 9), t).is_err());
        assert!(decode(&[0xC1, 0x08, 1], &Path::resource(3, 0, 9), t).is_err());
        assert!(decode(&[0x20], &Path::instance(3, 0), t).is_err());
    }
}
