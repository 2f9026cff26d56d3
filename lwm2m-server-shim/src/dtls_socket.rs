//! The coaps listener: one UDP socket, many peers, one [`DtlsSession`] per peer address.
//!
//! It looks like a UDP socket that carries plaintext: [`DtlsSocket::recv_from`] returns only
//! decrypted application datagrams (running handshakes, their retransmission timers and session
//! eviction in between), [`DtlsSocket::send_to`] encrypts for an established peer. So the CoAP
//! endpoint logic is the same for coap and coaps.
//!
//! Resource bounds: handshakes in progress are capped ([`DtlsLimits::max_handshakes`], the oldest
//! is dropped for a new one), established sessions idle longer than
//! [`DtlsLimits::idle_timeout`] are evicted. A new ClientHello from a peer with an established
//! session starts a second handshake beside it; the old session keeps working until the new one
//! completes (a spoofed ClientHello cannot end a session, RFC 6347 4.2.8).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lwm2m_client::dtls::{DtlsContext, DtlsSession};
use tokio::net::UdpSocket;

/// Bounds on the listener's per-peer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsLimits {
    /// Handshakes kept at once; a new peer beyond it evicts the oldest handshake.
    pub max_handshakes: usize,
    /// Established sessions with no datagram for this long are dropped.
    pub idle_timeout: Duration,
}

