//! Streams the opaque value of a single-resource write out of its framing, chunk by chunk: a
//! firmware package pushed with Block1 to /5/0/0 may come framed as a TLV resource (OMA TS
//! Core 1.1 section 7.4.3) or one SenML record with `vd` (section 7.4.4-7.4.5, RFC 8428), as
//! single-message writes allow. Each de-framer is a state machine fed chunks cut anywhere; it
//! returns the value bytes each chunk carries and keeps only its own small state (a header,
//! a name of at most [`MAX_NAME`] bytes, a base64 group), never the value.

pub mod senml_cbor;
pub mod senml_json;
pub mod tlv;

use super::{CodecError, ContentFormat, Path};
use alloc::string::ToString;
use alloc::vec::Vec;

/// Longest SenML `bn` or `n` accepted (an LwM2M path is at most `/65535/65535/65535/65535`).
pub const MAX_NAME: usize = 64;

/// An incremental de-framer for one content format.
#[derive(Clone, Debug)]
pub enum Deframer {
    /// TLV: one resource entry whose header gives the value's length.
    Tlv(tlv::TlvValue),
    /// SenML CBOR: one record whose `vd` byte string (definite or chunked) is the value.
    SenmlCbor(senml_cbor::VdStream),
    /// SenML JSON: one record whose base64 `vd` text is decoded as it arrives.
    SenmlJson(senml_json::VdStream),
}

impl Deframer {
    /// The de-framer for a write of `path` (a resource) in format `cf`; `None` for formats
    /// with no framing to strip here (opaque) or none the client takes for an opaque value.
    pub fn new(cf: ContentFormat, path: &Path) -> Option<Self> {
        let name = path.to_string().into_bytes();
        Some(match cf {
            ContentFormat::Tlv | ContentFormat::LegacyTlv => {
                Self::Tlv(tlv::TlvValue::new(path.resource_id()?))
            }
            ContentFormat::SenmlCbor => Self::SenmlCbor(senml_cbor::VdStream::new(name)),
            ContentFormat::SenmlJson => Self::SenmlJson(senml_json::VdStream::new(name)),
            _ => return None,
        })
    }

    /// Takes the next chunk of the framed body; the value bytes it carries go to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            Self::Tlv(d) => d.feed(chunk, out),
            Self::SenmlCbor(d) => d.feed(chunk, out),
            Self::SenmlJson(d) => d.feed(chunk, out),
        }
    }

    /// The body ended: Ok only if the frame was complete.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self {
            Self::Tlv(d) => d.finish(),
            Self::SenmlCbor(d) => d.finish(),
            Self::SenmlJson(d) => d.finish(),
        }
    }

    /// The value's length once the framing has told it (TLV header, definite CBOR `vd`).
    pub fn value_len(&self) -> Option<u64> {
        match self {
            Self::Tlv(d) => d.value_len(),
            Self::SenmlCbor(d) => d.value_len(),
            Self::SenmlJson(_) => None,
        }
    }
}

/// Test helper: runs a de-framer over `body` cut at each of `cuts` (ascending offsets).
#[cfg(test)]
pub(crate) fn run_cut(mut d: Deframer, body: &[u8], cuts: &[usize]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(core::iter::once(&body.len())) {
        d.feed(body.get(at..c).unwrap_or(&[]), &mut out)?;
        at = c;
    }
    d.finish()?;
    Ok(out)
}

/// Test helper: `body` de-framed whole, cut once at every offset and cut at every byte must
/// all give the same result.
#[cfg(test)]
pub(crate) fn every_cut(d: &Deframer, body: &[u8]) -> Result<Vec<u8>, CodecError> {
    let whole = run_cut(d.clone(), body, &[]);
    for i in 0..=body.len() {
        assert_eq!(run_cut(d.clone(), body, &[i]), whole, "cut at {i}");
    }
    let bytes: Vec<usize> = (0..=body.len()).collect();
    assert_eq!(run_cut(d.clone(), body, &bytes), whole, "cut at every byte");
    whole
}
