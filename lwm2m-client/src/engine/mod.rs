//! The sans-IO LwM2M engine: datagrams and time in; datagrams, a timer deadline and events out.
//!
//! The caller owns the socket and the clock. It feeds every received datagram to
//! [`Engine::handle_datagram`], calls [`Engine::handle_timeout`] when [`Engine::poll_timeout`]
//! passes, and drains [`Engine::poll_transmit`] and [`Engine::poll_event`] after each call.
//! Time is a monotonic millisecond counter chosen by the caller, so tests drive it by hand.

mod block1_send;
mod bootstrap;
mod dm;
mod notify;
mod qblock1_recv;
mod queue_mode;
mod registration;
mod saved_config;

use crate::coap::{self, DedupCache, Rng, TxParams};
use crate::codec::message_format::{self, FormatError};
use crate::codec::opaque_stream::Deframer;
use crate::codec::{ContentFormat, Path};
use crate::object::{ObjectHandler, OpError};
use crate::objects::security::{Credentials, Inconsistency, SecurityMode};
use crate::observe::{AttributeStore, Observation};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use coap_lite::{MessageClass, MessageType, Packet, RequestType};

pub use queue_mode::QueueMode;
pub use registration::{check_endpoint, BadEndpoint, RegState, MAX_ENDPOINT_LEN};
pub use saved_config::RestoreError;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Endpoint client name (`ep`), as [`check_endpoint`] allows.
    pub endpoint: String,
    /// LwM2M version announced (`lwm2m`).
    pub lwm2m_version: &'static str,
    /// CoAP transmission parameters.
    pub tx: TxParams,
    /// Largest block size exponent accepted or sent (6 = 1024 bytes).
    pub max_block_szx: u8,
    /// Exchanges remembered for deduplication.
    pub dedup_capacity: usize,
    /// First retry delay after a failed Bootstrap-Request or Update; doubles up to
    /// `backoff_max_ms`. Registers follow the Server object's retry procedure instead
    /// (resources 17-20, LwM2M 1.1 Core §6.2.1.1).
    pub backoff_initial_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Seed for message ids, tokens and jitter.
    pub rng_seed: u64,
    /// The one content format announced as preferred in the Register payload's `ct`
    /// (OMA TS Core 1.1 section 6.2.1; SenML CBOR by default). Requests in every supported
    /// format are accepted whatever is announced here, and a read without Accept of an
    /// instance, object or multiple resource is answered in it (OMA TS Core 1.1 section 7.4),
    /// so a server that read the announcement decodes what it gets.
    pub preferred_format: ContentFormat,
    /// Most observations kept at once (more are served as plain reads).
    pub max_observations: usize,
    /// Lifetime used when there is no Server object (s).
    pub lifetime_s: u32,
    /// Q-Block1 writes (RFC 9177 §4.3) with these §7.2 parameters; `None` answers them
    /// 4.02 Bad Option like any unknown critical option. On by default: it costs a few
    /// dozen bytes of state and only a server that sends Q-Block1 uses it, while a push over
    /// a long link takes a round trip per set instead of one per block.
    pub qblock1: Option<crate::pull::qblock::QBlockParams>,
    /// Whether a bootstrap-provisioned account can reach its server with this device's
    /// transports; one that cannot is refused at Bootstrap-Finish (4.06). By default
    /// [`Credentials::check`](crate::objects::security::Credentials::check) with NoSec and
    /// PSK; the host runtime's `TrustStore::check` also has OpenSSL take the keys.
    pub credentials_check: CredentialsCheck,
    /// Queue Mode (the Register's `Q`): whether the device sleeps once the awake window after
    /// the last exchange with the server is over. Off by default (always reachable) unless
    /// the Server's Binding asks for it ("UQ").
    pub queue_mode: QueueMode,
    /// Largest Bootstrap-Write body taken block-wise (RFC 7959 Block1): a Security instance
    /// with the device's and the server's certificates and a key is 1-3 KB; larger gets 4.13.
    pub bootstrap_body_limit: usize,
}

