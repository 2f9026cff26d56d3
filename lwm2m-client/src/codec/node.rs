//! The LwM2M data model: typed values, resources, instances and objects, independent of any
//! wire format. Every codec translates between bytes and these types.

use super::{CodecError, Path};
use alloc::string::String;
use alloc::vec::Vec;

/// Data types of OMA TS Core 1.1 appendix C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// UTF-8 string.
    String,
    /// Signed integer (up to 64 bits).
    Integer,
    /// Unsigned integer (up to 64 bits, LwM2M 1.1).
    Unsigned,
    /// IEEE 754 float (32 or 64 bits on the wire).
    Float,
    /// Boolean.
    Boolean,
    /// Opaque bytes.
    Opaque,
    /// Unix time in seconds (encoded as an integer).
    Time,
    /// Object link: object id and instance id.
    ObjLnk,
    /// Executable resources carry no value.
    None,
}

/// One typed value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// UTF-8 string.
    String(String),
    /// Signed integer.
    Integer(i64),
    /// Unsigned integer.
    Unsigned(u64),
    /// Float.
    Float(f64),
    /// Boolean.
    Boolean(bool),
    /// Opaque bytes.
    Opaque(Vec<u8>),
    /// Unix time, seconds.
    Time(i64),
    /// Object link (object id, instance id).
    ObjLnk(u16, u16),
}

impl Value {
    /// The declared type this value naturally has.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Self::String(_) => ResourceType::String,
            Self::Integer(_) => ResourceType::Integer,
            Self::Unsigned(_) => ResourceType::Unsigned,
            Self::Float(_) => ResourceType::Float,
            Self::Boolean(_) => ResourceType::Boolean,
            Self::Opaque(_) => ResourceType::Opaque,
            Self::Time(_) => ResourceType::Time,
            Self::ObjLnk(..) => ResourceType::ObjLnk,
        }
    }

    /// Numeric view used by Write-Attributes gt/lt/st; `None` for non-numeric values.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Integer(v) | Self::Time(v) => Some(*v as f64),
            Self::Unsigned(v) => Some(*v as f64),
            Self::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// Converts a value decoded from a self-typed format (SenML, text) to a resource's declared
    /// type, e.g. a SenML number 3.0 into `Integer(3)`; fails when no lossless conversion exists.
    pub fn coerce(self, ty: ResourceType) -> Result<Self, CodecError> {
        let bad = Err(CodecError::BadValue(
            "value does not match the resource type",
        ));
        Ok(match (self, ty) {
            (v, t) if v.resource_type() == t => v,
            (Self::Float(f), ResourceType::Integer | ResourceType::Time) => {
                if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                    || (f as i64) as f64 != f
                {
                    return bad;
                }
                let i = f as i64;
                if ty == ResourceType::Time {
                    Self::Time(i)
                } else {
                    Self::Integer(i)
                }
            }
            (Self::Float(f), ResourceType::Unsigned) => {
                if !(0.0..1.844_674_407_370_955_2e19).contains(&f) || (f as u64) as f64 != f {
                    return bad;
                }
                Self::Unsigned(f as u64)
            }
            (Self::Integer(i), ResourceType::Float) => Self::Float(i as f64),
            (Self::Integer(i), ResourceType::Time) => Self::Time(i),
            (Self::Time(i), ResourceType::Integer) => Self::Integer(i),
            (Self::Integer(i), ResourceType::Unsigned) => match u64::try_from(i) {
                Ok(u) => Self::Unsigned(u),
                Err(_) => return bad,
            },
            (Self::Unsigned(u), ResourceType::Integer) => match i64::try_from(u) {
                Ok(i) => Self::Integer(i),
                Err(_) => return bad,
            },
            (Self::Unsigned(u), ResourceType::Float) => Self::Float(u as f64),
            (Self::String(s), ResourceType::ObjLnk) => {
                super::text::decode(s.as_bytes(), ResourceType::ObjLnk)?
            }
            _ => return bad,
        })
    }
}

/// A resource's content: one value or instances of a multiple resource.
#[derive(Clone, Debug, PartialEq)]
pub enum ResourceValue {
    /// Single-instance resource.
    Single(Value),
    /// Multiple-instance resource: (resource instance id, value), ascending ids.
    Multiple(Vec<(u16, Value)>),
}

/// A resource with its id.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Resource id.
    pub id: u16,
    /// Its content.
    pub value: ResourceValue,
}

/// An object instance with the resources present.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Instance id.
    pub id: u16,
    /// Resources, ascending ids.
    pub resources: Vec<Resource>,
}

