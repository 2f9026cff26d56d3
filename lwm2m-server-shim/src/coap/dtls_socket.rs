//! The coaps listener: one UDP socket, many peers, one [`DtlsSession`] per peer address.
//!
//! It looks like a UDP socket that carries plaintext: [`DtlsSocket::recv_from`] returns only
//! decrypted application datagrams (running handshakes, their retransmission timers and session
//! eviction in between), [`DtlsSocket::send_to`] encrypts for an established peer. So the CoAP
//! endpoint logic is the same for coap and coaps. The per-peer logic is [`DtlsPeers`], a
//! sans-IO state machine with time as an argument; the socket only moves datagrams and the
//! clock to it.
//!
//! A first ClientHello is answered statelessly (RFC 6347 §4.2.1, through one listening
//! session, [`DtlsSession::listen`]): its HelloVerifyRequest is sent and nothing is kept, so
//! ClientHellos from forged addresses take no memory and no handshake slot. A peer gets state
//! once it returns the cookie, i.e. receives at its address.
//!
//! Resource bounds: handshakes in progress are capped ([`DtlsLimits::max_handshakes`]; for a
//! new one the oldest is dropped), established sessions idle longer than
//! [`DtlsLimits::idle_timeout`] are evicted. A new ClientHello from a peer with an
//! established session starts a second handshake beside it; the old session keeps working
//! until the new one completes (a spoofed ClientHello cannot end a session, RFC 6347 4.2.8).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lwm2m_client::host::dtls::{CertIdentity, DtlsContext, DtlsError, DtlsSession, Plaintexts};

use super::client_hello::{client_random, is_client_hello, Hello, HelloFragments};
use tokio::net::UdpSocket;
use tokio::time::Sleep;

/// Bounds on the listener's per-peer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsLimits {
    /// Handshakes kept at once (each past the cookie exchange); a new one beyond it evicts
    /// the oldest.
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

/// Who a coaps peer authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A PSK identity (its endpoint comes from the security store).
    Psk(String),
    /// The common name of a certificate that chains to the configured CA: by Leshan's X.509
    /// rule it is the endpoint name.
    Certificate(String),
}

impl PeerIdentity {
    fn of(session: &DtlsSession) -> Option<Self> {
        match session.peer_psk_identity() {
            Some(id) => String::from_utf8(id.to_vec()).ok().map(Self::Psk),
            None => session.peer_common_name().map(Self::Certificate),
        }
    }
}

/// The shim's own certificate and the CA that certificate-mode clients must chain to.
#[derive(Clone)]
pub struct ServerCertificate(pub CertIdentity);

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.write_str("ServerCertificate { .. }")
    }
}

/// How often handshake timers and idle sessions are checked. DTLS's first retransmission
/// timeout is 1 s, so 100 ms granularity keeps retransmissions close to schedule.
const TICK: Duration = Duration::from_millis(100);

struct Handshake {
    session: DtlsSession,
    started: Instant,
    /// The ClientHello random that began it: a ClientHello with another random is a new
    /// attempt (a peer that gave up or rebooted), not a retransmission.
    client_random: Option<Vec<u8>>,
    /// What arrived of the client's final flight after its PSK identity was known.
    final_flight: FinalFlight,
}

/// The records of a client's final flight seen by a PSK handshake (RFC 6347 4.2.4): once its
/// ChangeCipherSpec and its encrypted Finished arrived and the handshake still did not
/// complete, the Finished failed to verify, i.e. the client holds another key. OpenSSL drops
/// such a record silently (RFC 6347 4.1.2.7), which would leave the handshake to time out
/// minutes later with nobody told why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FinalFlight {
    change_cipher_spec: bool,
    encrypted_handshake: bool,
}

impl FinalFlight {
    /// Notes the records of one datagram: 13-byte DTLS record headers (type, version, epoch,
    /// sequence number, length), each followed by its fragment.
    fn scan(&mut self, datagram: &[u8]) {
        let mut at = 0usize;
        while let Some(&[ty, _, _, e0, e1, _, _, _, _, _, _, l0, l1]) = datagram.get(at..at + 13) {
            match ty {
                20 => self.change_cipher_spec = true,
                22 if u16::from_be_bytes([e0, e1]) > 0 => self.encrypted_handshake = true,
                _ => {}
            }
            at += 13 + usize::from(u16::from_be_bytes([l0, l1]));
        }
    }

    fn complete(self) -> bool {
        self.change_cipher_spec && self.encrypted_handshake
    }
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
    /// Peers with a handshake in progress: the only ones the retransmission timer visits.
    handshaking: HashSet<SocketAddr>,
    /// Decrypted datagrams not yet returned by `recv_from`.
    ready: VecDeque<(Vec<u8>, SocketAddr)>,
    next_tick: Option<Instant>,
    last_sweep: Option<Instant>,
}

