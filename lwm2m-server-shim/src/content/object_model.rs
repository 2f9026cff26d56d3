//! Object models: what an object and its resources are (LwM2M core TS 1.1 section 7.1), as the
//! object definitions OMA publishes in DDF XML describe them ([`crate::content::ddf`] reads
//! those, [`crate::content::models`] holds the ones a server knows).

use lwm2m_client::codec::ResourceType;

/// The operations a resource allows (DDF `Operations`: none, R, W, RW, E).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operations {
    /// No operation (Security object resources: written by a bootstrap server only).
    None,
    /// Read.
    R,
    /// Write.
    W,
    /// Read and write.
    RW,
    /// Execute.
    E,
}

impl Operations {
    /// Leshan's name (`NONE`, `R`, `W`, `RW`, `E`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::R => "R",
            Self::W => "W",
            Self::RW => "RW",
            Self::E => "E",
        }
    }
}

/// A resource's data type as a DDF names it (LwM2M core TS 1.1 appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// UTF-8 string.
    String,
    /// Signed integer.
    Integer,
    /// Unsigned integer (LwM2M 1.1).
    UnsignedInteger,
    /// Float.
    Float,
    /// Boolean.
    Boolean,
    /// Opaque bytes.
    Opaque,
    /// Time (seconds since the epoch).
    Time,
    /// Object link.
    Objlnk,
    /// CoRE link (LwM2M 1.1).
    Corelnk,
    /// No value (executable resources).
    None,
}

impl ModelType {
    /// Leshan's name: its `Type` enum in lower case (`unsigned_integer`, `objlnk`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::UnsignedInteger => "unsigned_integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Opaque => "opaque",
            Self::Time => "time",
            Self::Objlnk => "objlnk",
            Self::Corelnk => "corelnk",
            Self::None => "none",
        }
    }

    /// The type the codecs decode values of this resource as (a CoRE link is text).
    pub fn codec_type(self) -> ResourceType {
        match self {
            Self::String | Self::Corelnk => ResourceType::String,
            Self::Integer => ResourceType::Integer,
            Self::UnsignedInteger => ResourceType::Unsigned,
            Self::Float => ResourceType::Float,
            Self::Boolean => ResourceType::Boolean,
            Self::Opaque => ResourceType::Opaque,
            Self::Time => ResourceType::Time,
            Self::Objlnk => ResourceType::ObjLnk,
            Self::None => ResourceType::None,
        }
    }
}

/// One resource of an object model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceModel {
    /// Resource id.
    pub id: u16,
    /// Name.
    pub name: String,
    /// Operations allowed.
    pub operations: Operations,
    /// Whether it has resource instances.
    pub multiple: bool,
    /// Whether a client must implement it.
    pub mandatory: bool,
    /// Data type.
    pub ty: ModelType,
    /// Range or enumeration, as written (`0..255`, `1-65535`), empty if none.
    pub range: String,
    /// Units, empty if none.
    pub units: String,
    /// Description.
    pub description: String,
}

/// One version of an object's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectModel {
    /// Object id.
    pub id: u16,
    /// Name.
    pub name: String,
    /// Description (DDF `Description1`).
    pub description: String,
    /// Second description (DDF `Description2`).
    pub description2: String,
    /// Object version (`ver` in a client's object links), `1.0` when the DDF names none.
    pub version: String,
    /// LwM2M enabler version the object was defined for.
    pub lwm2m_version: String,
    /// Whether it may have several instances.
    pub multiple: bool,
    /// Whether a client must implement it.
    pub mandatory: bool,
    /// Its URN (`urn:oma:lwm2m:oma:5:1.1`), empty if none.
    pub urn: String,
    /// Its resources by increasing id.
    pub resources: Vec<ResourceModel>,
}

impl ObjectModel {
    /// The resource with this id.
    pub fn resource(&self, id: u16) -> Option<&ResourceModel> {
        self.resources.iter().find(|r| r.id == id)
    }
}

/// The object version a client has when it names none (LwM2M core TS 1.1 section 5.1.2).
pub const DEFAULT_OBJECT_VERSION: &str = "1.0";
