//! The server's shared state (Leshan's `LeshanServer`): the registration and security stores,
//! the event bus, the CoAP endpoints and the observations, with the services built on them:
//! requests to a registered device, the registration interface, observation tracking and
//! expiry. It knows no HTTP; [`crate::app`] wires it to sockets and the REST API.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use coap_lite::{CoapOption, Packet};
use lwm2m_client::codec::{ContentFormat, Path};

use crate::coap::endpoint::{CoapEndpoint, ObservationStream, PeerSign};
use crate::coap::message::uri_path;
use crate::packages::host::PackageHost;
use crate::packages::qblock::QBlockSenderParams;
use crate::server::events::{EndpointEvents, EndpointSubscription, EventBus, ServerEvent};
use crate::server::observations::{self, ActiveObservation, Observations, Observed};
use crate::server::presence::{Presence, DEFAULT_AWAKE_TIME};
use crate::server::registration::block1::{Block1Assembly, Block1Limits, Block1Step};
use crate::server::registration::interface::{self as registration, RegistrationIds};
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::{Registration, RegistrationStore};
use crate::server::requests::{CompositePaths, DeviceHandle, PushQBlock};
use crate::server::security::authorizer::RdAuthorizer;
use crate::server::security::store::SecurityStore;

/// What the server core takes from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    /// Block size for Block1 pushes (16..=1024).
    pub block_size: usize,
    /// Default per-exchange request timeout when the REST call gives none (Leshan: 5 s).
    pub default_timeout: Duration,
    /// Bounds on block-wise Register and Update payloads being reassembled.
    pub rd_block1: Block1Limits,
    /// How long a queue-mode client stays reachable after it last sent something.
    pub awake_time: Duration,
    /// Firmware packages pushed with Q-Block1 (RFC 9177) with these parameters, falling
    /// back to Block1 per registration; `None` pushes with Block1 only.
    pub push_qblock: Option<QBlockSenderParams>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            block_size: 1024,
            default_timeout: Duration::from_secs(5),
            rd_block1: Block1Limits::default(),
            awake_time: DEFAULT_AWAKE_TIME,
            push_qblock: None,
        }
    }
}

/// State shared by the CoAP handler, the REST API and background tasks.
pub struct Shim {
    /// Where registrations live.
    pub store: Arc<dyn RegistrationStore>,
    /// Registration and notification events of every endpoint (the SSE stream).
    pub events: EventBus<ServerEvent>,
    /// Packages on offer.
    pub packages: Arc<PackageHost>,
    /// Settings in force.
    pub settings: ServerSettings,
    /// PSK identities and the endpoint each may register as.
    pub security: Arc<dyn SecurityStore>,
    /// Which queue-mode clients are awake.
    pub presence: Presence,
    coap: OnceLock<CoapEndpoint>,
    coaps: OnceLock<CoapEndpoint>,
    ids: RegistrationIds,
    /// Block-wise Register and Update payloads being reassembled.
    rd_blocks: Block1Assembly,
    observations: Observations,
    /// NOTIFICATION and REGISTRATION events routed to the jobs following their endpoint.
    endpoint_events: EndpointEvents,
    /// Registrations whose device answered a Q-Block1 push 4.02 (RFC 9177 §4.1).
    without_qblock1: Arc<Mutex<HashSet<String>>>,
}

impl Shim {
    /// A server over these stores and packages, with no CoAP endpoint yet ([`Self::attach`]).
    pub fn new(
        store: Arc<dyn RegistrationStore>,
        security: Arc<dyn SecurityStore>,
        packages: Arc<PackageHost>,
        settings: ServerSettings,
    ) -> Self {
        Self {
            store,
            events: EventBus::default(),
            packages,
            settings,
            security,
            presence: Presence::new(settings.awake_time),
            coap: OnceLock::new(),
            coaps: OnceLock::new(),
            ids: RegistrationIds::default(),
            rd_blocks: Block1Assembly::new(settings.rd_block1),
            observations: Observations::default(),
            endpoint_events: EndpointEvents::default(),
            without_qblock1: Arc::default(),
        }
    }