impl Config {
    /// Defaults for endpoint `endpoint`.
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.into(),
            lwm2m_version: "1.1",
            tx: TxParams::default(),
            max_block_szx: 6,
            dedup_capacity: 16,
            backoff_initial_ms: 2_000,
            backoff_max_ms: 120_000,
            rng_seed: 0x5eed,
            preferred_format: ContentFormat::SenmlCbor,
            max_observations: 16,
            lifetime_s: 300,
            qblock1: Some(crate::pull::qblock::QBlockParams::default()),
            credentials_check: CredentialsCheck::new(|uri, c| {
                c.check(uri, &[SecurityMode::NoSec, SecurityMode::Psk])
            }),
            queue_mode: QueueMode::default(),
            bootstrap_body_limit: 8192,
        }
    }
}

/// [`Config::credentials_check`]: a closure, as the host's check holds what the device
/// trusts (its roots for the PKIX certificate usages).
#[derive(Clone)]
pub struct CredentialsCheck(Rc<CheckFn>);

/// The function behind a [`CredentialsCheck`].
type CheckFn = dyn Fn(&str, &Credentials) -> Result<(), Inconsistency>;

impl CredentialsCheck {
    /// The check `f`.
    pub fn new(f: impl Fn(&str, &Credentials) -> Result<(), Inconsistency> + 'static) -> Self {
        Self(Rc::new(f))
    }

    /// Whether the account of `server_uri` with `credentials` can be used.
    pub fn check(&self, server_uri: &str, credentials: &Credentials) -> Result<(), Inconsistency> {
        (self.0)(server_uri, credentials)
    }
}

impl core::fmt::Debug for CredentialsCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CredentialsCheck")
    }
}

/// One datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<P> {
    /// Destination.
    pub peer: P,
    /// Bytes.
    pub data: Vec<u8>,
}

/// Handle for an operation an object answered with [`crate::Completion::Deferred`].
pub type DeferredId = u32;

/// Things the application may act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Registered; `location` is the path the server assigned (e.g. `rd/5a3f`).
    Registered {
        /// Location-Path joined with `/`.
        location: String,
    },
    /// A Register failed (code, or `None` on timeout); a retry is scheduled after `retry_in_ms`.
    RegistrationFailed {
        /// Response code (`4.03`...), `None` when the server did not answer.
        code: Option<String>,
        /// Delay before the next attempt.
        retry_in_ms: u64,
    },
    /// An Update succeeded.
    Updated,
    /// Deregistered (or gave up registering after [`Engine::deregister`]).
    Deregistered,
    /// The server executed Disable (/1/0/4, LwM2M 1.1 Core E.2): the client de-registered
    /// (or tried to) and neither sends to the server nor takes anything from it for
    /// `for_ms`, the Disable Timeout; then it registers again. The host drops its DTLS
    /// session with the server meanwhile ("the underlying network connection MUST be
    /// disconnected").
    Disabled {
        /// How long, from now.
        for_ms: u64,
    },
    /// Bootstrap-Finish arrived; register with `server_uri` next, over a transport made of
    /// `credentials` (see [`Engine::set_server`]; the host runtime does both).
    Bootstrapped {
        /// The management server's URI from the Security object.
        server_uri: String,
        /// The credentials the bootstrap server provisioned for it.
        credentials: crate::objects::security::Credentials,
    },
    /// Bootstrap-Finish was answered 4.06 Not Acceptable: the management server account
    /// cannot be used (`reason`). The bootstrap server may write another; without one the
    /// device asks again after EXCHANGE_LIFETIME.
    BootstrapRefused {
        /// What is wrong with the account.
        reason: crate::objects::security::Inconsistency,
    },
    /// Bootstrap again, for `cause`, with the bootstrap server at `server_uri`, over a
    /// transport made of `credentials` (see [`Engine::set_server`] and [`Engine::bootstrap`];
    /// the host runtime does both).
    BootstrapTriggered {
        /// The bootstrap server's URI from the Security object.
        server_uri: String,
        /// Its account's credentials.
        credentials: crate::objects::security::Credentials,
        /// Why.
        cause: BootstrapCause,
    },
    /// The bootstrap account's Bootstrap-Server Account Timeout (/0/x/12) passed and the
    /// account was purged: the Security object changed (a host that keeps the configuration
    /// saves it again).
    BootstrapAccountPurged,
    /// A Bootstrap-Request failed or Bootstrap-Finish never came; retried after `retry_in_ms`.
    BootstrapFailed {
        /// Response code, `None` on timeout.
        code: Option<String>,
        /// Delay before the next attempt.
        retry_in_ms: u64,
    },
    /// A server wrote `path`.
    Written {
        /// Target path.
        path: Path,
    },
    /// A server executed `path` (e.g. /3/0/4 reboot, /5/0/2 update): act after the response.
    Executed {
        /// Target path.
        path: Path,
    },
    /// One Block1 block was accepted.
    BlockReceived {
        /// Target path.
        path: Path,
        /// Byte offset of the block.
        offset: u64,
        /// Bytes in the block.
        len: usize,
        /// It was the last block.
        last: bool,
    },
    /// An object deferred an operation; call [`Engine::complete_deferred`] with `id`.
    Deferred {
        /// Handle.
        id: DeferredId,
        /// Target path.
        path: Path,
    },
    /// An observation started on `path`.
    ObserveStarted {
        /// Observed path.
        path: Path,
    },
    /// An observation ended (cancel, RST, or an unacknowledged notification).
    ObserveCancelled {
        /// Observed path.
        path: Path,
    },
    /// Queue Mode: the awake window is over; what the server sends is not taken until the
    /// device sends again ([`Event::Awake`]).
    Sleeping,
    /// Queue Mode: the device sleeping sent to its server and is reachable again.
    Awake,
}

