//! Declared resource types of the objects the shim decodes (0 Security, 1 Server, 3 Device,
//! 5 Firmware Update), as Leshan's bundled object models give them. TLV carries no types, so
//! without this table a TLV read of /3/0/9 would show up as opaque bytes instead of an integer.

use lwm2m_client::codec::ResourceType as T;

/// (object, resource, type) for objects 0, 1, 3 and 5 (LwM2M 1.1 object definitions).
const TYPES: &[(u16, u16, T)] = &[
    // 0 LwM2M Security
    (0, 0, T::String),
    (0, 1, T::Boolean),
    (0, 2, T::Integer),
    (0, 3, T::Opaque),
    (0, 4, T::Opaque),
    (0, 5, T::Opaque),
    (0, 6, T::Integer),
    (0, 7, T::Opaque),
    (0, 8, T::Opaque),
    (0, 9, T::String),
    (0, 10, T::Integer),
    (0, 11, T::Integer),
    (0, 12, T::Integer),
    // 1 LwM2M Server
    (1, 0, T::Integer),
    (1, 1, T::Integer),
    (1, 2, T::Integer),
    (1, 3, T::Integer),
    (1, 4, T::None),
    (1, 5, T::Integer),
    (1, 6, T::Boolean),
    (1, 7, T::String),
    (1, 8, T::None),
    (1, 9, T::None),
    (1, 10, T::ObjLnk),
    (1, 11, T::Unsigned),
    (1, 12, T::Time),
    (1, 13, T::Unsigned),
    (1, 14, T::Unsigned),
    (1, 15, T::Boolean),
    (1, 16, T::Boolean),
    (1, 17, T::Unsigned),
    (1, 18, T::Unsigned),
    (1, 19, T::Unsigned),
    (1, 20, T::Unsigned),
    (1, 21, T::Boolean),
    (1, 22, T::String),
    (1, 23, T::Boolean),
    // 3 Device
    (3, 0, T::String),
    (3, 1, T::String),
    (3, 2, T::String),
    (3, 3, T::String),
    (3, 4, T::None),
    (3, 5, T::None),
    (3, 6, T::Integer),
    (3, 7, T::Integer),
    (3, 8, T::Integer),
    (3, 9, T::Integer),
    (3, 10, T::Integer),
    (3, 11, T::Integer),
    (3, 12, T::None),
    (3, 13, T::Time),
    (3, 14, T::String),
    (3, 15, T::String),
    (3, 16, T::String),
    (3, 17, T::String),
    (3, 18, T::String),
    (3, 19, T::String),
    (3, 20, T::Integer),
    (3, 21, T::Integer),
    (3, 22, T::ObjLnk),
    // 5 Firmware Update
    (5, 0, T::Opaque),
    (5, 1, T::String),
    (5, 2, T::None),
    (5, 3, T::Integer),
    (5, 5, T::Integer),
    (5, 6, T::String),
    (5, 7, T::String),
    (5, 8, T::Integer),
    (5, 9, T::Integer),
    (5, 10, T::None),
    (5, 11, T::Integer),
    (5, 12, T::Time),
    (5, 13, T::Unsigned),
    (5, 14, T::Boolean),
];

/// The declared type of `/object/*/resource`, if the model knows it.
pub fn resource_type(object: u16, resource: u16) -> Option<T> {
    TYPES
        .iter()
        .find(|(o, r, _)| *o == object && *r == resource)
        .map(|(_, _, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_object_types() {
        assert_eq!(resource_type(5, 0), Some(T::Opaque));
        assert_eq!(resource_type(5, 3), Some(T::Integer));
        assert_eq!(resource_type(5, 4), None);
        assert_eq!(resource_type(3, 13), Some(T::Time));
        assert_eq!(resource_type(42, 0), None);
    }
}
