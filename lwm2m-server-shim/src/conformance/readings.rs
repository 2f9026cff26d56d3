//! What the device announced and what it reports before any case runs: its registration (objects,
//! content formats from `ct` on the root link, LwM2M version, binding) and its firmware object's
//! capabilities (/5/0/8 protocols, /5/0/9 delivery method), which decide the N/A verdicts.

use lwm2m_client::codec::{ContentFormat, Node, Path, ResourceValue, Value};
use object5::machine::Protocol;
use serde_json::{json, Value as Json};

use crate::content;
use crate::content::node_json::node_json;
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::Registration;
use crate::server::requests::DmResponse;

/// Content formats the device announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Formats {
    /// The `ct` numbers of the root link; `None` when the registration carries none.
    announced: Option<Vec<u16>>,
}

impl Formats {
    /// From the registration's object links (core TS 1.1 section 6.2.1: `ct` on `</>`).
    pub fn of(links: &ObjectLinks) -> Self {
        let root = links.root_path();
        let announced = links
            .links()
            .iter()
            .find(|l| {
                l.target == root || l.target.trim_end_matches('/') == root.trim_end_matches('/')
            })
            .and_then(|l| l.get("ct"))
            .map(|ct| {
                ct.split([' ', ','])
                    .filter_map(|n| n.trim().parse::<u16>().ok())
                    .collect()
            });
        Self { announced }
    }

    /// Whether the device takes `cf`. Without an announcement, LwM2M 1.0's mandatory formats
    /// (TLV, plain text) are assumed; plain text for single resources is always assumed.
    pub fn supports(&self, cf: ContentFormat) -> bool {
        if cf == ContentFormat::Text {
            return true;
        }
        match &self.announced {
            Some(list) => list.contains(&cf.number()),
            None => cf == ContentFormat::Tlv,
        }
    }

    /// The multi-value format the runner reads and writes instances in: TLV, SenML CBOR or
    /// SenML JSON, the first the device takes.
    pub fn preferred(&self) -> Option<ContentFormat> {
        [
            ContentFormat::Tlv,
            ContentFormat::SenmlCbor,
            ContentFormat::SenmlJson,
        ]
        .into_iter()
        .find(|cf| self.supports(*cf))
    }

    /// What was announced, for the evidence.
    pub fn describe(&self) -> String {
        match &self.announced {
            Some(l) => format!("ct={l:?}"),
            None => "no ct announced (LwM2M 1.0 defaults: TLV, text)".into(),
        }
    }
}

