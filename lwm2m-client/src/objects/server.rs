//! Object 1, LwM2M Server: lifetime, default observation periods, binding, the Registration
//! Update Trigger and the Bootstrap-Request Trigger. The engine re-reads the lifetime and
//! binding after a write and sends an Update; executing resource 8 also sends one; executing
//! resource 9 has the client bootstrap again (LwM2M 1.1 Core E.2); executing resource 4
//! (Disable) has it de-register and stay away for the Disable Timeout (resource 5). Resources
//! 16-20 set the registration retry procedure (LwM2M 1.1 Core §6.2.1.1): how often and how
//! fast a client that cannot register tries again, and whether it then bootstraps instead.

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
    ResourceDef::new(4, Ops::E, false, T::None),
    ResourceDef::new(5, Ops::RW, false, T::Integer),
    ResourceDef::new(6, Ops::RW, false, T::Boolean),
    ResourceDef::new(7, Ops::RW, false, T::String),
    ResourceDef::new(8, Ops::E, false, T::None),
    ResourceDef::new(9, Ops::E, false, T::None),
    ResourceDef::new(10, Ops::RW, false, T::ObjLnk),
    ResourceDef::new(16, Ops::RW, false, T::Boolean),
    // Unsigned in the registry's Server 1.1 (Leshan refuses to write them as Integer).
    ResourceDef::new(17, Ops::RW, false, T::Unsigned),
    ResourceDef::new(18, Ops::RW, false, T::Unsigned),
    ResourceDef::new(19, Ops::RW, false, T::Unsigned),
    ResourceDef::new(20, Ops::RW, false, T::Unsigned),
    ResourceDef::new(21, Ops::RW, false, T::Boolean),
    ResourceDef::new(22, Ops::RW, false, T::String),
    ResourceDef::new(23, Ops::RW, false, T::Boolean),
];

/// Resources of Server 1.1 (LwM2M 1.1 Core E.2) this device keeps as written but has nothing
/// to do with: 10 APN Link (it has no APN profiles, object 11), 21 Trigger (no SMS wake-up),
/// 22 Preferred Transport (UDP is its only one) and 23 Mute Send (it sends no Send). Leshan's
/// bootstrap server writes them when an operator sets them, in the whole instance: refusing
/// one would leave the device unprovisioned.
const KEPT_AS_WRITTEN: [u16; 4] = [10, 21, 22, 23];

/// Whether a Binding (resource 7) asks for Queue Mode: LwM2M 1.0 (E.2) writes it as a `Q`
/// after the transport ("UQ"); 1.1 moved it to the Register's `Q` parameter, yet bootstrap
/// servers set up for 1.0 devices still write "UQ" (Wakaama's 1.1 client, too, keeps Queue
/// Mode in its binding). The device accepts "U" and "UQ" (UDP is its only transport).
pub fn binding_queues(binding: &str) -> bool {
    binding.contains('Q')
}

/// Resource 5's default (E.2, Disable Timeout): a day.
pub const DEFAULT_DISABLE_TIMEOUT_S: u32 = 86_400;

/// The registration retry procedure (LwM2M 1.1 Core §6.2.1.1; Server resources 17-20, E.2):
/// a sequence of `count` Registers, the n-th retried after `timer_s`·2^(n-1) s; a failed
/// sequence is followed by another after `sequence_delay_s`, up to `sequence_count` of them,
/// after which the registration has failed (and the client may bootstrap, resource 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Communication Retry Count (17): Registers in one sequence.
    pub count: u32,
    /// Communication Retry Timer (18): the back-off's base, seconds.
    pub timer_s: u32,
    /// Communication Sequence Delay Timer (19): the wait between sequences, seconds.
    pub sequence_delay_s: u32,
    /// Communication Sequence Retry Count (20): sequences before the registration fails.
    pub sequence_count: u32,
}

impl Default for RetryPolicy {
    /// The spec's defaults (E.2): 5 Registers, 60 s, 86 400 s, 1 sequence.
    fn default() -> Self {
        Self {
            count: 5,
            timer_s: 60,
            sequence_delay_s: 86_400,
            sequence_count: 1,
        }
    }
}

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
    /// Binding: `U`, or `UQ` for UDP with Queue Mode (see [`binding_queues`]).
    pub binding: String,
    /// Disable Timeout (resource 5): how long executing Disable (4) keeps the client away.
    pub disable_timeout_s: u32,
    /// Values written to resources 10 and 21-23, by resource id (see `KEPT_AS_WRITTEN`).
    pub kept: Vec<(u16, Value)>,
    /// Bootstrap on Registration Failure (resource 16): bootstrap once the registration
    /// failed (see `retry`), when a bootstrap account exists.
    pub bootstrap_on_failure: bool,
    /// Resources 17-20, the registration retry procedure.
    pub retry: RetryPolicy,
    /// The device's own retry procedure, which an instance a bootstrap server creates starts
    /// from (see [`Server::with_retry`]).
    factory_retry: RetryPolicy,
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
            disable_timeout_s: DEFAULT_DISABLE_TIMEOUT_S,
            kept: Vec::new(),
            bootstrap_on_failure: true,
            retry: RetryPolicy::default(),
            factory_retry: RetryPolicy::default(),
            present: true,
        }
    }

    /// The same settings with the device's own retry procedure instead of the spec's
    /// defaults: what resources 17-20 hold until a server writes them, also in an instance
    /// a bootstrap server creates without them.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self.factory_retry = retry;
        self
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
        Value::Unsigned(u) => u32::try_from(*u).map_err(|_| OpError::BadRequest),
        _ => Err(OpError::BadRequest),
    }
}

