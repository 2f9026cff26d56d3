//! LwM2M CBOR (CF 11544, OMA TS Core 1.2 section 7.4.6): nested CBOR maps keyed by the path's
//! identifiers, `{5: {0: {3: 0}}}`. The encoder writes one map level per identifier; the
//! decoder also accepts path compression (an array of identifiers as a key, `{[5, 0, 3]: 0}`)
//! and a tag-1 time. The values are the items of the plain CBOR format ([`super::cbor`]).

use super::cbor::{dec_err, read_item, write_item, Enc, TimeItem};
use super::senml::typed;
use super::{CodecError, Node, Path, TypeLookup, Value};
use alloc::vec::Vec;
use minicbor::data::Type;

fn enc_err<E>(_: minicbor::encode::Error<E>) -> CodecError {
    CodecError::Unrepresentable
}

/// Writes the leaves sharing identifiers `..depth` as one map level (or the value itself).
fn write_level(e: &mut Enc, leaves: &[(Path, &Value)], depth: usize) -> Result<(), CodecError> {
    if let [(p, v)] = leaves {
        if p.depth() == depth {
            return write_item(e, v, TimeItem::Bare);
        }
    }
    let id_at = |p: &Path| p.ids().get(depth).copied();
    let mut groups: Vec<&[(Path, &Value)]> = Vec::new();
    let mut rest = leaves;
    while let Some((first, _)) = rest.first() {
        let id = id_at(first).ok_or(CodecError::Unrepresentable)?;
        let n = rest
            .iter()
            .take_while(|(p, _)| id_at(p) == Some(id))
            .count();
        let (g, r) = rest.split_at(n);
        groups.push(g);
        rest = r;
    }
    e.map(groups.len() as u64).map_err(enc_err)?;
    for g in groups {
        let id = g
            .first()
            .and_then(|(p, _)| id_at(p))
            .ok_or(CodecError::Unrepresentable)?;
        e.u16(id).map_err(enc_err)?;
        write_level(e, g, depth + 1)?;
    }
    Ok(())
}

/// Encodes a node read at `base` (nested maps from the object id down).
pub fn encode(node: &Node, base: &Path) -> Result<Vec<u8>, CodecError> {
    let leaves = node.leaves(base)?;
    let mut e: Enc = minicbor::Encoder::new(Vec::new());
    if leaves.is_empty() {
        e.map(0).map_err(enc_err)?;
    } else {
        write_level(&mut e, &leaves, 0)?;
    }
    Ok(e.into_writer())
}

fn read_key(d: &mut minicbor::Decoder<'_>, prefix: &Path) -> Result<Path, CodecError> {
    let id = |d: &mut minicbor::Decoder<'_>| d.u16().map_err(|_| CodecError::BadPath);
    if d.datatype().map_err(dec_err)? == Type::Array {
        let n = d
            .array()
            .map_err(dec_err)?
            .ok_or(CodecError::Malformed("indefinite path array"))?;
        if n == 0 || n > 4 {
            return Err(CodecError::BadPath);
        }
        let mut p = *prefix;
        for _ in 0..n {
            p = p.child(id(d)?).ok_or(CodecError::BadPath)?;
        }
        Ok(p)
    } else {
        prefix.child(id(d)?).ok_or(CodecError::BadPath)
    }
}

fn read_level(
    d: &mut minicbor::Decoder<'_>,
    prefix: &Path,
    out: &mut Vec<(Path, Value)>,
    len: usize,
) -> Result<(), CodecError> {
    let n = d
        .map()
        .map_err(dec_err)?
        .ok_or(CodecError::Malformed("indefinite map"))?;
    if n > len as u64 {
        return Err(CodecError::Truncated);
    }
    for _ in 0..n {
        let p = read_key(d, prefix)?;
        if d.datatype().map_err(dec_err)? == Type::Map {
            // Each level adds at least one identifier, so nesting is bounded by the path depth.
            read_level(d, &p, out, len)?;
        } else {
            out.push((p, read_item(d)?));
        }
    }
    Ok(())
}

/// Decodes LwM2M CBOR into (path, value) leaves with their natural types.
pub fn decode_leaves(bytes: &[u8]) -> Result<Vec<(Path, Value)>, CodecError> {
    let mut d = minicbor::Decoder::new(bytes);
    let mut out = Vec::new();
    read_level(&mut d, &Path::ROOT, &mut out, bytes.len())?;
    if d.position() != bytes.len() {
        return Err(CodecError::Malformed("trailing data after LwM2M CBOR"));
    }
    Ok(out)
}

/// Decodes LwM2M CBOR addressed to `base`, converting values to declared types.
pub fn decode(bytes: &[u8], base: &Path, types: TypeLookup<'_>) -> Result<Node, CodecError> {
    Node::from_leaves(base, typed(decode_leaves(bytes)?, types)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Instance, Resource, ResourceType, ResourceValue};
    use alloc::vec;

    #[test]
    fn nested_maps_round_trip_and_path_compression_decodes() {
        let node = Node::Instance(Instance {
            id: 0,
            resources: vec![
                Resource {
                    id: 1,
                    value: ResourceValue::Single(Value::String("u".into())),
                },
                Resource {
                    id: 3,
                    value: ResourceValue::Single(Value::Integer(2)),
                },
                Resource {
                    id: 8,
                    value: ResourceValue::Multiple(vec![
                        (0, Value::Integer(0)),
                        (1, Value::Integer(1)),
                    ]),
                },
            ],
        });
        let base = Path::instance(5, 0);
        let bytes = encode(&node, &base).unwrap();
        // {5: {0: {1: "u", 3: 2, 8: {0: 0, 1: 1}}}}
        assert_eq!(
            bytes,
            [
                0xA1, 0x05, 0xA1, 0x00, 0xA3, 0x01, 0x61, b'u', 0x03, 0x02, 0x08, 0xA2, 0x00, 0x00,
                0x01, 0x01
            ]
        );
        let types = |_o: u16, r: u16| {
            Some(if r == 1 {
                ResourceType::String
            } else {
                ResourceType::Integer
            })
        };
        assert_eq!(decode(&bytes, &base, &types).unwrap(), node);
        // {[5, 0, 3]: 2}
        let compressed = [0xA1, 0x83, 0x05, 0x00, 0x03, 0x02];
        let r = decode(&compressed, &Path::resource(5, 0, 3), &types).unwrap();
        assert_eq!(
            r,
            Node::Resource(Resource {
                id: 3,
                value: ResourceValue::Single(Value::Integer(2))
            })
        );
        assert!(
            decode_leaves(&[0xA1, 0x85, 1, 2, 3, 4, 5, 0]).is_err(),
            "five ids"
        );
        assert!(decode_leaves(&[0xA1, 0x05]).is_err());
        assert!(decode_leaves(&[0xBB, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