impl Peers {
    /// Ends `addr`'s handshake; forgets the peer when no session is left either.
    fn end_handshake(&mut self, addr: SocketAddr) -> Option<Handshake> {
        self.handshaking.remove(&addr);
        let peer = self.by_addr.get_mut(&addr)?;
        let h = peer.handshake.take();
        if peer.live.is_none() {
            self.by_addr.remove(&addr);
        }
        h
    }
}

/// Counts of the listener's state, for logs, tests, benchmarks and `GET /api/server/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtlsStats {
    /// Peers with an established session.
    pub sessions: usize,
    /// Handshakes in progress.
    pub handshakes: usize,
    /// Handshakes refused since the listener started (wrong key, unknown identity, bad
    /// certificate, protocol error); handshakes that merely stopped are not counted.
    pub refused: u64,
}

/// A DTLS server socket serving many peers (see the module docs): a UDP socket around the
/// sans-IO [`DtlsPeers`].
pub struct DtlsSocket {
    socket: UdpSocket,
    peers: Mutex<DtlsPeers>,
    /// The timer of [`DtlsPeers::on_tick`], kept between [`DtlsSocket::recv_from`] calls.
    tick: Mutex<Option<Pin<Box<Sleep>>>>,
}

/// Datagrams to put on the wire, collected under the lock and sent after it.
pub type Outgoing = Vec<(Vec<u8>, SocketAddr)>;

fn drain(session: &mut DtlsSession, to: SocketAddr, out: &mut Outgoing) {
    while let Some(d) = session.poll_transmit() {
        out.push((d, to));
    }
}

impl DtlsSocket {
    /// Binds the listener; `ctx` must be a server context (PSK or certificate mode).
    pub async fn bind(addr: SocketAddr, ctx: DtlsContext, limits: DtlsLimits) -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(addr).await?,
            peers: Mutex::new(DtlsPeers::new(ctx, limits)),
            tick: Mutex::new(None),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The UDP socket carrying the records.
    pub(crate) fn udp(&self) -> &UdpSocket {
        &self.socket
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, DtlsPeers> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions and handshakes held right now.
    pub fn stats(&self) -> DtlsStats {
        self.peers().stats()
    }

    /// The admission path without the socket: takes one raw datagram from `from` as
    /// [`Self::recv_from`] would and returns the datagrams to send in answer (decrypted
    /// application data waits for `recv_from`). For the `dtls_admission` fuzz target.
    pub fn admit(&self, datagram: &[u8], from: SocketAddr) -> Vec<(Vec<u8>, SocketAddr)> {
        self.peers().on_datagram(datagram, from, Instant::now())
    }

    /// The timer path at `now` (retransmissions, idle eviction) without the socket; returns
    /// the datagrams to send. For the `dtls_admission` fuzz target.
    pub fn tick(&self, now: Instant) -> Vec<(Vec<u8>, SocketAddr)> {
        self.peers().on_tick(now)
    }

    /// Who `peer` authenticated as, if it has an established session.
    pub fn peer_identity(&self, peer: SocketAddr) -> Option<PeerIdentity> {
        self.peers().peer_identity(peer)
    }

    /// Encrypts one datagram for `peer`; fails when it has no established session.
    pub async fn send_to(&self, plaintext: &[u8], peer: SocketAddr) -> io::Result<()> {
        // Sent under the lock when the socket takes it at once, as it nearly always does;
        // the rest waits for the socket outside the lock.
        let out = self.peers().seal_with(plaintext, peer, |d| {
            self.socket.try_send_to(d, peer).map(|_| ())
        })?;
        self.transmit(out).await;
        Ok(())
    }

    /// Drops the established sessions authenticated as `identity` (its key was removed or
    /// changed); returns how many. Those peers must handshake again with the current key.
    pub fn forget_identity(&self, identity: &str) -> usize {
        self.peers().forget_identity(identity)
    }

    async fn transmit(&self, out: Outgoing) {
        for (d, to) in out {
            if let Err(e) = self.socket.send_to(&d, to).await {
                tracing::debug!(peer = %to, error = %e, "DTLS send failed");
            }
        }
    }

    /// Waits for the next decrypted datagram, using `buf` for the raw ones. Must be called
    /// from one task at a time (the CoAP receive loop): handshakes and timers only progress
    /// while it runs. It only moves datagrams and the clock to [`DtlsPeers`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(Vec<u8>, SocketAddr)> {
        // The tick timer lives across calls: a timer armed and cancelled for every datagram
        // cost two trips through tokio's timer wheel per block of a coaps pull. A call
        // cancelled mid-way loses it; the next call arms a new one.
        let mut tick = self.tick.lock().unwrap_or_else(|e| e.into_inner()).take();
        let r = self.recv_ticking(buf, &mut tick).await;
        *self.tick.lock().unwrap_or_else(|e| e.into_inner()) = tick;
        r
    }

