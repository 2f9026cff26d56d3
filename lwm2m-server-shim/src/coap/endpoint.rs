//! The shim's CoAP endpoint: one socket ([`Transport`]: plain UDP or DTLS) shared by the
//! registration interface, the package host and server-initiated device-management requests. Handles CON retransmission (RFC 7252 4.2),
//! duplicate detection, piggybacked and separate responses, and routes notifications to their
//! observation by token (RFC 7641).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, RequestType};
use lwm2m_client::codec::message_format::{self, FormatError};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Semaphore};

use crate::coap::timing::{random_u64, CoapTiming};
use crate::coap::transport::Transport;

/// Why a server-initiated exchange produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// No response before the request timeout (HTTP 504 in the REST API).
    Timeout,
    /// The peer rejected the message with a Reset.
    Reset,
    /// The request could not be encoded (e.g. larger than one datagram).
    Encode(String),
    /// The socket failed to send.
    Io(String),
    /// The endpoint is shutting down.
    Closed,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("request timeout"),
            Self::Reset => f.write_str("peer answered with a CoAP Reset"),
            Self::Encode(e) => write!(f, "cannot encode CoAP message: {e}"),
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::Closed => f.write_str("CoAP endpoint closed"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// Answers requests that peers send to the shim (registration interface, package host).
pub trait RequestHandler: Send + Sync {
    /// Builds the response for `request` from `peer`. Only code, options and payload of the
    /// returned packet matter: the endpoint sets type, message id and token.
    fn handle(&self, request: &Packet, peer: SocketAddr) -> Packet;

    /// The response and more responses to send after it with the request's token (the rest
    /// of an RFC 9177 §4.4 Q-Block2 burst): NON messages after a NON request, CON messages
    /// one at a time after a CON request. By default none.
    fn handle_burst(&self, request: &Packet, peer: SocketAddr) -> (Packet, Responses) {
        (self.handle(request, peer), Box::new(std::iter::empty()))
    }
}

/// Responses that follow a request's response, each made when it is sent (a CON Q-Block2
/// body can run to thousands of blocks, which need not all be held at once).
pub type Responses = Box<dyn Iterator<Item = Packet> + Send>;

enum PendingEvent {
    EmptyAck,
    Reset,
    Response(Packet),
}

struct Pending {
    peer: SocketAddr,
    message_id: u16,
    events: mpsc::UnboundedSender<PendingEvent>,
}

struct Observation {
    peer: SocketAddr,
    notifications: mpsc::UnboundedSender<Notification>,
}

/// One notification of an observation and when it arrived (readings are ordered by it).
#[derive(Debug, Clone)]
pub struct Notification {
    /// When the datagram was received.
    pub received: Instant,
    /// The notification as sent (its first block when it uses Block2).
    pub packet: Packet,
}

/// A message seen recently: when, its token, and the bytes answered to it (none for a NON).
struct CachedAnswer {
    at: Instant,
    /// A retransmission carries the same token; another message that merely reuses the
    /// (address, message id) pair, e.g. from a new socket on a recycled ephemeral port, does
    /// not and must not get the old answer (an empty ACK there silences a pull client until
    /// it gives up).
    token: Vec<u8>,
    answer: Option<Vec<u8>>,
}

#[derive(Default)]
struct Tables {
    pending: HashMap<Vec<u8>, Pending>,
    /// Token of the pending exchange by (peer, message id), for empty ACK / RST matching.
    pending_by_mid: HashMap<(SocketAddr, u16), Vec<u8>>,
    observations: HashMap<Vec<u8>, Observation>,
    /// Responses already sent, by (peer, message id): duplicates get the same bytes again.
    recent: HashMap<(SocketAddr, u16), CachedAnswer>,
    /// Last sweep of `recent`; sweeps are rate-limited so a busy cache costs O(1) per message.
    last_prune: Option<Instant>,
}

struct Inner {
    socket: Transport,
    timing: CoapTiming,
    handler: Arc<dyn RequestHandler>,
    tables: Mutex<Tables>,
    next_mid: AtomicU16,
    token_counter: AtomicU64,
    token_key: u64,
    /// Permits for CON bursts under way ([`MAX_CONFIRMABLE_BURSTS`]).
    confirmable_bursts: Arc<Semaphore>,
    /// Told of every peer that answers or leaves a request unanswered
    /// ([`CoapEndpoint::on_presence`]).
    on_presence: OnceLock<PresenceHook>,
}

/// What an exchange showed of a peer's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSign {
    /// It answered one of our requests or notified an observation (a response, an empty ACK
    /// or a Reset matched to our exchange); told before the answer is delivered.
    Answered,
    /// A CON request to it went unanswered, not even acknowledged, through every
    /// retransmission until the exchange's timeout.
    Silent,
}

