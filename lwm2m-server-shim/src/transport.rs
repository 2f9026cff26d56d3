//! The datagram transports under the CoAP endpoint: plain UDP (coap://) or DTLS (coaps://).
//! The endpoint logic (retransmission, deduplication, observations) is the same for both; only
//! how a datagram reaches a peer, and whether the peer is authenticated, differ.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::dtls_socket::{DtlsSocket, PeerIdentity};

/// A socket carrying CoAP messages.
pub enum Transport {
    /// Plain UDP: anyone may send, nobody is authenticated.
    Plain(UdpSocket),
    /// DTLS: every datagram in or out belongs to an authenticated session.
    Dtls(Box<DtlsSocket>),
}

impl Transport {
    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(s) => s.local_addr(),
            Self::Dtls(s) => s.local_addr(),
        }
    }

    /// Whether peers on this transport are authenticated.
    pub fn is_secure(&self) -> bool {
        matches!(self, Self::Dtls(_))
    }

    /// Who `peer` authenticated as (`None` on plain UDP).
    pub fn peer_identity(&self, peer: SocketAddr) -> Option<PeerIdentity> {
        match self {
            Self::Plain(_) => None,
            Self::Dtls(s) => s.peer_identity(peer),
        }
    }

    /// Ends the DTLS sessions authenticated as `identity` (nothing to do on plain UDP).
    pub fn forget_identity(&self, identity: &str) -> usize {
        match self {
            Self::Plain(_) => 0,
            Self::Dtls(s) => s.forget_identity(identity),
        }
    }

    /// Sends one CoAP datagram to `peer`.
    pub async fn send_to(&self, datagram: &[u8], peer: SocketAddr) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.send_to(datagram, peer).await.map(|_| ()),
            Self::Dtls(s) => s.send_to(datagram, peer).await,
        }
    }

    /// Waits for the next CoAP datagram (decrypted on DTLS) into `buf`; returns its length
    /// (truncated to `buf`) and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Self::Plain(s) => s.recv_from(buf).await,
            Self::Dtls(s) => {
                // `buf` first holds the raw records, which are consumed before the plaintext
                // is copied into it.
                let (d, peer) = s.recv_from(buf).await?;
                let n = d.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), d.get(..n)) {
                    dst.copy_from_slice(src);
                }
                Ok((n, peer))
            }
        }
    }
}
