//! The mandatory objects: 0 Security, 1 Server, 3 Device and 5 Firmware Update.

pub mod device;
pub mod firmware;
pub mod security;
pub mod server;

pub use crate::firmware_backend::{Finished, FirmwareBackend};
pub use device::{Device, DeviceInfo};
pub use firmware::{DiscardBackend, FirmwareUpdate, PullJob, PullSink};
pub use security::Security;
pub use server::Server;

use crate::codec::{ResourceValue, Value};
use crate::object::{OpError, ResourceDef};
use alloc::vec::Vec;

/// The single-instance objects here all live at instance 0.
pub(crate) fn only_instance(instance: u16) -> Result<(), OpError> {
    if instance == 0 {
        Ok(())
    } else {
        Err(OpError::NotFound)
    }
}

/// Shorthand for a single string value.
pub(crate) fn string(s: &str) -> ResourceValue {
    ResourceValue::Single(Value::String(s.into()))
}

/// Shorthand for a single integer value.
pub(crate) fn int(i: i64) -> ResourceValue {
    ResourceValue::Single(Value::Integer(i))
}

/// Resource `id` of those an object keeps as written but does not act on (see [`keep`]).
pub(crate) fn read_kept(kept: &[(u16, Value)], id: u16) -> Result<ResourceValue, OpError> {
    kept.iter()
        .find(|(k, _)| *k == id)
        .map(|(_, v)| ResourceValue::Single(v.clone()))
        .ok_or(OpError::NotFound)
}

/// Keeps `v` as resource `id`, which the object does not act on but a bootstrap server writes
/// with the whole instance (refusing it would leave the device unprovisioned): only in the
/// type `model` gives it, else 4.00.
pub(crate) fn keep(
    kept: &mut Vec<(u16, Value)>,
    model: &[ResourceDef],
    id: u16,
    v: &Value,
) -> Result<(), OpError> {
    if !model
        .iter()
        .any(|d| d.id == id && d.ty == v.resource_type())
    {
        return Err(OpError::BadRequest);
    }
    kept.retain(|(k, _)| *k != id);
    kept.push((id, v.clone()));
    Ok(())
}
