//! Test LwM2M server shim: drives firmware updates the way Eclipse Leshan and commercial
//! device-management servers do. [`app::start`] runs the CoAP registration interface,
//! device management, the package host and the Leshan-compatible REST API + event stream.
//!
//! # Layout
//!
//! The folders follow Leshan's server module, one concern each, listed from the top down:
//!
//! | part | what it holds |
//! |---|---|
//! | `cli/` (binary) | the subcommands (`serve`, `update`, `demo`, `conformance`, `keygen`, `package`): arguments, logging, progress output, exit codes; only `main.rs` uses it |
//! | [`app`] | the composition root: configuration, binding the sockets, the CoAP router, socket buffer sizing, start-up and the running shim |
//! | [`conformance`] | the conformance runner: the OMA ETS cases a server can drive against any registered client, device profiles and reports (which show registrations in the API's Leshan JSON) |
//! | [`api`] | the REST API: HTTP plumbing, routes, Leshan response shapes, the event stream (Leshan JSON and SSE framing of every event), the client, firmware, security and package endpoints (the package host's HTTP face lives here because it is made of the API's HTTP plumbing) |
//! | [`firmware`] | firmware jobs and their events, and campaigns |
//! | [`server`] | the server core: the shared state ([`server::shim::Shim`]), typed events, requests to a registered device, observations, `registration/` (the `/rd` interface, its store, object links, binding modes, Block1 reassembly) and `security/` (the security store and the `/rd` authorizer) |
//! | [`packages`] | the package host, its CoAP faces (Block2 `GET /fw/{name}`, RFC 9177 Q-Block2 bursts) and the signed test packages |
//! | [`coap`], [`content`] | CoAP transports (endpoint, message helpers, UDP or DTLS, the DTLS socket); codec glue over the client crate's codecs, object models, Leshan's JSON nodes |
//!
//! Imports point one way, down this table: cli -> app -> conformance -> api -> firmware ->
//! server -> packages -> coap / content. So the server core knows no HTTP and no firmware job, and a
//! part can be read and changed without the parts above it. `tests/module_layout.rs` checks
//! this from the sources (no circle between modules or folders, no import upwards).
//!
//! From the client crate the shim takes only what both sides must share: its wire codecs and
//! its DTLS wrapper (`lwm2m-client` with features `dtls` only), never the device simulation,
//! its runtime or its HTTP client. The demo runs our simulated device as the `lwm2m-client`
//! binary; tests that need the device in-process live in the workspace's `tests/` crate.
//!
//! HTTP surface (see [`api::routes`]): `GET /api/clients[/{ep}]`, `GET /api/server/stats`,
//! `GET /api/server/security`, `GET /api/server/endpoint`, `GET /api/objectspecs/{ep}`; Read,
//! Write, Execute, Create, Delete, `/discover`, `/attributes`, `/observe` (cancel `?active`) on `/api/clients/{ep}/{o}[/{i}[/{r}[/{ri}]]]`
//! with `format`, `timeout` (s) and `replace`; composite Read, Write and Observe on
//! `/api/clients/{ep}/composite[/observe]` ([`api::composite`]); calls to sleeping queue-mode
//! clients kept until they wake ([`api::queue`]); `GET /api/event[?ep=]` (SSE); `GET|PUT|POST|DELETE
//! /api/packages/{name}`, `GET /api/packages`, `GET /fw/{name}` with `Range`, and firmware jobs
//! (`POST /api/clients/{ep}/firmware`, `GET /api/jobs[/{id}]`, FIRMWARE events; see
//! [`api::firmware`] and [`firmware::campaign`]). CoAP surface:
//! `/rd` (registration interface) and `GET /fw/{name}` (package host: Block2, or Q-Block2 bursts
//! for devices that ask with it), over coaps (DTLS 1.2,
//! on by default, see [`coap::dtls_socket`]: PSK identities from [`server::security::store`], managed through
//! `GET|PUT /api/security/clients` and `DELETE /api/security/clients/{ep}`, and optionally
//! certificates from a CA, registering as their CN) and, only when configured, plain coap.
//!
//! Extension points for campaigns and conformance runs: [`server::shim::Shim::device`] gives
//! device-management requests to a registered client, [`server::events::EventBus::subscribe`] its
//! registrations and notifications, and [`server::registration::store::RegistrationStore`] can be backed by a shared
//! store.

#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod coap;
pub mod conformance;
pub mod content;
pub mod firmware;
pub mod packages;
pub mod server;
