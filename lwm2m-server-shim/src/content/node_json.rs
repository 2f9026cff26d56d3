//! LwM2M nodes in Leshan's JSON shapes (`JacksonLwM2mNodeSerializer` / `...Deserializer`): what
//! the REST API returns for reads and notifications and accepts for writes and creates.

use std::fmt;

use lwm2m_client::codec::{Instance, Node, Path, Resource, ResourceType, ResourceValue, Value};
use serde_json::{json, Map, Value as Json};

use crate::content::models;

/// Why a JSON body is not a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeJsonError {
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong JSON type or an invalid value.
    Invalid(&'static str),
    /// `kind` names no node kind the shim knows.
    UnknownKind(String),
    /// `type` names no LwM2M data type.
    UnknownType(String),
    /// The body is JSON but not an object; what it is instead ("an array", ...).
    NotAnObject(&'static str),
    /// A value that does not fit its declared type.
    BadValue {
        /// Where it was: "resource 1", "resource 8 instance 2", or `None` when unknown.
        at: Option<String>,
        /// The declared type.
        ty: ResourceType,
        /// The value as given (JSON text, cut to 64 characters).
        value: String,
    },
}

impl NodeJsonError {
    /// Names the place of a value error that does not name one yet.
    fn at(self, place: impl FnOnce() -> String) -> Self {
        match self {
            Self::BadValue {
                at: None,
                ty,
                value,
            } => Self::BadValue {
                at: Some(place()),
                ty,
                value,
            },
            other => other,
        }
    }
}

/// What a JSON value is, for messages.
fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl fmt::Display for NodeJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(what) => write!(f, "missing field {what}"),
            Self::Invalid(what) => write!(f, "invalid {what}"),
            Self::UnknownKind(k) => write!(f, "unknown node kind {k:?}"),
            Self::UnknownType(t) => write!(f, "unknown resource type {t:?}"),
            Self::NotAnObject(what) => {
                write!(f, "expected a JSON object (a Leshan node), got {what}")
            }
            Self::BadValue { at, ty, value } => {
                if let Some(at) = at {
                    write!(f, "{at}: ")?;
                }
                write!(f, "{value} is not a valid {}", type_name(*ty))
            }
        }
    }
}

impl std::error::Error for NodeJsonError {}

/// Leshan's lower-case name of a data type.
pub fn type_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::String => "string",
        ResourceType::Integer => "integer",
        ResourceType::Unsigned => "unsigned_integer",
        ResourceType::Float => "float",
        ResourceType::Boolean => "boolean",
        ResourceType::Opaque => "opaque",
        ResourceType::Time => "time",
        ResourceType::ObjLnk => "objlnk",
        ResourceType::None => "none",
    }
}

/// Parses a type name case-insensitively (Leshan's deserializer does too).
pub fn parse_type(s: &str) -> Result<ResourceType, NodeJsonError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "string" => ResourceType::String,
        "integer" => ResourceType::Integer,
        "unsigned_integer" | "unsigned" => ResourceType::Unsigned,
        "float" => ResourceType::Float,
        "boolean" => ResourceType::Boolean,
        "opaque" => ResourceType::Opaque,
        "time" => ResourceType::Time,
        "objlnk" => ResourceType::ObjLnk,
        "none" => ResourceType::None,
        _ => return Err(NodeJsonError::UnknownType(s.into())),
    })
}

/// Leshan's form of opaque values (lower-case hex), shared with the client's codecs.
pub use lwm2m_client::codec::hex::{decode as unhex, encode as hex};

/// A value as Leshan serializes it: numbers as strings, opaque as hex, time as epoch ms.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::String(i.to_string()),
        Value::Unsigned(u) => Json::String(u.to_string()),
        Value::Float(f) => Json::String(f.to_string()),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Opaque(o) => Json::String(hex(o)),
        Value::Time(t) => json!(t.saturating_mul(1000)),
        Value::ObjLnk(o, i) => json!({"objectId": o, "objectInstanceId": i}),
    }
}

