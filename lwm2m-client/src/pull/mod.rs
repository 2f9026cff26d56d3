//! Pulling a firmware package from a Package URI (/5/0/1).
//!
//! Each protocol module streams the package into a [`PackageSink`] as it arrives, so the image
//! is never held whole in RAM, and supports resuming from an offset the sink has persisted (the
//! sink decides the granularity, e.g. flash sectors). Failures are [`PullError`]s, each mapping
//! to the Object 5 Update Result the specification names for it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use object5::UpdateResult;

pub mod coap;
pub mod coap_tcp;
#[cfg(any(test, feature = "sim"))]
mod mem_sink;
pub mod qblock;

#[cfg(any(test, feature = "sim"))]
pub use mem_sink::MemSink;

/// Where pulled bytes go: the Object 5 download path (verifier + candidate slot).
pub trait PackageSink {
    /// A transfer (re)starts at byte `from`: 0 for a new download or when the resource
    /// changed, else the resume offset. `etag` and `total` are what the server said, for the
    /// sink to persist with its resume data and to check against the slot size.
    fn start(
        &mut self,
        from: u64,
        etag: Option<&[u8]>,
        total: Option<u64>,
    ) -> Result<(), SinkError>;
    /// The next bytes of the package, starting at `offset` (always the end of what was
    /// accepted so far).
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError>;
}

/// Why the sink refused bytes; the download stops with the matching Update Result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkError(pub UpdateResult);

/// Where a previous, interrupted download of the same URI stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Bytes already stored and persisted.
    pub offset: u64,
    /// The entity tag the server gave for those bytes; resuming without one is unsafe.
    pub etag: Option<Vec<u8>>,
}

impl Resume {
    /// Where a block-wise transfer with `block_size`-byte blocks resumes `resume`: the
    /// persisted offset rounded down to a block boundary and the ETag the host must still
    /// have; `(0, None)` when there is nothing to resume or no ETag to check it against.
    pub fn block_start(resume: Option<&Resume>, block_size: u64) -> (u64, Option<Vec<u8>>) {
        match resume {
            Some(Resume {
                offset,
                etag: Some(e),
            }) if *offset > 0 => (offset / block_size * block_size, Some(e.clone())),
            _ => (0, None),
        }
    }
}

/// How a pull ended in error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullError {
    /// The URI cannot be used (Update Result 7).
    InvalidUri(String),
    /// The server says the package does not exist (Update Result 7).
    NotFound,
    /// The scheme is not built in (Update Result 9).
    UnsupportedProtocol(String),
    /// The link broke or the server stopped answering after retries (Update Result 4).
    ConnectionLost(String),
    /// The package does not fit the candidate slot (Update Result 2).
    TooLarge,
    /// The sink refused the bytes (verification, flash): its result is reported.
    Sink(UpdateResult),
    /// The host kept serving different versions of the package within one download
    /// (Update Result 5): no consistent package can be assembled.
    Inconsistent(String),
}

impl PullError {
    /// The Update Result this failure is reported as.
    pub fn update_result(&self) -> UpdateResult {
        match self {
            PullError::InvalidUri(_) | PullError::NotFound => UpdateResult::InvalidUri,
            PullError::UnsupportedProtocol(_) => UpdateResult::UnsupportedProtocol,
            PullError::ConnectionLost(_) => UpdateResult::ConnectionLost,
            PullError::TooLarge => UpdateResult::NotEnoughFlash,
            PullError::Sink(r) => *r,
            PullError::Inconsistent(_) => UpdateResult::IntegrityFailure,
        }
    }
}

impl From<SinkError> for PullError {
    fn from(e: SinkError) -> Self {
        PullError::Sink(e.0)
    }
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullError::InvalidUri(u) => write!(f, "invalid package URI: {u}"),
            PullError::NotFound => f.write_str("package not found on the server"),
            PullError::UnsupportedProtocol(s) => write!(f, "unsupported protocol: {s}"),
            PullError::ConnectionLost(e) => write!(f, "connection lost during download: {e}"),
            PullError::TooLarge => f.write_str("package larger than the candidate slot"),
            PullError::Sink(r) => write!(f, "package refused: update result {r}"),
            PullError::Inconsistent(e) => write!(f, "inconsistent package: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PullError {}
