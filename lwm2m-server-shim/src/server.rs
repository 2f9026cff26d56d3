//! The running shim: wires the registration store, the CoAP socket (registration interface and
//! package host), the event bus, observations and the HTTP API together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use coap_lite::{CoapOption, Packet, ResponseType};
use lwm2m_client::codec::block::decode_uint_option;
use lwm2m_client::codec::{BlockOpt, ContentFormat, Path};
use lwm2m_client::dtls::{DtlsContext, DtlsError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::block1_assembly::{Block1Assembly, Block1Limits, Block1Step};
use crate::coap_endpoint::{CoapEndpoint, CoapTiming, ObservationStream, RequestHandler};
use crate::content;
use crate::dm::{Device, DmResponse};
use crate::dtls_socket::{DtlsLimits, DtlsSocket, PeerIdentity, ServerCertificate};
use crate::events::{EndpointEvents, EndpointSubscription, Event, EventBus};
use crate::http_server::HttpLimits;
use crate::jobs::{JobRegistry, ObserveSequence, ReadingStamp};
use crate::node_json::node_json;
use crate::object_links::ObjectLinks;
use crate::package_coap::{self, PACKAGE_PATH};
use crate::package_host::{PackageError, PackageHost};
use crate::registration::{self, response, uri_path, uri_query, RegistrationIds};
use crate::rest_api::RestApi;
use crate::security_store::{psk_lookup, InMemorySecurityStore, SecurityStore};
use crate::store::{InMemoryStore, Registration, RegistrationStore};
use crate::transport::Transport;

/// How to run the shim.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// Plain CoAP (UDP) address for registrations, device management and the package host;
    /// `None` (the default) keeps plain CoAP closed, so only authenticated peers get in.
    pub coap_addr: Option<SocketAddr>,
    /// CoAP over DTLS (PSK) address serving the same resources to authenticated peers.
    pub coaps_addr: Option<SocketAddr>,
    /// Bounds on DTLS handshakes and idle sessions of the coaps listener.
    pub dtls_limits: DtlsLimits,
    /// Bounds on block-wise Register and Update payloads being reassembled.
    pub rd_block1: Block1Limits,
    /// Certificate mode on the coaps port besides PSK: the shim's certificate and the CA
    /// whose certificates are accepted, each client registering as its certificate's CN.
    pub dtls_certificate: Option<ServerCertificate>,
    /// HTTP address of the REST API, event stream and HTTP package host.
    pub http_addr: SocketAddr,
    /// Timeouts and cap of the HTTP connections.
    pub http_limits: HttpLimits,
    /// Directory packages are served from and uploaded to.
    pub package_dir: PathBuf,
    /// Block size for Block1 pushes and the package host's Block2 (16..=1024).
    pub block_size: usize,
    /// Default per-exchange request timeout when the REST call gives none (Leshan: 5 s).
    pub default_timeout: Duration,
    /// CoAP retransmission parameters.
    pub timing: CoapTiming,
    /// How often expired registrations are removed.
    pub expiry_check: Duration,
    /// Kernel receive buffer (SO_RCVBUF) in bytes for the coap and coaps UDP sockets; `None`
    /// keeps the system default (208 KiB on Linux), where bursts from many devices overflow
    /// and are dropped. Linux caps it at `net.core.rmem_max`.
    pub udp_recv_buffer: Option<usize>,
    /// Kernel send buffer (SO_SNDBUF) in bytes for the same sockets; `None` keeps the system
    /// default. Capped at `net.core.wmem_max`.
    pub udp_send_buffer: Option<usize>,
    /// Firmware jobs started through the REST API that run at once; the rest wait in phase
    /// QUEUED. Thousands of devices pulling at the same instant overflow socket buffers and
    /// then spend their time in retransmission back-off (fleet bench: 10 000 at once took
    /// 160 s, 1 000 at a time 32 s), as campaign managers of device-management servers know.
    pub max_active_jobs: u32,
}

/// Default [`ShimConfig::max_active_jobs`].
pub const DEFAULT_MAX_ACTIVE_JOBS: u32 = 1000;

/// Default [`ShimConfig::udp_recv_buffer`]: 4 MiB.
pub const DEFAULT_UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            coap_addr: None,
            coaps_addr: Some(SocketAddr::from(([127, 0, 0, 1], 5684))),
            dtls_limits: DtlsLimits::default(),
            rd_block1: Block1Limits::default(),
            dtls_certificate: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_limits: HttpLimits::default(),
            package_dir: std::env::temp_dir().join("lwm2m-shim-packages"),
            block_size: 1024,
            default_timeout: Duration::from_secs(5),
            timing: CoapTiming::default(),
            expiry_check: Duration::from_secs(1),
            udp_recv_buffer: Some(DEFAULT_UDP_RECV_BUFFER),
            udp_send_buffer: None,
            max_active_jobs: DEFAULT_MAX_ACTIVE_JOBS,
        }
    }
}

