//! Firmware campaigns: drive one device, or many under a concurrency limit, through a whole
//! Object 5 update (reference sections 1.4 and 1.5): reset a leftover download, write the
//! Package URI (pull) or Block1-push the package, follow State and Update Result by observing
//! /5/0/3 and /5/0/5 AND by polling (notifications are best effort, users' complaint about
//! unreliable state tracking), Execute /5/0/2 once Downloaded, wait for the device to come back
//! after its reboot, and report State 0 / Update Result 1 or the failure. Every change of a job's
//! status is published as a FIRMWARE event and recorded in the shim's job registry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lwm2m_client::codec::{ContentFormat, Node, Path, ResourceValue, Value};
use object5::status::{State, UpdateResult};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::content;
use crate::firmware::jobs::{JobRegistry, JobStatus, Method, Phase, Reading, ReadingStamps};
use crate::packages::coap::PACKAGE_PATH;
use crate::packages::host::PackageError;
use crate::server::events::{EndpointSubscription, ServerEvent};
use crate::server::readings::ReadingStamp;
use crate::server::requests::{Device, DmError, DmResponse};
use crate::server::shim::Shim;

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    /// Package name in the shim's package host.
    pub package: String,
    /// Pull or push.
    pub method: Method,
    /// Package URI to write instead of the shim's own `coap://.../fw/{package}` (pull only).
    pub uri: Option<String>,
}

/// Per-phase time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseTimeouts {
    /// Each CoAP exchange (each block of a push restarts it).
    pub request: Duration,
    /// From writing the URI / starting the push until State 2.
    pub download: Duration,
    /// From Execute until the device is back (re-registered or a final result).
    pub update: Duration,
    /// From re-registration until the final State / Update Result.
    pub verify: Duration,
}

impl Default for PhaseTimeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(5),
            download: Duration::from_secs(300),
            update: Duration::from_secs(120),
            verify: Duration::from_secs(60),
        }
    }
}

/// How campaigns behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignConfig {
    /// Phase time limits.
    pub timeouts: PhaseTimeouts,
    /// How often State and Update Result are read while the device does not notify them (it
    /// refused to observe one of them, or its observations ended).
    pub poll_interval: Duration,
    /// How often they are read while both are observed: the fallback for lost notifications,
    /// after this long without one. Reads cost the shim and the device far more than
    /// notifications, so this is much longer than `poll_interval`.
    pub observed_poll_interval: Duration,
    /// Extra attempts for a request that got no answer, and for a download that ended with
    /// Update Result 4 (connection lost).
    pub retries: u32,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            timeouts: PhaseTimeouts::default(),
            poll_interval: Duration::from_secs(1),
            observed_poll_interval: Duration::from_secs(8),
            retries: 2,
        }
    }
}

/// Why an update did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateError {
    /// The endpoint is not registered.
    NotRegistered,
    /// The package is not in the package host.
    Package(String),
    /// The device is in State 3 (Updating) already.
    Busy,
    /// A pull needs the plain CoAP package host (or an explicit URI).
    NoPackageHost,
    /// A request got no usable answer.
    Device(&'static str, DmError),
    /// The device refused a request (its CoAP code).
    Rejected(&'static str, String),
    /// A phase did not end in time.
    Timeout(Phase),
    /// The device reported this State and Update Result instead of success.
    Failed {
        /// State (/5/0/3).
        state: State,
        /// Update Result (/5/0/5).
        result: UpdateResult,
    },
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegistered => f.write_str("device is not registered"),
            Self::Package(e) => write!(f, "package: {e}"),
            Self::Busy => f.write_str("device is already updating (State 3)"),
            Self::NoPackageHost => {
                f.write_str("no plain CoAP listener to serve the package; give a uri")
            }
            Self::Device(op, e) => write!(f, "{op}: {e}"),
            Self::Rejected(op, code) => write!(f, "{op} refused with {code}"),
            Self::Timeout(p) => write!(f, "timed out in phase {p}"),
            Self::Failed { state, result } => {
                write!(f, "device reports State {state}, Update Result {result}")
            }
        }
    }
}

impl std::error::Error for UpdateError {}

/// `/5/0/{r}` or `/3/0/{r}`.
pub fn resource(object: u16, r: u16) -> Path {
    Path::resource(object, 0, r)
}

