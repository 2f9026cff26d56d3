//! Test LwM2M server shim: drives firmware updates the way Eclipse Leshan and commercial
//! device-management servers do.

#![warn(missing_docs)]

pub mod coap_endpoint;
pub mod http_server;
pub mod package_host;
pub mod store;