/// A resource of object `object`. A multiple resource names its type from the object model,
/// as Leshan does, so one without instances still says what its values would be; only a
/// resource the model does not know takes the type of its first value ("none" when empty).
fn resource_json(object: Option<u16>, r: &Resource) -> Json {
    match &r.value {
        ResourceValue::Single(v) => json!({
            "kind": "singleResource",
            "id": r.id,
            "type": type_name(v.resource_type()),
            "value": value_json(v),
        }),
        ResourceValue::Multiple(items) => {
            let ty = object
                .and_then(|o| models::resource_type(o, r.id))
                .or_else(|| items.first().map(|(_, v)| v.resource_type()))
                .map_or("none", type_name);
            let values: Map<String, Json> = items
                .iter()
                .map(|(id, v)| (id.to_string(), value_json(v)))
                .collect();
            json!({"kind": "multiResource", "id": r.id, "type": ty, "values": values})
        }
    }
}

fn instance_json(object: Option<u16>, i: &Instance) -> Json {
    json!({
        "kind": "instance",
        "id": i.id,
        "resources": i.resources.iter().map(|r| resource_json(object, r)).collect::<Vec<_>>(),
    })
}

/// A node read at (or notified for) `path`, in Leshan's JSON shape.
pub fn node_json(n: &Node, path: &Path) -> Json {
    let object = path.object_id();
    match n {
        Node::Object { id, instances } => json!({
            "kind": "obj",
            "id": id,
            "instances": instances.iter().map(|i| instance_json(Some(*id), i)).collect::<Vec<_>>(),
        }),
        Node::Instance(i) => instance_json(object, i),
        Node::Resource(r) => resource_json(object, r),
        Node::ResourceInstance { id, value } => json!({
            "kind": "resourceInstance",
            "id": id,
            "type": type_name(value.resource_type()),
            "value": value_json(value),
        }),
    }
}

fn field<'a>(o: &'a Map<String, Json>, name: &'static str) -> Result<&'a Json, NodeJsonError> {
    o.get(name).ok_or(NodeJsonError::Missing(name))
}

fn id_of(o: &Map<String, Json>) -> Result<u16, NodeJsonError> {
    field(o, "id")?
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| *v != u16::MAX)
        .ok_or(NodeJsonError::Invalid("id"))
}