/// Why a client that had a server bootstraps again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootstrapCause {
    /// A server executed the Bootstrap-Request Trigger (/1/x/9, LwM2M 1.1 Core E.2).
    Trigger,
    /// `attempts` Registers in a row failed (refused, unanswered, or no secure session) and
    /// the Server object asks for a bootstrap then (/1/0/16 and /1/0/17, LwM2M 1.1 Core
    /// §6.2.1.1 and E.2).
    RegistrationFailed {
        /// Failed Registers.
        attempts: u32,
    },
}

impl core::fmt::Display for BootstrapCause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Trigger => f.write_str("Bootstrap-Request Trigger"),
            Self::RegistrationFailed { attempts } => {
                write!(
                    f,
                    "{attempts} failed Registers (Bootstrap on Registration Failure)"
                )
            }
        }
    }
}

/// Why an outgoing confirmable message exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Bootstrap,
    Register,
    Update,
    Deregister,
    Notify,
    SeparateResponse,
}

/// A confirmable message we sent and retransmit until acknowledged.
#[derive(Debug)]
pub(crate) struct Outgoing<P> {
    pub mid: u16,
    pub token: Vec<u8>,
    pub peer: P,
    pub bytes: Vec<u8>,
    pub retransmits: u8,
    pub timeout_ms: u64,
    pub next_at: u64,
    /// Acknowledged by an empty ACK: a request now waits for its separate response until
    /// `next_at` (EXCHANGE_LIFETIME).
    pub acked: bool,
    pub purpose: Purpose,
}

/// A deferred operation waiting for [`Engine::complete_deferred`].
#[derive(Debug)]
pub(crate) struct Pending<P> {
    pub id: DeferredId,
    pub peer: P,
    pub token: Vec<u8>,
    /// The response to send on success (code and options, e.g. Block1).
    pub success: Packet,
}

/// Receiving side of a Block1 transfer (one at a time).
#[derive(Debug)]
pub(crate) struct Block1Rx<P> {
    pub peer: P,
    pub path: Path,
    /// Content-Format of the body; every block must carry the same.
    pub format: Option<ContentFormat>,
    /// Byte offset of the next block in the body.
    pub next_offset: u64,
    /// Strips a TLV or SenML framing off the value; `None` for an opaque body.
    pub deframer: Option<Deframer>,
    /// Value bytes handed to the object so far.
    pub value_offset: u64,
}

