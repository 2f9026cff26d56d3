//! The Leshan-compatible REST API over HTTP: the server plumbing, routes, Leshan response
//! shapes, the event stream and the client, firmware, security and package endpoints.

pub mod clients;
pub mod composite;
pub mod event_stream;
pub mod firmware;
pub mod http_server;
pub mod leshan_response;
pub mod object_specs;
pub mod packages;
pub mod queue;
pub mod registration_json;
pub mod routes;
pub mod security;
pub mod server_info;
