//! What the format targets share: every declared resource type (and none) chosen by a
//! number, and the four depths a payload can be decoded at.

use lwm2m_client::codec::{Path, ResourceType};

/// The declared type `sel` picks: each of the eight, or undeclared.
pub fn resource_type(sel: u16) -> Option<ResourceType> {
    match sel % 9 {
        0 => Some(ResourceType::String),
        1 => Some(ResourceType::Integer),
        2 => Some(ResourceType::Unsigned),
        3 => Some(ResourceType::Float),
        4 => Some(ResourceType::Boolean),
        5 => Some(ResourceType::Time),
        6 => Some(ResourceType::ObjLnk),
        7 => Some(ResourceType::Opaque),
        _ => None,
    }
}

/// An object, an instance, a resource and a resource instance of Object 3.
pub fn depths() -> [Path; 4] {
    [
        Path::object(3),
        Path::instance(3, 0),
        Path::resource(3, 0, 1),
        Path::resource_instance(3, 0, 1, 0),
    ]
}
