//! The composition root: binds the sockets, builds the server core, the firmware jobs and the
//! REST API over them, and runs their tasks. Everything else is a library part this file
//! wires together; the imports point one way (see the crate docs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coap_lite::{MessageClass, Packet, RequestType, ResponseType};
use lwm2m_client::codec::BlockOpt;
use lwm2m_client::host::dtls::{DtlsContext, DtlsError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::http_server::HttpLimits;
use crate::api::routes::RestApi;
use crate::api::server_info::ServerInfo;
use crate::coap::dtls_socket::{DtlsLimits, DtlsSocket, ServerCertificate};
use crate::coap::endpoint::{CoapEndpoint, RequestHandler, Responses};
use crate::coap::message::{response, uri_path};
use crate::coap::timing::CoapTiming;
use crate::coap::transport::Transport;
use crate::conformance::{self, ConformanceConfig, ConformanceError, RunReport, Selection};
use crate::content::models::{ModelLoadError, ObjectModels};
use crate::firmware::jobs::{JobRegistry, DEFAULT_MAX_ACTIVE_JOBS};
use crate::packages::coap::{self as package_coap, PACKAGE_PATH};
use crate::packages::coap_tcp::{
    TcpHostError, TcpHostLimits, TcpPackageHost, TlsCredentials, TlsError, TlsIdentity,
};
use crate::packages::host::{PackageHost, PackageHostError};
use crate::packages::qblock::{QBlockSenderParams, QBlockServer};
use crate::server::discovery;
use crate::server::registration::block1::Block1Limits;
use crate::server::registration::store::{InMemoryStore, RegistrationStore};
use crate::server::security::store::{psk_lookup, InMemorySecurityStore, SecurityStore};
use crate::server::shim::{ServerSettings, Shim};

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
    /// Q-Block2 (RFC 9177) for devices that ask with it: bursts of MAX_PAYLOADS blocks per
    /// round trip. `None` serves them plain Block2, as hosts without Q-Block2 do.
    pub qblock: Option<QBlockSenderParams>,
    /// Push firmware packages with Q-Block1 (RFC 9177) with these parameters, falling back to
    /// Block1 for devices that answer 4.02 or take the first block as the whole body; `None`
    /// (the default) pushes with Block1 only: a device that ignores the critical Q-Block1
    /// option (Leshan's client does) first stores a 1 KiB package.
    pub push_qblock: Option<QBlockSenderParams>,
    /// Default per-exchange request timeout when the REST call gives none (Leshan: 5 s).
    pub default_timeout: Duration,
    /// CoAP retransmission parameters.
    pub timing: CoapTiming,
    /// How long a queue-mode client stays reachable after it last sent something; requests
    /// to it wait until it sends again (LwM2M core TS 1.1 section 6.5).
    pub awake_time: Duration,
    /// How often expired registrations are removed (and queue-mode clients checked for sleep).
    pub expiry_check: Duration,
    /// Kernel receive buffer (SO_RCVBUF) in bytes for the coap and coaps UDP sockets; `None`
    /// keeps the system default (208 KiB on Linux), where bursts from many devices overflow
    /// and are dropped. Linux caps it at `net.core.rmem_max`.
    pub udp_recv_buffer: Option<usize>,
    /// Kernel send buffer (SO_SNDBUF) in bytes for the same sockets; `None` keeps the system
    /// default. Capped at `net.core.wmem_max`.
    pub udp_send_buffer: Option<usize>,
    /// CoAP-over-TCP package host address (RFC 8323 coap+tcp, port 0: a free port); `None`
    /// (the default) opens none.
    pub coap_tcp_addr: Option<SocketAddr>,
    /// CoAP-over-TLS package host address (coaps+tcp); `None` (the default) opens none.
    pub coaps_tcp_addr: Option<SocketAddr>,
    /// Certificate of the coaps+tcp host; `None`: the DTLS certificate when there is one, else
    /// a self-signed one made at start ([`RunningShim::tls_cert_pem`] tells devices what to
    /// trust).
    pub tls_identity: Option<TlsIdentity>,
    /// Bounds on the coap+tcp and coaps+tcp connections.
    pub tcp_limits: TcpHostLimits,
    /// Directory of OMA DDF object models (`*.xml`) shown besides the built-in ones (objects 0,
    /// 1, 3 and 5) by `GET /api/objectspecs/{ep}`; a model replaces a built-in one of the same
    /// object id and version.
    pub models_dir: Option<PathBuf>,
    /// Firmware jobs started through the REST API that run at once; the rest wait in phase
    /// QUEUED. Thousands of devices pulling at the same instant overflow socket buffers and
    /// then spend their time in retransmission back-off (fleet bench: 10 000 at once took
    /// 160 s, 1 000 at a time 32 s), as campaign managers of device-management servers know.
    pub max_active_jobs: u32,
}

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
            qblock: Some(QBlockSenderParams::default()),
            push_qblock: None,
            default_timeout: Duration::from_secs(5),
            timing: CoapTiming::default(),
            expiry_check: Duration::from_secs(1),
            udp_recv_buffer: Some(DEFAULT_UDP_RECV_BUFFER),
            udp_send_buffer: None,
            max_active_jobs: DEFAULT_MAX_ACTIVE_JOBS,
            coap_tcp_addr: None,
            coaps_tcp_addr: None,
            tls_identity: None,
            tcp_limits: TcpHostLimits::default(),
            models_dir: None,
            awake_time: crate::server::presence::DEFAULT_AWAKE_TIME,
        }
    }
}

