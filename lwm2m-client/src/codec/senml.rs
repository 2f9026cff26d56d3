//! SenML JSON (CF 110) and SenML CBOR (CF 112) as LwM2M 1.1 uses them (OMA TS Core 1.1 sections
//! 7.4.4-7.4.5, RFC 8428): names are LwM2M paths built from `bn` + `n`; `v` numbers, `vs`
//! strings, `vb` booleans, `vd` opaque (base64url in JSON), `vlo` object links as `"o:i"`.

use super::json::{self, Json};
use super::{base64, cbor, CodecError, Node, Path, ResourceType, TypeLookup, Value};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use minicbor::data::Type;

// SenML CBOR labels (RFC 8428 Table 6).
pub(crate) const BVER: i64 = -1;
pub(crate) const BN: i64 = -2;
pub(crate) const BT: i64 = -3;
pub(crate) const N: i64 = 0;
const V: i64 = 2;
const VS: i64 = 3;
const VB: i64 = 4;
pub(crate) const T: i64 = 6;
pub(crate) const UT: i64 = 7;
pub(crate) const VD: i64 = 8;
const VLO: &str = "vlo";

/// Splits leaf paths into a base name (the target path) and per-record relative names, the
/// way Leshan and Wakaama write them: `bn` = `/3/0/`, `n` = `0`.
pub(crate) fn names(base: &Path, leaf: &Path) -> String {
    let mut s = String::new();
    for id in leaf.ids().iter().skip(base.depth()) {
        if !s.is_empty() {
            s.push('/');
        }
        let _ = write!(s, "{id}");
    }
    s
}

pub(crate) fn base_name(base: &Path, leaves_are_below: bool) -> String {
    let mut s = base.to_string();
    if leaves_are_below && !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// Encodes a node read at `base` as SenML JSON.
pub fn encode_json(node: &Node, base: &Path) -> Result<Vec<u8>, CodecError> {
    encode_json_leaves(base, &node.leaves(base)?)
}

/// Encodes (path, value) leaves under `base` as SenML JSON; with the root as base every
/// record carries its full path (Read-Composite answers, Send).
pub fn encode_json_leaves(base: &Path, leaves: &[(Path, &Value)]) -> Result<Vec<u8>, CodecError> {
    let mut out = String::from("[");
    for (n, (p, v)) in leaves.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('{');
        let rel = names(base, p);
        if n == 0 {
            out.push_str("\"bn\":");
            json::write_string(&mut out, &base_name(base, !rel.is_empty()));
            if !rel.is_empty() {
                out.push(',');
            }
        }
        if !rel.is_empty() {
            out.push_str("\"n\":");
            json::write_string(&mut out, &rel);
        }
        if n == 0 || !rel.is_empty() {
            out.push(',');
        }
        match v {
            Value::String(s) => {
                out.push_str("\"vs\":");
                json::write_string(&mut out, s);
            }
            Value::Integer(_) | Value::Time(_) | Value::Unsigned(_) | Value::Float(_) => {
                write_number(&mut out, v)?;
            }
            Value::Boolean(b) => {
                let _ = write!(out, "\"vb\":{b}");
            }
            Value::Opaque(o) => {
                out.push_str("\"vd\":");
                json::write_string(&mut out, &base64::encode(o, base64::Alphabet::UrlSafe));
            }
            Value::ObjLnk(o, i) => {
                let _ = write!(out, "\"vlo\":\"{o}:{i}\"");
            }
        }
        out.push('}');
    }
    out.push(']');
    Ok(out.into_bytes())
}

/// Encodes the paths a Read-Composite or Observe-Composite request names (OMA TS Core 1.1
/// section 6.3.8): one SenML JSON record per path, a full name and no value.
pub fn encode_json_paths(paths: &[Path]) -> Vec<u8> {
    let mut out = String::from("[");
    for (n, p) in paths.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str("{\"n\":");
        json::write_string(&mut out, &p.to_string());
        out.push('}');
    }
    out.push(']');
    out.into_bytes()
}

/// Writes the `"v":<number>` field of a numeric value, the same in SenML JSON and LwM2M
/// JSON; a non-finite float and a value that is no number cannot be written.
pub(crate) fn write_number(out: &mut String, v: &Value) -> Result<(), CodecError> {
    match v {
        Value::Integer(i) | Value::Time(i) => {
            let _ = write!(out, "\"v\":{i}");
        }
        Value::Unsigned(u) => {
            let _ = write!(out, "\"v\":{u}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "\"v\":{f}");
        }
        _ => return Err(CodecError::Unrepresentable),
    }
    Ok(())
}

