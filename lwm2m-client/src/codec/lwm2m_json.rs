//! LwM2M JSON (CF 11543, application/vnd.oma.lwm2m+json): the JSON format of LwM2M 1.0 (OMA
//! TS 1.0 section 6.4.4, Table 20), which 1.0 clients and servers such as Leshan still speak.
//!
//! One object: `bn` the base name, optional `bt` base time, and `e` the entries, each with `n`
//! (its path relative to `bn`), an optional time `t` and one value: `v` a number (Integer,
//! Unsigned, Float, Time in seconds), `bv` a boolean, `ov` an object link `"o:i"`, `sv` a
//! string (an Opaque resource's value base64-encoded). Unlike SenML, which value field an
//! entry uses does not tell Opaque from String: the resource's declared type does.

use super::json::{self, Json};
use super::senml::{base_name, json_number, names, objlnk, write_number};
use super::{base64, CodecError, Node, Path, ResourceType, TypeLookup, Value};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Encodes a node read at (or written to) `base` as LwM2M JSON, with `bn` the target path
/// and `n` relative names, as Leshan and Wakaama write it.
pub fn encode(node: &Node, base: &Path) -> Result<Vec<u8>, CodecError> {
    let leaves = node.leaves(base)?;
    // An instance or object is a container even when empty; a resource only when multiple.
    let below = base.depth() < 3 || leaves.iter().any(|(p, _)| p.depth() > base.depth());
    let mut out = String::from("{\"bn\":");
    json::write_string(&mut out, &base_name(base, below));
    out.push_str(",\"e\":[");
    for (k, (p, v)) in leaves.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push('{');
        let rel = names(base, p);
        if !rel.is_empty() {
            out.push_str("\"n\":");
            json::write_string(&mut out, &rel);
            out.push(',');
        }
        match v {
            Value::String(s) => {
                out.push_str("\"sv\":");
                json::write_string(&mut out, s);
            }
            Value::Opaque(o) => {
                out.push_str("\"sv\":");
                json::write_string(&mut out, &base64::encode(o, base64::Alphabet::Standard));
            }
            Value::Integer(_) | Value::Time(_) | Value::Unsigned(_) | Value::Float(_) => {
                write_number(&mut out, v)?;
            }
            Value::Boolean(b) => {
                let _ = write!(out, "\"bv\":{b}");
            }
            Value::ObjLnk(o, i) => {
                let _ = write!(out, "\"ov\":\"{o}:{i}\"");
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    Ok(out.into_bytes())
}

/// An entry's value before its resource type is known.
enum Raw<'a> {
    Number(&'a str),
    String(String),
    Bool(bool),
    ObjLnk(String),
}

fn number(text: &str) -> Result<f64, CodecError> {
    text.parse()
        .map_err(|_| CodecError::Malformed("bad JSON number"))
}

/// Types an entry's value by its resource's declared type (unknown resources keep the JSON
/// type: `sv` a string, `v` the narrowest number).
fn typed(raw: Raw<'_>, ty: Option<ResourceType>) -> Result<Value, CodecError> {
    let v = match (raw, ty) {
        (Raw::String(s), Some(ResourceType::Opaque)) => Value::Opaque(base64::decode(&s)?),
        (Raw::String(s), Some(ResourceType::ObjLnk)) | (Raw::ObjLnk(s), _) => objlnk(&s)?,
        (Raw::String(s), _) => Value::String(s),
        (Raw::Bool(b), _) => Value::Boolean(b),
        (Raw::Number(t), _) => json_number(t)?,
    };
    match ty {
        Some(t) => v.coerce(t),
        None => Ok(v),
    }
}

/// One entry: its full path, value and time (`bt` + `t`).
fn entry(
    e: Json<'_>,
    bn: &str,
    bt: f64,
    types: TypeLookup<'_>,
) -> Result<(Path, Value, f64), CodecError> {
    let Json::Object(fields) = e else {
        return Err(CodecError::Malformed("LwM2M JSON entry is not an object"));
    };
    let mut name = None;
    let mut t = 0.0;
    let mut raw = None;
    for (k, v) in fields {
        match (k.as_str(), v) {
            ("n", Json::String(s)) => name = Some(s),
            ("t", Json::Number(x)) => t = number(x)?,
            ("v", Json::Number(x)) => raw = Some(Raw::Number(x)),
            ("sv", Json::String(s)) => raw = Some(Raw::String(s)),
            ("bv", Json::Bool(b)) => raw = Some(Raw::Bool(b)),
            ("ov", Json::String(s)) => raw = Some(Raw::ObjLnk(s)),
            ("n" | "t" | "v" | "sv" | "bv" | "ov", _) => {
                return Err(CodecError::Malformed(
                    "LwM2M JSON field has the wrong JSON type",
                ))
            }
            _ => {}
        }
    }
    let mut full = String::from(bn);
    full.push_str(name.as_deref().unwrap_or(""));
    let path = Path::parse(&full)?;
    let raw = raw.ok_or(CodecError::Malformed("LwM2M JSON entry without a value"))?;
    let ty = match (path.object_id(), path.resource_id()) {
        (Some(o), Some(r)) => types(o, r),
        _ => None,
    };
    Ok((path, typed(raw, ty)?, bt + t))
}

/// Decodes LwM2M JSON addressed to `base` into a node, converting values to declared types.
/// When entries carry times (a notification with history), each path keeps its newest value.
pub fn decode(bytes: &[u8], base: &Path, types: TypeLookup<'_>) -> Result<Node, CodecError> {
    let s = core::str::from_utf8(bytes)
        .map_err(|_| CodecError::Malformed("LwM2M JSON is not UTF-8"))?;
    let Json::Object(members) = json::parse(s)? else {
        return Err(CodecError::Malformed("LwM2M JSON is not an object"));
    };
    let mut bn = String::new();
    let mut bt = 0.0;
    let mut entries = None;
    for (k, v) in members {
        match (k.as_str(), v) {
            ("bn", Json::String(s)) => bn = s,
            ("bt", Json::Number(x)) => bt = number(x)?,
            ("e", Json::Array(a)) => entries = Some(a),
            ("bn" | "bt" | "e", _) => {
                return Err(CodecError::Malformed(
                    "LwM2M JSON field has the wrong JSON type",
                ))
            }
            _ => {}
        }
    }
    let entries = entries.ok_or(CodecError::Malformed("LwM2M JSON without an e array"))?;
    let mut newest: BTreeMap<Path, (Value, f64)> = BTreeMap::new();
    let mut order = Vec::new();
    for e in entries {
        let (path, value, time) = entry(e, &bn, bt, types)?;
        match newest.get_mut(&path) {
            None => {
                order.push(path);
                newest.insert(path, (value, time));
            }
            Some(slot) if time > slot.1 => *slot = (value, time),
            Some(slot) if time < slot.1 => {}
            Some(_) => return Err(CodecError::Malformed("two values for one path")),
        }
    }
    let leaves = order
        .into_iter()
        .filter_map(|p| newest.remove(&p).map(|(v, _)| (p, v)))
        .collect();
    Node::from_leaves(base, leaves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Instance, Resource, ResourceValue};

    fn device_types(o: u16, r: u16) -> Option<ResourceType> {
        match (o, r) {
            (3, 0 | 1 | 3) => Some(ResourceType::String),
            (3, 6 | 9 | 11) => Some(ResourceType::Integer),
            (3, 13) => Some(ResourceType::Time),
            (5, 0) => Some(ResourceType::Opaque),
            (5, 1) => Some(ResourceType::String),
            (5, 3) => Some(ResourceType::Integer),
            (1, 6) => Some(ResourceType::Boolean),
            (2, 2) => Some(ResourceType::ObjLnk),
            _ => None,
        }
    }

    /// The Read /3/0 example of OMA TS 1.0 section 6.4.4 (JSON), abridged.
    const SPEC_DEVICE: &str = r#"{"bn":"/3/0/",
     "e":[
     {"n":"0","sv":"Open Mobile Alliance"},
     {"n":"1","sv":"Lightweight M2M Client"},
     {"n":"6/0","v":1},
     {"n":"6/1","v":5},
     {"n":"9","v":100},
     {"n":"11/0","v":0},
     {"n":"13","v":1367491215}]
    }"#;

    #[test]
    fn decodes_the_specification_example() {
        let node =
            decode(SPEC_DEVICE.as_bytes(), &Path::instance(3, 0), &device_types).expect("decode");
        let Node::Instance(inst) = node else {
            panic!("instance expected")
        };
        assert_eq!(inst.id, 0);
        let r = |id: u16| {
            inst.resources
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.value.clone())
        };
        assert_eq!(
            r(0),
            Some(ResourceValue::Single(Value::String(
                "Open Mobile Alliance".into()
            )))
        );
        assert_eq!(
            r(6),
            Some(ResourceValue::Multiple(alloc::vec![
                (0, Value::Integer(1)),
                (1, Value::Integer(5))
            ]))
        );
        assert_eq!(
            r(13),
            Some(ResourceValue::Single(Value::Time(1_367_491_215)))
        );
    }

    #[test]
    fn encodes_as_leshan_and_round_trips_every_value_type() {
        let path = Path::instance(5, 0);
        let node = Node::Instance(Instance {
            id: 0,
            resources: alloc::vec![
                Resource {
                    id: 0,
                    value: ResourceValue::Single(Value::Opaque(alloc::vec![0xfb, 0xff])),
                },
                Resource {
                    id: 1,
                    value: ResourceValue::Single(Value::String("coap://h/\"fw\"".into())),
                },
                Resource {
                    id: 3,
                    value: ResourceValue::Single(Value::Integer(-2)),
                },
            ],
        });
        let bytes = encode(&node, &path).expect("encode");
        assert_eq!(
            core::str::from_utf8(&bytes).expect("utf8"),
            r#"{"bn":"/5/0/","e":[{"n":"0","sv":"+/8="},{"n":"1","sv":"coap://h/\"fw\""},{"n":"3","v":-2}]}"#
        );
        assert_eq!(decode(&bytes, &path, &device_types), Ok(node));
        // Single resources: bn is the resource, the entry has no name.
        let res = Node::Resource(Resource {
            id: 6,
            value: ResourceValue::Single(Value::Boolean(true)),
        });
        let p = Path::resource(1, 0, 6);
        let bytes = encode(&res, &p).expect("encode");
        assert_eq!(bytes, br#"{"bn":"/1/0/6","e":[{"bv":true}]}"#);
        assert_eq!(decode(&bytes, &p, &device_types), Ok(res));
        let link = Node::Resource(Resource {
            id: 2,
            value: ResourceValue::Single(Value::ObjLnk(3, 0)),
        });
        let p = Path::resource(2, 1, 2);
        let bytes = encode(&link, &p).expect("encode");
        assert_eq!(bytes, br#"{"bn":"/2/1/2","e":[{"ov":"3:0"}]}"#);
        assert_eq!(decode(&bytes, &p, &device_types), Ok(link));
        let f = Node::Resource(Resource {
            id: 7,
            value: ResourceValue::Single(Value::Float(2.5)),
        });
        let p = Path::resource(9, 0, 7);
        assert_eq!(
            decode(&encode(&f, &p).expect("encode"), &p, &device_types),
            Ok(f)
        );
    }

    #[test]
    fn timestamped_entries_keep_the_newest_value() {
        let doc = br#"{"bn":"/5/0/3","bt":100,"e":[{"v":1,"t":-5},{"v":2},{"v":0,"t":-10}]}"#;
        assert_eq!(
            decode(doc, &Path::resource(5, 0, 3), &device_types),
            Ok(Node::Resource(Resource {
                id: 3,
                value: ResourceValue::Single(Value::Integer(2))
            }))
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        let p = Path::instance(5, 0);
        for doc in [
            &b"[]"[..],
            b"{}",
            b"{\"e\":{}}",
            b"{\"bn\":5,\"e\":[]}",
            b"{\"bn\":\"/5/0/\",\"e\":[{\"n\":\"3\"}]}",
            b"{\"bn\":\"/5/0/\",\"e\":[{\"n\":\"3\",\"v\":\"1\"}]}",
            b"{\"bn\":\"/5/0/\",\"e\":[{\"n\":\"0\",\"sv\":\"***\"}]}",
            b"{\"bn\":\"/5/0/\",\"e\":[{\"n\":\"3\",\"v\":1},{\"n\":\"3\",\"v\":2}]}",
            b"{\"bn\":\"/6/0/\",\"e\":[{\"n\":\"3\",\"v\":1}]}",
            b"{\"bn\":\"/5/0/\",\"e\":[{\"n\":\"x\",\"v\":1}]}",
            b"\xff",
        ] {
            assert!(
                decode(doc, &p, &device_types).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        assert_eq!(
            encode(
                &Node::Resource(Resource {
                    id: 1,
                    value: ResourceValue::Single(Value::Float(f64::NAN))
                }),
                &Path::resource(9, 0, 1)
            ),
            Err(CodecError::Unrepresentable)
        );
    }
}
