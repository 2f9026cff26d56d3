#![no_std]
//! Device-side core of the secure firmware-update stack.
//!
//! This crate knows no network, no files and no async runtime: it is the part that runs on a
//! Class-1 device (~10 KiB RAM, ~100 KiB flash). It holds the LwM2M Object 5 state machine,
//! the SUIT manifest verifier and the A/B slot manager. The author side (building and signing
//! manifests) lives behind the `std` feature.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod author;
pub mod machine;
pub mod manifest;
pub mod package;
pub mod slots;
pub mod status;

pub use status::{State, UpdateResult};