/// The LwM2M client engine for one server, generic over the peer address type.
pub struct Engine<P> {
    pub(crate) config: Config,
    pub(crate) server: P,
    pub(crate) objects: Vec<Box<dyn ObjectHandler>>,
    pub(crate) rng: Rng,
    pub(crate) next_mid: u16,
    pub(crate) outgoing: Vec<Outgoing<P>>,
    pub(crate) dedup: DedupCache<P>,
    pub(crate) transmits: VecDeque<Transmit<P>>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) reg: registration::Registration,
    pub(crate) attrs: AttributeStore,
    pub(crate) observations: Vec<Observation<P>>,
    pub(crate) pending: Vec<Pending<P>>,
    pub(crate) next_deferred: DeferredId,
    pub(crate) block1: Option<Block1Rx<P>>,
    /// The Q-Block1 body being received, if any.
    pub(crate) qblock1: Option<qblock1_recv::QBlock1Rx<P>>,
    /// Default pmin/pmax from the Server object, refreshed whenever observations are processed.
    pub(crate) obs_defaults: crate::observe::Attributes,
    /// Awake or asleep in Queue Mode.
    pub(crate) presence: queue_mode::Presence,
}

impl<P: Clone + PartialEq> Engine<P> {
    /// An engine that will register with `server` once [`Engine::start`] is called.
    pub fn new(config: Config, server: P, objects: Vec<Box<dyn ObjectHandler>>) -> Self {
        let mut rng = Rng::new(config.rng_seed);
        let next_mid = rng.next_u64() as u16;
        let dedup = DedupCache::new(config.dedup_capacity);
        let reg = registration::Registration::new(config.backoff_initial_ms);
        Self {
            config,
            server,
            objects,
            rng,
            next_mid,
            outgoing: Vec::new(),
            dedup,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            reg,
            attrs: AttributeStore::default(),
            observations: Vec::new(),
            pending: Vec::new(),
            next_deferred: 1,
            block1: None,
            qblock1: None,
            obs_defaults: crate::observe::Attributes::default(),
            presence: queue_mode::Presence::default(),
        }
    }

    /// Starts registering (the first Register goes out now).
    pub fn start(&mut self, now: u64) {
        // Not before a Disable Timeout ends.
        self.reg
            .schedule(self.reg.disabled_until.map_or(now, |t| t.max(now)));
        self.handle_timeout(now);
    }

