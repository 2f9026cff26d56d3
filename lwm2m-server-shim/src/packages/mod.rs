//! Firmware packages: the file-backed host, its CoAP face (Block2 `GET /fw/{name}`), its
//! CoAP-over-TCP/TLS face (RFC 8323, BERT) and the signed test packages of the demo and
//! conformance runs.

pub mod coap;
pub mod coap_tcp;
pub mod host;
pub mod test_packages;
