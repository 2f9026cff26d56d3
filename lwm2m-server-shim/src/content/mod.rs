//! Chooses the client crate's codec for a content format: payload bytes <-> LwM2M nodes at a
//! path, and Leshan's format names (`?format=TLV`) <-> content formats.

use std::fmt;

use lwm2m_client::codec::{self, CodecError, ContentFormat, Node, Path, Resource, ResourceValue};

pub mod ddf;
pub mod models;
pub mod node_json;
pub mod object_model;

/// Why a payload could not be converted.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentError {
    /// The codec rejected the bytes or the node.
    Codec(CodecError),
    /// The shim has no codec for this content format.
    Unsupported(ContentFormat),
    /// The format carries single values only and the path names no resource.
    NotSingleValue,
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Codec(e) => write!(f, "{e}"),
            Self::Unsupported(cf) => write!(f, "unsupported content format {}", cf.number()),
            Self::NotSingleValue => f.write_str("this format carries one resource value only"),
        }
    }
}

impl std::error::Error for ContentError {}

impl From<CodecError> for ContentError {
    fn from(e: CodecError) -> Self {
        Self::Codec(e)
    }
}

/// Maps a Leshan format name (case-insensitive) to a content format.
pub fn format_by_name(name: &str) -> Option<ContentFormat> {
    Some(match name.to_ascii_uppercase().as_str() {
        "TLV" => ContentFormat::Tlv,
        "TEXT" => ContentFormat::Text,
        "OPAQUE" => ContentFormat::Opaque,
        "JSON" => ContentFormat::LwM2mJson,
        "SENML_JSON" => ContentFormat::SenmlJson,
        "SENML_CBOR" => ContentFormat::SenmlCbor,
        "CBOR" => ContentFormat::Cbor,
        "LINK" => ContentFormat::LinkFormat,
        _ => return None,
    })
}

fn lookup(object: u16, resource: u16) -> Option<codec::ResourceType> {
    models::resource_type(object, resource)
}

fn single(path: &Path, value: codec::Value) -> Result<Node, ContentError> {
    match (path.resource_instance_id(), path.resource_id()) {
        (Some(ri), _) => Ok(Node::ResourceInstance { id: ri, value }),
        (None, Some(r)) => Ok(Node::Resource(Resource {
            id: r,
            value: ResourceValue::Single(value),
        })),
        _ => Err(ContentError::NotSingleValue),
    }
}

/// Whether this format carries whole instances and objects both ways in the shim, as the
/// default format of a client must (LwM2M CBOR, an LwM2M 1.2 format, is not wired here).
fn multi_value(format: ContentFormat) -> bool {
    format.carries_nodes() && format != ContentFormat::LwM2mCbor
}

/// The format reads and writes of a client use when the REST call names none: the first of
/// the formats it announced (`ct`) that the shim speaks, else the one its LwM2M version makes
/// mandatory: TLV for 1.0 (TS 1.0 section 6.4), SenML CBOR for later versions (Leshan's
/// choice; a 1.1 client that speaks only TLV announces it).
pub fn default_format(lwm2m_version: &str, announced: &[ContentFormat]) -> ContentFormat {
    if let Some(cf) = announced.iter().copied().find(|cf| multi_value(*cf)) {
        return cf;
    }
    if lwm2m_version == "1.0" {
        ContentFormat::Tlv
    } else {
        ContentFormat::SenmlCbor
    }
}

/// Whether [`decode`] reads this format, so a Read may ask for it (link-format, for one,
/// describes links, not values: only Discover uses it).
pub fn decodable(format: ContentFormat) -> bool {
    multi_value(format)
        || matches!(
            format,
            ContentFormat::Text | ContentFormat::Opaque | ContentFormat::Cbor
        )
}