/// Why the shim could not start.
#[derive(Debug)]
pub enum StartError {
    /// A socket could not be bound: the listener ("coap", "coaps", "HTTP"), its address, why.
    Bind(&'static str, SocketAddr, std::io::Error),
    /// The package directory is unusable.
    Packages(PackageHostError),
    /// The DTLS context could not be built.
    Dtls(DtlsError),
    /// Neither coap nor coaps is configured: no device could reach the shim.
    NoCoapListener,
    /// The coaps+tcp certificate could not be made or used.
    Tls(TlsError),
    /// The certificate-mode server certificate does not show an EC public key.
    Certificate(openssl::error::ErrorStack),
    /// The models directory or a file in it is unusable.
    Models(ModelLoadError),
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
            Self::Tls(e) => write!(f, "coaps+tcp listener: {e}"),
            Self::Certificate(e) => write!(f, "server certificate: {e}"),
            Self::Models(e) => write!(f, "object models: {e}"),
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

impl ShimConfig {
    /// The part of the configuration the server core uses.
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            block_size: self.block_size,
            default_timeout: self.default_timeout,
            rd_block1: self.rd_block1,
            awake_time: self.awake_time,
            // NON_TIMEOUT is ACK_TIMEOUT (RFC 9177 §7.2): a tuned link tunes both.
            push_qblock: self.push_qblock.map(|p| QBlockSenderParams {
                non_timeout: p.non_timeout.min(self.timing.ack_timeout),
                ..p
            }),
        }
    }
}

/// Routes the requests devices send to the shim: `/rd` to the registration interface, `/fw`
/// to the package host, `/` and `/.well-known/core` to the discovery documents (Q-Block2
/// requests to the host's Q-Block2 face when enabled).
struct CoapRouter {
    shim: std::sync::Weak<Shim>,
    /// Whether this router serves the coaps endpoint.
    secure: bool,
    /// The Q-Block2 transfers of this router's endpoint.
    qblock: Option<Arc<QBlockServer>>,
}

