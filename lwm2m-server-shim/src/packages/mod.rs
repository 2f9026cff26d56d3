//! Firmware packages: the file-backed host, its CoAP faces (Block2 `GET /fw/{name}`, and
//! Q-Block2 bursts for devices that ask with it), its CoAP-over-TCP/TLS face (RFC 8323, BERT)
//! and the signed test packages of the demo and
//! conformance runs.

pub mod coap;
pub mod coap_tcp;
pub mod host;
pub mod qblock;
pub mod test_packages;
