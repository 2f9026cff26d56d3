//! Firmware packages: the file-backed host, its CoAP face (Block2 `GET /fw/{name}`) and the
//! signed test packages of the demo and conformance runs.

pub mod coap;
pub mod host;
pub mod test_packages;