fn number_as<T: std::str::FromStr>(j: &Json) -> Option<T> {
    match j {
        Json::String(s) => s.trim().parse().ok(),
        Json::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// The content of a composite answer as Leshan 2.0 shows it: `{"/3/0/9": node, ...}`, `null`
/// under a path the device sent no value for.
pub fn composite_json(content: &[(Path, Option<Node>)]) -> Json {
    Json::Object(
        content
            .iter()
            .map(|(p, n)| {
                (
                    p.to_string(),
                    n.as_ref().map_or(Json::Null, |n| node_json(n, p)),
                )
            })
            .collect(),
    )
}

/// Parses a value of declared type `ty` from Leshan's JSON form (numbers as strings or numbers).
pub fn parse_value(j: &Json, ty: ResourceType) -> Result<Value, NodeJsonError> {
    let mut value = j.to_string();
    if let Some((cut, _)) = value.char_indices().nth(64) {
        value.truncate(cut);
        value.push_str("...");
    }
    let bad = NodeJsonError::BadValue {
        at: None,
        ty,
        value,
    };
    Ok(match ty {
        ResourceType::String => Value::String(j.as_str().ok_or(bad)?.into()),
        ResourceType::Integer => Value::Integer(number_as(j).ok_or(bad)?),
        ResourceType::Unsigned => Value::Unsigned(number_as(j).ok_or(bad)?),
        ResourceType::Float => Value::Float(number_as(j).ok_or(bad)?),
        ResourceType::Boolean => match j {
            Json::Bool(b) => Value::Boolean(*b),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Value::Boolean(true),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Value::Boolean(false),
            _ => return Err(bad),
        },
        ResourceType::Opaque => Value::Opaque(j.as_str().and_then(unhex).ok_or(bad)?),
        ResourceType::Time => Value::Time(number_as::<i64>(j).ok_or(bad)?.div_euclid(1000)),
        ResourceType::ObjLnk => {
            let o = j.as_object().ok_or(bad.clone())?;
            let id = |k| {
                o.get(k)
                    .and_then(Json::as_u64)
                    .and_then(|v| u16::try_from(v).ok())
            };
            Value::ObjLnk(
                id("objectId").ok_or(bad.clone())?,
                id("objectInstanceId").ok_or(bad)?,
            )
        }
        ResourceType::None => return Err(NodeJsonError::Invalid("type none carries no value")),
    })
}

/// The node kinds of Leshan's JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Instance,
    MultiResource,
    SingleResource,
    ResourceInstance,
}

/// The kind of a node: its `kind` field, else, as Leshan's deserializer decides when there is
/// none (Leshan 2.0.0-M4's own JSON has none: `{"id":1,"value":"coap://..."}`), the field that
/// carries its content.
fn kind_of(o: &Map<String, Json>) -> Result<Kind, NodeJsonError> {
    let Some(kind) = o.get("kind") else {
        return if o.contains_key("instances") {
            Ok(Kind::Object)
        } else if o.contains_key("resources") {
            Ok(Kind::Instance)
        } else if o.contains_key("values") {
            Ok(Kind::MultiResource)
        } else if o.contains_key("value") {
            Ok(Kind::SingleResource)
        } else {
            Err(NodeJsonError::Missing("kind"))
        };
    };
    match kind.as_str().ok_or(NodeJsonError::Invalid("kind"))? {
        "obj" => Ok(Kind::Object),
        "instance" => Ok(Kind::Instance),
        "multiResource" => Ok(Kind::MultiResource),
        "singleResource" => Ok(Kind::SingleResource),
        "resourceInstance" => Ok(Kind::ResourceInstance),
        other => Err(NodeJsonError::UnknownKind(other.into())),
    }
}

/// The type a JSON value has, for a node that names none and whose resource no model knows.
fn json_type(v: &Json) -> Option<ResourceType> {
    match v {
        Json::Bool(_) => Some(ResourceType::Boolean),
        Json::String(_) => Some(ResourceType::String),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(ResourceType::Integer),
        Json::Number(_) => Some(ResourceType::Float),
        Json::Object(m) if m.contains_key("objectId") => Some(ResourceType::ObjLnk),
        _ => None,
    }
}

/// The `type` of a resource node; without one (Leshan 2.0.0-M4's JSON), the object model's type
/// of the resource, else the type of the JSON `sample` value.
fn type_of(
    o: &Map<String, Json>,
    model: Option<ResourceType>,
    sample: Option<&Json>,
) -> Result<ResourceType, NodeJsonError> {
    if let Some(t) = o.get("type") {
        return parse_type(t.as_str().ok_or(NodeJsonError::Invalid("type"))?);
    }
    model
        .filter(|t| *t != ResourceType::None)
        .or_else(|| sample.and_then(json_type))
        .ok_or(NodeJsonError::Missing("type"))
}

/// Where a node is written: the object it belongs to and, for a resource instance, its
/// resource, to find declared types in the object model.
#[derive(Clone, Copy)]
struct At {
    object: Option<u16>,
    resource: Option<u16>,
}

impl At {
    fn model(self, resource: Option<u16>) -> Option<ResourceType> {
        models::resource_type(self.object?, resource?)
    }
}

fn parse_resource(o: &Map<String, Json>, kind: Kind, at: At) -> Result<Resource, NodeJsonError> {
    let id = id_of(o)?;
    let value = match kind {
        Kind::SingleResource => {
            let v = field(o, "value")?;
            let ty = type_of(o, at.model(Some(id)), Some(v))?;
            ResourceValue::Single(
                parse_value(v, ty).map_err(|e| e.at(|| format!("resource {id}")))?,
            )
        }
        _ => {
            let vals = field(o, "values")?
                .as_object()
                .ok_or(NodeJsonError::Invalid("values"))?;
            let ty = type_of(o, at.model(Some(id)), vals.values().next())?;
            let mut items = Vec::with_capacity(vals.len());
            for (k, v) in vals {
                let ri = k
                    .parse::<u16>()
                    .ok()
                    .filter(|v| *v != u16::MAX)
                    .ok_or(NodeJsonError::Invalid("resource instance id"))?;
                let value = parse_value(v, ty)
                    .map_err(|e| e.at(|| format!("resource {id} instance {ri}")))?;
                items.push((ri, value));
            }
            items.sort_by_key(|(ri, _)| *ri);
            ResourceValue::Multiple(items)
        }
    };
    Ok(Resource { id, value })
}

fn parse_instance(
    o: &Map<String, Json>,
    default_id: Option<u16>,
    at: At,
) -> Result<Instance, NodeJsonError> {
    let id = match o.get("id") {
        Some(Json::Null) | None => default_id.ok_or(NodeJsonError::Missing("id"))?,
        Some(_) => id_of(o)?,
    };
    let list = field(o, "resources")?
        .as_array()
        .ok_or(NodeJsonError::Invalid("resources"))?;
    let mut resources = Vec::with_capacity(list.len());
    for r in list {
        let ro = r.as_object().ok_or(NodeJsonError::Invalid("resource"))?;
        match kind_of(ro)? {
            kind @ (Kind::SingleResource | Kind::MultiResource) => {
                resources.push(parse_resource(ro, kind, at)?)
            }
            _ => return Err(NodeJsonError::Invalid("resource")),
        }
    }
    resources.sort_by_key(|r| r.id);
    Ok(Instance { id, resources })
}

/// Parses a node body without knowing where it goes: every resource must name its `type`
/// unless the JSON value shows it. `default_instance_id` fills an instance without `id` (Create
/// lets the client choose; the shim sends the id it was given or this default).
pub fn parse_node(j: &Json, default_instance_id: Option<u16>) -> Result<Node, NodeJsonError> {
    parse_node_at(j, &Path::ROOT, default_instance_id)
}

/// Parses a node body written at `path` (or created in its object): in Leshan 2.0's form, or
/// in Leshan 2.0.0-M4's form without `kind` and `type`, whose types come from the object model
/// of `path`'s object (else from the JSON values).
pub fn parse_node_at(
    j: &Json,
    path: &Path,
    default_instance_id: Option<u16>,
) -> Result<Node, NodeJsonError> {
    let o = j
        .as_object()
        .ok_or(NodeJsonError::NotAnObject(json_kind(j)))?;
    let at = At {
        object: path.object_id(),
        resource: path.resource_id(),
    };
    match kind_of(o)? {
        kind @ (Kind::SingleResource | Kind::MultiResource) => {
            Ok(Node::Resource(parse_resource(o, kind, at)?))
        }
        Kind::ResourceInstance => {
            let id = id_of(o)?;
            let v = field(o, "value")?;
            let ty = type_of(o, at.model(at.resource), Some(v))?;
            Ok(Node::ResourceInstance {
                id,
                value: parse_value(v, ty)
                    .map_err(|e| e.at(|| format!("resource instance {id}")))?,
            })
        }
        Kind::Instance => Ok(Node::Instance(parse_instance(o, default_instance_id, at)?)),
        Kind::Object => {
            let id = id_of(o)?;
            let at = At {
                object: Some(id),
                resource: None,
            };
            let list = field(o, "instances")?
                .as_array()
                .ok_or(NodeJsonError::Invalid("instances"))?;
            let instances = list
                .iter()
                .map(|i| {
                    i.as_object()
                        .ok_or(NodeJsonError::Invalid("instance"))
                        .and_then(|io| parse_instance(io, None, at))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Node::Object { id, instances })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leshan_shapes_round_trip() {
        let cases = [
            json!({"kind":"singleResource","id":3,"type":"integer","value":"2"}),
            json!({"kind":"singleResource","id":0,"type":"opaque","value":"00ff10"}),
            json!({"kind":"singleResource","id":1,"type":"string","value":"coap://h/fw.bin"}),
            json!({"kind":"singleResource","id":13,"type":"time","value":1700000000000i64}),
            json!({"kind":"singleResource","id":2,"type":"objlnk","value":{"objectId":3,"objectInstanceId":0}}),
            json!({"kind":"multiResource","id":8,"type":"integer","values":{"0":"0","1":"1"}}),
            json!({"kind":"resourceInstance","id":1,"type":"boolean","value":true}),
            json!({"kind":"instance","id":0,"resources":[
                {"kind":"singleResource","id":3,"type":"integer","value":"0"},
                {"kind":"singleResource","id":5,"type":"integer","value":"1"}]}),
            json!({"kind":"obj","id":5,"instances":[{"kind":"instance","id":0,"resources":[]}]}),
        ];
        for c in cases {
            let node = parse_node(&c, None).expect("valid node");
            assert_eq!(node_json(&node, &Path::instance(5, 0)), c);
        }
    }

    /// A multiple resource without instances keeps its model type (Leshan's rendering of,
    /// say, a TLV read of /3/0/11 that carries no instance), in every node shape.
    #[test]
    fn empty_multiple_resources_carry_their_model_type() {
        let empty = |id| Resource {
            id,
            value: ResourceValue::Multiple(vec![]),
        };
        let want = json!({"kind":"multiResource","id":11,"type":"integer","values":{}});
        assert_eq!(
            node_json(&Node::Resource(empty(11)), &Path::resource(3, 0, 11)),
            want
        );
        let inst = Instance {
            id: 0,
            resources: vec![empty(11)],
        };
        assert_eq!(
            node_json(&Node::Instance(inst.clone()), &Path::instance(3, 0))["resources"][0],
            want
        );
        let obj = Node::Object {
            id: 3,
            instances: vec![inst],
        };
        assert_eq!(
            node_json(&obj, &Path::object(3))["instances"][0]["resources"][0],
            want
        );
        // Firmware Update Protocol Support (/5/0/8) of a push-only device.
        assert_eq!(
            node_json(&Node::Resource(empty(8)), &Path::resource(5, 0, 8))["type"],
            "integer"
        );
        // A resource no model knows: nothing to name but "none".
        assert_eq!(
            node_json(&Node::Resource(empty(7)), &Path::resource(4242, 0, 7))["type"],
            "none"
        );
    }

    #[test]
    fn input_tolerances() {
        let n = parse_node(
            &json!({"kind":"singleResource","id":3,"type":"INTEGER","value":2}),
            None,
        )
        .expect("number tolerated, type case-insensitive");
        assert_eq!(
            n,
            Node::Resource(Resource {
                id: 3,
                value: ResourceValue::Single(Value::Integer(2))
            })
        );
        let n =
            parse_node(&json!({"kind":"instance","resources":[]}), Some(7)).expect("default id");
        assert_eq!(
            n,
            Node::Instance(Instance {
                id: 7,
                resources: vec![]
            })
        );
    }

    /// Leshan 2.0.0-M4's own node JSON has neither `kind` nor `type` (`{"id":1,"value":...}`):
    /// the kind comes from the field holding the content, as Leshan decides it, the type from
    /// the object model of the path, else from the JSON value.
    #[test]
    fn leshan_m4_nodes_without_kind_and_type() {
        let at = |j: Json, p: Path| parse_node_at(&j, &p, p.instance_id()).expect("valid");
        let single = |id, value| {
            Node::Resource(Resource {
                id,
                value: ResourceValue::Single(value),
            })
        };
        assert_eq!(
            at(
                json!({"id":1,"value":"coap://h/fw"}),
                Path::resource(5, 0, 1)
            ),
            single(1, Value::String("coap://h/fw".into()))
        );
        // The model says Integer where the JSON value alone would not tell (or would say Float).
        assert_eq!(
            at(json!({"id":1,"value":"60"}), Path::resource(1, 0, 1)),
            single(1, Value::Integer(60))
        );
        assert_eq!(
            at(json!({"id":13,"value":300}), Path::resource(5, 0, 13)),
            single(13, Value::Unsigned(300))
        );
        assert_eq!(
            at(
                json!({"id":0,"resources":[{"id":3,"value":600},{"id":6,"value":false}]}),
                Path::instance(1, 0)
            ),
            Node::Instance(Instance {
                id: 0,
                resources: vec![
                    Resource {
                        id: 3,
                        value: ResourceValue::Single(Value::Integer(600))
                    },
                    Resource {
                        id: 6,
                        value: ResourceValue::Single(Value::Boolean(false))
                    },
                ]
            })
        );
        assert_eq!(
            at(
                json!({"id":8,"values":{"0":0,"1":1}}),
                Path::resource(5, 0, 8)
            ),
            Node::Resource(Resource {
                id: 8,
                value: ResourceValue::Multiple(vec![
                    (0, Value::Integer(0)),
                    (1, Value::Integer(1))
                ])
            })
        );
        // No model for the object: the JSON value's type.
        assert_eq!(
            at(json!({"id":2,"value":1.5}), Path::resource(4242, 0, 2)),
            single(2, Value::Float(1.5))
        );
        // A declared type wins over the model.
        assert_eq!(
            at(
                json!({"id":1,"type":"string","value":"60"}),
                Path::resource(1, 0, 1)
            ),
            single(1, Value::String("60".into()))
        );
        // Nothing to infer from.
        assert_eq!(
            parse_node_at(&json!({"id":1,"value":null}), &Path::ROOT, None),
            Err(NodeJsonError::Missing("type"))
        );
        assert_eq!(
            parse_node_at(&json!({"id":1}), &Path::ROOT, None),
            Err(NodeJsonError::Missing("kind"))
        );
    }

    #[test]
    fn errors_name_the_resource_its_type_and_the_value() {
        let e = |j: Json| parse_node(&j, None).unwrap_err().to_string();
        assert_eq!(
            e(json!([])),
            "expected a JSON object (a Leshan node), got an array"
        );
        assert_eq!(
            e(json!({"kind":"singleResource","id":1,"type":"integer","value":"abc"})),
            "resource 1: \"abc\" is not a valid integer"
        );
        assert_eq!(
            e(json!({"kind":"multiResource","id":8,"type":"boolean","values":{"2":7}})),
            "resource 8 instance 2: 7 is not a valid boolean"
        );
        assert_eq!(
            e(json!({"kind":"resourceInstance","id":3,"type":"opaque","value":"xyz"})),
            "resource instance 3: \"xyz\" is not a valid opaque"
        );
        let long =
            e(json!({"kind":"singleResource","id":1,"type":"integer","value":"x".repeat(300)}));
        assert!(
            long.len() < 120 && long.ends_with("... is not a valid integer"),
            "{long}"
        );
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        let bad = [
            json!([]),
            json!({"id":1}),
            json!({"kind":"nope","id":1}),
            json!({"kind":"singleResource","id":70000,"type":"integer","value":"1"}),
            json!({"kind":"singleResource","id":1,"type":"integer","value":"x"}),
            json!({"kind":"singleResource","id":1,"type":"opaque","value":"abc"}),
            json!({"kind":"singleResource","id":1,"type":"wat","value":"1"}),
            json!({"kind":"multiResource","id":1,"type":"integer","values":{"a":"1"}}),
            json!({"kind":"instance","id":0,"resources":[{"kind":"obj"}]}),
        ];
        for b in bad {
            assert!(parse_node(&b, None).is_err(), "{b}");
        }
    }
}