    async fn recv_ticking(
        &self,
        buf: &mut [u8],
        tick: &mut Option<Pin<Box<Sleep>>>,
    ) -> io::Result<(Vec<u8>, SocketAddr)> {
        loop {
            let next_tick = {
                let mut p = self.peers();
                if let Some(d) = p.poll_ready() {
                    return Ok(d);
                }
                tokio::time::Instant::from_std(p.next_tick(Instant::now()))
            };
            let sleep = match tick {
                Some(s) => {
                    if s.deadline() != next_tick {
                        s.as_mut().reset(next_tick);
                    }
                    s
                }
                None => tick.insert(Box::pin(tokio::time::sleep_until(next_tick))),
            };
            let out = tokio::select! {
                r = self.socket.recv_from(buf) => match r {
                    Ok((n, from)) => match buf.get(..n) {
                        Some(d) => self.peers().on_datagram(d, from, Instant::now()),
                        None => continue,
                    },
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                    Err(e) => return Err(e),
                },
                () = sleep.as_mut() => self.peers().on_tick(Instant::now()),
            };
            self.transmit(out).await;
        }
    }
}

/// The listener's per-peer state, sans-IO (as quinn-proto's `Endpoint`): datagrams and the
/// current time go in, datagrams to send and decrypted application data come out. Time is an
/// argument, so handshake bounds and idle eviction are tested with a fake clock.
pub struct DtlsPeers {
    ctx: DtlsContext,
    limits: DtlsLimits,
    peers: Peers,
    refused: u64,
    /// Where established sessions decrypt into, reused for every datagram.
    scratch: Plaintexts,
    /// Answers first ClientHellos statelessly; becomes the handshake of the first peer that
    /// returns its cookie and is then made anew.
    listener: Option<DtlsSession>,
    /// ClientHellos arriving in fragments, put back together for the listener.
    hellos: HelloFragments,
}

impl DtlsPeers {
    /// No peers yet; `ctx` must be a server context.
    pub fn new(ctx: DtlsContext, limits: DtlsLimits) -> Self {
        Self {
            ctx,
            limits,
            peers: Peers::default(),
            refused: 0,
            scratch: Plaintexts::default(),
            listener: None,
            hellos: HelloFragments::default(),
        }
    }

    /// Counts of sessions, handshakes and refusals.
    pub fn stats(&self) -> DtlsStats {
        let p = &self.peers;
        DtlsStats {
            sessions: p.by_addr.values().filter(|x| x.live.is_some()).count(),
            handshakes: p.handshaking.len(),
            refused: self.refused,
        }
    }

    /// Who `peer` authenticated as, if it has an established session.
    pub fn peer_identity(&self, peer: SocketAddr) -> Option<PeerIdentity> {
        PeerIdentity::of(self.peers.by_addr.get(&peer)?.live.as_ref()?)
    }

    /// The next decrypted application datagram and its sender.
    pub fn poll_ready(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.peers.ready.pop_front()
    }

    /// When [`Self::on_tick`] is due, counted from `now` if no tick is scheduled.
    pub fn next_tick(&mut self, now: Instant) -> Instant {
        *self.peers.next_tick.get_or_insert(now + TICK)
    }

    /// Encrypts `plaintext` for `peer`'s established session.
    pub fn seal(&mut self, plaintext: &[u8], peer: SocketAddr) -> io::Result<Outgoing> {
        self.seal_with(plaintext, peer, |_| Err(io::ErrorKind::WouldBlock.into()))
    }

