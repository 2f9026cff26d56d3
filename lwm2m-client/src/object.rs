//! The boundary between the engine and the objects it serves.
//!
//! The engine owns the protocol (formats, access checks, block-wise, observe); an object only
//! declares its resources ([`ResourceDef`]) and reads, writes and executes them. Object 5's full
//! behaviour plugs in here without engine changes: a package push arrives block by block through
//! [`ObjectHandler::write_block`], so no object ever needs the whole package in RAM.

use crate::codec::{Resource, ResourceType, ResourceValue};
use alloc::vec::Vec;
use core::fmt;

/// Which LwM2M operations a resource allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    /// Read only.
    R,
    /// Write only.
    W,
    /// Read and write.
    RW,
    /// Execute.
    E,
}

impl Ops {
    /// Readable.
    pub const fn read(self) -> bool {
        matches!(self, Self::R | Self::RW)
    }
    /// Writable.
    pub const fn write(self) -> bool {
        matches!(self, Self::W | Self::RW)
    }
    /// Executable.
    pub const fn exec(self) -> bool {
        matches!(self, Self::E)
    }
}

/// One resource of an object's model (the registry XML, reduced to what the engine checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// Resource id.
    pub id: u16,
    /// Allowed operations.
    pub ops: Ops,
    /// Multiple-instance resource.
    pub multiple: bool,
    /// Data type.
    pub ty: ResourceType,
    /// A multiple-instance resource that also takes a single value, as the list of that one
    /// value: servers built on a model that had it single write it so (see
    /// [`ResourceDef::single_too`]).
    pub single_too: bool,
}

impl ResourceDef {
    /// Shorthand for table rows.
    pub const fn new(id: u16, ops: Ops, multiple: bool, ty: ResourceType) -> Self {
        Self {
            id,
            ops,
            multiple,
            ty,
            single_too: false,
        }
    }

    /// The same multiple-instance resource, also taking a single value where a peer writes
    /// one (Leshan 2.0.0-M4 writes Security /0/x/16 single, LwM2M 1.1 Core E.1 has it
    /// multiple).
    pub const fn single_too(mut self) -> Self {
        self.single_too = true;
        self
    }
}

/// Why an operation failed; each maps to one CoAP response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpError {
    /// 4.04: no such instance or resource.
    NotFound,
    /// 4.05: the operation is not allowed on this target, or not in the current state.
    MethodNotAllowed,
    /// 4.00: the value is not acceptable.
    BadRequest,
    /// 4.01: the requester may not access this object.
    Unauthorized,
    /// 4.13: the body is too large; `size1` tells the largest body accepted, if known.
    TooLarge {
        /// Largest acceptable size in bytes (sent as Size1).
        size1: Option<u32>,
    },
    /// 4.08: a block arrived out of order.
    Incomplete,
    /// 4.06: no acceptable representation for the requested Accept.
    NotAcceptable,
    /// 4.15: the payload's content format is not supported here.
    UnsupportedFormat,
    /// 5.00: the object failed internally (e.g. a flash error).
    Internal,
    /// 4.02: the request carries a critical option this device does not implement
    /// (RFC 7252 §5.4.1), e.g. Q-Block1 on a device with it switched off.
    BadOption,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::MethodNotAllowed => "method not allowed",
            Self::BadRequest => "bad request",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge { .. } => "request entity too large",
            Self::Incomplete => "request entity incomplete",
            Self::NotAcceptable => "not acceptable",
            Self::UnsupportedFormat => "unsupported content format",
            Self::Internal => "internal error",
            Self::BadOption => "unsupported critical option",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OpError {}

/// Whether an accepted operation finished, or will finish later (e.g. a flash erase): then the
/// engine sends an empty ACK at once and a separate response when the application calls
/// [`crate::Engine::complete_deferred`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Done: answer now (piggybacked).
    Done,
    /// Slow: answer later (separate response).
    Deferred,
}

/// One Block1 block of a write, handed to the object as it arrives. For a framed write (TLV,
/// SenML) `data` is the opaque value's bytes the block carried, out of their framing, and
/// `offset` counts value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockChunk<'a> {
    /// The body's first block (Block1 NUM 0): starts, or restarts, the write.
    pub first: bool,
    /// Byte offset of `data` in the whole value.
    pub offset: u64,
    /// The block's bytes.
    pub data: &'a [u8],
    /// No more blocks follow.
    pub last: bool,
    /// Total size announced by the server (Size1), if any.
    pub total: Option<u32>,
}

/// One LwM2M object with its instances.
pub trait ObjectHandler {
    /// Object id.
    fn id(&self) -> u16;
    /// Object version announced at registration when it is not 1.0.
    fn version(&self) -> Option<&'static str> {
        None
    }
    /// The resources the object defines.
    fn model(&self) -> &'static [ResourceDef];
    /// Present instance ids, ascending.
    fn instances(&self) -> Vec<u16>;
    /// Whether optional resource `resource` is present in `instance` (default: all defined are).
    fn has_resource(&self, _instance: u16, resource: u16) -> bool {
        self.model().iter().any(|d| d.id == resource)
    }
    /// Reads one readable resource. `now_ms` is the engine clock.
    fn read(&mut self, now_ms: u64, instance: u16, resource: u16)
        -> Result<ResourceValue, OpError>;
    /// Writes one writable resource (already decoded to its declared type).
    fn write(
        &mut self,
        _now_ms: u64,
        _instance: u16,
        _resource: &Resource,
    ) -> Result<Completion, OpError> {
        Err(OpError::MethodNotAllowed)
    }
    /// Receives one block of a Block1 write of an opaque resource (a first block restarts the
    /// body).
    fn write_block(
        &mut self,
        _now_ms: u64,
        _instance: u16,
        _resource: u16,
        _chunk: &BlockChunk<'_>,
    ) -> Result<Completion, OpError> {
        Err(OpError::TooLarge { size1: None })
    }
    /// A Block1 write of `resource` whose framing turned out malformed (RFC 7959 blocks of a
    /// TLV or SenML body) in its first block (`first`, nothing reached the object yet) or a
    /// later one: what arrived is void and the engine answers 4.00. An object that streams the
    /// body (Object 5) reports the failed transfer; an error is its refusal of the write
    /// itself, answered instead (e.g. 4.05 while updating).
    fn abort_block_write(
        &mut self,
        _now_ms: u64,
        _instance: u16,
        _resource: u16,
        _first: bool,
    ) -> Result<(), OpError> {
        Ok(())
    }
    /// Executes an executable resource with optional arguments.
    fn execute(
        &mut self,
        _now_ms: u64,
        _instance: u16,
        _resource: u16,
        _args: &[u8],
    ) -> Result<Completion, OpError> {
        Err(OpError::MethodNotAllowed)
    }
    /// Creates an instance from resource values (Create); `None` lets the object pick the id.
    fn create(&mut self, _instance: Option<u16>, _resources: &[Resource]) -> Result<u16, OpError> {
        Err(OpError::MethodNotAllowed)
    }
    /// Deletes an instance (Delete).
    fn delete(&mut self, _instance: u16) -> Result<(), OpError> {
        Err(OpError::MethodNotAllowed)
    }
    /// The declared definition of `resource`, if any.
    fn def(&self, resource: u16) -> Option<ResourceDef> {
        self.model().iter().find(|d| d.id == resource).copied()
    }
}
