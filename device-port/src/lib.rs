//! The device's hardware port and its host simulation.
//!
//! [`board`] holds the traits the update path needs from a board (flash through
//! embedded-storage, reset, clock, key-value storage, trust anchors). The rest simulates one on
//! the host: [`sim_flash::SimFlash`] (NOR semantics, power-cut injection, wear counters,
//! file-backed), the simulated [`bootloader`] (object5's slot manager and SUIT verifier), the
//! simulated firmware [`image`] format, and the [`device::SimDevice`] facade client binaries
//! run on.
//!
//! Power cuts from the environment: `SIM_POWER_CUT_AFTER=k` interrupts mutating flash
//! operation `k` (0-based, writes and erases counted from process start) and
//! `SIM_POWER_CUT_MODE=clean|partial` says whether part of it lands (torn write / interrupted
//! erase). Afterwards every flash access fails and the device reports
//! [`device::DeviceError::PowerLost`]; the binary exits with [`device::POWER_CUT_EXIT_CODE`].

#![warn(missing_docs)]

pub mod auth;
pub mod board;
pub mod bootloader;
pub mod damage;
pub mod device;
pub mod floor;
pub mod image;
mod mapped;
pub mod sim_flash;
pub mod sim_services;

pub use damage::{BootDamage, FlashDamage};
pub use device::{DeviceError, FactoryImage, SimConfig, SimDevice};
pub use sim_flash::{CutMode, PowerCut, SimFlash, SimFlashError};
