//! LwM2M client: a sans-IO engine (bytes and time in; bytes, timer deadlines and events out)
//! and the thin tokio shell that drives it over UDP.
//!
//! The core (everything outside `runtime`) builds as `no_std` + `alloc`; the `std` feature adds
//! the tokio runtime, the UDP transport and the simulated-device binary.

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod coap;
pub mod codec;
pub mod engine;
pub mod object;
pub mod objects;
pub mod observe;
#[cfg(feature = "std")]
pub mod runtime;

pub use engine::{Config, DeferredId, Engine, Event, RegState, Transmit};
pub use object::{BlockChunk, Completion, ObjectHandler, OpError, Ops, ResourceDef};

/// DTLS 1.2 (OpenSSL) for coaps://, host side only.
#[cfg(feature = "std")]
pub mod dtls;

/// Package pulls from a Package URI (/5/0/1), streamed into the Object 5 download path.
pub mod pull;