    /// [`Self::seal`], handing each record to `send` at once (a non-blocking send): what it
    /// took goes back to the session for its next record, so a served block costs no
    /// allocation. What it refuses with `WouldBlock`, and all after, is returned to be sent
    /// later, in order; other send errors drop the datagram, as a lost datagram.
    pub fn seal_with(
        &mut self,
        plaintext: &[u8],
        peer: SocketAddr,
        mut send: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<Outgoing> {
        let mut out = Outgoing::new();
        let session = self
            .peers
            .by_addr
            .get_mut(&peer)
            .and_then(|x| x.live.as_mut())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no DTLS session"))?;
        session.send(plaintext).map_err(io::Error::other)?;
        while let Some(d) = session.poll_transmit() {
            if !out.is_empty() {
                out.push((d, peer));
                continue;
            }
            match send(&d) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => out.push((d, peer)),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "DTLS send failed");
                    session.recycle(d);
                }
                Ok(()) => session.recycle(d),
            }
        }
        Ok(out)
    }

    /// Drops the established sessions authenticated as `identity`; returns how many.
    pub fn forget_identity(&mut self, identity: &str) -> usize {
        let mut revoked = 0;
        self.peers.by_addr.retain(|_, x| {
            if x.live
                .as_ref()
                .and_then(DtlsSession::peer_psk_identity)
                .is_some_and(|id| id == identity.as_bytes())
            {
                x.live = None;
                revoked += 1;
            }
            x.live.is_some() || x.handshake.is_some()
        });
        revoked
    }

    /// Takes one datagram from `from` that arrived at `now`: runs or starts its handshake, or
    /// decrypts it with the peer's session (decrypted data goes to [`Self::poll_ready`]).
    pub fn on_datagram(&mut self, d: &[u8], from: SocketAddr, now: Instant) -> Outgoing {
        let mut out = Outgoing::new();
        // OpenSSL's listener takes a ClientHello only whole (RFC 6347 §4.2.3 lets clients
        // fragment it): fragments wait here until the last one arrives.
        let whole;
        let d = match self.hellos.take(d, from, now) {
            Hello::AsIs => d,
            Hello::Pending => return out,
            Hello::Whole(record) => {
                whole = record;
                &whole[..]
            }
        };
        let hello = is_client_hello(d);
        // The per-block path of a coaps pull: an established peer with no handshake beside
        // it, one map lookup.
        if !hello {
            if let Some(peer) = self.peers.by_addr.get_mut(&from) {
                if let (Some(live), None) = (peer.live.as_mut(), peer.handshake.as_ref()) {
                    peer.last_seen = Some(now);
                    let ready = &mut self.peers.ready;
                    if !read_live(live, d, from, &mut self.scratch, ready, &mut out) {
                        self.peers.by_addr.remove(&from);
                    }
                    return out;
                }
            }
        }
        let p = &mut self.peers;
        let random = hello.then(|| client_random(d)).flatten();
        let stale = p
            .by_addr
            .get(&from)
            .and_then(|x| x.handshake.as_ref())
            .is_some_and(|h| random.is_some() && h.client_random != random);
        if stale {
            // The peer started over (new ClientHello random): the old attempt is dead.
            p.end_handshake(from);
        }
        let (live, handshaking) = p.by_addr.get(&from).map_or((false, false), |x| {
            (x.live.is_some(), x.handshake.is_some())
        });
        if !handshaking && (hello || !live) {
            if !hello {
                // No state and not a handshake start: stray or spoofed, nothing to do.
                return out;
            }
            let listener = match self.listener.take() {
                Some(l) => Ok(l),
                None => DtlsSession::listener(&self.ctx),
            };
            let mut session = match listener {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "cannot create DTLS session");
                    return out;
                }
            };
            let r = session.listen(d, from);
            drain(&mut session, from, &mut out);
            match r {
                // A HelloVerifyRequest, or nothing: no state kept, the listener serves on.
                Ok(false) => self.listener = Some(session),
                Ok(true) => {
                    // The cookie came back: the listener is now this peer's handshake.
                    if p.handshaking.len() >= self.limits.max_handshakes {
                        evict_oldest_handshake(p);
                    }
                    let peer = p.by_addr.entry(from).or_default();
                    peer.last_seen = Some(now);
                    peer.handshake = Some(Handshake {
                        session,
                        started: now,
                        client_random: random,
                        final_flight: FinalFlight::default(),
                    });
                    p.handshaking.insert(from);
                }
                Err(e) => {
                    // Past the cookie, the ClientHello itself was refused (no common
                    // suite); its alert is in `out`.
                    self.refused += 1;
                    tracing::warn!(peer = %from, error = %e, "DTLS handshake refused");
                }
            }
            return out;
        }
        let Some(peer) = p.by_addr.get_mut(&from) else {
            return out;
        };
        peer.last_seen = Some(now);
        let mut plaintext = Vec::new();
        // During a re-handshake the datagram may belong to either association; each session
        // silently drops records it cannot authenticate, so both see it.
        if let Some(live) = peer.live.as_mut().filter(|_| !hello) {
            if !read_live(live, d, from, &mut self.scratch, &mut p.ready, &mut out) {
                peer.live = None;
            }
        }
        let mut outcome = None;
        let mut identity = None;
        if let Some(h) = peer.handshake.as_mut() {
            let r = h.session.handle_datagram(d);
            drain(&mut h.session, from, &mut out);
            identity = offered_identity(&h.session);
            // Records count only once the key is chosen: a flight reordered around the
            // ClientKeyExchange is retransmitted whole and judged then.
            if h.session.offered_psk_identity().is_some() {
                h.final_flight.scan(d);
            }
            outcome = Some(match r {
                Ok(_) if !h.session.is_established() && h.final_flight.complete() => {
                    Err(DtlsError::Handshake(
                        "the client's Finished did not verify: another key".into(),
                    ))
                }
                Ok(data) => {
                    plaintext.extend(data);
                    Ok(h.session.is_established())
                }
                Err(e) => Err(e),
            });
        }
        if peer.live.is_none() && peer.handshake.is_none() {
            p.by_addr.remove(&from);
        }
        match outcome {
            Some(Ok(true)) => {
                // The new association replaces any old one of this address.
                p.handshaking.remove(&from);
                if let Some(x) = p.by_addr.get_mut(&from) {
                    if let Some(h) = x.handshake.take() {
                        tracing::info!(
                            peer = %from,
                            identity = ?PeerIdentity::of(&h.session),
                            "DTLS session established"
                        );
                        x.live = Some(h.session);
                    }
                }
            }
            Some(Err(e)) => {
                // One line per refusal: the peer's later records find no handshake and are
                // dropped unanswered (see the top of this function).
                self.refused += 1;
                tracing::warn!(
                    peer = %from,
                    identity = identity.as_deref().unwrap_or("-"),
                    error = %e,
                    "DTLS handshake refused"
                );
                p.end_handshake(from);
            }
            Some(Ok(false)) | None => {}
        }
        p.ready.extend(plaintext.into_iter().map(|d| (d, from)));
        out
    }

    /// Fires due handshake retransmission timers and evicts sessions idle since before
    /// `now` minus [`DtlsLimits::idle_timeout`].
    pub fn on_tick(&mut self, now: Instant) -> Outgoing {
        let mut out = Outgoing::new();
        let p = &mut self.peers;
        p.next_tick = Some(now + TICK);
        let mut failed = Vec::new();
        for addr in &p.handshaking {
            let Some(h) = p.by_addr.get_mut(addr).and_then(|x| x.handshake.as_mut()) else {
                continue;
            };
            if h.session.timeout().is_some_and(|t| t.is_zero()) {
                if let Err(e) = h.session.handle_timeout() {
                    tracing::debug!(peer = %addr, error = %e, "DTLS handshake abandoned");
                    failed.push(*addr);
                    continue;
                }
                drain(&mut h.session, *addr, &mut out);
            }
        }
        for addr in failed {
            p.end_handshake(addr);
        }
        if p.last_sweep
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            p.last_sweep = Some(now);
            let idle = self.limits.idle_timeout;
            p.by_addr.retain(|_, peer| {
                if peer.handshake.is_none()
                    && peer
                        .last_seen
                        .is_some_and(|at| now.duration_since(at) >= idle)
                {
                    peer.live = None;
                }
                peer.live.is_some() || peer.handshake.is_some()
            });
        }
        out
    }
}

