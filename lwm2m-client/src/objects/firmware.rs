//! Object 5, Firmware Update, as far as the engine issue needs it: the object is present and
//! readable, a Block1 push to /5/0/0 streams into a [`PackageSink`] block by block, Update
//! (/5/0/2) is only allowed in Downloaded (else 4.05), and an empty write resets.
//! The verified flow (SUIT verifier, slot manager) plugs in as another sink or object.

use super::{int, only_instance, string};
use crate::codec::{Resource, ResourceType as T, ResourceValue, Value};
use crate::object::{BlockChunk, Completion, ObjectHandler, OpError, Ops, ResourceDef};
use alloc::string::String;
use alloc::vec::Vec;
use object5::{State, UpdateResult};

const MODEL: &[ResourceDef] = &[
    ResourceDef::new(0, Ops::W, false, T::Opaque),
    ResourceDef::new(1, Ops::RW, false, T::String),
    ResourceDef::new(2, Ops::E, false, T::None),
    ResourceDef::new(3, Ops::R, false, T::Integer),
    ResourceDef::new(5, Ops::R, false, T::Integer),
    ResourceDef::new(6, Ops::R, false, T::String),
    ResourceDef::new(7, Ops::R, false, T::String),
    ResourceDef::new(8, Ops::R, true, T::Integer),
    ResourceDef::new(9, Ops::R, false, T::Integer),
];

/// Where pushed package bytes go, in order, as they arrive.
pub trait PackageSink {
    /// A new package starts (block 0); `total` is the announced size, if any. Any partial
    /// package from before is dropped.
    fn begin(&mut self, total: Option<u32>) -> Result<(), UpdateResult>;
    /// The next bytes at `offset` (always the end of what was written so far).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), UpdateResult>;
    /// The last block arrived; check the package. On success returns (name, version).
    fn finish(&mut self) -> Result<(String, String), UpdateResult>;
    /// Drop any stored package (reset to Idle).
    fn reset(&mut self);
    /// Largest package the device can store, sent as Size1 with 4.13.
    fn capacity(&self) -> Option<u32> {
        None
    }
    /// Execute Update: start installing the downloaded package. `Ok` leaves State at Updating
    /// (the application reboots into it); an error returns to Downloaded with that result.
    fn install(&mut self) -> Result<(), UpdateResult> {
        Ok(())
    }
}

/// A sink that keeps only a byte count: a device with no storage, used to measure the
/// engine's own memory during a download.
#[derive(Clone, Debug, Default)]
pub struct DiscardSink {
    /// Bytes received for the current package.
    pub received: u64,
}

impl PackageSink for DiscardSink {
    fn begin(&mut self, _total: Option<u32>) -> Result<(), UpdateResult> {
        self.received = 0;
        Ok(())
    }
    fn write(&mut self, _offset: u64, data: &[u8]) -> Result<(), UpdateResult> {
        self.received += data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<(String, String), UpdateResult> {
        Ok((String::new(), String::new()))
    }
    fn reset(&mut self) {
        self.received = 0;
    }
}

/// Object 5 instance 0 over a package sink.
#[derive(Debug)]
pub struct FirmwareUpdate<S> {
    /// Where package bytes go.
    pub sink: S,
    /// State (/5/0/3).
    pub state: State,
    /// Update Result (/5/0/5).
    pub result: UpdateResult,
    /// Package URI (/5/0/1).
    pub uri: String,
    /// PkgName / PkgVersion of the downloaded package.
    pub pkg: (String, String),
    next_offset: u64,
}

impl<S: PackageSink> FirmwareUpdate<S> {
    /// Idle, result 0.
    pub fn new(sink: S) -> Self {
        Self {
            sink,
            state: State::Idle,
            result: UpdateResult::Initial,
            uri: String::new(),
            pkg: Default::default(),
            next_offset: 0,
        }
    }