/// The device's firmware object as read before the firmware cases.
#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareReading {
    /// CoAP code of the Read of /5/0.
    pub code: String,
    /// Pull protocols (/5/0/8), raw values.
    pub protocols: Vec<i64>,
    /// Delivery method (/5/0/9): 0 pull, 1 push, 2 both; `None` when absent.
    pub delivery: Option<i64>,
    /// State (/5/0/3).
    pub state: Option<i64>,
    /// Update Result (/5/0/5).
    pub result: Option<i64>,
    /// The instance in Leshan's JSON shape.
    pub node: Json,
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Unsigned(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

impl FirmwareReading {
    /// From the answer to a Read of /5/0.
    pub fn from_response(r: &DmResponse) -> Self {
        let path = Path::instance(5, 0);
        let node = r
            .is_success()
            .then(|| {
                content::decode(
                    r.content_format.unwrap_or(ContentFormat::Tlv),
                    &path,
                    &r.payload,
                )
                .ok()
            })
            .flatten();
        let mut out = Self {
            code: r.code_string(),
            protocols: Vec::new(),
            delivery: None,
            state: None,
            result: None,
            node: node
                .as_ref()
                .map(|n| node_json(n, &path))
                .unwrap_or(Json::Null),
        };
        let Some(Node::Instance(inst)) = node else {
            return out;
        };
        for res in &inst.resources {
            match (res.id, &res.value) {
                (3, ResourceValue::Single(v)) => out.state = int(v),
                (5, ResourceValue::Single(v)) => out.result = int(v),
                (9, ResourceValue::Single(v)) => out.delivery = int(v),
                (8, ResourceValue::Multiple(items)) => {
                    out.protocols = items.iter().filter_map(|(_, v)| int(v)).collect()
                }
                (8, ResourceValue::Single(v)) => out.protocols = int(v).into_iter().collect(),
                _ => {}
            }
        }
        out
    }

    /// Whether /5/0/9 allows a push (1 or 2; absent counts as allowed: push is the base
    /// delivery of Object 5 1.0).
    pub fn push_allowed(&self) -> bool {
        self.delivery.is_none_or(|d| d == 1 || d == 2)
    }

    /// Whether /5/0/9 allows a pull (0 or 2, or absent).
    pub fn pull_allowed(&self) -> bool {
        self.delivery.is_none_or(|d| d == 0 || d == 2)
    }

    /// The listed pull protocols (values outside 0..=5 are kept as `Err(value)`).
    pub fn listed(&self) -> Vec<Result<Protocol, i64>> {
        self.protocols
            .iter()
            .map(|&v| {
                Protocol::ALL
                    .iter()
                    .find(|p| **p as i64 == v)
                    .copied()
                    .ok_or(v)
            })
            .collect()
    }

    /// The JSON for report.json.
    pub fn to_json(&self) -> Json {
        json!({
            "code": self.code,
            "protocols": self.protocols,
            "protocolNames": self.listed().iter().map(|p| match p {
                Ok(p) => p.scheme().to_string(),
                Err(v) => format!("unknown {v}"),
            }).collect::<Vec<_>>(),
            "delivery": self.delivery,
            "state": self.state,
            "result": self.result,
            "instance": self.node,
        })
    }
}

/// Whether the registration announces object `id` (with or without instances).
pub(crate) fn announces(reg: &Registration, id: u16) -> bool {
    let links = ObjectLinks::parse(&reg.object_links);
    links.available_instances().contains_key(&id)
        || links
            .links()
            .iter()
            .any(|l| l.target.trim_end_matches('/').ends_with(&format!("/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_client::codec::{Instance, Resource};

    #[test]
    fn formats_from_the_root_link() {
        let f = Formats::of(&ObjectLinks::parse(
            "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</3/0>",
        ));
        assert!(f.supports(ContentFormat::SenmlJson) && !f.supports(ContentFormat::Tlv));
        assert_eq!(f.preferred(), Some(ContentFormat::SenmlCbor));
        let old = Formats::of(&ObjectLinks::parse("</1/0>,</3/0>"));
        assert_eq!(old.preferred(), Some(ContentFormat::Tlv));
        assert!(old.supports(ContentFormat::Text) && !old.supports(ContentFormat::SenmlCbor));
    }

    #[test]
    fn firmware_capabilities_from_a_tlv_read() {
        let node = Node::Instance(Instance {
            id: 0,
            resources: vec![
                Resource {
                    id: 3,
                    value: ResourceValue::Single(Value::Integer(0)),
                },
                Resource {
                    id: 8,
                    value: ResourceValue::Multiple(vec![
                        (0, Value::Integer(0)),
                        (1, Value::Integer(2)),
                    ]),
                },
                Resource {
                    id: 9,
                    value: ResourceValue::Single(Value::Integer(0)),
                },
            ],
        });
        let payload = content::encode(ContentFormat::Tlv, &Path::instance(5, 0), &node).unwrap();
        let r = DmResponse {
            code: coap_lite::ResponseType::Content,
            raw_code: 0x45,
            content_format: Some(ContentFormat::Tlv),
            payload,
            location: Vec::new(),
        };
        let f = FirmwareReading::from_response(&r);
        assert_eq!(f.listed(), [Ok(Protocol::Coap), Ok(Protocol::Http)]);
        assert!(f.pull_allowed() && !f.push_allowed());
        assert_eq!(f.state, Some(0));
        assert_eq!(f.to_json()["protocolNames"], json!(["coap", "http"]));
    }
}
