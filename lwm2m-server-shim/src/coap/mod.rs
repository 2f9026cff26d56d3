//! CoAP transports: the endpoint (exchanges, retransmission, observations), its timing, the
//! UDP/DTLS transport choice, the DTLS socket and its ClientHello reassembly.

mod client_hello;
pub mod dtls_socket;
pub mod endpoint;
pub mod message;
pub mod timing;
pub mod transport;
