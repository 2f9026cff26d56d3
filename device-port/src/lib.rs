//! The device's hardware port and its host simulation.
//!
//! Traits describe what the update path needs from a board (flash, reset, clock, persistent
//! key-value storage, trust anchors); the simulation implements them on the host.

#![warn(missing_docs)]