/// Called with a peer's address and what an exchange showed of it.
pub type PresenceHook = Arc<dyn Fn(SocketAddr, PeerSign) + Send + Sync>;

/// Who a response from a peer is for: the exchange waiting for it or an observation.
enum Recipient {
    Exchange(mpsc::UnboundedSender<PendingEvent>),
    Observation(mpsc::UnboundedSender<Notification>),
}

/// CON bursts (the rest of a CON Q-Block2 body) sent at once. Each holds a task for up to
/// MAX_TRANSMIT_WAIT per unacknowledged block, so requests that never acknowledge, spoofed
/// ones included, must not pile tasks up; beyond the cap a CON request gets its first block
/// only and may ask again.
pub const MAX_CONFIRMABLE_BURSTS: usize = 1024;

/// A running CoAP endpoint. Cloning shares the socket; the receive loop stops when the last
/// clone and the [`CoapEndpoint::run`] future are dropped.
#[derive(Clone)]
pub struct CoapEndpoint {
    inner: Arc<Inner>,
}

/// Notifications of one observation, in arrival order.
pub struct ObservationStream {
    token: Vec<u8>,
    receiver: mpsc::UnboundedReceiver<Notification>,
}

impl ObservationStream {
    /// The observation's token.
    pub fn token(&self) -> &[u8] {
        &self.token
    }

    /// Waits for the next notification; `None` once the observation was cancelled.
    pub async fn next(&mut self) -> Option<Notification> {
        self.receiver.recv().await
    }
}

/// NON requests to one peer and the responses to any of them ([`CoapEndpoint::non_requests`]);
/// dropping it forgets their tokens.
pub struct NonRequests<'a> {
    endpoint: &'a CoapEndpoint,
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<PendingEvent>,
    rx: mpsc::UnboundedReceiver<PendingEvent>,
    /// Token and message id of every request sent.
    sent: Vec<(Vec<u8>, u16)>,
}

impl NonRequests<'_> {
    /// Sends `request` as a NON message with a new message id and token, which it returns;
    /// its response (or a Reset) will come out of [`Self::next`].
    pub async fn send(&mut self, mut request: Packet) -> Result<Vec<u8>, ExchangeError> {
        let token = self.endpoint.next_token();
        let (bytes, mid) = self.endpoint.track(
            &mut request,
            MessageType::NonConfirmable,
            &token,
            self.peer,
            self.tx.clone(),
        )?;
        self.sent.push((token.clone(), mid));
        self.endpoint
            .inner
            .socket
            .send_to(&bytes, self.peer)
            .await
            .map_err(|e| ExchangeError::Io(e.to_string()))?;
        Ok(token)
    }

    /// The next response to one of the requests, until `deadline`: `Ok(None)` when none
    /// came by then, [`ExchangeError::Reset`] when the peer reset one.
    pub async fn next(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Packet>, ExchangeError> {
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(Some(PendingEvent::Response(p))) => return Ok(Some(p)),
                Ok(Some(PendingEvent::Reset)) => return Err(ExchangeError::Reset),
                Ok(Some(PendingEvent::EmptyAck)) => {}
                // Unreachable while `self.tx` lives.
                Ok(None) => return Err(ExchangeError::Closed),
            }
        }
    }
}

impl Drop for NonRequests<'_> {
    fn drop(&mut self) {
        let mut t = self.endpoint.tables();
        for (token, mid) in self.sent.drain(..) {
            t.pending.remove(&token);
            t.pending_by_mid.remove(&(self.peer, mid));
        }
    }
}

