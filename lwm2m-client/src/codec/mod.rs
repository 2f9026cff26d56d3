//! Wire codecs shared by the client engine and the test server shim.
//!
//! Everything here is pure (bytes in, values out), allocation-bounded by the input, and never
//! panics on malformed input: every failure is a [`CodecError`].

pub mod base64;
pub mod block;
pub mod cbor;
pub mod coap_tcp;
pub mod content_format;
pub mod hex;
pub mod json;
pub mod link;
pub mod lwm2m_cbor;
pub mod lwm2m_json;
pub mod message_format;
pub mod node;
pub mod opaque_stream;
pub mod path;
pub mod qblock;
pub mod senml;
pub mod text;
pub mod tlv;

pub use block::BlockOpt;
pub use content_format::ContentFormat;
pub use link::Link;
pub use node::{Instance, Node, Resource, ResourceType, ResourceValue, Value};
pub use path::Path;

use core::fmt;

/// Why a payload or option could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended inside an element.
    Truncated,
    /// The bytes do not follow the format's grammar.
    Malformed(&'static str),
    /// A value does not fit the resource's type (e.g. 9 bytes for an integer).
    BadValue(&'static str),
    /// A path is not `/o[/i[/r[/ri]]]` with identifiers below 65535.
    BadPath,
    /// Nesting deeper than the format allows.
    TooDeep,
    /// The node cannot be expressed in the requested format (e.g. a whole object as text/plain).
    Unrepresentable,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("input truncated"),
            Self::Malformed(what) => write!(f, "malformed input: {what}"),
            Self::BadValue(what) => write!(f, "bad value: {what}"),
            Self::BadPath => f.write_str("bad LwM2M path"),
            Self::TooDeep => f.write_str("nesting too deep"),
            Self::Unrepresentable => f.write_str("node not representable in this format"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CodecError {}

/// Looks up the declared type of resource `/object/*/resource`; `None` when unknown, in which
/// case decoders keep the value's natural wire form (TLV: opaque; SenML: as written).
pub type TypeLookup<'a> = &'a dyn Fn(u16, u16) -> Option<ResourceType>;
