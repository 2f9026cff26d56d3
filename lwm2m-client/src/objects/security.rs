//! Object 0, LwM2M Security: the server's URI and credentials. The engine reads it; DM servers
//! may not (the engine answers them 4.01).

use super::{int, only_instance, string};
use crate::codec::{ResourceType as T, ResourceValue, Value};
use crate::object::{ObjectHandler, OpError, Ops, ResourceDef};
use alloc::string::String;
use alloc::vec::Vec;

const MODEL: &[ResourceDef] = &[
    ResourceDef::new(0, Ops::RW, false, T::String),
    ResourceDef::new(1, Ops::RW, false, T::Boolean),
    ResourceDef::new(2, Ops::RW, false, T::Integer),
    ResourceDef::new(3, Ops::RW, false, T::Opaque),
    ResourceDef::new(4, Ops::RW, false, T::Opaque),
    ResourceDef::new(5, Ops::RW, false, T::Opaque),
    ResourceDef::new(10, Ops::RW, false, T::Integer),
];

/// Security Mode values (resource 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// 0: pre-shared key.
    Psk = 0,
    /// 3: no security (plain CoAP).
    NoSec = 3,
}

/// One server account (instance 0).
#[derive(Clone, Debug)]
pub struct Security {
    /// Server URI (`coap://host:port`).
    pub server_uri: String,
    /// Security mode.
    pub mode: SecurityMode,
    /// PSK identity (resource 3).
    pub identity: Vec<u8>,
    /// PSK key (resource 5).
    pub key: Vec<u8>,
    /// Short Server ID (resource 10).
    pub short_server_id: u16,
}

impl Security {
    /// A NoSec account for `server_uri` with Short Server ID 1.
    pub fn no_sec(server_uri: &str) -> Self {
        Self {
            server_uri: server_uri.into(),
            mode: SecurityMode::NoSec,
            identity: Vec::new(),
            key: Vec::new(),
            short_server_id: 1,
        }
    }
}

impl ObjectHandler for Security {
    fn id(&self) -> u16 {
        0
    }
    fn model(&self) -> &'static [ResourceDef] {
        MODEL
    }
    fn instances(&self) -> Vec<u16> {
        alloc::vec![0]
    }
    fn read(&mut self, _now: u64, instance: u16, resource: u16) -> Result<ResourceValue, OpError> {
        only_instance(instance)?;
        Ok(match resource {
            0 => string(&self.server_uri),
            1 => ResourceValue::Single(Value::Boolean(false)),
            2 => int(self.mode as i64),
            3 => ResourceValue::Single(Value::Opaque(self.identity.clone())),
            4 => ResourceValue::Single(Value::Opaque(Vec::new())),
            5 => ResourceValue::Single(Value::Opaque(self.key.clone())),
            10 => int(i64::from(self.short_server_id)),
            _ => return Err(OpError::NotFound),
        })
    }
}