/// The Package URI the shim's plain CoAP package host answers for `package`.
pub fn package_uri(coap_addr: SocketAddr, package: &str) -> String {
    package_uri_with("coap", coap_addr, package)
}

/// The Package URI of `package` on the shim's CoAP package host at `addr` with `scheme`
/// (`coap` or `coaps`).
pub fn package_uri_with(scheme: &str, addr: SocketAddr, package: &str) -> String {
    // A wildcard bind is reachable on loopback.
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "{scheme}://{}/{PACKAGE_PATH}/{package}",
        SocketAddr::new(ip, addr.port())
    )
}

/// The Package URI the shim offers a device for `package`: coaps:// on the shim's coaps
/// listener for a device registered over coaps (when there is one), else coap:// on the plain
/// listener.
pub fn shim_package_uri(shim: &Shim, ep: &str, package: &str) -> Option<String> {
    let secure = shim
        .store
        .get_by_endpoint(ep)
        .is_some_and(|r| shim.is_secure(&r));
    let coaps = shim
        .coaps()
        .filter(|_| secure)
        .and_then(|c| c.local_addr().ok());
    if let Some(addr) = coaps {
        return Some(package_uri_with("coaps", addr, package));
    }
    let addr = shim.coap().and_then(|c| c.local_addr().ok())?;
    Some(package_uri(addr, package))
}

/// The single value of a decoded resource read.
pub fn single_value(node: &Node) -> Option<&Value> {
    match node {
        Node::Resource(r) => match &r.value {
            ResourceValue::Single(v) => Some(v),
            ResourceValue::Multiple(_) => None,
        },
        Node::ResourceInstance { value, .. } => Some(value),
        _ => None,
    }
}

/// Decodes a successful single-resource answer.
pub fn decode_single(path: &Path, r: &DmResponse) -> Option<Value> {
    if !r.is_success() {
        return None;
    }
    let cf = r.content_format.unwrap_or(ContentFormat::Text);
    let node = content::decode(cf, path, &r.payload).ok()?;
    single_value(&node).cloned()
}

/// An integer resource value, also when it came as text.
pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Unsigned(u) => i64::try_from(*u).ok(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Object 5 State from a value read or notified; codes Object 5 does not define read as no
/// value.
pub fn state_of(v: i64) -> Option<State> {
    u8::try_from(v).ok().and_then(State::from_code)
}

/// Object 5 Update Result from a value read or notified; undefined codes read as no value.
pub fn result_of(v: i64) -> Option<UpdateResult> {
    u8::try_from(v).ok().and_then(UpdateResult::from_code)
}

/// Reads an integer resource (State, Update Result).
pub async fn read_int(device: &Device, path: &Path) -> Result<Option<i64>, DmError> {
    let r = device.read(path, Some(ContentFormat::Text)).await?;
    Ok(decode_single(path, &r).as_ref().and_then(as_int))
}

/// Reads a string resource (firmware version, package version).
pub async fn read_string(device: &Device, path: &Path) -> Result<Option<String>, DmError> {
    let r = device.read(path, Some(ContentFormat::Text)).await?;
    Ok(match decode_single(path, &r) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    })
}

/// Sends a request again when it got no answer at all (not when the device refused it).
async fn with_retries<F, Fut>(
    retries: u32,
    op: &'static str,
    mut f: F,
) -> Result<DmResponse, UpdateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<DmResponse, DmError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(r) if r.is_success() => return Ok(r),
            Ok(r) => return Err(UpdateError::Rejected(op, r.code_string())),
            Err(DmError::Exchange(e)) if attempt < retries => {
                attempt += 1;
                tracing::debug!(op, attempt, error = %e, "retrying");
            }
            Err(e) => return Err(UpdateError::Device(op, e)),
        }
    }
}

/// Publishes every change of a job to the job registry, the event bus and a caller's hook.
struct Tracker<'a> {
    jobs: &'a JobRegistry,
    status: JobStatus,
    /// When the State and Update Result in `status` were taken.
    stamps: ReadingStamps,
    hook: &'a (dyn Fn(&JobStatus) + Send + Sync),
}

