//! The simulated device behind the `lwm2m-client` binary: the host shell plus device-port's
//! simulated flash and bootloader, with Object 5 wired to them. Host side only.

pub mod device;
pub mod firmware;