impl Default for DtlsLimits {
    fn default() -> Self {
        Self {
            max_handshakes: 1024,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// How often handshake timers and idle sessions are checked. DTLS's first retransmission
/// timeout is 1 s, so 100 ms granularity keeps retransmissions close to schedule.
const TICK: Duration = Duration::from_millis(100);

struct Handshake {
    session: DtlsSession,
    started: Instant,
}

/// Everything the listener knows about one peer address.
#[derive(Default)]
struct Peer {
    live: Option<DtlsSession>,
    handshake: Option<Handshake>,
    last_seen: Option<Instant>,
}

#[derive(Default)]
struct Peers {
    by_addr: HashMap<SocketAddr, Peer>,
    handshakes: usize,
    /// Decrypted datagrams not yet returned by `recv_from`.
    ready: VecDeque<(Vec<u8>, SocketAddr)>,
    last_sweep: Option<Instant>,
}

/// Counts of the listener's state, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtlsStats {
    /// Peers with an established session.
    pub sessions: usize,
    /// Handshakes in progress.
    pub handshakes: usize,
}

/// A DTLS server socket serving many peers (see the module docs).
pub struct DtlsSocket {
    socket: UdpSocket,
    ctx: DtlsContext,
    limits: DtlsLimits,
    peers: Mutex<Peers>,
}

/// Datagrams to put on the wire, collected under the lock and sent after it.
type Outgoing = Vec<(Vec<u8>, SocketAddr)>;

fn drain(session: &mut DtlsSession, to: SocketAddr, out: &mut Outgoing) {
    while let Some(d) = session.poll_transmit() {
        out.push((d, to));
    }
}

/// An epoch-0 handshake record carrying a ClientHello: the start of a (re)handshake.
fn is_client_hello(d: &[u8]) -> bool {
    d.first() == Some(&22) && d.get(3..5) == Some(&[0, 0][..]) && d.get(13) == Some(&1)
}

impl DtlsSocket {
    /// Binds the listener; `ctx` must be a server context (PSK or certificate mode).
    pub async fn bind(addr: SocketAddr, ctx: DtlsContext, limits: DtlsLimits) -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(addr).await?,
            ctx,
            limits,
            peers: Mutex::new(Peers::default()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions and handshakes held right now.
    pub fn stats(&self) -> DtlsStats {
        let p = self.peers();
        DtlsStats {
            sessions: p.by_addr.values().filter(|x| x.live.is_some()).count(),
            handshakes: p.handshakes,
        }
    }

    /// The PSK identity `peer` authenticated with, if it has an established session.
    pub fn peer_identity(&self, peer: SocketAddr) -> Option<String> {
        let p = self.peers();
        let id = p.by_addr.get(&peer)?.live.as_ref()?.peer_psk_identity()?;
        String::from_utf8(id.to_vec()).ok()
    }

    /// Encrypts one datagram for `peer`; fails when it has no established session.
    pub async fn send_to(&self, plaintext: &[u8], peer: SocketAddr) -> io::Result<()> {
        let mut out = Outgoing::new();
        {
            let mut p = self.peers();
            let session = p
                .by_addr
                .get_mut(&peer)
                .and_then(|x| x.live.as_mut())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no DTLS session"))?;
            session.send(plaintext).map_err(io::Error::other)?;
            drain(session, peer, &mut out);
        }
        self.transmit(out).await;
        Ok(())
    }

    /// Drops every session and handshake of `peer` (after its security info was removed).
    pub fn forget_peer(&self, peer: SocketAddr) {
        let mut p = self.peers();
        if let Some(x) = p.by_addr.remove(&peer) {
            p.handshakes = p
                .handshakes
                .saturating_sub(usize::from(x.handshake.is_some()));
        }
    }

    async fn transmit(&self, out: Outgoing) {
        for (d, to) in out {
            if let Err(e) = self.socket.send_to(&d, to).await {
                tracing::debug!(peer = %to, error = %e, "DTLS send failed");
            }
        }
    }

    /// Waits for the next decrypted datagram. Must be called from one task at a time (the
    /// CoAP receive loop): handshakes and timers only progress while it runs.
    pub async fn recv_from(&self) -> io::Result<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; 65_535];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(d) = self.peers().ready.pop_front() {
                return Ok(d);
            }
            let out = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => match buf.get(..n) {
                        Some(d) => self.on_datagram(d, from),
                        None => continue,
                    },
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                    Err(e) => return Err(e),
                },
                _ = tick.tick() => self.on_tick(Instant::now()),
            };
            self.transmit(out).await;
        }
    }

    fn on_datagram(&self, d: &[u8], from: SocketAddr) -> Outgoing {
        let mut out = Outgoing::new();
        let now = Instant::now();
        let mut guard = self.peers();
        let p = &mut *guard;
        let hello = is_client_hello(d);
        let known = p.by_addr.contains_key(&from);
        if !known && !hello {
            // Not a handshake start and no state: stray or spoofed, nothing to do.
            return out;
        }
        let needs_handshake = p
            .by_addr
            .get(&from)
            .is_none_or(|x| x.handshake.is_none() && (hello || x.live.is_none()));
        if needs_handshake {
            if !hello {
                return out;
            }
            if p.handshakes >= self.limits.max_handshakes {
                evict_oldest_handshake(p);
            }
            match DtlsSession::server(&self.ctx, from) {
                Ok(session) => {
                    p.by_addr.entry(from).or_default().handshake = Some(Handshake {
                        session,
                        started: now,
                    });
                    p.handshakes += 1;
                }
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "cannot create DTLS session");
                    return out;
                }
            }
        }
        let Some(peer) = p.by_addr.get_mut(&from) else {
            return out;
        };
        peer.last_seen = Some(now);
        let mut plaintext = Vec::new();
        // During a re-handshake the datagram may belong to either association; each session
        // silently drops records it cannot authenticate, so both see it.
        if let Some(live) = peer.live.as_mut().filter(|_| !hello) {
            match live.handle_datagram(d) {
                Ok(data) => plaintext.extend(data),
                Err(e) => {
                    tracing::debug!(peer = %from, error = %e, "DTLS session ended");
                    peer.live = None;
                }
            }
            if let Some(live) = peer.live.as_mut() {
                drain(live, from, &mut out);
            }
        }
        let mut handshake_over = false;
        if let Some(h) = peer.handshake.as_mut() {
            let r = h.session.handle_datagram(d);
            drain(&mut h.session, from, &mut out);
            match r {
                Ok(data) => {
                    plaintext.extend(data);
                    handshake_over = h.session.is_established();
                }
                Err(e) => {
                    tracing::info!(peer = %from, error = %e, "DTLS handshake refused");
                    peer.handshake = None;
                    p.handshakes = p.handshakes.saturating_sub(1);
                }
            }
        }
        if handshake_over {
            if let Some(h) = peer.handshake.take() {
                p.handshakes = p.handshakes.saturating_sub(1);
                tracing::info!(
                    peer = %from,
                    identity = %String::from_utf8_lossy(h.session.peer_psk_identity().unwrap_or_default()),
                    "DTLS session established"
                );
                peer.live = Some(h.session);
            }
        }
        if peer.live.is_none() && peer.handshake.is_none() {
            p.by_addr.remove(&from);
        }
        p.ready.extend(plaintext.into_iter().map(|d| (d, from)));
        out
    }

    /// Fires due handshake retransmission timers and evicts idle sessions.
    fn on_tick(&self, now: Instant) -> Outgoing {
        let mut out = Outgoing::new();
        let mut guard = self.peers();
        let p = &mut *guard;
        let mut failed = 0usize;
        for (addr, peer) in p.by_addr.iter_mut() {
            let Some(h) = peer.handshake.as_mut() else {
                continue;
            };
            if h.session.timeout().is_some_and(|t| t.is_zero()) {
                if let Err(e) = h.session.handle_timeout() {
                    tracing::debug!(peer = %addr, error = %e, "DTLS handshake abandoned");
                    peer.handshake = None;
                    failed += 1;
                    continue;
                }
                drain(&mut h.session, *addr, &mut out);
            }
        }
        p.handshakes = p.handshakes.saturating_sub(failed);
        let sweep_due = p
            .last_sweep
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if sweep_due || failed > 0 {
            p.last_sweep = Some(now);
            let idle = self.limits.idle_timeout;
            p.by_addr.retain(|_, peer| {
                if peer
                    .last_seen
                    .is_some_and(|at| now.duration_since(at) >= idle)
                    && peer.handshake.is_none()
                {
                    peer.live = None;
                }
                peer.live.is_some() || peer.handshake.is_some()
            });
        }
        out
    }
}

fn evict_oldest_handshake(p: &mut Peers) {
    let oldest = p
        .by_addr
        .iter()
        .filter_map(|(a, x)| x.handshake.as_ref().map(|h| (h.started, *a)))
        .min();
    if let Some((_, addr)) = oldest {
        if let Some(x) = p.by_addr.get_mut(&addr) {
            x.handshake = None;
            p.handshakes = p.handshakes.saturating_sub(1);
            if x.live.is_none() {
                p.by_addr.remove(&addr);
            }
        }
    }
}