impl Tracker<'_> {
    fn set(&mut self, f: impl FnOnce(&mut JobStatus)) {
        let before = self.status.clone();
        f(&mut self.status);
        if before != self.status {
            self.jobs.update(&self.status);
            (self.hook)(&self.status);
        }
    }

    fn phase(&mut self, p: Phase) {
        self.set(|s| s.phase = p);
    }

    fn observed(&mut self, state: Option<Reading<State>>, result: Option<Reading<UpdateResult>>) {
        let mut stamps = self.stamps;
        self.set(|s| stamps.merge(s, state, result));
        self.stamps = stamps;
    }

    /// Forgets State and Update Result (the device rebooted: what it said before no longer
    /// holds), so only values read or notified from now on decide.
    fn forget(&mut self) {
        let mut stamps = self.stamps;
        self.set(|s| stamps.forget(s, std::time::Instant::now()));
        self.stamps = stamps;
    }
}

/// Whether State and Update Result after an Execute show the device finished without
/// re-registering (e.g. install refused: Downloaded, Update Result 8). Success counts only
/// with State Idle, as Object 5 reports it: Update Result 1 next to State 2 is a new result
/// merged with a State read before the reboot (the State read failed since), so the
/// re-registration must be waited for.
fn finished_without_reboot(state: Option<State>, result: Option<UpdateResult>) -> bool {
    match (state, result) {
        (Some(s), Some(UpdateResult::Success)) => s == State::Idle,
        (Some(s), Some(r)) => s != State::Updating && r != UpdateResult::Initial,
        _ => false,
    }
}

/// The final State and Update Result after an Execute, once both are known and final (not
/// Updating, not the initial result).
fn final_reading(
    state: Option<State>,
    result: Option<UpdateResult>,
) -> Option<(State, UpdateResult)> {
    match (state, result) {
        (Some(s), Some(r)) if s != State::Updating && r != UpdateResult::Initial => Some((s, r)),
        _ => None,
    }
}

/// What woke a follower up.
enum Signal {
    /// A notification of /5/0/3 or /5/0/5 (already applied to the tracker).
    Notified,
    /// The device registered again.
    Registered,
    /// Time to poll.
    Tick,
}

/// Follows one device: the subscription to its events and the current device-management
/// handle.
struct Follower<'a> {
    shim: &'a Arc<Shim>,
    ep: String,
    rx: EndpointSubscription,
    cfg: CampaignConfig,
    device: Device,
}

/// The integer a notified node carries (State, Update Result), whatever content format it
/// came in (text gives a string).
fn node_int(node: &Node) -> Option<i64> {
    single_value(node).and_then(as_int)
}

impl<'a> Follower<'a> {
    fn connect(
        shim: &'a Arc<Shim>,
        ep: &str,
        cfg: CampaignConfig,
        rx: EndpointSubscription,
    ) -> Result<Self, UpdateError> {
        let device = Self::device_for(shim, ep, &cfg)?;
        Ok(Self {
            shim,
            ep: ep.to_string(),
            rx,
            cfg,
            device,
        })
    }

    fn device_for(shim: &Shim, ep: &str, cfg: &CampaignConfig) -> Result<Device, UpdateError> {
        let reg = shim
            .store
            .get_by_endpoint(ep)
            .ok_or(UpdateError::NotRegistered)?;
        shim.device(&reg, cfg.timeouts.request)
            .ok_or(UpdateError::NotRegistered)
    }

    /// Picks up the registration's current address (after a reboot it may have changed).
    fn reconnect(&mut self) -> Result<(), UpdateError> {
        self.device = Self::device_for(self.shim, &self.ep, &self.cfg)?;
        Ok(())
    }

    /// Observes State and Update Result; a device that refuses is still polled.
    async fn observe(&self) {
        for r in [3, 5] {
            let path = resource(5, r);
            match self.device.observe(&path, None).await {
                Ok((_, Some(stream))) => {
                    self.shim
                        .track_observation(&self.ep, path, stream, self.device.clone(), None)
                }
                Ok((resp, None)) => {
                    tracing::debug!(ep = %self.ep, %path, code = %resp.code_string(), "observe refused")
                }
                Err(e) => tracing::debug!(ep = %self.ep, %path, error = %e, "observe failed"),
            }
        }
    }

