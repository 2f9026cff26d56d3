//! A DTLS client association over a tokio UDP socket: the handshake (with retransmission on
//! the session's timer) and encrypted sends. The socket's owner keeps receiving and hands each
//! datagram to [`DtlsUdp::handle`], so the same socket loop serves plain and secure links; both
//! the registration link and coaps:// package pulls use it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openssl::ssl::SslSession;
use tokio::net::UdpSocket;

use crate::host::dtls::{DtlsContext, DtlsError, DtlsSession, Plaintexts};

/// An established DTLS association with one server.
#[derive(Debug)]
pub struct DtlsUdp {
    peer: SocketAddr,
    session: DtlsSession,
}

fn io_err(e: DtlsError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, e)
}

async fn flush(socket: &UdpSocket, peer: SocketAddr, session: &mut DtlsSession) -> io::Result<()> {
    while let Some(d) = session.poll_transmit() {
        socket.send_to(&d, peer).await?;
        session.recycle(d);
    }
    Ok(())
}

impl DtlsUdp {
    /// Handshakes with `peer` over `socket` within `budget`, offering `resume` for an
    /// abbreviated handshake. Datagrams from other peers meanwhile are dropped.
    pub async fn connect(
        socket: &UdpSocket,
        peer: SocketAddr,
        ctx: &DtlsContext,
        resume: Option<&SslSession>,
        budget: Duration,
    ) -> io::Result<Self> {
        let deadline = Instant::now() + budget;
        let mut session = DtlsSession::client(ctx, resume).map_err(io_err)?;
        let mut buf = vec![0u8; 2048];
        loop {
            flush(socket, peer, &mut session).await?;
            if session.is_established() {
                return Ok(Self { peer, session });
            }
            let wait = session
                .timeout()
                .unwrap_or(Duration::from_millis(500))
                .max(Duration::from_millis(1));
            if Instant::now() + wait > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "DTLS handshake timed out",
                ));
            }
            match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if from == peer => {
                    session.handle_datagram(&buf[..n]).map_err(io_err)?;
                }
                Ok(Ok((_, from))) => {
                    tracing::debug!(%from, %peer, "dropped a datagram from a foreign source during the DTLS handshake");
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => session.handle_timeout().map_err(io_err)?,
            }
        }
    }

    /// The server this association is with.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.session.resumed()
    }

    /// The cipher suite negotiated (OpenSSL's name).
    pub fn cipher(&self) -> Option<&'static str> {
        self.session.cipher()
    }

    /// The session to offer when reconnecting.
    pub fn session(&self) -> Option<SslSession> {
        self.session.session()
    }

    /// Encrypts one datagram to the server and sends it.
    pub async fn send(&mut self, socket: &UdpSocket, plaintext: &[u8]) -> io::Result<()> {
        self.session.send(plaintext).map_err(io_err)?;
        flush(socket, self.peer, &mut self.session).await
    }

    /// Ends the association with close_notify (RFC 5246 §7.2.1, which DTLS 1.2 keeps), so
    /// the server drops its state now rather than at its idle timeout. Best effort and without
    /// waiting: an alert that does not fit the socket's buffer now is not sent.
    pub fn close(&mut self, socket: &UdpSocket) {
        self.session.close();
        while let Some(d) = self.session.poll_transmit() {
            if socket.try_send_to(&d, self.peer).is_err() {
                break;
            }
        }
    }

    /// Ends the association silently, its session kept for resumption (a queue-mode device
    /// going to sleep).
    pub fn put_aside(mut self) {
        self.session.put_aside();
    }

    /// A datagram that arrived on the socket: its plaintext datagrams when it came from the
    /// server (none for other sources or records that fail authentication); an error when the
    /// server closed the association.
    pub fn handle(&mut self, datagram: &[u8], from: SocketAddr) -> Result<Vec<Vec<u8>>, DtlsError> {
        if from != self.peer {
            return Ok(Vec::new());
        }
        self.session.handle_datagram(datagram)
    }

    /// [`DtlsUdp::handle`] into `out`, whose buffers are reused from call to call (the
    /// per-block path of a coaps pull); `out` is left empty for datagrams from other sources.
    pub fn handle_into(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        out: &mut Plaintexts,
    ) -> Result<(), DtlsError> {
        if from != self.peer {
            out.clear();
            return Ok(());
        }
        self.session.handle_datagram_into(datagram, out)
    }
}
