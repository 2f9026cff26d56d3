//! Test LwM2M server shim: drives firmware updates the way Eclipse Leshan and commercial
//! device-management servers do. [`server::start`] runs the CoAP registration interface,
//! device management, the package host and the Leshan-compatible REST API + event stream.
//!
//! HTTP surface (see [`rest_api`]): `GET /api/clients[/{ep}]`, `GET /api/server/stats`; Read,
//! Write, Execute, Create, Delete, `/discover`, `/attributes`, `/observe` on `/api/clients/{ep}/{o}[/{i}[/{r}[/{ri}]]]`
//! with `format`, `timeout` (s) and `replace`; `GET /api/event[?ep=]` (SSE); `GET|PUT|POST|DELETE
//! /api/packages/{name}`, `GET /api/packages`, `GET /fw/{name}` with `Range`, and firmware jobs
//! (`POST /api/clients/{ep}/firmware`, `GET /api/jobs[/{id}]`, FIRMWARE events; see
//! [`firmware_api`] and [`campaign`]). CoAP surface:
//! `/rd` (registration interface) and `GET /fw/{name}` (Block2 package host), over coaps (DTLS 1.2,
//! on by default, see [`dtls_socket`]: PSK identities from [`security_store`], managed through
//! `GET|PUT /api/security/clients` and `DELETE /api/security/clients/{ep}`, and optionally
//! certificates from a CA, registering as their CN) and, only when configured, plain coap.
//!
//! Extension points for campaigns and conformance runs: [`server::Shim::device`] gives
//! device-management requests to a registered client, [`events::EventBus::subscribe`] its
//! registrations and notifications, and [`store::RegistrationStore`] can be backed by a shared
//! store.

#![warn(missing_docs)]

pub mod binding;
pub mod block1_assembly;
pub mod campaign;
pub mod client_api;
pub mod coap_endpoint;
pub mod conformance;
pub mod content;
pub mod dm;
pub mod dtls_socket;
pub mod event_stream;
pub mod events;
pub mod firmware_api;
pub mod http_server;
pub mod in_process_device;
pub mod jobs;
pub mod leshan_response;
pub mod node_json;
pub mod object_links;
pub mod object_model;
pub mod package_coap;
pub mod package_host;
pub mod package_http;
pub mod registration;
pub mod registration_json;
pub mod rest_api;
pub mod security_api;
pub mod security_store;
pub mod server;
pub mod store;
pub mod test_packages;
pub mod transport;