    /// Makes `endpoint` the plain CoAP or the coaps endpoint (by its transport), through
    /// which registered devices are reached; `false` if that one was attached already.
    pub fn attach(self: &Arc<Self>, endpoint: CoapEndpoint) -> bool {
        let shim = Arc::downgrade(self);
        endpoint.on_presence(Arc::new(move |peer, sign| {
            if let Some(shim) = shim.upgrade() {
                match sign {
                    PeerSign::Answered => shim.heard_at(peer),
                    PeerSign::Silent => shim.silent_at(peer),
                }
            }
        }));
        let slot = if endpoint.transport().is_secure() {
            &self.coaps
        } else {
            &self.coap
        };
        slot.set(endpoint).is_ok()
    }

    /// The plain CoAP endpoint, if plain CoAP is enabled.
    pub fn coap(&self) -> Option<&CoapEndpoint> {
        self.coap.get()
    }

    /// The coaps (DTLS) endpoint, if enabled.
    pub fn coaps(&self) -> Option<&CoapEndpoint> {
        self.coaps.get()
    }

    /// Ends the coaps sessions of a PSK identity whose security info was removed or
    /// replaced, as Leshan does, so the old key stops working at once.
    pub fn revoke_identity(&self, identity: &str) {
        if let Some(c) = self.coaps() {
            let n = c.transport().forget_identity(identity);
            tracing::info!(%identity, sessions = n, "DTLS sessions of a revoked identity closed");
        }
    }

    /// Whether this registration was made over coaps (and is managed over it).
    pub fn is_secure(&self, reg: &Registration) -> bool {
        reg.secure
    }

    /// Device-management handle for a registered client, with a per-exchange timeout; requests
    /// go over the transport the client registered on.
    pub fn device(&self, reg: &Registration, timeout: Duration) -> Option<DeviceHandle> {
        let coap = if self.is_secure(reg) {
            self.coaps()
        } else {
            self.coap()
        }?
        .clone();
        let mut d = DeviceHandle::new(
            coap,
            reg.address,
            &ObjectLinks::parse(&reg.object_links).root_path(),
            timeout,
        );
        d.block_size = self.settings.block_size;
        d.push_qblock = self.settings.push_qblock.map(|params| {
            Arc::new(PushQBlock {
                params,
                registration: reg.id.clone(),
                without: self.without_qblock1.clone(),
            })
        });
        Some(d)
    }

    /// The NOTIFICATION and REGISTRATION events of `endpoint` from now on (until dropped),
    /// without the events of other endpoints.
    pub fn subscribe_endpoint(&self, endpoint: &str) -> EndpointSubscription {
        self.endpoint_events.subscribe(endpoint)
    }

    /// Publishes on the event bus; NOTIFICATION and REGISTRATION events also go to the
    /// subscribers of their endpoint.
    fn emit(&self, event: ServerEvent) {
        let event = Arc::new(event);
        if matches!(
            &*event,
            ServerEvent::Notification { .. }
                | ServerEvent::CompositeNotification { .. }
                | ServerEvent::Registration(_)
                | ServerEvent::Awake(_)
        ) {
            self.endpoint_events.route(&event);
        }
        self.events.publish_shared(event);
    }

    fn publish(&self, event: ServerEvent) {
        // Observations belong to a registration: a new registration or its end drops them
        // (the client forgot them too).
        if let ServerEvent::Deregistration(r) | ServerEvent::Registration(r) = &event {
            self.drop_observations(&r.endpoint);
        }
        self.follow_presence(&event);
        self.emit(event);
    }