    /// Reads State and Update Result at the device's current address (a device that rebooted
    /// may be back on another port before its REGISTRATION event is seen).
    async fn poll(&mut self, t: &mut Tracker<'_>) {
        if let Ok(d) = Self::device_for(self.shim, &self.ep, &self.cfg) {
            self.device = d;
        }
        let state = read_int(&self.device, &resource(5, 3)).await.ok().flatten();
        let state = state.and_then(state_of);
        let result = read_int(&self.device, &resource(5, 5)).await.ok().flatten();
        let result = result.and_then(result_of);
        let now = ReadingStamp::polled_now();
        t.observed(state.map(|v| (v, now)), result.map(|v| (v, now)));
    }

    /// Whether both State and Update Result are observed on the current registration.
    fn notified(&self) -> bool {
        [3, 5]
            .into_iter()
            .all(|r| self.shim.is_observing(&self.ep, &resource(5, r)))
    }

    /// Waits for the next notification, re-registration or poll time (sooner while State or
    /// Update Result is not observed).
    async fn next(&mut self, t: &mut Tracker<'_>, until: Instant) -> Signal {
        let interval = if self.notified() {
            self.cfg.observed_poll_interval
        } else {
            self.cfg.poll_interval
        };
        let tick = Instant::now() + interval;
        loop {
            let ev = tokio::select! {
                ev = self.rx.recv() => ev,
                _ = tokio::time::sleep_until(tick.min(until)) => return Signal::Tick,
            };
            match ev {
                // Only this endpoint's events are routed here.
                Ok(ev) => match &*ev {
                    ServerEvent::Notification {
                        path, node, stamp, ..
                    } if *path == resource(5, 3) => {
                        let state = node_int(node).and_then(state_of);
                        t.observed(state.map(|v| (v, *stamp)), None);
                        return Signal::Notified;
                    }
                    ServerEvent::Notification {
                        path, node, stamp, ..
                    } if *path == resource(5, 5) => {
                        let result = node_int(node).and_then(result_of);
                        t.observed(None, result.map(|v| (v, *stamp)));
                        return Signal::Notified;
                    }
                    ServerEvent::Registration(_) => return Signal::Registered,
                    _ => {}
                },
                // Missed events: polling catches up.
                Err(RecvError::Lagged(_)) => return Signal::Tick,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(tick.min(until)).await;
                    return Signal::Tick;
                }
            }
        }
    }

    /// Follows State / Update Result until `done` decides, polling on every tick.
    async fn until<T>(
        &mut self,
        t: &mut Tracker<'_>,
        limit: Duration,
        phase: Phase,
        mut done: impl FnMut(Option<State>, Option<UpdateResult>) -> Option<T>,
    ) -> Result<T, UpdateError> {
        let until = Instant::now() + limit;
        self.poll(t).await;
        loop {
            if let Some(v) = done(t.status.state, t.status.result) {
                return Ok(v);
            }
            if Instant::now() >= until {
                return Err(UpdateError::Timeout(phase));
            }
            match self.next(t, until).await {
                Signal::Tick => self.poll(t).await,
                // Rebooted again (e.g. a self-test failure resets into the old image): the
                // observations went with the old registration, and so did what the device
                // said before.
                Signal::Registered => {
                    let _ = self.reconnect();
                    t.forget();
                    self.observe().await;
                    self.poll(t).await;
                }
                Signal::Notified => {}
            }
        }
    }
}

/// Runs one device's update to its end and returns the final status (also recorded in the
/// registry and published); `hook` sees every change.
pub async fn run_update(
    shim: &Arc<Shim>,
    jobs: &JobRegistry,
    job: JobStatus,
    plan: &UpdatePlan,
    cfg: CampaignConfig,
    hook: &(dyn Fn(&JobStatus) + Send + Sync),
) -> JobStatus {
    let mut t = Tracker {
        jobs,
        status: job,
        stamps: ReadingStamps::default(),
        hook,
    };
    let outcome = drive(shim, &mut t, plan, cfg).await;
    // The job's observations of State and Update Result end with it.
    for r in [3, 5] {
        shim.cancel_observation(&t.status.ep, &resource(5, r));
    }
    match outcome {
        Ok(()) => t.phase(Phase::Succeeded),
        Err(e) => {
            tracing::info!(ep = %t.status.ep, error = %e, "firmware update failed");
            t.set(|s| {
                s.phase = Phase::Failed;
                s.error = Some(e.to_string());
            });
        }
    }
    t.status
}