/// Accumulates base name and resolves each record to a (path, value) leaf.
struct Resolver {
    bn: String,
}

impl Resolver {
    /// The record's full name (bn + n) as a path.
    fn path(&self, n: Option<&str>) -> Result<Path, CodecError> {
        let mut full = self.bn.clone();
        full.push_str(n.unwrap_or(""));
        Path::parse(&full)
    }
}

/// Keeps records that carry a value (a record that only sets `bn` or `bt` writes nothing).
fn with_values(records: Vec<(Path, Option<Value>)>) -> Vec<(Path, Value)> {
    records
        .into_iter()
        .filter_map(|(p, v)| v.map(|v| (p, v)))
        .collect()
}

pub(crate) fn json_number(text: &str) -> Result<Value, CodecError> {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Integer(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Value::Unsigned(u));
        }
    }
    let f: f64 = text
        .parse()
        .map_err(|_| CodecError::Malformed("bad JSON number"))?;
    Ok(Value::Float(f))
}

pub(crate) fn objlnk(s: &str) -> Result<Value, CodecError> {
    super::text::decode(s.as_bytes(), ResourceType::ObjLnk)
}

/// Decodes SenML JSON into resolved (path, value) leaves with their natural types.
pub fn decode_json_leaves(bytes: &[u8]) -> Result<Vec<(Path, Value)>, CodecError> {
    json_records(bytes).map(with_values)
}

/// The paths SenML JSON records name, with or without values (a Read-Composite request).
pub fn decode_json_paths(bytes: &[u8]) -> Result<Vec<Path>, CodecError> {
    Ok(json_records(bytes)?.into_iter().map(|(p, _)| p).collect())
}

fn json_records(bytes: &[u8]) -> Result<Vec<(Path, Option<Value>)>, CodecError> {
    let s = core::str::from_utf8(bytes)
        .map_err(|_| CodecError::Malformed("SenML JSON is not UTF-8"))?;
    let Json::Array(records) = json::parse(s)? else {
        return Err(CodecError::Malformed("SenML JSON is not an array"));
    };
    let mut r = Resolver { bn: String::new() };
    let mut out = Vec::new();
    for rec in records {
        let Json::Object(members) = rec else {
            return Err(CodecError::Malformed("SenML record is not an object"));
        };
        let mut name = None;
        let mut value = None;
        for (k, v) in members {
            match (k.as_str(), v) {
                ("bn", Json::String(s)) => r.bn = s,
                ("n", Json::String(s)) => name = Some(s),
                ("v", Json::Number(t)) => value = Some(json_number(t)?),
                ("vs", Json::String(s)) => value = Some(Value::String(s)),
                ("vb", Json::Bool(b)) => value = Some(Value::Boolean(b)),
                ("vd", Json::String(s)) => value = Some(Value::Opaque(base64::decode(&s)?)),
                ("vlo", Json::String(s)) => value = Some(objlnk(&s)?),
                ("bn" | "n" | "v" | "vs" | "vb" | "vd" | "vlo", _) => {
                    return Err(CodecError::Malformed("SenML field has the wrong JSON type"))
                }
                // bt, t, u, bu, bver, s, ut...: accepted and ignored.
                _ => {}
            }
        }
        out.push((r.path(name.as_deref())?, value));
    }
    Ok(out)
}

/// Converts decoded leaves to the resources' declared types (unknown resources keep theirs).
pub(crate) fn typed(
    leaves: Vec<(Path, Value)>,
    types: TypeLookup<'_>,
) -> Result<Vec<(Path, Value)>, CodecError> {
    leaves
        .into_iter()
        .map(|(p, v)| {
            let ty = match (p.object_id(), p.resource_id()) {
                (Some(o), Some(r)) => types(o, r),
                _ => None,
            };
            Ok((
                p,
                match ty {
                    Some(t) => v.coerce(t)?,
                    None => v,
                },
            ))
        })
        .collect()
}

/// Decodes SenML JSON addressed to `base` into a node, converting values to declared types.
pub fn decode_json(bytes: &[u8], base: &Path, types: TypeLookup<'_>) -> Result<Node, CodecError> {
    Node::from_leaves(base, typed(decode_json_leaves(bytes)?, types)?)
}