    /// Queue mode: a Register or Update from a queue-mode client wakes it (AWAKE is announced
    /// before the registration event, as Leshan does); leaving queue mode or de-registering
    /// ends the tracking.
    fn follow_presence(&self, event: &ServerEvent) {
        let now = Instant::now();
        let woke = match event {
            ServerEvent::Registration(r)
            | ServerEvent::Updated {
                registration: r, ..
            } if r.queue_mode => self.presence.registered(&r.endpoint, r.address, now),
            ServerEvent::Registration(r)
            | ServerEvent::Updated {
                registration: r, ..
            }
            | ServerEvent::Deregistration(r) => {
                self.presence.forget(&r.endpoint);
                false
            }
            _ => false,
        };
        if woke {
            self.emit(ServerEvent::Awake(event.endpoint().to_string()));
        }
    }

    /// The client at `peer` answered a request or notified (the endpoints' answer hook,
    /// installed by [`Self::attach`]): a queue-mode client stays awake, and AWAKE is announced
    /// if it slept. Every request to a device, REST, job or conformance check, goes through
    /// there, and so does every notification.
    fn heard_at(&self, peer: SocketAddr) {
        if let Some(endpoint) = self.presence.heard_at(peer, Instant::now()) {
            self.emit(ServerEvent::Awake(endpoint));
        }
    }

    /// A request to the client at `peer` went unanswered (the endpoints' presence hook): a
    /// queue-mode client there fell asleep sooner than the awake time assumed, and SLEEPING is
    /// announced, so requests wait for its next message instead of timing out one after
    /// another. Leshan's server does the same (its `QueueModeLwM2mRequestSender`).
    fn silent_at(&self, peer: SocketAddr) {
        if let Some(endpoint) = self.presence.silent_at(peer) {
            tracing::debug!(%endpoint, "queue-mode client did not answer: sleeping");
            self.emit(ServerEvent::Sleeping(endpoint));
        }
    }

    /// Announces SLEEPING for the queue-mode clients whose awake time ended by `now`.
    pub fn check_presence(&self, now: Instant) {
        for ep in self.presence.fall_asleep(now) {
            tracing::debug!(endpoint = %ep, "queue-mode client sleeping");
            self.emit(ServerEvent::Sleeping(ep));
        }
    }

    /// Answers a request to the registration interface (`/rd`, LwM2M core TS section 6.2) from
    /// `peer`, which came over coaps when `secure`: authorization, Block1 reassembly of the
    /// payload (RFC 7959 section 2.5), then Register, Update or De-register, published as an
    /// event.
    pub fn handle_registration(&self, request: &Packet, peer: SocketAddr, secure: bool) -> Packet {
        let path = uri_path(request);
        let identity = secure
            .then(|| self.coaps().and_then(|c| c.transport().peer_identity(peer)))
            .flatten();
        let authorizer = RdAuthorizer {
            registrations: self.store.as_ref(),
            security: self.security.as_ref(),
        };
        if let Err(refused) = authorizer.check(request, &path, peer, identity.as_ref(), secure) {
            return refused;
        }
        let (whole, block1) = match self.rd_blocks.offer(request, peer, Instant::now()) {
            Block1Step::Whole => (None, None),
            Block1Step::Answer(a) => return a,
            Block1Step::Complete { request, block1 } => (Some(request), Some(block1)),
        };
        let (mut resp, event) = registration::handle(
            self.store.as_ref(),
            &self.ids,
            whole.as_deref().unwrap_or(request),
            peer,
            secure,
            SystemTime::now(),
        );
        if let Some(b) = block1 {
            resp.add_option(CoapOption::Block1, b.encode());
        }
        if let Some(e) = event {
            tracing::info!(event = e.name(), endpoint = e.endpoint(), %peer, secure, "registration interface");
            self.publish(e);
        }
        resp
    }

    /// Starts forwarding an observation's notifications to the event bus as NOTIFICATION events;
    /// a notification larger than one block is completed with Block2 requests through `device`.
    /// Replaces an earlier observation of the same endpoint and path.
    pub fn track_observation(
        self: &Arc<Self>,
        endpoint: &str,
        path: Path,
        stream: ObservationStream,
        device: DeviceHandle,
        accept: Option<ContentFormat>,
    ) {
        self.track(endpoint, Observed::Path(path), stream, device, accept);
    }