/// Why the shim could not start.
#[derive(Debug)]
pub enum StartError {
    /// A socket could not be bound: the listener ("coap", "coaps", "HTTP"), its address, why.
    Bind(&'static str, SocketAddr, std::io::Error),
    /// The package directory is unusable.
    Packages(PackageError),
    /// The DTLS context could not be built.
    Dtls(DtlsError),
    /// Neither coap nor coaps is configured: no device could reach the shim.
    NoCoapListener,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind(listener, addr, e) => {
                write!(
                    f,
                    "cannot bind {addr}: {} ({listener} listener)",
                    io_reason(e)
                )
            }
            Self::Packages(e) => write!(f, "{e}"),
            Self::Dtls(e) => write!(f, "coaps listener: {e}"),
            Self::NoCoapListener => f.write_str("neither a coap nor a coaps address is configured"),
        }
    }
}

impl std::error::Error for StartError {}

/// An I/O error in the words a user expects on one line ("address in use", without the OS
/// error number); other errors as the system words them.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::AddrInUse => "address in use".into(),
        K::AddrNotAvailable => "address not available on this host".into(),
        K::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

struct ActiveObservation {
    token: Vec<u8>,
    task: JoinHandle<()>,
}

/// State shared by the CoAP handler, the REST API and background tasks.
pub struct Shim {
    /// Where registrations live.
    pub store: Arc<dyn RegistrationStore>,
    /// Registration and notification events of every endpoint (the SSE stream).
    pub events: EventBus,
    /// Packages on offer.
    pub packages: Arc<PackageHost>,
    /// Configuration in force.
    pub config: ShimConfig,
    /// Firmware jobs started through the REST API or a campaign.
    pub jobs: JobRegistry,
    /// Permits for REST-started jobs to leave QUEUED ([`ShimConfig::max_active_jobs`]).
    pub job_slots: Arc<tokio::sync::Semaphore>,
    /// PSK identities and the endpoint each may register as.
    pub security: Arc<dyn SecurityStore>,
    coap: std::sync::OnceLock<CoapEndpoint>,
    coaps: std::sync::OnceLock<CoapEndpoint>,
    ids: RegistrationIds,
    /// Block-wise Register and Update payloads being reassembled.
    rd_blocks: Block1Assembly,
    /// Active observations by endpoint, then by path.
    observations: Mutex<HashMap<String, HashMap<String, ActiveObservation>>>,
    /// NOTIFICATION and REGISTRATION events routed to the jobs following their endpoint.
    endpoint_events: EndpointEvents,
}

impl Shim {
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
    pub fn device(&self, reg: &Registration, timeout: Duration) -> Option<Device> {
        let coap = if self.is_secure(reg) {
            self.coaps()
        } else {
            self.coap()
        }?
        .clone();
        let mut d = Device::new(
            coap,
            reg.address,
            &ObjectLinks::parse(&reg.object_links).root_path(),
            timeout,
        );
        d.block_size = self.config.block_size;
        Some(d)
    }

    /// The NOTIFICATION and REGISTRATION events of `endpoint` from now on (until dropped),
    /// without the events of other endpoints.
    pub fn subscribe_endpoint(&self, endpoint: &str) -> EndpointSubscription {
        self.endpoint_events.subscribe(endpoint)
    }

    /// Publishes on the event bus; NOTIFICATION and REGISTRATION events also go to the
    /// subscribers of their endpoint.
    fn emit(&self, event: Event) {
        let event = Arc::new(event);
        if matches!(&*event, Event::Notification { .. } | Event::Registration(_)) {
            self.endpoint_events.route(&event);
        }
        self.events.publish_shared(event);
    }

    fn publish(&self, event: Event) {
        // Observations belong to a registration: a new registration or its end drops them
        // (the client forgot them too).
        if let Event::Deregistration(r) | Event::Registration(r) = &event {
            self.drop_observations(&r.endpoint);
        }
        self.emit(event);
    }