/// Feeds `d` to `from`'s established session: its application data goes to `ready`, anything
/// it answers (an alert) to `out`. False when the session ended (the peer closed it or sent a
/// fatal alert).
fn read_live(
    live: &mut DtlsSession,
    d: &[u8],
    from: SocketAddr,
    scratch: &mut Plaintexts,
    ready: &mut VecDeque<(Vec<u8>, SocketAddr)>,
    out: &mut Outgoing,
) -> bool {
    let r = live.handle_datagram_into(d, scratch);
    drain(live, from, out);
    match r {
        Ok(()) => {
            ready.extend(scratch.iter().map(|data| (data.to_vec(), from)));
            true
        }
        Err(e) => {
            tracing::debug!(peer = %from, error = %e, "DTLS session ended");
            false
        }
    }
}

/// Who a handshaking peer claims to be, for the log: the PSK identity it offered or its
/// certificate's common name, whether or not either was accepted.
fn offered_identity(session: &DtlsSession) -> Option<String> {
    match session.offered_psk_identity() {
        Some(id) => Some(String::from_utf8_lossy(id).into_owned()),
        None => session.peer_common_name(),
    }
}

fn evict_oldest_handshake(p: &mut Peers) {
    let oldest = p
        .handshaking
        .iter()
        .filter_map(|a| Some((p.by_addr.get(a)?.handshake.as_ref()?.started, *a)))
        .min();
    if let Some((_, addr)) = oldest {
        p.end_handshake(addr);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lwm2m_client::host::dtls::Psk;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef";

    async fn listener(limits: DtlsLimits) -> Arc<DtlsSocket> {
        let ctx =
            DtlsContext::psk_server(Arc::new(|id: &[u8]| (id == b"dev").then(|| KEY.to_vec())))
                .expect("ctx");
        let s = Arc::new(
            DtlsSocket::bind("127.0.0.1:0".parse().expect("addr"), ctx, limits)
                .await
                .expect("bind"),
        );
        // Echo every decrypted datagram back, so clients can check both directions.
        let echo = s.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((d, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&d, from).await;
            }
        });
        s
    }

    fn client_ctx() -> DtlsContext {
        static CTX: std::sync::OnceLock<DtlsContext> = std::sync::OnceLock::new();
        CTX.get_or_init(|| {
            DtlsContext::psk_client(Psk {
                identity: b"dev".to_vec(),
                key: KEY.to_vec(),
            })
            .expect("ctx")
        })
        .clone()
    }

    /// A client session on its own socket (its own peer address).
    struct Client {
        socket: UdpSocket,
        session: DtlsSession,
        server: SocketAddr,
    }

    impl Client {
        async fn new(server: SocketAddr) -> Self {
            Self::on(UdpSocket::bind("127.0.0.1:0").await.expect("bind"), server)
        }

        fn on(socket: UdpSocket, server: SocketAddr) -> Self {
            Self {
                socket,
                session: DtlsSession::client(&client_ctx(), None).expect("session"),
                server,
            }
        }

        async fn flush(&mut self) {
            while let Some(d) = self.session.poll_transmit() {
                self.socket.send_to(&d, self.server).await.expect("send");
            }
        }

        /// Pumps until established or `limit` passes.
        async fn handshake(&mut self, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            let mut buf = vec![0u8; 4096];
            while !self.session.is_established() && Instant::now() < deadline {
                self.flush().await;
                match tokio::time::timeout(Duration::from_millis(100), self.socket.recv(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => {
                        let _ = self
                            .session
                            .handle_datagram(buf.get(..n).unwrap_or_default());
                    }
                    _ => {
                        if self.session.timeout().is_some_and(|t| t.is_zero()) {
                            let _ = self.session.handle_timeout();
                        }
                    }
                }
            }
            self.flush().await;
            self.session.is_established()
        }

        async fn echo(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
            self.session.send(msg).ok()?;
            self.flush().await;
            let mut buf = vec![0u8; 4096];
            for _ in 0..20 {
                let n =
                    tokio::time::timeout(Duration::from_millis(100), self.socket.recv(&mut buf))
                        .await
                        .ok()?
                        .ok()?;
                let got = self.session.handle_datagram(buf.get(..n)?).ok()?;
                if let Some(d) = got.into_iter().next() {
                    return Some(d);
                }
            }
            None
        }
    }

    async fn wait_for(s: &DtlsSocket, want: impl Fn(DtlsStats) -> bool) -> DtlsStats {
        for _ in 0..50 {
            if want(s.stats()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.stats()
    }

    #[tokio::test]
    async fn many_peers_on_one_socket_each_with_its_own_session() {
        let s = listener(DtlsLimits::default()).await;
        let server = s.local_addr().expect("addr");
        let mut clients = Vec::new();
        for i in 0..4u8 {
            let mut c = Client::new(server).await;
            assert!(c.handshake(Duration::from_secs(5)).await);
            assert_eq!(c.echo(&[i; 3]).await, Some(vec![i; 3]));
            clients.push(c);
        }
        let addr = clients[0].socket.local_addr().expect("addr");
        assert_eq!(s.peer_identity(addr), Some(PeerIdentity::Psk("dev".into())));
        assert_eq!(wait_for(&s, |st| st.sessions == 4).await.sessions, 4);
        // Sessions are independent: the first still works after the others joined.
        assert_eq!(clients[0].echo(b"again").await, Some(b"again".to_vec()));
    }

    #[tokio::test]
    async fn a_peer_that_abandons_a_handshake_can_start_over_from_the_same_address() {
        let s = listener(DtlsLimits::default()).await;
        let server = s.local_addr().expect("addr");
        let mut gone = Client::new(server).await;
        // Get past the cookie exchange, then vanish mid-handshake.
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            gone.flush().await;
            let n = tokio::time::timeout(Duration::from_secs(2), gone.socket.recv(&mut buf))
                .await
                .expect("server flight")
                .expect("recv");
            let _ = gone
                .session
                .handle_datagram(buf.get(..n).unwrap_or_default());
        }
        assert_eq!(s.stats().handshakes, 1);
        // The same address comes back with a fresh handshake and gets through at once,
        // not after the abandoned one's retransmissions run out.
        let mut back = Client::on(gone.socket, server);
        assert!(back.handshake(Duration::from_secs(3)).await);
        assert_eq!(back.echo(b"back").await, Some(b"back".to_vec()));
    }

    #[tokio::test]
    async fn a_returning_client_resumes_its_session() {
        let s = listener(DtlsLimits::default()).await;
        let server = s.local_addr().expect("addr");
        let mut first = Client::new(server).await;
        assert!(first.handshake(Duration::from_secs(5)).await);
        assert!(!first.session.resumed());
        let ticket = first.session.session().expect("session to resume");
        // A new association from a new address (a device after a NAT rebinding or reboot).
        let mut again = Client::new(server).await;
        again.session = DtlsSession::client(&client_ctx(), Some(&ticket)).expect("session");
        assert!(again.handshake(Duration::from_secs(5)).await);
        assert!(again.session.resumed(), "abbreviated handshake");
        assert_eq!(again.echo(b"resumed").await, Some(b"resumed".to_vec()));
    }

    /// The listener's core with the test key, driven without sockets.
    fn core(limits: DtlsLimits) -> DtlsPeers {
        let ctx =
            DtlsContext::psk_server(Arc::new(|id: &[u8]| (id == b"dev").then(|| KEY.to_vec())))
                .expect("ctx");
        DtlsPeers::new(ctx, limits)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Carries `client`'s datagrams from `from` to `peers` at `now` and the answers back,
    /// until neither side has anything to send; returns whether the client is established.
    fn exchange(
        peers: &mut DtlsPeers,
        client: &mut DtlsSession,
        from: SocketAddr,
        now: Instant,
    ) -> bool {
        for _ in 0..16 {
            let mut sent = false;
            while let Some(d) = client.poll_transmit() {
                sent = true;
                for (answer, to) in peers.on_datagram(&d, from, now) {
                    assert_eq!(to, from);
                    let _ = client.handle_datagram(&answer);
                }
            }
            if !sent {
                break;
            }
        }
        client.is_established()
    }

    #[test]
    fn handshakes_are_bounded_and_the_oldest_gives_way() {
        let mut peers = core(DtlsLimits {
            max_handshakes: 2,
            ..DtlsLimits::default()
        });
        let t0 = Instant::now();
        // Three peers get past the cookie, 20 ms apart, and never continue.
        let mut stalled = Vec::new();
        for i in 0..3u16 {
            let mut c = DtlsSession::client(&client_ctx(), None).expect("session");
            let hello = c.poll_transmit().expect("ClientHello");
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            for (verify, _) in peers.on_datagram(&hello, addr(1000 + i), at) {
                c.handle_datagram(&verify).expect("HelloVerifyRequest");
            }
            let with_cookie = c.poll_transmit().expect("ClientHello with the cookie");
            assert!(!peers
                .on_datagram(&with_cookie, addr(1000 + i), at)
                .is_empty());
            stalled.push(c);
        }
        let st = peers.stats();
        assert_eq!(st.handshakes, 2, "{st:?}");
        // The oldest gave way.
        assert!(!peers.peers.by_addr.contains_key(&addr(1000)));
        // A real client still gets through (evicting the oldest stalled one).
        let mut c = DtlsSession::client(&client_ctx(), None).expect("session");
        let t1 = t0 + Duration::from_millis(60);
        assert!(exchange(&mut peers, &mut c, addr(2000), t1));
        let st = peers.stats();
        assert_eq!((st.sessions, st.handshakes <= 2), (1, true), "{st:?}");
        assert!(!peers.peers.by_addr.contains_key(&addr(1001)));
        assert!(peers.peers.by_addr.contains_key(&addr(1002)));
    }

    /// A handshake whose client answered the cookie (its address is real, RFC 6347 §4.2.1)
    /// outlives a flood of first ClientHellos, which anyone can send from forged addresses:
    /// those give way to one another first.
    #[test]
    fn first_client_hellos_are_answered_without_taking_a_handshake_slot() {
        let mut peers = core(DtlsLimits {
            max_handshakes: 2,
            ..DtlsLimits::default()
        });
        let t0 = Instant::now();
        let real = addr(3000);
        let mut c = DtlsSession::client(&client_ctx(), None).expect("session");
        let hello = c.poll_transmit().expect("ClientHello");
        for (verify, _) in peers.on_datagram(&hello, real, t0) {
            c.handle_datagram(&verify).expect("HelloVerifyRequest");
        }
        let with_cookie = c.poll_transmit().expect("ClientHello with the cookie");
        let server_flight = peers.on_datagram(&with_cookie, real, t0);
        assert!(!server_flight.is_empty());
        // A thousand first ClientHellos from other addresses (forged ones, as far as the
        // listener can tell) while the client's flight is on its way: each gets its
        // HelloVerifyRequest and leaves nothing behind.
        for i in 0..1000u16 {
            let mut forged = DtlsSession::client(&client_ctx(), None).expect("session");
            let hello = forged.poll_transmit().expect("ClientHello");
            let at = t0 + Duration::from_millis(1 + u64::from(i));
            let answer = peers.on_datagram(&hello, addr(5000 + i), at);
            assert_eq!(answer.len(), 1);
            assert_eq!(answer[0].0[13], 3, "HelloVerifyRequest");
        }
        let st = peers.stats();
        assert_eq!(st.handshakes, 1, "{st:?}");
        assert_eq!(peers.peers.by_addr.len(), 1);
        for (d, _) in server_flight {
            c.handle_datagram(&d).expect("server flight");
        }
        let t1 = t0 + Duration::from_millis(20);
        assert!(
            exchange(&mut peers, &mut c, real, t1),
            "the real handshake was evicted"
        );
        assert_eq!(peers.stats().sessions, 1);
    }

    #[test]
    fn sealed_records_go_to_the_sender_at_once_or_come_back_when_it_would_block() {
        let mut peers = core(DtlsLimits::default());
        let from = addr(4000);
        let mut c = DtlsSession::client(&client_ctx(), None).expect("session");
        assert!(exchange(&mut peers, &mut c, from, Instant::now()));
        // The socket takes the record: nothing is left to send later.
        let mut sent = Vec::new();
        let out = peers
            .seal_with(b"taken", from, |d| {
                sent.push(d.to_vec());
                Ok(())
            })
            .expect("sealed");
        assert!(out.is_empty());
        assert_eq!(sent.len(), 1);
        assert_eq!(
            c.handle_datagram(&sent[0]).ok(),
            Some(vec![b"taken".to_vec()])
        );
        // The socket would block: the record comes back, whole, for an async send.
        let out = peers
            .seal_with(b"later", from, |_| Err(io::ErrorKind::WouldBlock.into()))
            .expect("sealed");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, from);
        assert_eq!(
            c.handle_datagram(&out[0].0).ok(),
            Some(vec![b"later".to_vec()])
        );
        // Another send error loses the datagram, as the network would; the session goes on.
        let out = peers
            .seal_with(b"lost", from, |_| Err(io::ErrorKind::Other.into()))
            .expect("sealed");
        assert!(out.is_empty());
        let out = peers.seal(b"again", from).expect("sealed");
        assert_eq!(
            c.handle_datagram(&out[0].0).ok(),
            Some(vec![b"again".to_vec()])
        );
        // A peer without a session gets nothing sealed.
        let e = peers.seal_with(b"x", addr(4001), |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_when_its_finished_arrives_and_counted() {
        let s = listener(DtlsLimits::default()).await;
        let server = s.local_addr().expect("addr");
        let mut c = Client::new(server).await;
        c.session = DtlsSession::client(
            &DtlsContext::psk_client(Psk {
                identity: b"dev".to_vec(),
                key: b"another-key-0000".to_vec(),
            })
            .expect("ctx"),
            None,
        )
        .expect("session");
        assert!(!c.handshake(Duration::from_secs(2)).await);
        // Refused on the client's final flight, not left to time out.
        let st = wait_for(&s, |st| st.refused == 1).await;
        assert_eq!(
            (st.refused, st.handshakes, st.sessions),
            (1, 0, 0),
            "{st:?}"
        );
        // A good client afterwards is not refused.
        let mut good = Client::new(server).await;
        assert!(good.handshake(Duration::from_secs(5)).await);
        assert_eq!(s.stats().refused, 1);
    }

    #[test]
    fn final_flight_records_are_read_from_their_headers() {
        let record = |ty: u8, epoch: u16, body: &[u8]| {
            let mut r = vec![ty, 0xfe, 0xfd];
            r.extend(epoch.to_be_bytes());
            r.extend([0; 6]);
            r.extend(u16::try_from(body.len()).expect("len").to_be_bytes());
            r.extend(body);
            r
        };
        let mut f = FinalFlight::default();
        // ClientKeyExchange (epoch 0) and CCS in one datagram, then the encrypted Finished.
        let mut d = record(22, 0, &[16, 0, 0, 5]);
        d.extend(record(20, 0, &[1]));
        f.scan(&d);
        assert!(f.change_cipher_spec && !f.complete());
        f.scan(&record(22, 1, &[0; 40]));
        assert!(f.complete());
        // Truncated or garbage datagrams are read as far as they go.
        let mut g = FinalFlight::default();
        g.scan(&record(22, 1, &[0; 40])[..20]);
        g.scan(&[0xff; 12]);
        g.scan(&[]);
        assert!(!g.change_cipher_spec);
    }

    #[test]
    fn idle_sessions_are_evicted() {
        let idle = Duration::from_secs(60);
        let mut peers = core(DtlsLimits {
            idle_timeout: idle,
            ..DtlsLimits::default()
        });
        let t0 = Instant::now();
        let from = addr(3000);
        let mut c = DtlsSession::client(&client_ctx(), None).expect("session");
        assert!(exchange(&mut peers, &mut c, from, t0));
        assert_eq!(peers.stats().sessions, 1);
        // A datagram half-way keeps the session: idleness counts from the last one.
        c.send(b"ping").expect("send");
        let d = c.poll_transmit().expect("record");
        peers.on_datagram(&d, from, t0 + idle / 2);
        assert_eq!(peers.poll_ready(), Some((b"ping".to_vec(), from)));
        peers.on_tick(t0 + idle + Duration::from_secs(1));
        assert_eq!(peers.stats().sessions, 1);
        peers.on_tick(t0 + idle / 2 + idle);
        assert_eq!(peers.stats().sessions, 0);
        // The evicted peer's records are now ignored.
        c.send(b"late").expect("send");
        let d = c.poll_transmit().expect("record");
        let late = t0 + idle * 2;
        assert!(peers.on_datagram(&d, from, late).is_empty());
        assert_eq!(peers.poll_ready(), None);
        assert_eq!(peers.stats().sessions, 0);
    }

    #[tokio::test]
    async fn a_new_handshake_from_a_known_address_replaces_the_session_only_when_done() {
        let s = listener(DtlsLimits::default()).await;
        let server = s.local_addr().expect("addr");
        let mut old = Client::new(server).await;
        assert!(old.handshake(Duration::from_secs(5)).await);
        // The same address starts over (a rebooted device keeping its port). The new
        // session's ClientHello alone must not end the live session.
        let spare = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut fresh = Client::on(spare, server).session;
        while let Some(d) = fresh.poll_transmit() {
            old.socket.send_to(&d, server).await.expect("send");
        }
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), old.socket.recv(&mut buf))
            .await
            .expect("HelloVerifyRequest")
            .expect("recv");
        fresh
            .handle_datagram(buf.get(..n).unwrap_or_default())
            .expect("hvr");
        assert_eq!(old.echo(b"still here").await, Some(b"still here".to_vec()));
        // Completing the new handshake from that address replaces the old session.
        let mut new = Client {
            socket: old.socket,
            session: fresh,
            server,
        };
        assert!(new.handshake(Duration::from_secs(5)).await);
        assert_eq!(new.echo(b"new").await, Some(b"new".to_vec()));
        let st = wait_for(&s, |st| st.handshakes == 0).await;
        assert_eq!((st.sessions, st.handshakes), (1, 0));
    }
}
