//! The simulated device behind the `lwm2m-client` binary: the host shell plus device-port's
//! simulated flash and bootloader, with Object 5 wired to them, and [`InThreadDevice`] to run
//! it on a thread of another program (tests, benchmarks). Host side only.

pub mod device;
pub mod firmware;
mod in_thread;

pub use in_thread::InThreadDevice;