async fn drive(
    shim: &Arc<Shim>,
    t: &mut Tracker<'_>,
    plan: &UpdatePlan,
    cfg: CampaignConfig,
) -> Result<(), UpdateError> {
    let ep = t.status.ep.clone();
    // Subscribe before the first request so no notification or re-registration slips by.
    let mut f = Follower::connect(shim, &ep, cfg, shim.subscribe_endpoint(&ep))?;
    t.phase(Phase::Starting);
    let package = load_package(shim, plan)?;
    f.observe().await;
    f.poll(t).await;
    if t.status.state == Some(State::Updating) {
        return Err(UpdateError::Busy);
    }
    if t.status.state != Some(State::Idle) || t.status.result != Some(UpdateResult::Initial) {
        // Reset (reference 1.4: empty URI -> Idle, Result 0) so a stale result or a
        // leftover download cannot be mistaken for this update's outcome.
        let d = f.device.clone();
        let path = resource(5, 1);
        with_retries(cfg.retries, "reset (write empty Package URI)", || {
            d.write(&path, true, ContentFormat::Text, b"")
        })
        .await?;
        f.poll(t).await;
    }

    let mut attempt = 0;
    loop {
        t.phase(Phase::Downloading);
        start_download(&f.device, shim, &ep, plan, &package, cfg).await?;
        let outcome = f
            .until(
                t,
                cfg.timeouts.download,
                Phase::Downloading,
                |s, r| match (s, r) {
                    (Some(State::Downloaded), _) => Some(Ok(())),
                    (Some(State::Idle), Some(r)) if r != UpdateResult::Initial => Some(Err(r)),
                    _ => None,
                },
            )
            .await?;
        match outcome {
            Ok(()) => break,
            Err(UpdateResult::ConnectionLost) if attempt < cfg.retries => attempt += 1,
            Err(result) => {
                return Err(UpdateError::Failed {
                    state: State::Idle,
                    result,
                })
            }
        }
    }
    t.phase(Phase::Downloaded);

    t.phase(Phase::Updating);
    let since = SystemTime::now();
    let d = f.device.clone();
    let exec = resource(5, 2);
    match with_retries(0, "Execute Update", || d.execute(&exec, b"")).await {
        Ok(_) => {}
        // The device may reboot before its answer gets through; coming back decides.
        Err(UpdateError::Device(_, DmError::Exchange(e))) => {
            tracing::debug!(%ep, error = %e, "no answer to Execute; waiting for the device");
        }
        // 4.05 can be the answer to a retransmitted Execute from a device that already ran
        // the first one and rebooted (its new session has no record of the message). A device
        // still in Downloaded refused for real.
        Err(UpdateError::Rejected(op, code)) if code.starts_with("4.05") => {
            f.poll(t).await;
            if t.status.state == Some(State::Downloaded) {
                return Err(UpdateError::Rejected(op, code));
            }
            tracing::debug!(%ep, %code, "Execute refused after it ran; waiting for the device");
        }
        Err(e) => return Err(e),
    }
    t.phase(Phase::Rebooting);
    let until = Instant::now() + cfg.timeouts.update;
    let rebooted = loop {
        // Checked after every poll too: a poll goes to the address in the store, which is the
        // rebooted device's once it registered, even before its REGISTRATION event is seen.
        let re_registered = shim
            .store
            .get_by_endpoint(&ep)
            .is_some_and(|r| r.registration_date > since);
        if re_registered {
            break true;
        }
        if finished_without_reboot(t.status.state, t.status.result) {
            break false;
        }
        if Instant::now() >= until {
            return Err(UpdateError::Timeout(Phase::Rebooting));
        }
        match f.next(t, until).await {
            Signal::Registered => break true,
            Signal::Notified => {}
            Signal::Tick => f.poll(t).await,
        }
    };
    t.phase(Phase::Verifying);
    if rebooted {
        f.reconnect()?;
        // State and Update Result from before the reboot (and events queued before the new
        // registration) must not mix with the new ones: e.g. State 2 read before the reboot
        // and Update Result 1 after it would read as a failure. Only what comes from now on
        // counts.
        f.rx.clear();
        t.forget();
        f.observe().await;
    }
    let (state, result) = f
        .until(t, cfg.timeouts.verify, Phase::Verifying, final_reading)
        .await?;
    let fw = read_string(&f.device, &resource(3, 3)).await.ok().flatten();
    let pkg = read_string(&f.device, &resource(5, 7)).await.ok().flatten();
    t.set(|s| {
        s.firmware_version = fw;
        s.pkg_version = pkg;
    });
    if state == State::Idle && result == UpdateResult::Success {
        Ok(())
    } else {
        Err(UpdateError::Failed { state, result })
    }
}

