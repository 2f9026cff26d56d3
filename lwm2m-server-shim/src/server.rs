//! The running shim: wires the registration store, the CoAP socket (registration interface and
//! package host), the event bus, observations and the HTTP API together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use coap_lite::{Packet, ResponseType};
use lwm2m_client::codec::{BlockOpt, ContentFormat, Path};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::coap_endpoint::{CoapEndpoint, CoapTiming, ObservationStream, RequestHandler};
use crate::content;
use crate::dm::{Device, DmResponse};
use crate::events::{Event, EventBus};
use crate::jobs::JobRegistry;
use crate::node_json::node_json;
use crate::object_links::ObjectLinks;
use crate::package_coap::{self, PACKAGE_PATH};
use crate::package_host::{PackageError, PackageHost};
use crate::registration::{self, response, uri_path, RegistrationIds};
use crate::rest_api::RestApi;
use crate::store::{InMemoryStore, Registration, RegistrationStore};

/// How to run the shim.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// CoAP (UDP) address for registrations, device management and the package host.
    pub coap_addr: SocketAddr,
    /// HTTP address of the REST API, event stream and HTTP package host.
    pub http_addr: SocketAddr,
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
}

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            coap_addr: SocketAddr::from(([127, 0, 0, 1], 5683)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            package_dir: std::env::temp_dir().join("lwm2m-shim-packages"),
            block_size: 1024,
            default_timeout: Duration::from_secs(5),
            timing: CoapTiming::default(),
            expiry_check: Duration::from_secs(1),
        }
    }
}

/// Why the shim could not start.
#[derive(Debug)]
pub enum StartError {
    /// A socket could not be bound.
    Bind(std::io::Error),
    /// The package directory is unusable.
    Packages(PackageError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind(e) => write!(f, "cannot bind: {e}"),
            Self::Packages(e) => write!(f, "package directory: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

struct ActiveObservation {
    token: Vec<u8>,
    task: JoinHandle<()>,
}

/// State shared by the CoAP handler, the REST API and background tasks.
pub struct Shim {
    /// Where registrations live.
    pub store: Arc<dyn RegistrationStore>,
    /// Registration and notification events.
    pub events: EventBus,
    /// Packages on offer.
    pub packages: Arc<PackageHost>,
    /// Configuration in force.
    pub config: ShimConfig,
    /// Firmware jobs started through the REST API or a campaign.
    pub jobs: JobRegistry,
    coap: std::sync::OnceLock<CoapEndpoint>,
    ids: RegistrationIds,
    observations: Mutex<HashMap<(String, String), ActiveObservation>>,
}

impl Shim {
    /// The CoAP endpoint (set once the socket is bound).
    pub fn coap(&self) -> Option<&CoapEndpoint> {
        self.coap.get()
    }

    /// Device-management handle for a registered client, with a per-exchange timeout.
    pub fn device(&self, reg: &Registration, timeout: Duration) -> Option<Device> {
        let coap = self.coap()?.clone();
        let mut d = Device::new(
            coap,
            reg.address,
            &ObjectLinks::parse(&reg.object_links).root_path(),
            timeout,
        );
        d.block_size = self.config.block_size;
        Some(d)
    }

    fn publish(&self, event: Event) {
        // Observations belong to a registration: a new registration or its end drops them
        // (the client forgot them too).
        if let Event::Deregistration(r) | Event::Registration(r) = &event {
            self.drop_observations(&r.endpoint);
        }
        self.events.publish(event);
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
        let task = tokio::spawn(async move {
            while let Some(packet) = stream.next().await {
                let whole = match device.complete_notification(&path, accept, packet).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(endpoint = %ep, %path, error = %e, "incomplete notification");
                        continue;
                    }
                };
                let Some(shim) = weak.upgrade() else { return };
                match decode_notification(&whole, &path) {
                    Some(value) => shim.events.publish(Event::Notification {
                        endpoint: ep.clone(),
                        path: path.to_string(),
                        value,
                    }),
                    None => tracing::debug!(endpoint = %ep, %path, "undecodable notification"),
                }
            }
        });
        let key = (endpoint.to_string(), path.to_string());
        let old = self
            .observations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, ActiveObservation { token, task });
        if let Some(old) = old {
            self.forget(old);
        }
    }

    /// Passive cancel of an observation (Leshan's DELETE .../observe): returns whether one existed.
    pub fn cancel_observation(&self, endpoint: &str, path: &Path) -> bool {
        let old = self
            .observations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(endpoint.to_string(), path.to_string()));
        match old {
            Some(o) => {
                self.forget(o);
                true
            }
            None => false,
        }
    }

    fn forget(&self, o: ActiveObservation) {
        if let Some(c) = self.coap() {
            c.forget_observation(&o.token);
        }
        o.task.abort();
    }

    fn drop_observations(&self, endpoint: &str) {
        let gone: Vec<ActiveObservation> = {
            let mut m = self.observations.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<_> = m.keys().filter(|(ep, _)| ep == endpoint).cloned().collect();
            keys.into_iter().filter_map(|k| m.remove(&k)).collect()
        };
        for o in gone {
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
        for (_, o) in m.drain() {
            o.task.abort();
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
        .map(|n| node_json(&n))
}

struct CoapRouter {
    shim: std::sync::Weak<Shim>,
}

impl RequestHandler for CoapRouter {
    fn handle(&self, request: &Packet, peer: SocketAddr) -> Packet {
        let Some(shim) = self.shim.upgrade() else {
            return response(ResponseType::ServiceUnavailable);
        };
        let path = uri_path(request);
        match path.first().map(String::as_str) {
            Some("rd") => {
                let (resp, event) = registration::handle(
                    shim.store.as_ref(),
                    &shim.ids,
                    request,
                    peer,
                    SystemTime::now(),
                );
                if let Some(e) = event {
                    tracing::info!(event = e.name(), endpoint = e.endpoint(), %peer, "registration interface");
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
    /// Bound CoAP address.
    pub coap_addr: SocketAddr,
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
    let packages = Arc::new(PackageHost::new(&config.package_dir).map_err(StartError::Packages)?);
    let shim = Arc::new(Shim {
        store,
        events: EventBus::default(),
        packages,
        config: config.clone(),
        jobs: JobRegistry::default(),
        coap: std::sync::OnceLock::new(),
        ids: RegistrationIds::default(),
        observations: Mutex::new(HashMap::new()),
    });
    let router = Arc::new(CoapRouter {
        shim: Arc::downgrade(&shim),
    });
    let coap = CoapEndpoint::bind(config.coap_addr, config.timing, router)
        .await
        .map_err(StartError::Bind)?;
    let coap_addr = coap.local_addr().map_err(StartError::Bind)?;
    let _ = shim.coap.set(coap.clone());
    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(StartError::Bind)?;
    let http_addr = listener.local_addr().map_err(StartError::Bind)?;
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
    )));
    tasks.push(tokio::spawn(async move {
        if let Err(e) = coap.run().await {
            tracing::error!(error = %e, "CoAP socket failed");
        }
    }));
    tracing::info!(%coap_addr, %http_addr, "shim listening");
    Ok(RunningShim {
        shim,
        coap_addr,
        http_addr,
        tasks,
    })
}
