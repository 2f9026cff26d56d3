//! Object 1, LwM2M Server: lifetime, default observation periods, binding, the Registration
//! Update Trigger and the Bootstrap-Request Trigger. The engine re-reads the lifetime and
//! binding after a write and sends an Update; executing resource 8 also sends one; executing
//! resource 9 has the client bootstrap again (LwM2M 1.1 Core E.2). Resources 16 and 17 say
//! when a client that cannot register gives up on its server and bootstraps instead.

use super::{int, only_instance, string};
use crate::codec::{Resource, ResourceType as T, ResourceValue, Value};
use crate::object::{Completion, ObjectHandler, OpError, Ops, ResourceDef};
use alloc::string::String;
use alloc::vec::Vec;

const MODEL: &[ResourceDef] = &[
    ResourceDef::new(0, Ops::R, false, T::Integer),
    ResourceDef::new(1, Ops::RW, false, T::Integer),
    ResourceDef::new(2, Ops::RW, false, T::Integer),
    ResourceDef::new(3, Ops::RW, false, T::Integer),
    ResourceDef::new(6, Ops::RW, false, T::Boolean),
    ResourceDef::new(7, Ops::RW, false, T::String),
    ResourceDef::new(8, Ops::E, false, T::None),
    ResourceDef::new(9, Ops::E, false, T::None),
    ResourceDef::new(16, Ops::RW, false, T::Boolean),
    ResourceDef::new(17, Ops::RW, false, T::Integer),
];

/// Resource 17's default (LwM2M 1.1 Core E.2, Communication Retry Count).
pub const DEFAULT_RETRY_COUNT: u32 = 5;

/// The server account's settings (instance 0).
#[derive(Clone, Debug)]
pub struct Server {
    /// Short Server ID.
    pub short_server_id: u16,
    /// Registration lifetime in seconds.
    pub lifetime_s: u32,
    /// Default minimum period (s) for observations without pmin.
    pub default_pmin: u32,
    /// Default maximum period (s) for observations without pmax; 0 = none.
    pub default_pmax: u32,
    /// Store notifications while offline.
    pub storing: bool,
    /// Binding (`U`).
    pub binding: String,
    /// Bootstrap on Registration Failure (resource 16): bootstrap once `retry_count`
    /// Registers in a row failed, when a bootstrap account exists.
    pub bootstrap_on_failure: bool,
    /// Communication Retry Count (resource 17): failed Registers before giving up on the
    /// server.
    pub retry_count: u32,
    /// Instance 0 exists (a bootstrap server may delete and re-create it).
    pub present: bool,
}

impl Server {
    /// Server settings with the given lifetime, UDP binding and no default periods.
    pub fn new(lifetime_s: u32) -> Self {
        Self {
            short_server_id: 1,
            lifetime_s,
            default_pmin: 0,
            default_pmax: 0,
            storing: false,
            binding: "U".into(),
            bootstrap_on_failure: true,
            retry_count: DEFAULT_RETRY_COUNT,
            present: true,
        }
    }

    fn check(&self, instance: u16) -> Result<(), OpError> {
        if self.present {
            only_instance(instance)
        } else {
            Err(OpError::NotFound)
        }
    }
}

fn positive(v: &Value) -> Result<u32, OpError> {
    match v {
        Value::Integer(i) => u32::try_from(*i).map_err(|_| OpError::BadRequest),
        _ => Err(OpError::BadRequest),
    }
}

impl ObjectHandler for Server {
    fn id(&self) -> u16 {
        1
    }
    fn version(&self) -> Option<&'static str> {
        Some("1.1")
    }
    fn model(&self) -> &'static [ResourceDef] {
        MODEL
    }
    fn instances(&self) -> Vec<u16> {
        if self.present {
            alloc::vec![0]
        } else {
            Vec::new()
        }
    }
    fn read(&mut self, _now: u64, instance: u16, resource: u16) -> Result<ResourceValue, OpError> {
        self.check(instance)?;
        Ok(match resource {
            0 => int(i64::from(self.short_server_id)),
            1 => int(i64::from(self.lifetime_s)),
            2 => int(i64::from(self.default_pmin)),
            3 => int(i64::from(self.default_pmax)),
            6 => ResourceValue::Single(Value::Boolean(self.storing)),
            7 => string(&self.binding),
            16 => ResourceValue::Single(Value::Boolean(self.bootstrap_on_failure)),
            17 => int(i64::from(self.retry_count)),
            _ => return Err(OpError::NotFound),
        })
    }
    fn write(&mut self, _now: u64, instance: u16, r: &Resource) -> Result<Completion, OpError> {
        self.check(instance)?;
        let ResourceValue::Single(v) = &r.value else {
            return Err(OpError::BadRequest);
        };
        match r.id {
            // Read-only for management servers (the engine refuses them); a bootstrap server sets it.
            0 => {
                self.short_server_id =
                    u16::try_from(positive(v)?).map_err(|_| OpError::BadRequest)?
            }
            1 => {
                let lt = positive(v)?;
                if lt == 0 {
                    return Err(OpError::BadRequest);
                }
                self.lifetime_s = lt;
            }
            2 => self.default_pmin = positive(v)?,
            3 => self.default_pmax = positive(v)?,
            6 => match v {
                Value::Boolean(b) => self.storing = *b,
                _ => return Err(OpError::BadRequest),
            },
            7 => match v {
                Value::String(s) if s == "U" => self.binding = s.clone(),
                // Only UDP is implemented; any other binding would be a lie.
                _ => return Err(OpError::BadRequest),
            },
            16 => match v {
                Value::Boolean(b) => self.bootstrap_on_failure = *b,
                _ => return Err(OpError::BadRequest),
            },
            17 => self.retry_count = positive(v)?,
            _ => return Err(OpError::MethodNotAllowed),
        }
        Ok(Completion::Done)
    }
    fn create(&mut self, instance: Option<u16>, resources: &[Resource]) -> Result<u16, OpError> {
        if self.present || instance.is_some_and(|i| i != 0) {
            return Err(OpError::BadRequest);
        }
        *self = Self::new(86400);
        for r in resources {
            self.write(0, 0, r)?;
        }
        Ok(0)
    }
    fn delete(&mut self, instance: u16) -> Result<(), OpError> {
        self.check(instance)?;
        self.present = false;
        Ok(())
    }
    fn execute(
        &mut self,
        _now: u64,
        instance: u16,
        resource: u16,
        _args: &[u8],
    ) -> Result<Completion, OpError> {
        self.check(instance)?;
        // Resource 8 (Registration Update Trigger): the engine sends the Update. Resource 9
        // (Bootstrap-Request Trigger): the engine has the client bootstrap.
        if resource == 8 || resource == 9 {
            Ok(Completion::Done)
        } else {
            Err(OpError::MethodNotAllowed)
        }
    }
}