impl RequestHandler for CoapRouter {
    fn handle(&self, request: &Packet, peer: SocketAddr) -> Packet {
        let Some(shim) = self.shim.upgrade() else {
            return response(ResponseType::ServiceUnavailable);
        };
        let path = uri_path(request);
        let max_szx = BlockOpt::szx_for_size(shim.settings.block_size);
        match path.first().map(String::as_str) {
            Some("rd") => shim.handle_registration(request, peer, self.secure),
            Some(PACKAGE_PATH) => package_coap::handle(&shim.packages, request, &path, max_szx),
            _ => match discovery::document(&path) {
                Some(doc) if request.header.code == MessageClass::Request(RequestType::Get) => {
                    package_coap::block2_answer(&doc.snapshot, request, max_szx, doc.format)
                }
                Some(_) => response(ResponseType::MethodNotAllowed),
                None => response(ResponseType::NotFound),
            },
        }
    }

    fn handle_burst(&self, request: &Packet, peer: SocketAddr) -> (Packet, Responses) {
        if let (Some(qblock), Some(shim)) = (&self.qblock, self.shim.upgrade()) {
            let path = uri_path(request);
            let max_szx = BlockOpt::szx_for_size(shim.settings.block_size);
            let burst = if path.first().map(String::as_str) == Some(PACKAGE_PATH) {
                qblock.handle(&shim.packages, request, &path, max_szx, peer)
            } else {
                discovery::document(&path).and_then(|doc| {
                    qblock.answer_document(&doc.snapshot, request, max_szx, doc.format)
                })
            };
            if let Some(burst) = burst {
                return burst;
            }
        }
        (self.handle(request, peer), Box::new(std::iter::empty()))
    }
}

/// A started shim; dropping it stops its tasks.
pub struct RunningShim {
    /// The server core (stores, events, packages, endpoints).
    pub shim: Arc<Shim>,
    /// Firmware jobs started through the REST API or a campaign.
    pub jobs: Arc<JobRegistry>,
    /// Bound plain CoAP address, if plain CoAP is enabled.
    pub coap_addr: Option<SocketAddr>,
    /// Bound coaps (DTLS) address, if enabled.
    pub coaps_addr: Option<SocketAddr>,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// The coap+tcp package host, if enabled.
    pub coap_tcp: Option<TcpPackageHost>,
    /// The coaps+tcp package host, if enabled.
    pub coaps_tcp: Option<TcpPackageHost>,
    /// The coaps+tcp host's certificate (PEM), for devices to trust.
    pub tls_cert_pem: Option<Vec<u8>>,
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

