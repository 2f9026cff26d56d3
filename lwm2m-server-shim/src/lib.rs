//! Test LwM2M server shim: drives firmware updates the way Eclipse Leshan and commercial
//! device-management servers do. [`server::start`] runs the CoAP registration interface,
//! device management, the package host and the Leshan-compatible REST API + event stream.

#![warn(missing_docs)]

pub mod coap_endpoint;
pub mod content;
pub mod dm;
pub mod event_stream;
pub mod events;
pub mod http_server;
pub mod node_json;
pub mod object_links;
pub mod object_model;
pub mod package_coap;
pub mod package_host;
pub mod package_http;
pub mod registration;
pub mod registration_json;
pub mod rest_api;
pub mod server;
pub mod store;