type Enc = minicbor::Encoder<Vec<u8>>;

fn cbor_err<E>(_: minicbor::encode::Error<E>) -> CodecError {
    CodecError::Unrepresentable
}

/// Encodes a node read at `base` as SenML CBOR.
pub fn encode_cbor(node: &Node, base: &Path) -> Result<Vec<u8>, CodecError> {
    encode_cbor_leaves(base, &node.leaves(base)?)
}

/// Encodes (path, value) leaves under `base` as SenML CBOR (see [`encode_json_leaves`]).
pub fn encode_cbor_leaves(base: &Path, leaves: &[(Path, &Value)]) -> Result<Vec<u8>, CodecError> {
    let mut e: Enc = minicbor::Encoder::new(Vec::new());
    e.array(leaves.len() as u64).map_err(cbor_err)?;
    for (n, (p, v)) in leaves.iter().enumerate() {
        let rel = names(base, p);
        let fields = 1 + u64::from(n == 0) + u64::from(!rel.is_empty());
        e.map(fields).map_err(cbor_err)?;
        if n == 0 {
            e.i64(BN)
                .map_err(cbor_err)?
                .str(&base_name(base, !rel.is_empty()))
                .map_err(cbor_err)?;
        }
        if !rel.is_empty() {
            e.i64(N).map_err(cbor_err)?.str(&rel).map_err(cbor_err)?;
        }
        match v {
            Value::String(s) => e.i64(VS).map_err(cbor_err)?.str(s).map_err(cbor_err)?,
            Value::Integer(i) | Value::Time(i) => {
                e.i64(V).map_err(cbor_err)?.i64(*i).map_err(cbor_err)?
            }
            Value::Unsigned(u) => e.i64(V).map_err(cbor_err)?.u64(*u).map_err(cbor_err)?,
            Value::Float(f) => e.i64(V).map_err(cbor_err)?.f64(*f).map_err(cbor_err)?,
            Value::Boolean(b) => e.i64(VB).map_err(cbor_err)?.bool(*b).map_err(cbor_err)?,
            Value::Opaque(o) => e.i64(VD).map_err(cbor_err)?.bytes(o).map_err(cbor_err)?,
            Value::ObjLnk(o, i) => {
                let mut s = String::new();
                let _ = write!(s, "{o}:{i}");
                e.str(VLO).map_err(cbor_err)?.str(&s).map_err(cbor_err)?
            }
        };
    }
    Ok(e.into_writer())
}

/// Encodes the paths of a Read-Composite or Observe-Composite request as SenML CBOR (see
/// [`encode_json_paths`]).
pub fn encode_cbor_paths(paths: &[Path]) -> Result<Vec<u8>, CodecError> {
    let mut e: Enc = minicbor::Encoder::new(Vec::new());
    e.array(paths.len() as u64).map_err(cbor_err)?;
    for p in paths {
        e.map(1)
            .map_err(cbor_err)?
            .i64(N)
            .map_err(cbor_err)?
            .str(&p.to_string())
            .map_err(cbor_err)?;
    }
    Ok(e.into_writer())
}

fn dec_err(_: minicbor::decode::Error) -> CodecError {
    CodecError::Malformed("bad SenML CBOR")
}

/// Longest definite length we accept before reading elements (each needs at least one byte).
fn bounded(len: Option<u64>, remaining: usize) -> Result<Option<u64>, CodecError> {
    match len {
        Some(n) if n > remaining as u64 => Err(CodecError::Truncated),
        other => Ok(other),
    }
}

/// Decodes SenML CBOR into resolved (path, value) leaves with their natural types.
pub fn decode_cbor_leaves(bytes: &[u8]) -> Result<Vec<(Path, Value)>, CodecError> {
    cbor_records(bytes).map(with_values)
}

/// The paths SenML CBOR records name, with or without values (a Read-Composite request).
pub fn decode_cbor_paths(bytes: &[u8]) -> Result<Vec<Path>, CodecError> {
    Ok(cbor_records(bytes)?.into_iter().map(|(p, _)| p).collect())
}

