//! Object 3, Device: identity, the firmware version of the image actually booted, reboot,
//! error code, supported binding and current time.

use super::{only_instance, string};
use crate::codec::{Resource, ResourceType as T, ResourceValue, Value};
use crate::object::{Completion, ObjectHandler, OpError, Ops, ResourceDef};
use alloc::string::String;
use alloc::vec::Vec;

const MODEL: &[ResourceDef] = &[
    ResourceDef::new(0, Ops::R, false, T::String),
    ResourceDef::new(1, Ops::R, false, T::String),
    ResourceDef::new(2, Ops::R, false, T::String),
    ResourceDef::new(3, Ops::R, false, T::String),
    ResourceDef::new(4, Ops::E, false, T::None),
    ResourceDef::new(11, Ops::R, true, T::Integer),
    ResourceDef::new(13, Ops::RW, false, T::Time),
    ResourceDef::new(16, Ops::R, false, T::String),
];

/// What the device says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Manufacturer (resource 0).
    pub manufacturer: String,
    /// Model number (resource 1).
    pub model: String,
    /// Serial number (resource 2).
    pub serial: String,
    /// Version of the booted image (resource 3).
    pub firmware_version: String,
}

/// Object 3, instance 0.
#[derive(Clone, Debug)]
pub struct Device {
    /// Identity and booted firmware version.
    pub info: DeviceInfo,
    /// Error codes (resource 11); 0 = no error.
    pub error_codes: Vec<i64>,
    /// Unix time (s) at engine time `clock_base_ms`.
    unix_base_s: i64,
    clock_base_ms: u64,
}

impl Device {
    /// A device with no error and its clock at Unix time 0 until [`Device::set_time`].
    pub fn new(info: DeviceInfo) -> Self {
        Self {
            info,
            error_codes: alloc::vec![0],
            unix_base_s: 0,
            clock_base_ms: 0,
        }
    }

    /// Sets the wall clock: Unix time `unix_s` at engine time `now_ms`.
    pub fn set_time(&mut self, now_ms: u64, unix_s: i64) {
        self.unix_base_s = unix_s;
        self.clock_base_ms = now_ms;
    }

    fn unix_now(&self, now_ms: u64) -> i64 {
        let elapsed = now_ms.saturating_sub(self.clock_base_ms) / 1000;
        self.unix_base_s
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }
}

impl ObjectHandler for Device {
    fn id(&self) -> u16 {
        3
    }
    fn model(&self) -> &'static [ResourceDef] {
        MODEL
    }
    fn instances(&self) -> Vec<u16> {
        alloc::vec![0]
    }
    fn read(&mut self, now: u64, instance: u16, resource: u16) -> Result<ResourceValue, OpError> {
        only_instance(instance)?;
        Ok(match resource {
            0 => string(&self.info.manufacturer),
            1 => string(&self.info.model),
            2 => string(&self.info.serial),
            3 => string(&self.info.firmware_version),
            11 => ResourceValue::Multiple(
                self.error_codes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i as u16, Value::Integer(*c)))
                    .collect(),
            ),
            13 => ResourceValue::Single(Value::Time(self.unix_now(now))),
            16 => string("U"),
            _ => return Err(OpError::NotFound),
        })
    }
    fn write(&mut self, now: u64, instance: u16, r: &Resource) -> Result<Completion, OpError> {
        only_instance(instance)?;
        match (&r.id, &r.value) {
            (13, ResourceValue::Single(Value::Time(t))) => {
                self.set_time(now, *t);
                Ok(Completion::Done)
            }
            (13, _) => Err(OpError::BadRequest),
            _ => Err(OpError::MethodNotAllowed),
        }
    }
    fn execute(
        &mut self,
        _now: u64,
        instance: u16,
        resource: u16,
        _args: &[u8],
    ) -> Result<Completion, OpError> {
        only_instance(instance)?;
        // Reboot (4): the engine reports the execution; the application reboots after the ACK.
        if resource == 4 {
            Ok(Completion::Done)
        } else {
            Err(OpError::MethodNotAllowed)
        }
    }
}