    fn fail(&mut self, r: UpdateResult) -> OpError {
        self.sink.reset();
        self.state = State::Idle;
        self.result = r;
        match r {
            UpdateResult::NotEnoughFlash => OpError::TooLarge {
                size1: self.sink.capacity(),
            },
            _ => OpError::BadRequest,
        }
    }

    fn reset(&mut self) {
        self.sink.reset();
        self.state = State::Idle;
        self.result = UpdateResult::Initial;
        self.pkg = Default::default();
    }
}

impl<S: PackageSink> ObjectHandler for FirmwareUpdate<S> {
    fn id(&self) -> u16 {
        5
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
            1 => string(&self.uri),
            3 => int(i64::from(self.state.code())),
            5 => int(i64::from(self.result.code())),
            6 => string(&self.pkg.0),
            7 => string(&self.pkg.1),
            // CoAP block-wise only; push only (pull is the Object 5 issue).
            8 => ResourceValue::Multiple(alloc::vec![(0, Value::Integer(0))]),
            9 => int(1),
            _ => return Err(OpError::NotFound),
        })
    }
    fn write(&mut self, now: u64, instance: u16, r: &Resource) -> Result<Completion, OpError> {
        only_instance(instance)?;
        match (r.id, &r.value) {
            (0, ResourceValue::Single(Value::Opaque(bytes))) => {
                if bytes.as_slice() == [0] || bytes.is_empty() {
                    self.reset();
                    return Ok(Completion::Done);
                }
                let chunk = BlockChunk {
                    offset: 0,
                    data: bytes,
                    last: true,
                    total: u32::try_from(bytes.len()).ok(),
                };
                self.write_block(now, instance, 0, &chunk)
            }
            (1, ResourceValue::Single(Value::String(uri))) => {
                if self.state == State::Updating {
                    return Err(OpError::MethodNotAllowed);
                }
                if uri.is_empty() {
                    self.reset();
                }
                // Pulling the URI belongs to the Object 5 issue; the value is kept and readable.
                self.uri = uri.clone();
                Ok(Completion::Done)
            }
            (0 | 1, _) => Err(OpError::BadRequest),
            _ => Err(OpError::MethodNotAllowed),
        }
    }
    fn write_block(
        &mut self,
        _now: u64,
        instance: u16,
        resource: u16,
        c: &BlockChunk<'_>,
    ) -> Result<Completion, OpError> {
        only_instance(instance)?;
        if resource != 0 {
            return Err(OpError::MethodNotAllowed);
        }
        if self.state == State::Updating {
            return Err(OpError::MethodNotAllowed);
        }
        if c.offset == 0 {
            self.reset();
            self.state = State::Downloading;
            self.next_offset = 0;
            if let Err(r) = self.sink.begin(c.total) {
                return Err(self.fail(r));
            }
        } else if self.state != State::Downloading || c.offset != self.next_offset {
            return Err(OpError::Incomplete);
        }
        if let Err(r) = self.sink.write(c.offset, c.data) {
            return Err(self.fail(r));
        }
        self.next_offset = c.offset + c.data.len() as u64;
        if c.last {
            match self.sink.finish() {
                Ok(pkg) => {
                    self.pkg = pkg;
                    self.state = State::Downloaded;
                }
                Err(r) => return Err(self.fail(r)),
            }
        }
        Ok(Completion::Done)
    }
    fn execute(
        &mut self,
        _now: u64,
        instance: u16,
        resource: u16,
        args: &[u8],
    ) -> Result<Completion, OpError> {
        only_instance(instance)?;
        match resource {
            2 if self.state == State::Downloaded => {
                if !args.is_empty() {
                    return Err(OpError::BadRequest);
                }
                // Installing is the sink's job; the application reboots on the Executed event.
                self.state = State::Updating;
                self.result = UpdateResult::Initial;
                if let Err(r) = self.sink.install() {
                    self.state = State::Downloaded;
                    self.result = r;
                }
                Ok(Completion::Done)
            }
            _ => Err(OpError::MethodNotAllowed),
        }
    }
}