fn cbor_records(bytes: &[u8]) -> Result<Vec<(Path, Option<Value>)>, CodecError> {
    let mut d = minicbor::Decoder::new(bytes);
    let len = bounded(d.array().map_err(dec_err)?, bytes.len())?;
    let mut r = Resolver { bn: String::new() };
    let mut out = Vec::new();
    let mut i = 0u64;
    loop {
        match len {
            Some(n) if i >= n => break,
            None if d.datatype().map_err(dec_err)? == Type::Break => {
                d.skip().map_err(dec_err)?;
                break;
            }
            _ => {}
        }
        i += 1;
        let fields = bounded(d.map().map_err(dec_err)?, bytes.len())?;
        let mut name: Option<String> = None;
        let mut value = None;
        let mut j = 0u64;
        loop {
            match fields {
                Some(n) if j >= n => break,
                None if d.datatype().map_err(dec_err)? == Type::Break => {
                    d.skip().map_err(dec_err)?;
                    break;
                }
                _ => {}
            }
            j += 1;
            let key = match d.datatype().map_err(dec_err)? {
                Type::String => {
                    if d.str().map_err(dec_err)? == VLO {
                        Some(None)
                    } else {
                        None
                    }
                }
                Type::U8
                | Type::U16
                | Type::U32
                | Type::U64
                | Type::I8
                | Type::I16
                | Type::I32
                | Type::I64 => Some(Some(d.i64().map_err(dec_err)?)),
                _ => {
                    return Err(CodecError::Malformed(
                        "SenML CBOR label is not an int or text",
                    ))
                }
            };
            match key {
                Some(None) => value = Some(objlnk(d.str().map_err(dec_err)?)?),
                Some(Some(BN)) => r.bn = d.str().map_err(dec_err)?.to_string(),
                Some(Some(N)) => name = Some(d.str().map_err(dec_err)?.to_string()),
                Some(Some(V)) => {
                    value = Some(match cbor::read_item(&mut d)? {
                        v @ (Value::Integer(_) | Value::Unsigned(_) | Value::Float(_)) => v,
                        _ => return Err(CodecError::Malformed("SenML v is not a number")),
                    })
                }
                Some(Some(VS)) => {
                    value = Some(Value::String(d.str().map_err(dec_err)?.to_string()))
                }
                Some(Some(VB)) => value = Some(Value::Boolean(d.bool().map_err(dec_err)?)),
                Some(Some(VD)) => value = Some(Value::Opaque(d.bytes().map_err(dec_err)?.to_vec())),
                _ => d.skip().map_err(dec_err)?,
            }
        }
        out.push((r.path(name.as_deref())?, value));
    }
    if d.position() != bytes.len() {
        return Err(CodecError::Malformed("trailing data after SenML CBOR"));
    }
    Ok(out)
}