    /// The object with id `id`, for the application to update its state.
    pub fn object_mut(&mut self, id: u16) -> Option<&mut (dyn ObjectHandler + 'static)> {
        self.objects
            .iter_mut()
            .find(|o| o.id() == id)
            .map(|b| &mut **b)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// Whether a datagram waits to go out (a host whose link sleeps sets it up first).
    pub fn has_transmit(&self) -> bool {
        !self.transmits.is_empty()
    }

    /// Whether a confirmable request went unanswered, not even acknowledged, through half its
    /// retransmissions (RFC 7252 section 4.2, MAX_RETRANSMIT): over DTLS the server may have no
    /// session for the device's address any more (a NAT gave it another port), and a host
    /// resumes the session before the rest of them rather than losing the exchange.
    pub fn stalled(&self) -> bool {
        let max = u32::from(self.config.tx.max_retransmit);
        self.outgoing
            .iter()
            .any(|o| !o.acked && o.retransmits > 0 && u32::from(o.retransmits) * 2 >= max)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next (engine milliseconds).
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.outgoing.iter().map(|o| o.next_at).min();
        let mut consider = |x: Option<u64>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: u64| t.min(x)));
            }
        };
        consider(self.reg.deadline());
        consider(self.reg.bootstrap_account_expiry);
        consider(self.dedup.next_expiry());
        consider(self.observation_deadline());
        consider(self.qblock1_deadline());
        consider(self.sleep_deadline());
        t
    }

    /// Current registration state.
    pub fn registration(&self) -> RegState {
        self.reg.state()
    }

    /// Processes timers due at `now`: retransmissions, registration updates and retries,
    /// observation periods and cache expiry.
    pub fn handle_timeout(&mut self, now: u64) {
        self.retransmit(now);
        self.registration_timer(now);
        self.bootstrap_account_timer(now);
        self.dedup.expire(now);
        self.process_observations(now);
        self.qblock1_timer(now);
        self.queue_mode_timer(now);
    }

    /// Processes one received datagram from `peer`. Malformed datagrams are dropped; a
    /// confirmable one with a payload marker and no payload is rejected with RST.
    pub fn handle_datagram(&mut self, now: u64, peer: P, data: &[u8]) {
        if self.reg.disabled_until.is_some_and(|t| now < t) {
            // Disabled: "ignore all the messages from the LwM2M Server for the period".
            return;
        }
        if self.sleeping(now) {
            // Queue Mode, asleep: the radio is off, the datagram never arrives.
            return;
        }
        let Ok(packet) = Packet::from_bytes(data) else {
            return;
        };
        if packet.header.get_version() != 1 {
            return;
        }
        self.exchanged(now);
        let mid = packet.header.message_id;
        match message_format::check(data) {
            Ok(()) => {}
            // A message format error (RFC 7252 section 3), never a request: a confirmable
            // message is rejected with a matching RST (section 4.2), any other ignored.
            Err(FormatError::EmptyPayload) => {
                if packet.header.get_type() == MessageType::Confirmable {
                    self.send(peer, &coap::empty(MessageType::Reset, mid));
                }
                return;
            }
            // Framing coap-lite let through but RFC 7252 section 3 does not allow: dropped,
            // like the datagrams coap-lite refuses above.
            Err(_) => return,
        }
        match (packet.header.get_type(), packet.header.code) {
            (MessageType::Acknowledgement, MessageClass::Empty) => {
                self.on_empty_ack(now, &peer, mid)
            }
            (MessageType::Reset, _) => self.on_reset(now, &peer, mid),
            (MessageType::Acknowledgement, MessageClass::Response(_)) => {
                if let Some(pos) = self.outgoing_by_mid(&peer, mid) {
                    let out = self.outgoing.swap_remove(pos);
                    self.on_response(now, out.purpose, &packet);
                }
            }
            (
                t @ (MessageType::Confirmable | MessageType::NonConfirmable),
                MessageClass::Response(_),
            ) => {
                let token = packet.get_token();
                let found = self
                    .outgoing
                    .iter()
                    .position(|o| o.acked && o.peer == peer && o.token == token);
                if t == MessageType::Confirmable {
                    let reply = if found.is_some() {
                        MessageType::Acknowledgement
                    } else {
                        MessageType::Reset
                    };
                    self.send(peer.clone(), &coap::empty(reply, mid));
                }
                if let Some(pos) = found {
                    let out = self.outgoing.swap_remove(pos);
                    self.on_response(now, out.purpose, &packet);
                }
            }
            (
                t @ (MessageType::Confirmable | MessageType::NonConfirmable),
                MessageClass::Request(_),
            ) => self.on_request(now, peer, t, packet),
            (MessageType::Confirmable, MessageClass::Empty) => {
                // CoAP ping: answer with RST (RFC 7252 section 4.3).
                self.send(peer, &coap::empty(MessageType::Reset, mid));
            }
            _ => {}
        }
        self.registration_timer(now);
        self.process_observations(now);
    }

    /// Whether a notification is waiting for its acknowledgement (or queued behind one): a
    /// device about to reset should let these go out first, or its server misses the change.
    pub fn notifications_pending(&self) -> bool {
        self.observations
            .iter()
            .any(|o| o.in_flight.is_some() && o.dirty)
    }

    /// Tells the engine that values under `path` changed (observations re-check them).
    pub fn notify_changed(&mut self, now: u64, path: &Path) {
        for o in &mut self.observations {
            if o.path.starts_with(path) || path.starts_with(&o.path) {
                o.dirty = true;
            }
        }
        self.process_observations(now);
    }

    /// Finishes a deferred operation: sends its separate response (confirmable).
    pub fn complete_deferred(&mut self, now: u64, id: DeferredId, result: Result<(), OpError>) {
        let Some(pos) = self.pending.iter().position(|p| p.id == id) else {
            return;
        };
        self.wake_to_send(now);
        let p = self.pending.swap_remove(pos);
        let mid = self.mid();
        let mut resp = p.success;
        resp.header.set_type(MessageType::Confirmable);
        resp.header.message_id = mid;
        resp.set_token(p.token.clone());
        if let Err(e) = result {
            resp = coap::packet(
                MessageType::Confirmable,
                MessageClass::Response(coap::error_code(e)),
                mid,
                &p.token,
            );
            if let OpError::TooLarge { size1: Some(s) } = e {
                coap::set_uint(&mut resp, coap_lite::CoapOption::Size1, s);
            }
            self.block1 = None;
        }
        self.send_confirmable(now, p.peer, resp, Purpose::SeparateResponse);
        self.mark_all_dirty();
    }

    /// A confirmable request with a fresh message id and token.
    pub(crate) fn new_request(&mut self, code: RequestType) -> Packet {
        let mid = self.mid();
        let token = self.token();
        coap::packet(
            MessageType::Confirmable,
            MessageClass::Request(code),
            mid,
            &token,
        )
    }

    pub(crate) fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    pub(crate) fn token(&mut self) -> Vec<u8> {
        self.rng
            .next_u64()
            .to_be_bytes()
            .get(..4)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    pub(crate) fn send(&mut self, peer: P, p: &Packet) -> Vec<u8> {
        let data = coap::to_bytes(p);
        self.transmits.push_back(Transmit {
            peer,
            data: data.clone(),
        });
        data
    }

    /// Sends a confirmable message and keeps it for retransmission.
    pub(crate) fn send_confirmable(&mut self, now: u64, peer: P, p: Packet, purpose: Purpose) {
        let timeout_ms = self.config.tx.initial_timeout(&mut self.rng);
        self.exchanged(now);
        let bytes = self.send(peer.clone(), &p);
        self.outgoing.push(Outgoing {
            mid: p.header.message_id,
            token: p.get_token().to_vec(),
            peer,
            bytes,
            retransmits: 0,
            timeout_ms,
            next_at: now + timeout_ms,
            acked: false,
            purpose,
        });
    }

    /// Retransmits with exponential back-off (RFC 7252 section 4.2); gives up after
    /// MAX_RETRANSMIT retransmissions, or when a separate response never came.
    fn retransmit(&mut self, now: u64) {
        let mut failed = Vec::new();
        let max = self.config.tx.max_retransmit;
        let mut i = 0;
        while let Some(o) = self.outgoing.get_mut(i) {
            if o.next_at > now {
                i += 1;
                continue;
            }
            if o.acked || o.retransmits >= max {
                failed.push(self.outgoing.swap_remove(i));
                continue;
            }
            o.retransmits += 1;
            o.timeout_ms *= 2;
            o.next_at = now + o.timeout_ms;
            let t = Transmit {
                peer: o.peer.clone(),
                data: o.bytes.clone(),
            };
            self.transmits.push_back(t);
            i += 1;
        }
        for o in failed {
            self.on_give_up(now, o);
        }
    }

    fn on_empty_ack(&mut self, now: u64, peer: &P, mid: u16) {
        let Some(pos) = self.outgoing_by_mid(peer, mid) else {
            return;
        };
        let lifetime = self.config.tx.exchange_lifetime_ms;
        let o = self.outgoing.get_mut(pos);
        match o {
            Some(o)
                if matches!(
                    o.purpose,
                    Purpose::Bootstrap | Purpose::Register | Purpose::Update | Purpose::Deregister
                ) =>
            {
                // A separate response will follow; wait for it no longer than an exchange lasts.
                o.acked = true;
                o.next_at = now + lifetime;
            }
            Some(_) => {
                let o = self.outgoing.swap_remove(pos);
                if o.purpose == Purpose::Notify {
                    self.notification_acked(&o.token);
                }
            }
            None => {}
        }
    }

    /// The outgoing message an ACK or RST from `peer` answers: message ids are only unique per
    /// peer (RFC 7252 section 4.4), so both must match.
    fn outgoing_by_mid(&self, peer: &P, mid: u16) -> Option<usize> {
        self.outgoing
            .iter()
            .position(|o| o.mid == mid && &o.peer == peer)
    }

    fn on_reset(&mut self, now: u64, peer: &P, mid: u16) {
        let Some(pos) = self.outgoing_by_mid(peer, mid) else {
            return;
        };
        let o = self.outgoing.swap_remove(pos);
        self.on_give_up(now, o);
    }

    fn on_give_up(&mut self, now: u64, o: Outgoing<P>) {
        match o.purpose {
            Purpose::Bootstrap | Purpose::Register | Purpose::Update | Purpose::Deregister => {
                self.registration_failed(now, o.purpose, None)
            }
            Purpose::Notify => self.cancel_observation(&o.peer, &o.token),
            Purpose::SeparateResponse => {}
        }
    }
}
