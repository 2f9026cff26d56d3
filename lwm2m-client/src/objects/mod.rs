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
use crate::object::OpError;

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
