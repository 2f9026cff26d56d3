//! The host shell around the no_std core: the tokio runtime that drives the [`Engine`](crate::Engine)
//! over UDP, DTLS through OpenSSL (RFC 6347 / RFC 9147, LwM2M 1.1 transport §5.2), and the
//! package pulls that need sockets (CoAP over UDP/DTLS, CoAP over TCP/TLS, HTTP(S)).
//!
//! Feature `dtls` builds only [`dtls`] (OpenSSL, no tokio): the server shim's coaps socket
//! uses it. Feature `host` adds the rest.

#[cfg(feature = "host")]
pub mod coap_pull;
mod dane;
pub mod dtls;
#[cfg(feature = "host")]
pub mod dtls_udp;
#[cfg(feature = "host")]
pub mod http_pull;
#[cfg(feature = "host")]
pub mod provisioned;
#[cfg(feature = "host")]
pub mod runtime;
#[cfg(feature = "host")]
pub mod tcp_pull;