fn unsigned(u: u32) -> ResourceValue {
    ResourceValue::Single(Value::Unsigned(u64::from(u)))
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
            5 => int(i64::from(self.disable_timeout_s)),
            6 => ResourceValue::Single(Value::Boolean(self.storing)),
            7 => string(&self.binding),
            16 => ResourceValue::Single(Value::Boolean(self.bootstrap_on_failure)),
            17 => unsigned(self.retry.count),
            18 => unsigned(self.retry.timer_s),
            19 => unsigned(self.retry.sequence_delay_s),
            20 => unsigned(self.retry.sequence_count),
            id => super::read_kept(&self.kept, id)?,
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
            5 => self.disable_timeout_s = positive(v)?,
            6 => match v {
                Value::Boolean(b) => self.storing = *b,
                _ => return Err(OpError::BadRequest),
            },
            7 => match v {
                Value::String(s) if matches!(s.as_str(), "U" | "UQ") => self.binding = s.clone(),
                // Only UDP is implemented; any other binding would be a lie.
                _ => return Err(OpError::BadRequest),
            },
            16 => match v {
                Value::Boolean(b) => self.bootstrap_on_failure = *b,
                _ => return Err(OpError::BadRequest),
            },
            17 => self.retry.count = positive(v)?,
            18 => self.retry.timer_s = positive(v)?,
            19 => self.retry.sequence_delay_s = positive(v)?,
            20 => self.retry.sequence_count = positive(v)?,
            id if KEPT_AS_WRITTEN.contains(&id) => super::keep(&mut self.kept, MODEL, id, v)?,
            _ => return Err(OpError::MethodNotAllowed),
        }
        Ok(Completion::Done)
    }
    fn create(&mut self, instance: Option<u16>, resources: &[Resource]) -> Result<u16, OpError> {
        if self.present || instance.is_some_and(|i| i != 0) {
            return Err(OpError::BadRequest);
        }
        *self = Self::new(86400).with_retry(self.factory_retry);
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
        // Resource 4 (Disable): the engine de-registers and waits the Disable Timeout.
        // Resource 8 (Registration Update Trigger): the engine sends the Update. Resource 9
        // (Bootstrap-Request Trigger): the engine has the client bootstrap.
        if matches!(resource, 4 | 8 | 9) {
            Ok(Completion::Done)
        } else {
            Err(OpError::MethodNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(id: u16, v: i64) -> Resource {
        Resource {
            id,
            value: ResourceValue::Single(Value::Integer(v)),
        }
    }

    /// An instance a bootstrap server creates without resources 17-20 starts from the
    /// device's own retry procedure, not from what an earlier server wrote.
    #[test]
    fn a_created_instance_starts_from_the_devices_retry_procedure() {
        let own = RetryPolicy {
            count: 3,
            timer_s: 2,
            sequence_delay_s: 120,
            sequence_count: 2,
        };
        let mut s = Server::new(300).with_retry(own);
        s.write(0, 0, &single(18, 600)).unwrap();
        assert_eq!(s.retry.timer_s, 600);
        s.delete(0).unwrap();
        s.create(Some(0), &[single(1, 60), single(19, 3600)])
            .unwrap();
        assert_eq!(
            s.retry,
            RetryPolicy {
                sequence_delay_s: 3600,
                ..own
            }
        );
        assert_eq!(Server::new(300).retry, RetryPolicy::default());
        assert_eq!(s.write(0, 0, &single(20, -1)), Err(OpError::BadRequest));
    }

    /// Disable Timeout (5) defaults to a day; APN Link, Trigger, Preferred Transport and Mute
    /// Send (10, 21-23) are kept as written, in their model's types, and go with a deleted
    /// instance.
    #[test]
    fn server_1_1_resources_are_taken() {
        let mut s = Server::new(300);
        assert_eq!(s.read(0, 0, 5).unwrap(), int(86_400));
        s.write(0, 0, &single(5, 30)).unwrap();
        assert_eq!(s.disable_timeout_s, 30);
        let value = |id: u16, v: Value| Resource {
            id,
            value: ResourceValue::Single(v),
        };
        s.write(0, 0, &value(10, Value::ObjLnk(11, 0))).unwrap();
        s.write(0, 0, &value(22, Value::String("U".into())))
            .unwrap();
        s.write(0, 0, &value(23, Value::Boolean(true))).unwrap();
        assert_eq!(
            s.read(0, 0, 22).unwrap(),
            ResourceValue::Single(Value::String("U".into()))
        );
        assert_eq!(
            s.write(0, 0, &value(21, Value::Integer(1))),
            Err(OpError::BadRequest)
        );
        assert_eq!(s.read(0, 0, 21), Err(OpError::NotFound));
        s.delete(0).unwrap();
        s.create(Some(0), &[single(1, 60)]).unwrap();
        assert_eq!(s.read(0, 0, 10), Err(OpError::NotFound));
        assert_eq!(s.disable_timeout_s, DEFAULT_DISABLE_TIMEOUT_S);
    }
}