    /// Like [`Self::track_observation`] for a composite observation of `paths`, whose
    /// notifications are decoded as `accept` (SenML JSON or CBOR).
    pub fn track_composite_observation(
        self: &Arc<Self>,
        endpoint: &str,
        paths: CompositePaths,
        stream: ObservationStream,
        device: DeviceHandle,
        accept: ContentFormat,
    ) {
        let target = Observed::Composite(paths);
        self.track(endpoint, target, stream, device, Some(accept));
    }

    fn track(
        self: &Arc<Self>,
        endpoint: &str,
        target: Observed,
        stream: ObservationStream,
        device: DeviceHandle,
        accept: Option<ContentFormat>,
    ) {
        let weak = Arc::downgrade(self);
        let active = observations::forward(endpoint, target.clone(), stream, device, accept, {
            move |event| match weak.upgrade() {
                Some(shim) => {
                    shim.emit(event);
                    true
                }
                None => false,
            }
        });
        if let Some(old) = self.observations.insert(endpoint, &target, active) {
            self.forget(old);
        }
    }

    /// Whether notifications of `path` from `endpoint` are being forwarded (an observation was
    /// accepted, its registration is current and its stream has not ended).
    pub fn is_observing(&self, endpoint: &str, path: &Path) -> bool {
        self.observations
            .is_active(endpoint, &Observed::Path(*path))
    }

    /// The token of the observation of `path` at `endpoint`, for an active cancel (a GET with
    /// Observe = 1 and this token, RFC 7641 section 3.6); `None` when there is none.
    pub fn observation_token(&self, endpoint: &str, path: &Path) -> Option<Vec<u8>> {
        self.observations.token(endpoint, &Observed::Path(*path))
    }

    /// The token of the composite observation of `paths` at `endpoint`, if there is one.
    pub fn composite_observation_token(
        &self,
        endpoint: &str,
        paths: &CompositePaths,
    ) -> Option<Vec<u8>> {
        self.observations
            .token(endpoint, &Observed::Composite(paths.clone()))
    }

    /// Passive cancel of an observation (Leshan's DELETE .../observe): returns whether one existed.
    pub fn cancel_observation(&self, endpoint: &str, path: &Path) -> bool {
        self.cancel(endpoint, &Observed::Path(*path))
    }

    /// Passive cancel of the composite observation of `paths`: returns whether one existed.
    pub fn cancel_composite_observation(&self, endpoint: &str, paths: &CompositePaths) -> bool {
        self.cancel(endpoint, &Observed::Composite(paths.clone()))
    }

    fn cancel(&self, endpoint: &str, target: &Observed) -> bool {
        match self.observations.remove(endpoint, target) {
            Some(o) => {
                self.forget(o);
                true
            }
            None => false,
        }
    }

    /// Stops routing `o`'s notifications. Its task still reports those that already arrived
    /// and then ends: a device that resets right after notifying (State = Updating) registers
    /// again before the task ran, and that notification must not be lost.
    fn forget(&self, o: ActiveObservation) {
        for c in [self.coap(), self.coaps()].into_iter().flatten() {
            c.forget_observation(&o.token);
        }
    }

    fn drop_observations(&self, endpoint: &str) {
        for o in self.observations.remove_endpoint(endpoint) {
            self.forget(o);
        }
    }

    /// Removes expired registrations and announces them as DEREGISTRATION.
    pub fn expire(&self, now: SystemTime) -> usize {
        let expired = self.store.remove_expired(now);
        let n = expired.len();
        for r in expired {
            tracing::info!(endpoint = %r.endpoint, "registration expired");
            self.publish(ServerEvent::Deregistration(r));
        }
        n
    }
}