/// Decodes a payload the device sent for `path`.
pub fn decode(format: ContentFormat, path: &Path, bytes: &[u8]) -> Result<Node, ContentError> {
    match format {
        ContentFormat::Tlv | ContentFormat::LegacyTlv => {
            Ok(codec::tlv::decode(bytes, path, &lookup)?)
        }
        ContentFormat::SenmlJson => Ok(codec::senml::decode_json(bytes, path, &lookup)?),
        ContentFormat::SenmlCbor => Ok(codec::senml::decode_cbor(bytes, path, &lookup)?),
        ContentFormat::LwM2mJson => Ok(codec::lwm2m_json::decode(bytes, path, &lookup)?),
        ContentFormat::Text => {
            let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
                return Err(ContentError::NotSingleValue);
            };
            let ty = lookup(o, r).unwrap_or(codec::ResourceType::String);
            single(path, codec::text::decode(bytes, ty)?)
        }
        ContentFormat::Opaque => single(path, codec::Value::Opaque(bytes.to_vec())),
        ContentFormat::Cbor if path.resource_id().is_some() => {
            Ok(codec::cbor::decode(bytes, path, &lookup)?)
        }
        ContentFormat::Cbor => Err(ContentError::NotSingleValue),
        other => Err(ContentError::Unsupported(other)),
    }
}

/// Encodes a node to write at `path`.
pub fn encode(format: ContentFormat, path: &Path, node: &Node) -> Result<Vec<u8>, ContentError> {
    let single_value = || match node {
        Node::Resource(Resource {
            value: ResourceValue::Single(v),
            ..
        })
        | Node::ResourceInstance { value: v, .. } => Ok(v),
        _ => Err(ContentError::NotSingleValue),
    };
    match format {
        ContentFormat::Tlv | ContentFormat::LegacyTlv => Ok(codec::tlv::encode(node)?),
        ContentFormat::SenmlJson => Ok(codec::senml::encode_json(node, path)?),
        ContentFormat::SenmlCbor => Ok(codec::senml::encode_cbor(node, path)?),
        ContentFormat::LwM2mJson => Ok(codec::lwm2m_json::encode(node, path)?),
        ContentFormat::Text => Ok(codec::text::encode(single_value()?)),
        ContentFormat::Opaque => Ok(codec::text::encode_opaque(single_value()?)?),
        ContentFormat::Cbor => {
            single_value()?;
            Ok(codec::cbor::encode(node, path)?)
        }
        other => Err(ContentError::Unsupported(other)),
    }
}

/// Whether composite operations (SenML records with full paths) can use this format.
pub fn composite_format(format: ContentFormat) -> bool {
    matches!(format, ContentFormat::SenmlJson | ContentFormat::SenmlCbor)
}

/// Decodes a Read-Composite or Observe-Composite answer (SenML records named by full paths)
/// into the node found under each requested path, typed by the object models; `None` for a
/// path the answer has no value under (the device skips paths it lacks).
pub fn decode_composite(
    format: ContentFormat,
    paths: &[Path],
    bytes: &[u8],
) -> Result<Vec<(Path, Option<Node>)>, ContentError> {
    let leaves = match format {
        ContentFormat::SenmlJson => codec::senml::decode_json_leaves(bytes)?,
        ContentFormat::SenmlCbor => codec::senml::decode_cbor_leaves(bytes)?,
        other => return Err(ContentError::Unsupported(other)),
    };
    let mut typed = Vec::with_capacity(leaves.len());
    for (p, v) in leaves {
        let ty = p
            .object_id()
            .zip(p.resource_id())
            .and_then(|(o, r)| lookup(o, r));
        typed.push((p, ty.map_or(Ok(v.clone()), |t| v.coerce(t))?));
    }
    paths
        .iter()
        .map(|base| {
            let under: Vec<(Path, codec::Value)> = typed
                .iter()
                .filter(|(p, _)| p.starts_with(base))
                .cloned()
                .collect();
            if under.is_empty() {
                return Ok((*base, None));
            }
            Ok((*base, Some(Node::from_leaves(base, under)?)))
        })
        .collect()
}

