//! The datagram transports under the CoAP endpoint: plain UDP (coap://) or DTLS (coaps://).
//! The endpoint logic (retransmission, deduplication, observations) is the same for both; only
//! how a datagram reaches a peer, and whether the peer is authenticated, differ.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::net::UdpSocket;

use crate::coap::dtls_socket::{DtlsSocket, DtlsStats, PeerIdentity};

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

    fn udp(&self) -> &UdpSocket {
        match self {
            Self::Plain(s) => s,
            Self::Dtls(s) => s.udp(),
        }
    }

    /// Sets the socket's kernel receive buffer (SO_RCVBUF) to `bytes` and returns the size the
    /// kernel reports afterwards: Linux caps the request at `net.core.rmem_max` and reports
    /// twice what it granted (the bookkeeping overhead is included).
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<usize> {
        set_buffer(self.udp(), libc::SO_RCVBUF, bytes)
    }

    /// Sets the socket's kernel send buffer (SO_SNDBUF), as [`Self::set_recv_buffer`] does
    /// (capped at `net.core.wmem_max`).
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<usize> {
        set_buffer(self.udp(), libc::SO_SNDBUF, bytes)
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

    /// Sessions, handshakes and refusals of a DTLS listener (`None` on plain UDP).
    pub fn dtls_stats(&self) -> Option<DtlsStats> {
        match self {
            Self::Plain(_) => None,
            Self::Dtls(s) => Some(s.stats()),
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

/// setsockopt(SOL_SOCKET, `option`, `bytes`), then getsockopt of the same option.
fn set_buffer(socket: &UdpSocket, option: libc::c_int, bytes: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket borrowed from `socket`; the option value is one c_int
    // read from `value`, of the length given.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            len,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut granted: libc::c_int = 0;
    let mut got_len = len;
    // SAFETY: as above; getsockopt writes at most `got_len` bytes into `granted`, one c_int.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut granted as *mut libc::c_int).cast(),
            &mut got_len,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(granted).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffer_sizes_are_set_and_reported() {
        let t = Transport::Plain(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let small = t.set_recv_buffer(64 * 1024).expect("SO_RCVBUF");
        // Linux reports the doubled value; other kernels the value itself.
        assert!(small >= 64 * 1024, "{small}");
        let large = t.set_recv_buffer(1024 * 1024).expect("SO_RCVBUF");
        assert!(large >= small, "{large} < {small}");
        assert!(t.set_send_buffer(64 * 1024).expect("SO_SNDBUF") >= 64 * 1024);
    }
}
