//! Firmware campaigns: drive one device, or many under a concurrency limit, through a whole
//! Object 5 update (LwM2M core TS 1.1, Appendix E.6): reset a leftover download, write the
//! Package URI (pull) or Block1-push the package, follow State and Update Result by observing
//! /5/0/3 and /5/0/5 AND by polling (notifications are best effort: non-confirmable ones may
//! be lost, RFC 7641 section 4.5), Execute /5/0/2 once Downloaded, wait for the device to come back
//! after its reboot, and report State 0 / Update Result 1 or the failure. Every change of a job's
//! status is published as a FIRMWARE event and recorded in the shim's job registry.
//!
//! The decisions live in [`machine::UpdateMachine`], a pure step function from (stage, answer,
//! reading or tick at time t) to the next request, unit-tested with fake time; the async shell
//! behind [`run_update`] only carries requests to the device and events and time back.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lwm2m_client::codec::{ContentFormat, Node, Path, ResourceValue, Value};
use object5::status::{State, UpdateResult};
use tokio::sync::Semaphore;

use crate::content;
use crate::firmware::jobs::{JobPhase, JobRegistry, JobStatus, Method};
use crate::packages::coap::PACKAGE_PATH;
use crate::server::requests::{DeviceHandle, DmError, DmResponse};
use crate::server::shim::Shim;

pub mod machine;
mod shell;

pub use shell::run_update;

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
    Timeout(JobPhase),
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
pub async fn read_int(device: &DeviceHandle, path: &Path) -> Result<Option<i64>, DmError> {
    let r = device.read(path, Some(ContentFormat::Text)).await?;
    Ok(decode_single(path, &r).as_ref().and_then(as_int))
}

/// Reads a string resource (firmware version, package version).
pub async fn read_string(device: &DeviceHandle, path: &Path) -> Result<Option<String>, DmError> {
    let r = device.read(path, Some(ContentFormat::Text)).await?;
    Ok(match decode_single(path, &r) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    })
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
                fallback.phase = JobPhase::Failed;
                fallback.error = Some(format!("update task ended: {e}"));
                fallback
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::machine::{final_reading, finished_without_reboot, write_arrived};
    use super::shell::node_int;
    use super::*;
    use crate::firmware::jobs::{Reading, ReadingStamps};
    use crate::server::readings::ReadingStamp;

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
