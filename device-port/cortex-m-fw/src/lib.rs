//! object5's device-side update path as firmware for an emulated Cortex-M3 (QEMU's
//! mps2-an385), and the parts of it that also build for the host.
//!
//! The library is platform-neutral `no_std` code: a NOR flash in RAM ([`nor`]), the update
//! path with its fixed buffers ([`update`]) and the signed test packages ([`packages`]). The
//! binary (`src/main.rs`, target only) adds the board: reset, semihosting, the timer, the
//! persistent RAM and the measurements. device-port/tests/cortex_m_qemu.rs runs the same
//! [`update`] path on the host with a stack probe, beside the figure measured on the target.
//!
//! The crate is excluded from the workspace's members: its binary is `#![no_std]` and
//! `#![no_main]` and cannot link for the host, so `cargo build --workspace` and `cargo test
//! --workspace` would fail on it. It still resolves in the workspace (one Cargo.lock, the
//! `min-size` profile) through device-port's dev-dependency on this library; that test builds
//! the binary for `thumbv7m-none-eabi` in its own target directory.
//!
//! Why mps2-an385: QEMU models it as a Cortex-M3 (ARMv7-M, the class-1 core of the SUIT
//! charter's devices) with 4 MiB of SSRAM that keeps its contents across a system reset, room
//! for a NOR flash with two 64 KiB slots beside 64 KiB of ordinary RAM. lm3s6965evb has only
//! 64 KiB of RAM and its 256 KiB of flash has no programming model in QEMU (writes are
//! ignored), so two slots of NOR with erase and write semantics fit nowhere.

#![no_std]
#![warn(missing_docs)]

pub mod nor;
pub mod packages;
pub mod update;