/// What a Read returns or a Write carries, at the level its path names.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A whole object (`/o`).
    Object {
        /// Object id.
        id: u16,
        /// Its instances.
        instances: Vec<Instance>,
    },
    /// One instance (`/o/i`).
    Instance(Instance),
    /// One resource (`/o/i/r`).
    Resource(Resource),
    /// One resource instance (`/o/i/r/ri`).
    ResourceInstance {
        /// Resource instance id.
        id: u16,
        /// Its value.
        value: Value,
    },
}

impl Node {
    /// Flattens the node under `path` (the path the node lives at) into (path, value) leaves,
    /// in document order: the form SenML carries.
    pub fn leaves(&self, path: &Path) -> Result<Vec<(Path, &Value)>, CodecError> {
        let mut out = Vec::new();
        match self {
            Self::Object { instances, .. } => {
                for inst in instances {
                    let ip = path.child(inst.id).ok_or(CodecError::BadPath)?;
                    push_instance(&mut out, &ip, inst)?;
                }
            }
            Self::Instance(inst) => push_instance(&mut out, path, inst)?,
            Self::Resource(r) => push_resource(&mut out, path, r)?,
            Self::ResourceInstance { value, .. } => out.push((*path, value)),
        }
        Ok(out)
    }

    /// Rebuilds the node at `base` from (path, value) leaves (the inverse of [`Node::leaves`]).
    /// A resource is multiple when its leaves carry resource instance ids.
    pub fn from_leaves(base: &Path, leaves: Vec<(Path, Value)>) -> Result<Self, CodecError> {
        let mut instances: Vec<Instance> = Vec::new();
        for (p, v) in leaves {
            if p.depth() < 3 {
                return Err(CodecError::Malformed("record names no resource"));
            }
            if !p.starts_with(base) {
                return Err(CodecError::Malformed("record outside the target path"));
            }
            let (Some(i), Some(r)) = (p.instance_id(), p.resource_id()) else {
                return Err(CodecError::BadPath);
            };
            let pos = match instances.iter().position(|x| x.id == i) {
                Some(pos) => pos,
                None => {
                    instances.push(Instance {
                        id: i,
                        resources: Vec::new(),
                    });
                    instances.len() - 1
                }
            };
            let inst = instances.get_mut(pos).ok_or(CodecError::BadPath)?;
            let existing = inst.resources.iter_mut().find(|x| x.id == r);
            match (p.resource_instance_id(), existing) {
                (None, None) => inst.resources.push(Resource {
                    id: r,
                    value: ResourceValue::Single(v),
                }),
                (Some(ri), None) => {
                    inst.resources.push(Resource {
                        id: r,
                        value: ResourceValue::Multiple(alloc::vec![(ri, v)]),
                    });
                }
                (
                    Some(ri),
                    Some(Resource {
                        value: ResourceValue::Multiple(items),
                        ..
                    }),
                ) => items.push((ri, v)),
                _ => return Err(CodecError::Malformed("duplicate resource")),
            }
        }
        match base.depth() {
            1 => Ok(Self::Object {
                id: base.object_id().unwrap_or(0),
                instances,
            }),
            2 => Ok(Self::Instance(instances.pop().unwrap_or(Instance {
                id: base.instance_id().unwrap_or(0),
                resources: Vec::new(),
            }))),
            3 | 4 => {
                let mut inst = instances
                    .pop()
                    .ok_or(CodecError::Malformed("no value for the target path"))?;
                let res = inst
                    .resources
                    .pop()
                    .ok_or(CodecError::Malformed("no value for the target path"))?;
                if let Some(ri) = base.resource_instance_id() {
                    match res.value {
                        ResourceValue::Multiple(mut items) if items.len() == 1 => {
                            let (_, value) = items.pop().ok_or(CodecError::Truncated)?;
                            Ok(Self::ResourceInstance { id: ri, value })
                        }
                        _ => Err(CodecError::Malformed("expected one resource instance")),
                    }
                } else {
                    Ok(Self::Resource(res))
                }
            }
            _ => Err(CodecError::Unrepresentable),
        }
    }
}

fn push_instance<'a>(
    out: &mut Vec<(Path, &'a Value)>,
    ip: &Path,
    inst: &'a Instance,
) -> Result<(), CodecError> {
    for r in &inst.resources {
        let rp = ip.child(r.id).ok_or(CodecError::BadPath)?;
        push_resource(out, &rp, r)?;
    }
    Ok(())
}

fn push_resource<'a>(
    out: &mut Vec<(Path, &'a Value)>,
    rp: &Path,
    r: &'a Resource,
) -> Result<(), CodecError> {
    match &r.value {
        ResourceValue::Single(v) => out.push((*rp, v)),
        ResourceValue::Multiple(items) => {
            for (ri, v) in items {
                out.push((rp.child(*ri).ok_or(CodecError::BadPath)?, v));
            }
        }
    }
    Ok(())
}
