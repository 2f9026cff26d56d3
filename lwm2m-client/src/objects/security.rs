//! Object 0, LwM2M Security: server URIs and credentials, one instance per server account
//! (the bootstrap server's included). The engine reads it; management servers may not (4.01);
//! a bootstrap server writes and deletes instances during bootstrap.

use crate::codec::{Resource, ResourceType as T, ResourceValue, Value};
use crate::object::{Completion, ObjectHandler, OpError, Ops, ResourceDef};
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
    ResourceDef::new(11, Ops::RW, false, T::Integer),
];

/// Security Mode values (resource 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// 0: pre-shared key.
    Psk = 0,
    /// 1: raw public key.
    Rpk = 1,
    /// 2: certificate.
    Certificate = 2,
    /// 3: no security (plain CoAP).
    NoSec = 3,
}

impl SecurityMode {
    fn from_code(c: i64) -> Option<Self> {
        Some(match c {
            0 => Self::Psk,
            1 => Self::Rpk,
            2 => Self::Certificate,
            3 => Self::NoSec,
            _ => return None,
        })
    }
}

/// One server account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Instance id.
    pub id: u16,
    /// Server URI (`coap://host:port`).
    pub server_uri: String,
    /// This account is the bootstrap server's.
    pub bootstrap: bool,
    /// Security mode.
    pub mode: SecurityMode,
    /// PSK identity or public key (resource 3).
    pub identity: Vec<u8>,
    /// Server public key (resource 4).
    pub server_key: Vec<u8>,
    /// Secret key (resource 5).
    pub key: Vec<u8>,
    /// Short Server ID (resource 10).
    pub short_server_id: u16,
    /// Client hold-off time before bootstrapping, seconds (resource 11).
    pub hold_off_s: u32,
}

impl Account {
    fn new(id: u16, uri: &str, bootstrap: bool) -> Self {
        Self {
            id,
            server_uri: uri.into(),
            bootstrap,
            mode: SecurityMode::NoSec,
            identity: Vec::new(),
            server_key: Vec::new(),
            key: Vec::new(),
            short_server_id: if bootstrap { 0 } else { 1 },
            hold_off_s: 0,
        }
    }
}

/// Object 0 with its accounts.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Accounts, ascending instance ids.
    pub accounts: Vec<Account>,
}

impl Security {
    /// One NoSec management-server account for `server_uri` with Short Server ID 1.
    pub fn no_sec(server_uri: &str) -> Self {
        Self {
            accounts: alloc::vec![Account::new(0, server_uri, false)],
        }
    }

    /// One NoSec bootstrap-server account for `bootstrap_uri`: the client bootstraps first.
    pub fn bootstrap(bootstrap_uri: &str) -> Self {
        Self {
            accounts: alloc::vec![Account::new(0, bootstrap_uri, true)],
        }
    }

    /// The first management-server (non-bootstrap) account.
    pub fn management_account(&self) -> Option<&Account> {
        self.accounts.iter().find(|a| !a.bootstrap)
    }

    fn account(&mut self, instance: u16) -> Result<&mut Account, OpError> {
        self.accounts
            .iter_mut()
            .find(|a| a.id == instance)
            .ok_or(OpError::NotFound)
    }
}

fn opaque(v: &[u8]) -> ResourceValue {
    ResourceValue::Single(Value::Opaque(v.to_vec()))
}

impl ObjectHandler for Security {
    fn id(&self) -> u16 {
        0
    }
    fn model(&self) -> &'static [ResourceDef] {
        MODEL
    }
    fn instances(&self) -> Vec<u16> {
        self.accounts.iter().map(|a| a.id).collect()
    }
    fn read(&mut self, _now: u64, instance: u16, resource: u16) -> Result<ResourceValue, OpError> {
        let a = self.account(instance)?;
        let int = |i: i64| ResourceValue::Single(Value::Integer(i));
        Ok(match resource {
            0 => ResourceValue::Single(Value::String(a.server_uri.clone())),
            1 => ResourceValue::Single(Value::Boolean(a.bootstrap)),
            2 => int(a.mode as i64),
            3 => opaque(&a.identity),
            4 => opaque(&a.server_key),
            5 => opaque(&a.key),
            10 => int(i64::from(a.short_server_id)),
            11 => int(i64::from(a.hold_off_s)),
            _ => return Err(OpError::NotFound),
        })
    }
    fn write(&mut self, _now: u64, instance: u16, r: &Resource) -> Result<Completion, OpError> {
        let a = self.account(instance)?;
        let ResourceValue::Single(v) = &r.value else {
            return Err(OpError::BadRequest);
        };
        match (r.id, v) {
            (0, Value::String(s)) => a.server_uri = s.clone(),
            (1, Value::Boolean(b)) => a.bootstrap = *b,
            (2, Value::Integer(m)) => {
                a.mode = SecurityMode::from_code(*m).ok_or(OpError::BadRequest)?
            }
            (3, Value::Opaque(o)) => a.identity = o.clone(),
            (4, Value::Opaque(o)) => a.server_key = o.clone(),
            (5, Value::Opaque(o)) => a.key = o.clone(),
            (10, Value::Integer(i)) => {
                a.short_server_id = u16::try_from(*i).map_err(|_| OpError::BadRequest)?
            }
            (11, Value::Integer(i)) => {
                a.hold_off_s = u32::try_from(*i).map_err(|_| OpError::BadRequest)?
            }
            _ => return Err(OpError::BadRequest),
        }
        Ok(Completion::Done)
    }
    fn create(&mut self, instance: Option<u16>, resources: &[Resource]) -> Result<u16, OpError> {
        let id = match instance {
            Some(i) if self.accounts.iter().any(|a| a.id == i) => return Err(OpError::BadRequest),
            Some(i) => i,
            None => (0..u16::MAX)
                .find(|i| !self.accounts.iter().any(|a| a.id == *i))
                .ok_or(OpError::Internal)?,
        };
        self.accounts.push(Account::new(id, "", false));
        self.accounts.sort_by_key(|a| a.id);
        for r in resources {
            self.write(0, id, r)?;
        }
        Ok(id)
    }
    fn delete(&mut self, instance: u16) -> Result<(), OpError> {
        let before = self.accounts.len();
        self.accounts.retain(|a| a.id != instance);
        if self.accounts.len() == before {
            Err(OpError::NotFound)
        } else {
            Ok(())
        }
    }
}
