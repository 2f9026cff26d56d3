//! The REST API's JSON bodies: a node for Write/Create (Leshan's shapes), a firmware-job
//! request and a security info are parsed from any bytes without panicking; a parsed node is
//! shown back as JSON and encoded in every content format for its path, as a Write does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::{ContentFormat, Node, Path};
use lwm2m_server_shim::content;
use lwm2m_server_shim::api::firmware::parse_request;
use lwm2m_server_shim::content::node_json::{node_json, parse_node};
use lwm2m_server_shim::server::security::store::SecurityInfo;

const FORMATS: [ContentFormat; 5] = [
    ContentFormat::Tlv,
    ContentFormat::SenmlJson,
    ContentFormat::SenmlCbor,
    ContentFormat::Text,
    ContentFormat::Opaque,
];

/// The path a Write of `node` addresses (object 3 or 5, instance 0 when not in the node).
fn path_of(node: &Node) -> Option<Path> {
    let segs: Vec<String> = match node {
        Node::Object { id, .. } => vec![id.to_string()],
        Node::Instance(i) => vec!["5".into(), i.id.to_string()],
        Node::Resource(r) => vec!["5".into(), "0".into(), r.id.to_string()],
        Node::ResourceInstance { id, .. } => {
            vec!["3".into(), "0".into(), "6".into(), id.to_string()]
        }
    };
    Path::from_segments(segs.iter().map(String::as_str)).ok()
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = SecurityInfo::from_json(&v);
    for default_id in [None, Some(0)] {
        let Ok(node) = parse_node(&v, default_id) else {
            continue;
        };
        if let Some(path) = path_of(&node) {
            let _ = node_json(&node, &path).to_string();
            for cf in FORMATS {
                let _ = content::encode(cf, &path, &node);
            }
        }
    }
});