    /// Starts forwarding an observation's notifications to the event bus as NOTIFICATION events;
    /// a notification larger than one block is completed with Block2 requests through `device`.
    /// Replaces an earlier observation of the same endpoint and path.
    pub fn track_observation(
        self: &Arc<Self>,
        endpoint: &str,
        path: Path,
        mut stream: ObservationStream,
        device: Device,
        accept: Option<ContentFormat>,
    ) {
        let token = stream.token().to_vec();
        let weak = Arc::downgrade(self);
        let ep = endpoint.to_string();
        let observation = token.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        let task = tokio::spawn(async move {
            while let Some(n) = stream.next().await {
                let stamp = ReadingStamp {
                    received: n.received,
                    observe: n
                        .packet
                        .get_first_option(CoapOption::Observe)
                        .and_then(|v| decode_uint_option(v).ok())
                        .map(|number| ObserveSequence {
                            observation,
                            number,
                        }),
                };
                let whole = match device.complete_notification(&path, accept, n.packet).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(endpoint = %ep, %path, error = %e, "incomplete notification");
                        continue;
                    }
                };
                let Some(shim) = weak.upgrade() else { return };
                match decode_notification(&whole, &path) {
                    Some(value) => shim.emit(Event::Notification {
                        endpoint: ep.clone(),
                        path: path.to_string(),
                        value,
                        stamp,
                    }),
                    None => tracing::debug!(endpoint = %ep, %path, "undecodable notification"),
                }
            }
        });
        let old = self
            .lock_observations()
            .entry(endpoint.to_string())
            .or_default()
            .insert(path.to_string(), ActiveObservation { token, task });
        if let Some(old) = old {
            self.forget(old);
        }
    }

    fn lock_observations(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, ActiveObservation>>> {
        self.observations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether notifications of `path` from `endpoint` are being forwarded (an observation was
    /// accepted, its registration is current and its stream has not ended).
    pub fn is_observing(&self, endpoint: &str, path: &Path) -> bool {
        self.lock_observations()
            .get(endpoint)
            .and_then(|m| m.get(&path.to_string()))
            .is_some_and(|o| !o.task.is_finished())
    }

    /// Passive cancel of an observation (Leshan's DELETE .../observe): returns whether one existed.
    pub fn cancel_observation(&self, endpoint: &str, path: &Path) -> bool {
        let old = {
            let mut m = self.lock_observations();
            let old = m
                .get_mut(endpoint)
                .and_then(|paths| paths.remove(&path.to_string()));
            if m.get(endpoint).is_some_and(HashMap::is_empty) {
                m.remove(endpoint);
            }
            old
        };
        match old {
            Some(o) => {
                self.forget(o);
                true
            }
            None => false,
        }
    }

    fn forget(&self, o: ActiveObservation) {
        for c in [self.coap(), self.coaps()].into_iter().flatten() {
            c.forget_observation(&o.token);
        }
        o.task.abort();
    }

    fn drop_observations(&self, endpoint: &str) {
        let gone = self.lock_observations().remove(endpoint);
        for (_, o) in gone.into_iter().flatten() {
            self.forget(o);
        }
    }

    /// Removes expired registrations and announces them as DEREGISTRATION.
    pub fn expire(&self, now: SystemTime) -> usize {
        let expired = self.store.remove_expired(now);
        let n = expired.len();
        for r in expired {
            tracing::info!(endpoint = %r.endpoint, "registration expired");
            self.publish(Event::Deregistration(r));
        }
        n
    }
}

impl Drop for Shim {
    /// Observation tasks hold the CoAP socket; stop them with the shim.
    fn drop(&mut self) {
        let m = self
            .observations
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        for (_, paths) in m.drain() {
            for (_, o) in paths {
                o.task.abort();
            }
        }
    }
}

fn decode_notification(r: &DmResponse, path: &Path) -> Option<serde_json::Value> {
    if !r.is_success() {
        return None;
    }
    // Without Content-Format a single value is text/plain, as for read answers.
    let cf = r.content_format.unwrap_or(ContentFormat::Text);
    content::decode(cf, path, &r.payload)
        .ok()
        .map(|n| node_json(&n, path))
}

/// Checks that a request to the registration interface may act on its endpoint: over coaps the
/// authenticated identity must be bound to that endpoint (Leshan's rule; 4.03 otherwise); over
/// plain coap, endpoints with security info and registrations made over coaps are off limits.
fn authorize_rd(
    shim: &Shim,
    request: &Packet,
    path: &[String],
    peer: SocketAddr,
    secure: bool,
) -> Result<(), Packet> {
    let forbidden = || Err(response(ResponseType::Forbidden));
    let target = match path {
        [_rd] => uri_query(request)
            .into_iter()
            .find(|(k, _)| k == "ep")
            .and_then(|(_, v)| v),
        [_rd, id, ..] => {
            let reg = shim.store.get_by_id(id);
            if let Some(r) = &reg {
                if !secure && shim.is_secure(r) {
                    return forbidden();
                }
            }
            reg.map(|r| r.endpoint)
        }
        [] => None,
    };
    if secure {
        let identity = shim.coaps().and_then(|c| c.transport().peer_identity(peer));
        let allowed = match &identity {
            Some(PeerIdentity::Psk(id)) => shim.security.get_by_identity(id).map(|i| i.endpoint),
            Some(PeerIdentity::Certificate(cn)) => Some(cn.clone()),
            None => None,
        };
        let Some(allowed) = allowed else {
            // Authenticated, but the identity was removed from the store since.
            return forbidden();
        };
        if target.is_some_and(|ep| ep != allowed) {
            tracing::warn!(%peer, ?identity, "identity tried another endpoint");
            return forbidden();
        }
    } else if target.is_some_and(|ep| shim.security.get_by_endpoint(&ep).is_some()) {
        return forbidden();
    }
    Ok(())
}

struct CoapRouter {
    shim: std::sync::Weak<Shim>,
    /// Whether this router serves the coaps endpoint.
    secure: bool,
}

impl RequestHandler for CoapRouter {
    fn handle(&self, request: &Packet, peer: SocketAddr) -> Packet {
        let Some(shim) = self.shim.upgrade() else {
            return response(ResponseType::ServiceUnavailable);
        };
        let path = uri_path(request);
        match path.first().map(String::as_str) {
            Some("rd") => {
                if let Err(refused) = authorize_rd(&shim, request, &path, peer, self.secure) {
                    return refused;
                }
                let (whole, block1) = match shim.rd_blocks.offer(request, peer, Instant::now()) {
                    Block1Step::Whole => (None, None),
                    Block1Step::Answer(a) => return a,
                    Block1Step::Complete { request, block1 } => (Some(request), Some(block1)),
                };
                let (mut resp, event) = registration::handle(
                    shim.store.as_ref(),
                    &shim.ids,
                    whole.as_deref().unwrap_or(request),
                    peer,
                    self.secure,
                    SystemTime::now(),
                );
                if let Some(b) = block1 {
                    resp.add_option(CoapOption::Block1, b.encode());
                }
                if let Some(e) = event {
                    tracing::info!(event = e.name(), endpoint = e.endpoint(), %peer, secure = self.secure, "registration interface");
                    shim.publish(e);
                }
                resp
            }
            Some(PACKAGE_PATH) => package_coap::handle(
                &shim.packages,
                request,
                &path,
                BlockOpt::szx_for_size(shim.config.block_size),
            ),
            _ => response(ResponseType::NotFound),
        }
    }
}

/// A started shim; dropping it stops its tasks.
pub struct RunningShim {
    /// Shared state (store, events, packages).
    pub shim: Arc<Shim>,
    /// Bound plain CoAP address, if plain CoAP is enabled.
    pub coap_addr: Option<SocketAddr>,
    /// Bound coaps (DTLS) address, if enabled.
    pub coaps_addr: Option<SocketAddr>,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningShim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RunningShim {
    /// Waits until a task ends (they run until aborted or a socket fails).
    pub async fn wait(mut self) {
        if let Some(t) = self.tasks.pop() {
            let _ = t.await;
        }
    }
}

/// Applies the configured kernel buffer sizes to an endpoint's UDP socket and logs what the
/// kernel granted; a refusal is logged, not fatal (the default buffers still work).
fn size_buffers(endpoint: &CoapEndpoint, config: &ShimConfig) {
    type Setter = fn(&Transport, usize) -> std::io::Result<usize>;
    let t = endpoint.transport();
    let scheme = if t.is_secure() { "coaps" } else { "coap" };
    let options: [(&str, Option<usize>, Setter, &str); 2] = [
        (
            "SO_RCVBUF",
            config.udp_recv_buffer,
            Transport::set_recv_buffer,
            "net.core.rmem_max",
        ),
        (
            "SO_SNDBUF",
            config.udp_send_buffer,
            Transport::set_send_buffer,
            "net.core.wmem_max",
        ),
    ];
    for (option, bytes, set, sysctl) in options {
        let Some(requested) = bytes else { continue };
        match set(t, requested) {
            // Linux reports twice what it granted, so a request within its cap reads as more.
            Ok(granted) if granted >= requested => {
                tracing::info!(scheme, option, requested, granted, "UDP socket buffer")
            }
            Ok(granted) => tracing::warn!(
                scheme,
                option,
                requested,
                granted,
                "UDP socket buffer smaller than requested; raise the sysctl {sysctl}"
            ),
            Err(e) => tracing::warn!(
                scheme,
                option,
                requested,
                error = %e,
                "cannot size the UDP socket buffer"
            ),
        }
    }
}

/// Binds the sockets and starts the CoAP loop, the HTTP server and the expiry task, with the
/// in-memory registration store.
pub async fn start(config: ShimConfig) -> Result<RunningShim, StartError> {
    start_with_store(config, Arc::new(InMemoryStore::new())).await
}

/// Like [`start`] with a caller-provided registration store.
pub async fn start_with_store(
    config: ShimConfig,
    store: Arc<dyn RegistrationStore>,
) -> Result<RunningShim, StartError> {
    start_with_stores(config, store, Arc::new(InMemorySecurityStore::new())).await
}

/// Like [`start`] with caller-provided registration and security stores.
pub async fn start_with_stores(
    config: ShimConfig,
    store: Arc<dyn RegistrationStore>,
    security: Arc<dyn SecurityStore>,
) -> Result<RunningShim, StartError> {
    if config.coap_addr.is_none() && config.coaps_addr.is_none() {
        return Err(StartError::NoCoapListener);
    }
    let packages = Arc::new(PackageHost::new(&config.package_dir).map_err(StartError::Packages)?);
    let shim = Arc::new(Shim {
        store,
        events: EventBus::default(),
        packages,
        config: config.clone(),
        jobs: JobRegistry::default(),
        job_slots: Arc::new(tokio::sync::Semaphore::new(
            config.max_active_jobs.max(1) as usize
        )),
        security: security.clone(),
        coap: std::sync::OnceLock::new(),
        coaps: std::sync::OnceLock::new(),
        ids: RegistrationIds::default(),
        rd_blocks: Block1Assembly::new(config.rd_block1),
        observations: Mutex::new(HashMap::new()),
        endpoint_events: EndpointEvents::default(),
    });
    let router = |secure| {
        Arc::new(CoapRouter {
            shim: Arc::downgrade(&shim),
            secure,
        })
    };
    let mut endpoints = Vec::new();
    let mut coap_addr = None;
    if let Some(addr) = config.coap_addr {
        let bind = |e| StartError::Bind("coap", addr, e);
        let coap = CoapEndpoint::bind(addr, config.timing, router(false))
            .await
            .map_err(bind)?;
        coap_addr = Some(coap.local_addr().map_err(bind)?);
        let _ = shim.coap.set(coap.clone());
        endpoints.push(coap);
    }
    let mut coaps_addr = None;
    if let Some(addr) = config.coaps_addr {
        let lookup = psk_lookup(security);
        let ctx = match &config.dtls_certificate {
            Some(cert) => DtlsContext::psk_and_cert_server(lookup, &cert.0),
            None => DtlsContext::psk_server(lookup),
        }
        .map_err(StartError::Dtls)?;
        let bind = |e| StartError::Bind("coaps", addr, e);
        let socket = DtlsSocket::bind(addr, ctx, config.dtls_limits)
            .await
            .map_err(bind)?;
        let coaps = CoapEndpoint::over(
            Transport::Dtls(Box::new(socket)),
            config.timing,
            router(true),
        );
        coaps_addr = Some(coaps.local_addr().map_err(bind)?);
        let _ = shim.coaps.set(coaps.clone());
        endpoints.push(coaps);
    }
    let bind = |e| StartError::Bind("HTTP", config.http_addr, e);
    let listener = TcpListener::bind(config.http_addr).await.map_err(bind)?;
    let http_addr = listener.local_addr().map_err(bind)?;
    // Every socket is bound before anything is logged: a start-up failure is its only line.
    for endpoint in &endpoints {
        size_buffers(endpoint, &config);
    }
    let mut tasks = Vec::new();
    let weak = Arc::downgrade(&shim);
    let every = config.expiry_check;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(shim) = weak.upgrade() else { return };
            shim.expire(SystemTime::now());
        }
    }));
    tasks.push(tokio::spawn(crate::http_server::serve(
        listener,
        Arc::new(RestApi::new(shim.clone())),
        config.http_limits,
    )));
    for endpoint in endpoints {
        tasks.push(tokio::spawn(async move {
            if let Err(e) = endpoint.run().await {
                tracing::error!(error = %e, "CoAP socket failed");
            }
        }));
    }
    tracing::info!(?coap_addr, ?coaps_addr, %http_addr, "shim listening");
    Ok(RunningShim {
        shim,
        coap_addr,
        coaps_addr,
        http_addr,
        tasks,
    })
}
