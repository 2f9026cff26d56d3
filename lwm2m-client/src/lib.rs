//! LwM2M client: a sans-IO engine (bytes and time in; bytes, timer deadlines and events out)
//! and the thin tokio shell that drives it over UDP.
//!
//! Three parts, each a layer on the one before, each behind a feature (`sim`, the default,
//! turns on all of them):
//! - the core (every module but `host` and `sim`) builds as `no_std` + `alloc` without
//!   features (`std` only adds `std::error::Error`): wire formats, the engine, the objects,
//!   the sans-IO Block2 and Q-Block2 (RFC 9177) pulls;
//! - `host`: DTLS through OpenSSL (`host::dtls`, feature `dtls`: all the server shim takes
//!   besides the codecs), and with feature `host` the tokio runtime over UDP and the socket
//!   pulls (CoAP over UDP/DTLS, HTTP);
//! - `sim` (feature `sim`): the simulated device behind the `lwm2m-client` binary, on
//!   device-port's simulated flash and bootloader, and a runner for it on a thread.
//!
//! - [`codec`]: wire formats shared with the server shim (Block1/Block2 option with 20-bit NUM,
//!   link-format, TLV, SenML JSON/CBOR, LwM2M JSON, LwM2M CBOR, CBOR, text/opaque, paths, the
//!   node model).
//! - [`Engine`]: one server; feed it with [`Engine::handle_datagram`] and
//!   [`Engine::handle_timeout`], drain [`Engine::poll_transmit`] and [`Engine::poll_event`],
//!   sleep until [`Engine::poll_timeout`].
//! - [`ObjectHandler`]: what an object implements; [`objects`] has Security, Server, Device and
//!   a Firmware Update object that streams Block1 pushes into a [`pull::PackageSink`].
//!
//! ```
//! use lwm2m_client::objects::{Device, DeviceInfo, DiscardBackend, FirmwareUpdate, Security, Server};
//! use lwm2m_client::{Config, Engine, ObjectHandler};
//!
//! let info = DeviceInfo {
//!     manufacturer: "Acme".into(),
//!     model: "M1".into(),
//!     serial: "1".into(),
//!     firmware_version: "1.0.0".into(),
//! };
//! let objects: Vec<Box<dyn ObjectHandler>> = vec![
//!     Box::new(Security::no_sec("coap://127.0.0.1:5683")),
//!     Box::new(Server::new(300)),
//!     Box::new(Device::new(info)),
//!     Box::new(FirmwareUpdate::new(DiscardBackend::default())),
//! ];
//! let mut engine = Engine::new(Config::new("ep"), "server", objects);
//! engine.start(0);
//! let register = engine.poll_transmit().unwrap(); // POST /rd?ep=ep&lt=300&lwm2m=1.1&b=U
//! assert_eq!(register.peer, "server");
//! assert!(engine.poll_timeout().is_some()); // the retransmission timer
//! ```

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

// The no_std core: wire formats, the sans-IO engine, objects and the sans-IO CoAP pull.
pub mod coap;
pub mod codec;
pub mod engine;
pub mod firmware_backend;
pub mod object;
pub mod objects;
pub mod observe;
pub mod pull;

pub use engine::{
    check_endpoint, BadEndpoint, BootstrapCause, Config, CredentialsCheck, DeferredId, Engine,
    Event, QueueMode, RegState, RestoreError, Transmit, MAX_ENDPOINT_LEN,
};
pub use object::{BlockChunk, Completion, ObjectHandler, OpError, Ops, ResourceDef};

#[cfg(feature = "dtls")]
pub mod host;

#[cfg(feature = "sim")]
pub mod sim;
