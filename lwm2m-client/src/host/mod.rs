//! The host shell around the no_std core: the tokio runtime that drives the [`Engine`](crate::Engine)
//! over UDP, DTLS through OpenSSL (RFC 6347 / RFC 9147, LwM2M 1.1 transport §5.2), and the
//! package pulls that need sockets (CoAP over UDP/DTLS, CoAP over TCP/TLS, HTTP(S)).

pub mod coap_pull;
pub mod dtls;
pub mod dtls_udp;
pub mod http_pull;
pub mod runtime;
pub mod tcp_pull;