/// Decodes SenML CBOR addressed to `base` into a node, converting values to declared types.
pub fn decode_cbor(bytes: &[u8], base: &Path, types: TypeLookup<'_>) -> Result<Node, CodecError> {
    Node::from_leaves(base, typed(decode_cbor_leaves(bytes)?, types)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Instance, Resource, ResourceValue};
    use alloc::vec;

    fn fw_instance() -> Node {
        Node::Instance(Instance {
            id: 0,
            resources: vec![
                Resource {
                    id: 1,
                    value: ResourceValue::Single(Value::String("coap://h/fw".into())),
                },
                Resource {
                    id: 3,
                    value: ResourceValue::Single(Value::Integer(0)),
                },
                Resource {
                    id: 8,
                    value: ResourceValue::Multiple(vec![
                        (0, Value::Integer(0)),
                        (1, Value::Integer(1)),
                    ]),
                },
                Resource {
                    id: 14,
                    value: ResourceValue::Single(Value::Boolean(false)),
                },
                Resource {
                    id: 20,
                    value: ResourceValue::Single(Value::Opaque(vec![0xfb, 0xff])),
                },
                Resource {
                    id: 21,
                    value: ResourceValue::Single(Value::ObjLnk(3, 0)),
                },
                Resource {
                    id: 22,
                    value: ResourceValue::Single(Value::Float(1.5)),
                },
            ],
        })
    }

    fn types(_o: u16, r: u16) -> Option<ResourceType> {
        Some(match r {
            1 => ResourceType::String,
            14 => ResourceType::Boolean,
            20 => ResourceType::Opaque,
            21 => ResourceType::ObjLnk,
            22 => ResourceType::Float,
            _ => ResourceType::Integer,
        })
    }

    #[test]
    fn json_matches_lwm2m_layout_and_round_trips() {
        let base = Path::instance(5, 0);
        let bytes = encode_json(&fw_instance(), &base).unwrap();
        let s = core::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            s,
            r#"[{"bn":"/5/0/","n":"1","vs":"coap://h/fw"},{"n":"3","v":0},{"n":"8/0","v":0},{"n":"8/1","v":1},{"n":"14","vb":false},{"n":"20","vd":"-_8"},{"n":"21","vlo":"3:0"},{"n":"22","v":1.5}]"#
        );
        assert_eq!(decode_json(&bytes, &base, &types).unwrap(), fw_instance());
        let single = Node::Resource(Resource {
            id: 3,
            value: ResourceValue::Single(Value::Integer(2)),
        });
        let p = Path::resource(5, 0, 3);
        let b = encode_json(&single, &p).unwrap();
        assert_eq!(b, br#"[{"bn":"/5/0/3","v":2}]"#);
        assert_eq!(decode_json(&b, &p, &types).unwrap(), single);
        // Leshan writes a string resource with a full name and no base.
        let w = decode_json(
            br#"[{"n":"/5/0/1","vs":"coap://x"}]"#,
            &Path::resource(5, 0, 1),
            &types,
        )
        .unwrap();
        assert_eq!(
            w,
            Node::Resource(Resource {
                id: 1,
                value: ResourceValue::Single(Value::String("coap://x".into()))
            })
        );
        assert!(decode_json(br#"[{"n":"/5/0/1","vs":3}]"#, &p, &types).is_err());
        assert!(decode_json(br#"[{"n":"/6/0/1","v":3}]"#, &p, &types).is_err());
    }

    /// Writers that pick the shortest exact float (Leshan's CBOR library) send `v` 1.5 as a
    /// half float; a tag is no number.
    #[test]
    fn cbor_v_may_be_a_half_float() {
        // [{0: "/9/0/2", 2: 1.5 (half)}]
        let mut b = vec![0x81, 0xa2, 0x00, 0x66];
        b.extend_from_slice(b"/9/0/2");
        b.extend([0x02, 0xf9, 0x3e, 0x00]);
        assert_eq!(
            decode_cbor_leaves(&b),
            Ok(vec![(Path::resource(9, 0, 2), Value::Float(1.5))])
        );
        let n = b.len();
        b.splice(n - 3.., [0xc1, 0x01]);
        assert!(decode_cbor_leaves(&b).is_err(), "tag 1 is not a SenML v");
    }

    #[test]
    fn cbor_matches_rfc8428_labels_and_round_trips() {
        let base = Path::instance(5, 0);
        let bytes = encode_cbor(&fw_instance(), &base).unwrap();
        // [ {-2: "/5/0/", 0: "1", 3: "coap://h/fw"}, ...
        assert_eq!(&bytes[..4], &[0x87 + 1, 0xA3, 0x21, 0x65]);
        assert_eq!(decode_cbor(&bytes, &base, &types).unwrap(), fw_instance());
        let single = Node::Resource(Resource {
            id: 3,
            value: ResourceValue::Single(Value::Integer(2)),
        });
        let p = Path::resource(5, 0, 3);
        let b = encode_cbor(&single, &p).unwrap();
        assert_eq!(
            b,
            [0x81, 0xA2, 0x21, 0x66, b'/', b'5', b'/', b'0', b'/', b'3', 0x02, 0x02]
        );
        assert_eq!(decode_cbor(&b, &p, &types).unwrap(), single);
        assert!(decode_cbor(
            &[0x9B, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &p,
            &types
        )
        .is_err());
        assert!(decode_cbor(&[0x81], &p, &types).is_err());
        assert!(decode_cbor(&[0x80, 0x00], &p, &types).is_err());
    }

    #[test]
    fn path_lists_round_trip_in_both_encodings() {
        let paths: Vec<Path> = ["/3/0/0", "/5/0", "/3/0/11/1", "/1"]
            .iter()
            .map(|s| Path::parse(s).expect("path"))
            .collect();
        let json = encode_json_paths(&paths);
        assert_eq!(
            core::str::from_utf8(&json).expect("utf-8"),
            r#"[{"n":"/3/0/0"},{"n":"/5/0"},{"n":"/3/0/11/1"},{"n":"/1"}]"#
        );
        assert_eq!(decode_json_paths(&json), Ok(paths.clone()));
        let cbor = encode_cbor_paths(&paths).expect("encodes");
        assert_eq!(decode_cbor_paths(&cbor), Ok(paths));
        assert_eq!(encode_json_paths(&[]), b"[]");
    }
}