    /// Runs the conformance cases of `selection` against device `endpoint` on this shim (its
    /// registrations and firmware jobs): [`conformance::run`] for the `conformance` command
    /// and tests alike.
    pub async fn conformance(
        &self,
        endpoint: &str,
        cfg: &ConformanceConfig,
        selection: &Selection,
    ) -> Result<RunReport, ConformanceError> {
        conformance::run(&self.shim, &self.jobs, endpoint, cfg, selection).await
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
    let mut models = ObjectModels::built_in();
    if let Some(dir) = &config.models_dir {
        models.load_dir(dir).map_err(StartError::Models)?;
    }
    let shim = Arc::new(Shim::new(
        store,
        security.clone(),
        packages.clone(),
        config.server_settings(),
    ));
    let jobs = Arc::new(JobRegistry::new(config.max_active_jobs));
    // Each endpoint's Q-Block2 transfers, whose unasked sets go out through that endpoint.
    let mut qblock_timers = Vec::new();
    let router = |secure| {
        Arc::new(CoapRouter {
            shim: Arc::downgrade(&shim),
            secure,
            qblock: config.qblock.map(|p| Arc::new(QBlockServer::new(p))),
        })
    };
    let mut endpoints = Vec::new();
    let mut coap_addr = None;
    if let Some(addr) = config.coap_addr {
        let bind = |e| StartError::Bind("coap", addr, e);
        let router = router(false);
        let coap = CoapEndpoint::bind(addr, config.timing, router.clone())
            .await
            .map_err(bind)?;
        qblock_timers.extend(router.qblock.clone().map(|q| (q, coap.clone())));
        coap_addr = Some(coap.local_addr().map_err(bind)?);
        shim.attach(coap.clone());
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
        let router = router(true);
        let coaps = CoapEndpoint::over(
            Transport::Dtls(Box::new(socket)),
            config.timing,
            router.clone(),
        );
        qblock_timers.extend(router.qblock.clone().map(|q| (q, coaps.clone())));
        coaps_addr = Some(coaps.local_addr().map_err(bind)?);
        shim.attach(coaps.clone());
        endpoints.push(coaps);
    }
    let (coap_tcp, coaps_tcp, tls_cert_pem) = start_tcp_hosts(&config, &shim).await?;
    let bind = |e| StartError::Bind("HTTP", config.http_addr, e);
    let listener = TcpListener::bind(config.http_addr).await.map_err(bind)?;
    let http_addr = listener.local_addr().map_err(bind)?;
    let certificate = config
        .dtls_certificate
        .as_ref()
        .map(|c| c.0.cert_pem.as_slice());
    let server =
        ServerInfo::new(coap_addr, coaps_addr, certificate).map_err(StartError::Certificate)?;
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
            shim.check_presence(std::time::Instant::now());
        }
    }));
    let api = Arc::new(RestApi::new(
        shim.clone(),
        jobs.clone(),
        server,
        Arc::new(models),
    ));
    tasks.push(tokio::spawn(api.queue().run(Arc::downgrade(&shim))));
    tasks.push(tokio::spawn(crate::api::http_server::serve(
        listener,
        api,
        config.http_limits,
    )));
    for (qblock, endpoint) in qblock_timers {
        tasks.push(tokio::spawn(qblock.run(endpoint, packages.clone())));
    }
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
        jobs,
        coap_addr,
        coaps_addr,
        http_addr,
        coap_tcp,
        coaps_tcp,
        tls_cert_pem,
        tasks,
    })
}

fn tcp_start_error(listener: &'static str, addr: SocketAddr, e: TcpHostError) -> StartError {
    match e {
        TcpHostError::Bind(e) => StartError::Bind(listener, addr, e),
        TcpHostError::Tls(e) => StartError::Tls(e),
    }
}

/// The coap+tcp and coaps+tcp package hosts the configuration asks for, and the certificate
/// of the latter: the configured one, the DTLS certificate, or a self-signed one.
async fn start_tcp_hosts(
    config: &ShimConfig,
    shim: &Shim,
) -> Result<
    (
        Option<TcpPackageHost>,
        Option<TcpPackageHost>,
        Option<Vec<u8>>,
    ),
    StartError,
> {
    let packages = shim.packages.clone();
    let mut plain = None;
    if let Some(addr) = config.coap_tcp_addr {
        let host = TcpPackageHost::start(addr, packages.clone(), None, config.tcp_limits)
            .await
            .map_err(|e| tcp_start_error("coap+tcp", addr, e))?;
        plain = Some(host);
    }
    let Some(addr) = config.coaps_tcp_addr else {
        return Ok((plain, None, None));
    };
    let identity = match (&config.tls_identity, &config.dtls_certificate) {
        (Some(id), _) => id.clone(),
        (None, Some(cert)) => TlsIdentity {
            cert_pem: cert.0.cert_pem.clone(),
            key_pem: cert.0.key_pem.clone(),
        },
        (None, None) => TlsIdentity::self_signed(&[addr.ip()]).map_err(StartError::Tls)?,
    };
    let tls = TlsCredentials {
        identity: identity.clone(),
        psk: Some(psk_lookup(shim.security.clone())),
    };
    let host = TcpPackageHost::start(addr, packages, Some(&tls), config.tcp_limits)
        .await
        .map_err(|e| tcp_start_error("coaps+tcp", addr, e))?;
    Ok((plain, Some(host), Some(identity.cert_pem)))
}