/// The package bytes for a push (checked to exist for a pull).
fn load_package(shim: &Shim, plan: &UpdatePlan) -> Result<Vec<u8>, UpdateError> {
    let err = |e: PackageError| UpdateError::Package(format!("{}: {e}", plan.package));
    if plan.method == Method::Pull && plan.uri.is_some() {
        return Ok(Vec::new());
    }
    let info = shim.packages.info(&plan.package).map_err(err)?;
    match plan.method {
        Method::Pull => Ok(Vec::new()),
        Method::Push => {
            let len = usize::try_from(info.size)
                .map_err(|_| UpdateError::Package("package too large to push".into()))?;
            shim.packages.read_range(&plan.package, 0, len).map_err(err)
        }
    }
}

async fn start_download(
    device: &Device,
    shim: &Shim,
    ep: &str,
    plan: &UpdatePlan,
    package: &[u8],
    cfg: CampaignConfig,
) -> Result<(), UpdateError> {
    match plan.method {
        Method::Pull => {
            let uri = match &plan.uri {
                Some(u) => u.clone(),
                None => {
                    shim_package_uri(shim, ep, &plan.package).ok_or(UpdateError::NoPackageHost)?
                }
            };
            write_package_uri(device, &uri, cfg.retries).await?;
        }
        Method::Push => {
            let path = resource(5, 0);
            with_retries(cfg.retries, "push Package", || {
                device.write(&path, true, ContentFormat::Opaque, package)
            })
            .await?;
        }
    }
    Ok(())
}

/// Writes the Package URI, sending it again when the exchange got no answer, unless State
/// shows the unanswered write arrived (the device is Downloading or Downloaded): a second
/// write would then be refused (4.00) although the download is under way.
async fn write_package_uri(device: &Device, uri: &str, retries: u32) -> Result<(), UpdateError> {
    const OP: &str = "write Package URI";
    let path = resource(5, 1);
    let mut timed_out = 0;
    loop {
        let e = match device
            .write(&path, true, ContentFormat::Text, uri.as_bytes())
            .await
        {
            Ok(r) if r.is_success() => return Ok(()),
            Ok(r) => UpdateError::Rejected(OP, r.code_string()),
            Err(e) => UpdateError::Device(OP, e),
        };
        let unanswered = matches!(e, UpdateError::Device(_, DmError::Exchange(_)));
        // After a write that got no answer, a refusal may be the device saying it is busy
        // with the first one.
        if unanswered || timed_out > 0 {
            let state = read_int(device, &resource(5, 3)).await.ok().flatten();
            if write_arrived(state.and_then(state_of)) {
                tracing::debug!(?state, "unanswered Package URI write arrived");
                return Ok(());
            }
        }
        if !unanswered || timed_out >= retries {
            return Err(e);
        }
        timed_out += 1;
        tracing::debug!(op = OP, attempt = timed_out, error = %e, "retrying");
    }
}

/// Whether State shows that a Package URI write (after a reset to Idle) reached the device.
fn write_arrived(state: Option<State>) -> bool {
    matches!(state, Some(State::Downloading | State::Downloaded))
}

/// Runs `job` of `jobs` in the background (create it with [`JobRegistry::create`] or
/// `create_exclusive`) once one of the registry's active slots is free; its progress goes to
/// the registry and its events.
pub fn spawn_job(
    shim: &Arc<Shim>,
    jobs: &Arc<JobRegistry>,
    job: JobStatus,
    plan: UpdatePlan,
    cfg: CampaignConfig,
) {
    let (shim, jobs) = (shim.clone(), jobs.clone());
    tokio::spawn(async move {
        // Stays QUEUED until a slot is free.
        let _permit = jobs.active_slot().await;
        run_update(&shim, &jobs, job, &plan, cfg, &|_| {}).await;
    });
}