/// Encodes the nodes of a Write-Composite (each at its path) as SenML records with full
/// names.
pub fn encode_composite(
    format: ContentFormat,
    nodes: &[(Path, Node)],
) -> Result<Vec<u8>, ContentError> {
    let mut leaves = Vec::new();
    for (p, n) in nodes {
        leaves.extend(n.leaves(p)?);
    }
    match format {
        ContentFormat::SenmlJson => Ok(codec::senml::encode_json_leaves(&Path::ROOT, &leaves)?),
        ContentFormat::SenmlCbor => Ok(codec::senml::encode_cbor_leaves(&Path::ROOT, &leaves)?),
        other => Err(ContentError::Unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_client::codec::{Instance, Value};

    #[test]
    fn every_supported_format_round_trips_a_firmware_instance() {
        let path = Path::instance(5, 0);
        let node = Node::Instance(Instance {
            id: 0,
            resources: vec![
                Resource {
                    id: 1,
                    value: ResourceValue::Single(Value::String("coap://h/fw".into())),
                },
                Resource {
                    id: 3,
                    value: ResourceValue::Single(Value::Integer(2)),
                },
                Resource {
                    id: 8,
                    value: ResourceValue::Multiple(vec![
                        (0, Value::Integer(0)),
                        (1, Value::Integer(2)),
                    ]),
                },
            ],
        });
        for cf in [
            ContentFormat::Tlv,
            ContentFormat::SenmlJson,
            ContentFormat::SenmlCbor,
            ContentFormat::LwM2mJson,
        ] {
            let bytes = encode(cf, &path, &node).expect("encode");
            assert_eq!(decode(cf, &path, &bytes).expect("decode"), node, "{cf:?}");
        }
    }

    #[test]
    fn composite_answers_split_by_requested_path() {
        let state = Path::resource(5, 0, 3);
        let device = Path::instance(3, 0);
        let nodes = vec![
            (
                state,
                Node::Resource(Resource {
                    id: 3,
                    value: ResourceValue::Single(Value::Integer(2)),
                }),
            ),
            (
                device,
                Node::Instance(Instance {
                    id: 0,
                    resources: vec![Resource {
                        id: 9,
                        value: ResourceValue::Single(Value::Integer(80)),
                    }],
                }),
            ),
        ];
        for cf in [ContentFormat::SenmlJson, ContentFormat::SenmlCbor] {
            let bytes = encode_composite(cf, &nodes).expect("encode");
            let missing = Path::resource(5, 0, 7);
            let got = decode_composite(cf, &[state, device, missing], &bytes).expect("decode");
            assert_eq!(
                got,
                vec![
                    (state, Some(nodes[0].1.clone())),
                    (device, Some(nodes[1].1.clone())),
                    (missing, None),
                ],
                "{cf:?}"
            );
        }
        assert!(!composite_format(ContentFormat::Tlv));
        assert!(decode_composite(ContentFormat::Tlv, &[state], b"").is_err());
    }

    #[test]
    fn single_value_formats() {
        let p = Path::resource(5, 0, 3);
        assert_eq!(
            decode(ContentFormat::Text, &p, b"2").expect("text"),
            Node::Resource(Resource {
                id: 3,
                value: ResourceValue::Single(Value::Integer(2))
            })
        );
        let pkg = Node::Resource(Resource {
            id: 0,
            value: ResourceValue::Single(Value::Opaque(vec![0, 1, 2])),
        });
        assert_eq!(
            encode(ContentFormat::Opaque, &Path::resource(5, 0, 0), &pkg).expect("opaque"),
            vec![0, 1, 2]
        );
        assert_eq!(
            decode(ContentFormat::Text, &Path::instance(5, 0), b"2"),
            Err(ContentError::NotSingleValue)
        );
        assert!(decode(ContentFormat::Text, &p, b"x").is_err());
        // CBOR (60): one data item, typed by the object model (/5/0/3 is an Integer).
        let state = Node::Resource(Resource {
            id: 3,
            value: ResourceValue::Single(Value::Integer(2)),
        });
        assert_eq!(decode(ContentFormat::Cbor, &p, &[0x02]), Ok(state.clone()));
        assert_eq!(encode(ContentFormat::Cbor, &p, &state), Ok(vec![0x02]));
        assert_eq!(
            decode(ContentFormat::Cbor, &Path::instance(5, 0), &[0x02]),
            Err(ContentError::NotSingleValue)
        );
        let protocols = Node::Resource(Resource {
            id: 8,
            value: ResourceValue::Multiple(vec![(0, Value::Integer(0))]),
        });
        assert_eq!(
            encode(ContentFormat::Cbor, &Path::resource(5, 0, 8), &protocols),
            Err(ContentError::NotSingleValue)
        );
        assert_eq!(format_by_name("senml_cbor"), Some(ContentFormat::SenmlCbor));
        assert_eq!(default_format("1.0", &[]), ContentFormat::Tlv);
        assert_eq!(default_format("1.1", &[]), ContentFormat::SenmlCbor);
        assert_eq!(
            default_format("1.1", &[ContentFormat::LwM2mCbor, ContentFormat::SenmlJson]),
            ContentFormat::SenmlJson
        );
        assert_eq!(format_by_name("xml"), None);
    }
}