struct PendingGuard<'a> {
    endpoint: &'a CoapEndpoint,
    token: Vec<u8>,
    peer: SocketAddr,
    mid: u16,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.endpoint.tables();
        t.pending.remove(&self.token);
        t.pending_by_mid.remove(&(self.peer, self.mid));
    }
}

/// Forgets an observation whose registration request failed or was abandoned.
struct ObservationGuard<'a> {
    endpoint: &'a CoapEndpoint,
    token: Option<Vec<u8>>,
}

impl Drop for ObservationGuard<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            self.endpoint.forget_observation(&t);
        }
    }
}

impl CoapEndpoint {
    /// Binds a plain (unsecured) CoAP socket.
    pub async fn bind(
        addr: SocketAddr,
        timing: CoapTiming,
        handler: Arc<dyn RequestHandler>,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Self::over(Transport::Plain(socket), timing, handler))
    }

    /// An endpoint over an already bound transport (e.g. a DTLS listener for coaps).
    pub fn over(socket: Transport, timing: CoapTiming, handler: Arc<dyn RequestHandler>) -> Self {
        let seed = random_u64();
        Self {
            inner: Arc::new(Inner {
                socket,
                timing,
                handler,
                tables: Mutex::new(Tables::default()),
                next_mid: AtomicU16::new(seed as u16),
                token_counter: AtomicU64::new(seed >> 16),
                token_key: random_u64(),
                confirmable_bursts: Arc::new(Semaphore::new(MAX_CONFIRMABLE_BURSTS)),
                on_presence: OnceLock::new(),
            }),
        }
    }

    /// Installs the hook told of every peer that answers or stays silent (the shim's
    /// queue-mode presence, LwM2M core TS 1.1 §6.5: any message from the client means it is
    /// awake, and one that does not answer is taken for asleep, as Leshan's server does). The
    /// first hook installed stays; false if one was already there.
    pub fn on_presence(&self, hook: PresenceHook) -> bool {
        self.inner.on_presence.set(hook).is_ok()
    }

    fn sign(&self, peer: SocketAddr, sign: PeerSign) {
        if let Some(hook) = self.inner.on_presence.get() {
            hook(peer, sign);
        }
    }

    fn answered(&self, peer: SocketAddr) {
        self.sign(peer, PeerSign::Answered);
    }

    /// The transport under this endpoint (whether peers are authenticated, and as whom).
    pub fn transport(&self) -> &Transport {
        &self.inner.socket
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// Transmission parameters in use.
    pub fn timing(&self) -> CoapTiming {
        self.inner.timing
    }

    /// Receives and dispatches datagrams until the socket fails.
    pub async fn run(self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, peer) = match self.inner.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                // ICMP port unreachable from a vanished peer surfaces here on some systems.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(e),
            };
            let Some(datagram) = buf.get(..n) else {
                continue;
            };
            self.dispatch(datagram, peer).await;
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.inner.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send_bytes(&self, bytes: &[u8], peer: SocketAddr) {
        if let Err(e) = self.inner.socket.send_to(bytes, peer).await {
            tracing::debug!(%peer, error = %e, "CoAP send failed");
        }
    }

    async fn send_empty(&self, kind: MessageType, message_id: u16, peer: SocketAddr) {
        let mut p = Packet::new();
        p.header.set_type(kind);
        p.header.code = MessageClass::Empty;
        p.header.message_id = message_id;
        if let Ok(b) = p.to_bytes() {
            self.send_bytes(&b, peer).await;
        }
    }

    /// How to reject a datagram that is not a well-formed CoAP message (RFC 7252 sections 3
    /// and 4.2): another version is silently ignored; a format error in a CON gets a Reset
    /// (the message id to reset is returned), in any other message nothing. Either way it is
    /// never processed as a request.
    fn reset_for_malformed(datagram: &[u8], format: Option<FormatError>) -> Option<u16> {
        if format.is_some_and(FormatError::is_silent) {
            return None;
        }
        let con = datagram.first().is_some_and(|b| (b >> 4) & 0x03 == 0);
        con.then(|| message_format::message_id(datagram)).flatten()
    }

    async fn dispatch(&self, datagram: &[u8], peer: SocketAddr) {
        let parsed = match message_format::check(datagram) {
            Err(e) => Err((Some(e), e.to_string())),
            Ok(()) => Packet::from_bytes(datagram).map_err(|e| (None, format!("{e:?}"))),
        };
        let packet = match parsed {
            Ok(p) => p,
            Err((format, error)) => {
                tracing::debug!(%peer, %error, "dropping malformed CoAP datagram");
                if let Some(mid) = Self::reset_for_malformed(datagram, format) {
                    self.send_empty(MessageType::Reset, mid, peer).await;
                }
                return;
            }
        };
        let mid = packet.header.message_id;
        let kind = packet.header.get_type();
        match packet.header.code {
            MessageClass::Empty => self.on_empty(kind, mid, peer).await,
            // A request inside an ACK or RST is a message format error: ignored (RFC 7252 4.2).
            MessageClass::Request(_)
                if matches!(kind, MessageType::Acknowledgement | MessageType::Reset) => {}
            MessageClass::Request(_) => self.on_request(packet, peer).await,
            MessageClass::Response(_) => self.on_response(packet, peer).await,
            MessageClass::Reserved(_) => {
                if kind == MessageType::Confirmable {
                    self.send_empty(MessageType::Reset, mid, peer).await;
                }
            }
        }
    }

    async fn on_empty(&self, kind: MessageType, mid: u16, peer: SocketAddr) {
        match kind {
            // CoAP ping: answer with a Reset (RFC 7252 4.3).
            MessageType::Confirmable => self.send_empty(MessageType::Reset, mid, peer).await,
            MessageType::Acknowledgement | MessageType::Reset => {
                let pending = {
                    let t = self.tables();
                    t.pending_by_mid
                        .get(&(peer, mid))
                        .and_then(|token| t.pending.get(token))
                        .map(|p| p.events.clone())
                };
                if let Some(events) = pending {
                    self.answered(peer);
                    let ev = if kind == MessageType::Reset {
                        PendingEvent::Reset
                    } else {
                        PendingEvent::EmptyAck
                    };
                    let _ = events.send(ev);
                }
            }
            MessageType::NonConfirmable => {}
        }
    }

    /// Returns true (and replays the cached answer) when this CON/NON was already seen: same
    /// peer, message id and token.
    async fn replay_duplicate(&self, mid: u16, token: &[u8], peer: SocketAddr) -> bool {
        let cached = {
            let mut t = self.tables();
            let lifetime = self.inner.timing.exchange_lifetime();
            let now = Instant::now();
            let due = t
                .last_prune
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
            if t.recent.len() > 4096 && due {
                t.recent.retain(|_, c| now.duration_since(c.at) < lifetime);
                t.last_prune = Some(now);
            }
            match t.recent.get(&(peer, mid)) {
                Some(c) if now.duration_since(c.at) < lifetime && c.token == token => {
                    Some(c.answer.clone())
                }
                _ => None,
            }
        };
        match cached {
            Some(Some(bytes)) => {
                self.send_bytes(&bytes, peer).await;
                true
            }
            Some(None) => true,
            None => false,
        }
    }

    fn remember(&self, mid: u16, token: &[u8], peer: SocketAddr, answer: Option<Vec<u8>>) {
        self.tables().recent.insert(
            (peer, mid),
            CachedAnswer {
                at: Instant::now(),
                token: token.to_vec(),
                answer,
            },
        );
    }

    async fn on_request(&self, request: Packet, peer: SocketAddr) {
        let mid = request.header.message_id;
        if self.replay_duplicate(mid, request.get_token(), peer).await {
            return;
        }
        let (mut response, more) = self.inner.handler.handle_burst(&request, peer);
        if request.header.get_type() == MessageType::Confirmable {
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = mid;
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.next_message_id();
        }
        response.set_token(request.get_token().to_vec());
        let bytes = match response.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%peer, error = ?e, "response does not encode; answering 5.00");
                let mut p = Packet::new();
                p.header = response.header.clone();
                p.header.code =
                    MessageClass::Response(coap_lite::ResponseType::InternalServerError);
                p.set_token(request.get_token().to_vec());
                match p.to_bytes() {
                    Ok(b) => b,
                    Err(_) => return,
                }
            }
        };
        // Duplicates of safe or idempotent requests (GET, PUT, DELETE, FETCH) may simply be
        // processed again (RFC 7252 4.5); only the others keep their answer cached, so a fleet
        // pulling packages does not pin every served block in memory for EXCHANGE_LIFETIME.
        let idempotent = matches!(
            request.header.code,
            MessageClass::Request(
                RequestType::Get | RequestType::Put | RequestType::Delete | RequestType::Fetch
            )
        );
        if !idempotent {
            self.remember(mid, request.get_token(), peer, Some(bytes.clone()));
        }
        self.send_bytes(&bytes, peer).await;
        let mut more = more.peekable();
        if more.peek().is_none() {
            return;
        }
        let token = request.get_token().to_vec();
        if request.header.get_type() == MessageType::Confirmable {
            // RFC 9177 §4.4: after a CON request the rest of the burst goes as CON responses,
            // each acknowledged before the next (NSTART 1, RFC 7252 §4.7); NON is not mixed
            // into a CON exchange (§3). Sent from a task: the ACKs come through this loop.
            let Ok(permit) = self.inner.confirmable_bursts.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "CON bursts at their cap: only the first block sent");
                return;
            };
            let endpoint = self.clone();
            tokio::spawn(async move {
                endpoint.send_confirmable_burst(more, token, peer).await;
                drop(permit);
            });
        } else {
            for p in more {
                self.send_non(p, &token, peer).await;
            }
        }
    }

    /// Sends `responses` to `peer` one at a time as CON messages with `token`, each retransmitted
    /// until acknowledged. A response not acknowledged within MAX_TRANSMIT_WAIT, or reset, ends
    /// the burst (RFC 9177 §4.4: the server terminates the body transfer, and the client asks
    /// for what it lacks).
    async fn send_confirmable_burst(
        &self,
        responses: impl Iterator<Item = Packet>,
        token: Vec<u8>,
        peer: SocketAddr,
    ) {
        let wait = self.inner.timing.max_transmit_wait();
        for p in responses {
            if let Err(e) = self
                .confirmable(peer, p, wait, Some(token.clone()), true)
                .await
            {
                tracing::debug!(%peer, error = %e, "confirmable Q-Block2 burst ended");
                return;
            }
        }
    }

    /// Sends `response` to `peer` as a NON message with a new message id and `token` (the
    /// rest of a Q-Block2 burst, or a set the package host sends unasked).
    pub async fn send_non(&self, mut response: Packet, token: &[u8], peer: SocketAddr) {
        response.header.set_type(MessageType::NonConfirmable);
        response.header.message_id = self.next_message_id();
        response.set_token(token.to_vec());
        match response.to_bytes() {
            Ok(bytes) => self.send_bytes(&bytes, peer).await,
            Err(e) => tracing::warn!(%peer, error = ?e, "NON response does not encode"),
        }
    }

    async fn on_response(&self, response: Packet, peer: SocketAddr) {
        let kind = response.header.get_type();
        let mid = response.header.message_id;
        if (kind == MessageType::Confirmable || kind == MessageType::NonConfirmable)
            && self.replay_duplicate(mid, response.get_token(), peer).await
        {
            return;
        }
        let token = response.get_token().to_vec();
        let to = {
            let t = self.tables();
            if let Some(p) = t.pending.get(&token).filter(|p| p.peer == peer) {
                // A piggybacked response must carry the request's message id.
                (kind != MessageType::Acknowledgement || p.message_id == mid)
                    .then(|| Recipient::Exchange(p.events.clone()))
            } else {
                t.observations
                    .get(&token)
                    .filter(|o| o.peer == peer)
                    .map(|o| Recipient::Observation(o.notifications.clone()))
            }
        };
        if to.is_some() {
            self.answered(peer);
        }
        let delivered = match to {
            Some(Recipient::Exchange(events)) => {
                let _ = events.send(PendingEvent::Response(response));
                true
            }
            Some(Recipient::Observation(notifications)) => notifications
                .send(Notification {
                    received: Instant::now(),
                    packet: response,
                })
                .is_ok(),
            None => false,
        };
        match kind {
            MessageType::Confirmable => {
                // Unknown token: Reset tells an observing client to forget the observation.
                let answer = if delivered {
                    MessageType::Acknowledgement
                } else {
                    MessageType::Reset
                };
                let mut p = Packet::new();
                p.header.set_type(answer);
                p.header.code = MessageClass::Empty;
                p.header.message_id = mid;
                let bytes = p.to_bytes().ok();
                self.remember(mid, &token, peer, bytes.clone());
                if let Some(b) = bytes {
                    self.send_bytes(&b, peer).await;
                }
            }
            MessageType::NonConfirmable => self.remember(mid, &token, peer, None),
            _ => {}
        }
    }

    fn next_message_id(&self) -> u16 {
        self.inner.next_mid.fetch_add(1, Ordering::Relaxed)
    }

    fn next_token(&self) -> Vec<u8> {
        let n = self.inner.token_counter.fetch_add(1, Ordering::Relaxed);
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n ^ self.inner.token_key);
        // Counter in the low half keeps tokens unique; the hash half makes them unguessable-ish.
        let mixed = (h.finish() & 0xFFFF_FFFF_0000_0000) | (n & 0xFFFF_FFFF);
        mixed.to_be_bytes().to_vec()
    }

    /// Sends a confirmable request to `peer` and waits for its response. Retransmits with
    /// exponential back-off until acknowledged; `timeout` bounds the whole exchange, so a slow
    /// separate response still counts as an answer within it.
    pub async fn request(
        &self,
        peer: SocketAddr,
        request: Packet,
        timeout: Duration,
    ) -> Result<Packet, ExchangeError> {
        self.exchange(peer, request, timeout, None).await
    }

    /// Like [`CoapEndpoint::request`], but an empty ACK ends the exchange with `None`: the
    /// peer took the request and may answer much later, or with another request's token (a
    /// Q-Block1 receiver answers a body's blocks once the body is complete, RFC 9177 §4.3).
    pub async fn request_until_acked(
        &self,
        peer: SocketAddr,
        request: Packet,
        timeout: Duration,
    ) -> Result<Option<Packet>, ExchangeError> {
        self.confirmable(peer, request, timeout, None, true).await
    }

    /// Like [`CoapEndpoint::request`] with a given token: a GET with Observe = 1 and an
    /// observation's token cancels it (RFC 7641 section 3.6).
    pub async fn request_with_token(
        &self,
        peer: SocketAddr,
        request: Packet,
        timeout: Duration,
        token: &[u8],
    ) -> Result<Packet, ExchangeError> {
        self.exchange(peer, request, timeout, Some(token.to_vec()))
            .await
    }

    /// Like [`CoapEndpoint::request`] for an Observe registration: later notifications with the
    /// same token arrive on the returned stream until [`CoapEndpoint::forget_observation`].
    pub async fn observe(
        &self,
        peer: SocketAddr,
        request: Packet,
        timeout: Duration,
    ) -> Result<(Packet, ObservationStream), ExchangeError> {
        let token = self.next_token();
        let (tx, rx) = mpsc::unbounded_channel();
        self.tables().observations.insert(
            token.clone(),
            Observation {
                peer,
                notifications: tx,
            },
        );
        let mut guard = ObservationGuard {
            endpoint: self,
            token: Some(token.clone()),
        };
        let first = self
            .exchange(peer, request, timeout, Some(token.clone()))
            .await?;
        guard.token = None;
        Ok((
            first,
            ObservationStream {
                token,
                receiver: rx,
            },
        ))
    }

    /// A group of NON requests to `peer` whose responses arrive on one queue (the blocks of
    /// an RFC 9177 Q-Block1 body, each with its own token, §4.3). Nothing is retransmitted:
    /// the caller's protocol recovers losses.
    pub fn non_requests(&self, peer: SocketAddr) -> NonRequests<'_> {
        let (tx, rx) = mpsc::unbounded_channel();
        NonRequests {
            endpoint: self,
            peer,
            tx,
            rx,
            sent: Vec::new(),
        }
    }

    /// Passive cancel: drops the observation, so its next notification is answered with Reset.
    pub fn forget_observation(&self, token: &[u8]) -> bool {
        self.tables().observations.remove(token).is_some()
    }

    /// Gives `request` its type, a new message id and `token`, encodes it, and routes the
    /// answers to it (response, empty ACK, Reset) to `events`; the encoded bytes and the id.
    fn track(
        &self,
        request: &mut Packet,
        kind: MessageType,
        token: &[u8],
        peer: SocketAddr,
        events: mpsc::UnboundedSender<PendingEvent>,
    ) -> Result<(Vec<u8>, u16), ExchangeError> {
        let mid = self.next_message_id();
        request.header.set_type(kind);
        request.header.message_id = mid;
        request.set_token(token.to_vec());
        let bytes = request
            .to_bytes()
            .map_err(|e| ExchangeError::Encode(format!("{e:?}")))?;
        let mut t = self.tables();
        t.pending.insert(
            token.to_vec(),
            Pending {
                peer,
                message_id: mid,
                events,
            },
        );
        t.pending_by_mid.insert((peer, mid), token.to_vec());
        Ok((bytes, mid))
    }

    async fn exchange(
        &self,
        peer: SocketAddr,
        request: Packet,
        timeout: Duration,
        token: Option<Vec<u8>>,
    ) -> Result<Packet, ExchangeError> {
        self.confirmable(peer, request, timeout, token, false)
            .await?
            .ok_or(ExchangeError::Timeout)
    }

    /// A CON request with `token` (a new one without) to `peer`, driven to its answer or,
    /// with `until_ack`, to its acknowledgement (`None`).
    async fn confirmable(
        &self,
        peer: SocketAddr,
        mut request: Packet,
        timeout: Duration,
        token: Option<Vec<u8>>,
        until_ack: bool,
    ) -> Result<Option<Packet>, ExchangeError> {
        let token = token.unwrap_or_else(|| self.next_token());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (bytes, mid) = self.track(&mut request, MessageType::Confirmable, &token, peer, tx)?;
        // Removes the entry however the exchange ends, including when the caller drops the
        // future (an HTTP client that went away).
        let _cleanup = PendingGuard {
            endpoint: self,
            token,
            peer,
            mid,
        };
        self.drive(peer, &bytes, timeout, &mut rx, until_ack).await
    }

    /// Sends a tracked CON request and retransmits it until it is answered or, with
    /// `until_ack`, acknowledged (then `None`).
    async fn drive(
        &self,
        peer: SocketAddr,
        bytes: &[u8],
        timeout: Duration,
        rx: &mut mpsc::UnboundedReceiver<PendingEvent>,
        until_ack: bool,
    ) -> Result<Option<Packet>, ExchangeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rto = self.inner.timing.initial_timeout();
        let mut retransmits = 0u32;
        let mut acked = false;
        self.inner
            .socket
            .send_to(bytes, peer)
            .await
            .map_err(|e| ExchangeError::Io(e.to_string()))?;
        loop {
            let next_resend = tokio::time::Instant::now() + rto;
            let wake = if acked || retransmits >= self.inner.timing.max_retransmit {
                deadline
            } else {
                next_resend.min(deadline)
            };
            match tokio::time::timeout_at(wake, rx.recv()).await {
                Ok(Some(PendingEvent::Response(p))) => return Ok(Some(p)),
                Ok(Some(PendingEvent::EmptyAck)) if until_ack => return Ok(None),
                Ok(Some(PendingEvent::EmptyAck)) => acked = true,
                Ok(Some(PendingEvent::Reset)) => return Err(ExchangeError::Reset),
                Ok(None) => return Err(ExchangeError::Closed),
                Err(_) => {
                    if tokio::time::Instant::now() >= deadline {
                        if !acked {
                            self.sign(peer, PeerSign::Silent);
                        }
                        return Err(ExchangeError::Timeout);
                    }
                    if !acked && retransmits < self.inner.timing.max_retransmit {
                        retransmits += 1;
                        rto = rto.saturating_mul(2);
                        tracing::trace!(%peer, retransmits, "CoAP retransmission");
                        if let Err(e) = self.inner.socket.send_to(bytes, peer).await {
                            return Err(ExchangeError::Io(e.to_string()));
                        }
                    }
                }
            }
        }
    }
}