/// Updates every endpoint in `endpoints`, at most `concurrency` at a time; returns the final
/// status of each, in the order given. `hook` sees every change of every job.
pub async fn run_campaign(
    shim: &Arc<Shim>,
    jobs: &Arc<JobRegistry>,
    endpoints: &[String],
    plan: &UpdatePlan,
    cfg: CampaignConfig,
    concurrency: usize,
    hook: Arc<dyn Fn(&JobStatus) + Send + Sync>,
) -> Vec<JobStatus> {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        let job = jobs.create(ep, &plan.package, plan.method);
        hook(&job);
        let (shim, jobs, plan, slots, hook) = (
            shim.clone(),
            jobs.clone(),
            plan.clone(),
            slots.clone(),
            hook.clone(),
        );
        let fallback = job.clone();
        let task = tokio::spawn(async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = slots.acquire_owned().await.ok();
            run_update(&shim, &jobs, job, &plan, cfg, hook.as_ref()).await
        });
        tasks.push((task, fallback));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (task, mut fallback) in tasks {
        out.push(match task.await {
            Ok(s) => s,
            Err(e) => {
                fallback.phase = Phase::Failed;
                fallback.error = Some(format!("update task ended: {e}"));
                fallback
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_uri_replaces_wildcards_with_loopback() {
        assert_eq!(
            package_uri("0.0.0.0:5683".parse().unwrap(), "a.suit"),
            "coap://127.0.0.1:5683/fw/a.suit"
        );
        assert_eq!(
            package_uri("[::]:1".parse().unwrap(), "b"),
            "coap://[::1]:1/fw/b"
        );
        assert_eq!(
            package_uri("127.0.0.2:9".parse().unwrap(), "c"),
            "coap://127.0.0.2:9/fw/c"
        );
    }

    #[test]
    fn coaps_package_uri() {
        assert_eq!(
            package_uri_with("coaps", "0.0.0.0:5684".parse().unwrap(), "a.suit"),
            "coaps://127.0.0.1:5684/fw/a.suit"
        );
    }

    /// A poll's reading of `v` now.
    fn polled<T>(v: T) -> Option<Reading<T>> {
        Some((v, ReadingStamp::polled_now()))
    }

    #[test]
    fn the_verdict_after_a_reboot_uses_only_values_from_after_it() {
        let mut s = JobStatus::new(1, "ep", "p", Method::Pull);
        let mut stamps = ReadingStamps::default();
        // Before the Execute: Downloaded, initial result.
        stamps.merge(
            &mut s,
            polled(State::Downloaded),
            polled(UpdateResult::Initial),
        );
        // Seen before the REGISTRATION event: State 2 is stale, Update Result 1 new. Not a
        // finish without a reboot (which gave the verdict (2, 1) before).
        stamps.merge(&mut s, None, polled(UpdateResult::Success));
        assert!(!finished_without_reboot(s.state, s.result));
        // The reboot: the old values are forgotten (Tracker::forget).
        stamps.forget(&mut s, std::time::Instant::now());
        assert_eq!((s.state, s.result), (None, None));
        // A poll whose State read timed out and whose Update Result read got the new value
        // must not decide (without the forget it read State 2, Update Result 1: a failure).
        stamps.merge(&mut s, None, polled(UpdateResult::Success));
        assert_eq!(final_reading(s.state, s.result), None);
        stamps.merge(&mut s, polled(State::Idle), None);
        assert_eq!(
            final_reading(s.state, s.result),
            Some((State::Idle, UpdateResult::Success))
        );
        // Still updating, or no result yet: not final.
        assert_eq!(
            final_reading(Some(State::Updating), Some(UpdateResult::Success)),
            None
        );
        assert_eq!(
            final_reading(Some(State::Idle), Some(UpdateResult::Initial)),
            None
        );
        assert_eq!(
            final_reading(Some(State::Downloaded), Some(UpdateResult::UpdateFailed)),
            Some((State::Downloaded, UpdateResult::UpdateFailed))
        );
        // Install refused: no reboot comes.
        assert!(finished_without_reboot(
            Some(State::Downloaded),
            Some(UpdateResult::UpdateFailed)
        ));
        assert!(!finished_without_reboot(
            Some(State::Updating),
            Some(UpdateResult::UpdateFailed)
        ));
        assert!(!finished_without_reboot(
            Some(State::Downloaded),
            Some(UpdateResult::Initial)
        ));
        // A device that installs without a reboot.
        assert!(finished_without_reboot(
            Some(State::Idle),
            Some(UpdateResult::Success)
        ));
    }

    #[test]
    fn a_stale_notification_replayed_after_a_newer_poll_changes_nothing() {
        use crate::server::readings::ObserveSequence;
        let t0 = std::time::Instant::now();
        let on = |observation: u64, ms: u64, seq: Option<u32>| ReadingStamp {
            received: t0 + Duration::from_millis(ms),
            observe: seq.map(|number| ObserveSequence {
                observation,
                number,
            }),
        };
        let at = |ms, seq| on(7, ms, seq);
        let mut s = JobStatus::new(1, "ep", "p", Method::Pull);
        let mut stamps = ReadingStamps::default();
        // Notification State 1 arrives (t = 10 ms) while a poll is under way.
        let stale = Some((State::Downloading, at(10, Some(3))));
        // The poll's answer, State 2, arrives after it (t = 20 ms) and is applied first:
        // the job was busy polling when the notification came in.
        stamps.merge(&mut s, Some((State::Downloaded, at(20, None))), None);
        // Then the queued notification is processed: it is older and changes nothing.
        stamps.merge(&mut s, stale, None);
        assert_eq!(s.state, Some(State::Downloaded));
        // A newer notification of the same observation applies...
        stamps.merge(&mut s, Some((State::Updating, at(30, Some(4)))), None);
        assert_eq!(s.state, Some(State::Updating));
        // ...and one that left the device before it (Observe 3 after 4), reordered on the
        // way, does not, although it arrived later.
        stamps.merge(&mut s, Some((State::Downloaded, at(40, Some(3)))), None);
        assert_eq!(s.state, Some(State::Updating));
        // A new observation's numbers do not compare with the old one's: arrival decides.
        stamps.merge(
            &mut s,
            Some((State::Updating, on(8, 50, Some((1 << 24) - 2)))),
            None,
        );
        // Observe numbers wrap (RFC 7641 3.4): 1 after 2^24 - 2 is newer.
        stamps.merge(&mut s, Some((State::Idle, on(8, 60, Some(1)))), None);
        assert_eq!(s.state, Some(State::Idle));
        // After a reboot only readings that arrive from then on count.
        stamps.forget(&mut s, t0 + Duration::from_millis(100));
        stamps.merge(&mut s, Some((State::Downloaded, at(90, None))), None);
        assert_eq!(s.state, None, "arrived before the reboot was seen");
        stamps.merge(
            &mut s,
            None,
            Some((UpdateResult::Success, at(110, Some(1)))),
        );
        assert_eq!(s.result, Some(UpdateResult::Success));
    }

    #[test]
    fn an_unanswered_uri_write_arrived_when_the_download_started() {
        assert!(write_arrived(Some(State::Downloading)));
        assert!(write_arrived(Some(State::Downloaded)));
        assert!(!write_arrived(Some(State::Idle)));
        assert!(!write_arrived(None));
    }

    #[test]
    fn notification_values_as_text_and_as_integers() {
        let node = |v: Value| {
            Node::Resource(lwm2m_client::codec::Resource {
                id: 3,
                value: ResourceValue::Single(v),
            })
        };
        assert_eq!(node_int(&node(Value::String("2".into()))), Some(2));
        assert_eq!(node_int(&node(Value::Integer(8))), Some(8));
        assert_eq!(node_int(&node(Value::String("x".into()))), None);
        assert_eq!(
            result_of(8).map(UpdateResult::meaning),
            Some("firmware update failed")
        );
        assert_eq!(state_of(3), Some(State::Updating));
        assert_eq!(
            (state_of(4), result_of(12), result_of(-1)),
            (None, None, None)
        );
    }
}
