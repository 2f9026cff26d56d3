//! The incremental de-framers of a Block1 write (TLV, SenML CBOR, SenML JSON) never panic,
//! give the same result however the body is cut into chunks, and agree with the whole-message
//! decoders whenever both accept the body. Input: format selector, cut seed, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::codec::opaque_stream::Deframer;
use lwm2m_client::codec::{
    senml, tlv, ContentFormat, Node, Path, Resource, ResourceType, ResourceValue, Value,
};

fn run(mut d: Deframer, body: &[u8], seed: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = if seed == 0 {
            rest.len()
        } else {
            1 + (usize::from(seed) * (i + 1)) % 37
        }
        .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        d.feed(chunk, &mut out).map_err(|e| e.to_string())?;
        rest = tail;
        i += 1;
    }
    d.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let [sel, seed, body @ ..] = data else {
        return;
    };
    let path = Path::resource(5, 0, 0);
    let cf = [
        ContentFormat::Tlv,
        ContentFormat::SenmlCbor,
        ContentFormat::SenmlJson,
    ][usize::from(*sel % 3)];
    let d = Deframer::new(cf, &path).expect("a framed format");
    let whole = run(d.clone(), body, 0);
    assert_eq!(run(d, body, *seed), whole, "cut with seed {seed}");
    let Ok(value) = whole else {
        return;
    };
    let types = |_o: u16, _r: u16| Some(ResourceType::Opaque);
    let decoded = match cf {
        ContentFormat::Tlv => tlv::decode(body, &path, &types),
        ContentFormat::SenmlCbor => senml::decode_cbor(body, &path, &types),
        _ => senml::decode_json(body, &path, &types),
    };
    if let Ok(node) = decoded {
        let want = Node::Resource(Resource {
            id: 0,
            value: ResourceValue::Single(Value::Opaque(value)),
        });
        assert_eq!(node, want, "the whole-message decoder reads the same value");
    }
});
