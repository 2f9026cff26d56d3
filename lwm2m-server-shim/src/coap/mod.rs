//! CoAP transports: the endpoint (exchanges, retransmission, observations), its timing, the
//! UDP/DTLS transport choice and the DTLS socket.

pub mod dtls_socket;
pub mod endpoint;
pub mod message;
pub mod timing;
pub mod transport;
