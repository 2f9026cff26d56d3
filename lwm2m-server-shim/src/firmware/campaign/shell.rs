//! The async shell around [`UpdateMachine`]: it carries each request to the device (or to
//! the registration store and the event subscription) and the answer back, with the time.
//! It decides nothing.
//!
//! Queue mode (LwM2M core TS 1.1 §6.5): a server must not send anything to a queue-mode
//! client while it sleeps. A request for a sleeping device is carried once it wakes up (an
//! Update, a Register or any other message: the AWAKE event), as the REST API's delayed calls
//! are; a fallback poll of a sleeping device reads nothing instead, so the phase's time limit
//! still holds while the device sleeps through it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use lwm2m_client::codec::{ContentFormat, Node};
use tokio::sync::broadcast::error::RecvError;

use super::machine::{Answer, Input, Request, UpdateMachine};
use super::{
    as_int, read_int, read_string, resource, result_of, shim_package_uri, single_value, state_of,
    CampaignConfig, UpdateError, UpdatePlan,
};
use crate::firmware::jobs::{JobRegistry, JobStatus, Method};
use crate::packages::host::PackageHostError;
use crate::server::events::{EndpointSubscription, ServerEvent};
use crate::server::readings::ReadingStamp;
use crate::server::requests::{DeviceHandle, DmError, DmResponse};
use crate::server::shim::Shim;

/// What the download sends: the Package URI to write, or the package to push.
enum Payload {
    Uri(String),
    Package(Vec<u8>),
}

/// The Package URI (pull) or the package bytes (push) of `plan` for `ep`.
fn prepare(shim: &Shim, ep: &str, plan: &UpdatePlan) -> Result<Payload, UpdateError> {
    let err = |e: PackageHostError| UpdateError::Package(format!("{}: {e}", plan.package));
    if let (Method::Pull, Some(uri)) = (plan.method, &plan.uri) {
        return Ok(Payload::Uri(uri.clone()));
    }
    let info = shim.packages.info(&plan.package).map_err(err)?;
    match plan.method {
        Method::Pull => shim_package_uri(shim, ep, &plan.package)
            .map(Payload::Uri)
            .ok_or(UpdateError::NoPackageHost),
        Method::Push => {
            let len = usize::try_from(info.size)
                .map_err(|_| UpdateError::Package("package too large to push".into()))?;
            let bytes = shim
                .packages
                .read_range(&plan.package, 0, len)
                .map_err(err)?;
            Ok(Payload::Package(bytes))
        }
    }
}

fn answer(r: Result<DmResponse, DmError>) -> Answer {
    match r {
        Ok(r) if r.is_success() => Answer::Success,
        Ok(r) => Answer::Refused(r.code_string()),
        Err(e) => Answer::Error(e),
    }
}

/// The integer a notified node carries (State, Update Result), whatever content format it
/// came in (text gives a string).
pub(super) fn node_int(node: &Node) -> Option<i64> {
    single_value(node).and_then(as_int)
}

/// Whether `request` must reach the device, so waits while a queue-mode device sleeps (a
/// poll of a sleeping device reads nothing instead, see `Follower::poll`).
fn reaches_device(request: &Request) -> bool {
    matches!(
        request,
        Request::Observe
            | Request::Reset
            | Request::StartDownload
            | Request::ReadState
            | Request::Execute
            | Request::ReadVersions
    )
}

/// Events kept while a request waits for its device to wake up, for the next wait. A sleeping
/// device sends nothing, so few arrive; beyond this many the oldest go, as when the
/// subscription lags (polling catches up).
const MAX_HELD_EVENTS: usize = 64;

/// Follows one device: the subscription to its events, the current device-management handle
/// and the registration it belongs to.
struct Follower<'a> {
    shim: &'a Arc<Shim>,
    ep: String,
    rx: EndpointSubscription,
    /// Events that arrived while a request waited for the device to wake up, oldest first.
    held: VecDeque<Arc<ServerEvent>>,
    cfg: CampaignConfig,
    device: DeviceHandle,
    /// When the followed registration was made; a newer one means the device came back.
    registered: SystemTime,
}

impl<'a> Follower<'a> {
    fn connect(
        shim: &'a Arc<Shim>,
        ep: &str,
        cfg: CampaignConfig,
        rx: EndpointSubscription,
    ) -> Result<Self, UpdateError> {
        let (device, registered) = Self::device_for(shim, ep, &cfg)?;
        Ok(Self {
            shim,
            ep: ep.to_string(),
            rx,
            held: VecDeque::new(),
            cfg,
            device,
            registered,
        })
    }

    fn device_for(
        shim: &Shim,
        ep: &str,
        cfg: &CampaignConfig,
    ) -> Result<(DeviceHandle, SystemTime), UpdateError> {
        let reg = shim
            .store
            .get_by_endpoint(ep)
            .ok_or(UpdateError::NotRegistered)?;
        let device = shim
            .device(&reg, cfg.timeouts.request)
            .ok_or(UpdateError::NotRegistered)?;
        Ok((device, reg.registration_date))
    }

    /// Follows the current registration (after a reboot the address may have changed).
    fn reconnect(&mut self) -> Result<(), UpdateError> {
        (self.device, self.registered) = Self::device_for(self.shim, &self.ep, &self.cfg)?;
        Ok(())
    }

    /// Whether the device is a queue-mode client that sleeps now.
    fn sleeping(&self) -> bool {
        self.shim.presence.is_sleeping(&self.ep)
    }

    /// Returns once the device may be sent a request: at once unless it sleeps, else when it
    /// wakes up, or when its registration is gone (the request then fails as for any
    /// unreachable device). Other events meanwhile are kept for [`Self::wait`].
    async fn until_awake(&mut self) {
        if !self.sleeping() {
            return;
        }
        tracing::info!(ep = %self.ep, "firmware job waits for the queue-mode device to wake up");
        while self.sleeping() && self.shim.store.get_by_endpoint(&self.ep).is_some() {
            // AWAKE comes as an event; the store is looked at again every poll interval.
            let ev = tokio::select! {
                ev = self.rx.recv() => ev,
                () = tokio::time::sleep(self.cfg.poll_interval) => continue,
            };
            match ev {
                Ok(ev) if matches!(*ev, ServerEvent::Awake(_)) => {}
                Ok(ev) => {
                    if self.held.len() == MAX_HELD_EVENTS {
                        self.held.pop_front();
                    }
                    self.held.push_back(ev);
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// The next event: a kept one first, then the subscription's.
    async fn next_event(&mut self) -> Result<Arc<ServerEvent>, RecvError> {
        match self.held.pop_front() {
            Some(ev) => Ok(ev),
            None => self.rx.recv().await,
        }
    }

    /// Observes State and Update Result; a device that refuses is still polled. Each waits
    /// for a sleeping device (it may fall asleep between the two).
    async fn observe(&mut self) {
        for r in [3, 5] {
            let path = resource(5, r);
            self.until_awake().await;
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

    /// Reads State and Update Result at the address in the store (a device that rebooted
    /// may be back on another port before its REGISTRATION event is seen); reads nothing
    /// from a device that sleeps.
    async fn poll(&mut self) -> Input {
        let mut re_registered = false;
        if let Ok((d, registered)) = Self::device_for(self.shim, &self.ep, &self.cfg) {
            self.device = d;
            re_registered = registered > self.registered;
        }
        let (mut state, mut result) = (None, None);
        if !self.sleeping() {
            state = read_int(&self.device, &resource(5, 3)).await.ok().flatten();
            result = read_int(&self.device, &resource(5, 5)).await.ok().flatten();
        }
        Input::Polled {
            state: state.and_then(state_of),
            result: result.and_then(result_of),
            at: ReadingStamp::polled_now().received,
            re_registered,
        }
    }

    /// Whether both State and Update Result are observed on the current registration.
    fn observing(&self) -> bool {
        [3, 5]
            .into_iter()
            .all(|r| self.shim.is_observing(&self.ep, &resource(5, r)))
    }

    /// Waits for a notification of State or Update Result or a re-registration, until
    /// `until` at the latest.
    async fn wait(&mut self, until: Instant) -> Input {
        let until = tokio::time::Instant::from_std(until);
        loop {
            let ev = tokio::select! {
                ev = self.next_event() => ev,
                _ = tokio::time::sleep_until(until) => return Input::Tick,
            };
            match ev {
                // Only this endpoint's events are routed here.
                Ok(ev) => match &*ev {
                    ServerEvent::Notification {
                        path, node, stamp, ..
                    } if *path == resource(5, 3) => {
                        let state = node_int(node).and_then(state_of);
                        return Input::Notified {
                            state: state.map(|v| (v, *stamp)),
                            result: None,
                        };
                    }
                    ServerEvent::Notification {
                        path, node, stamp, ..
                    } if *path == resource(5, 5) => {
                        let result = node_int(node).and_then(result_of);
                        return Input::Notified {
                            state: None,
                            result: result.map(|v| (v, *stamp)),
                        };
                    }
                    ServerEvent::Registration(_) => return Input::Registered,
                    _ => {}
                },
                // Missed events: polling catches up.
                Err(RecvError::Lagged(_)) => return Input::Tick,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(until).await;
                    return Input::Tick;
                }
            }
        }
    }

    /// Carries out one request and returns its answer. The package was prepared before the
    /// machine ran, so [`Request::Prepare`] is answered at once; [`Request::Done`] is never
    /// carried ([`run_update`] stops there).
    async fn carry(&mut self, request: Request, payload: &Payload) -> Input {
        if reaches_device(&request) {
            self.until_awake().await;
        }
        match request {
            Request::Prepare => Input::Prepared(Ok(())),
            Request::Done(_) => Input::Tick,
            Request::Observe => {
                self.observe().await;
                Input::Observed
            }
            Request::Poll => self.poll().await,
            Request::Reset => Input::Answered(answer(
                self.device
                    .write(&resource(5, 1), true, ContentFormat::Text, b"")
                    .await,
            )),
            Request::StartDownload => Input::Answered(answer(match payload {
                Payload::Uri(uri) => {
                    self.device
                        .write(&resource(5, 1), true, ContentFormat::Text, uri.as_bytes())
                        .await
                }
                Payload::Package(bytes) => {
                    self.device
                        .write(&resource(5, 0), true, ContentFormat::Opaque, bytes)
                        .await
                }
            })),
            Request::ReadState => {
                let state = read_int(&self.device, &resource(5, 3)).await;
                Input::StateRead(state.ok().flatten().and_then(state_of))
            }
            Request::Execute => {
                Input::Answered(answer(self.device.execute(&resource(5, 2), b"").await))
            }
            Request::Reconnect { clear_events } => {
                let r = self.reconnect();
                if clear_events {
                    self.rx.clear();
                    self.held.clear();
                }
                Input::Reconnected(r)
            }
            Request::Wait { until } => self.wait(until).await,
            Request::ReadVersions => Input::Versions {
                firmware: read_string(&self.device, &resource(3, 3))
                    .await
                    .ok()
                    .flatten(),
                package: read_string(&self.device, &resource(5, 7))
                    .await
                    .ok()
                    .flatten(),
            },
        }
    }
}

/// Publishes every status the job went through: to the registry (and its FIRMWARE events)
/// and to the caller's hook.
fn publish(
    machine: &mut UpdateMachine,
    jobs: &JobRegistry,
    hook: &(dyn Fn(&JobStatus) + Send + Sync),
) {
    for s in machine.take_changes() {
        jobs.update(&s);
        hook(&s);
    }
}

/// Feeds the machine until it is done; publishes every status but the last one, which
/// [`run_update`] publishes once the job's observations are cancelled.
async fn drive(
    shim: &Arc<Shim>,
    jobs: &JobRegistry,
    hook: &(dyn Fn(&JobStatus) + Send + Sync),
    machine: &mut UpdateMachine,
    plan: &UpdatePlan,
    cfg: CampaignConfig,
) -> Result<(), UpdateError> {
    let ep = machine.status().ep.clone();
    // Subscribe before the first request so no notification or re-registration slips by.
    let mut f = match Follower::connect(shim, &ep, cfg, shim.subscribe_endpoint(&ep)) {
        Ok(f) => f,
        Err(e) => {
            machine.fail(e.clone());
            return Err(e);
        }
    };
    // The first step asks for the package: the job is STARTING while it is read.
    let first = machine.step(Instant::now(), false, Input::Begin);
    debug_assert_eq!(first, Request::Prepare);
    publish(machine, jobs, hook);
    let payload = match prepare(shim, &ep, plan) {
        Ok(p) => p,
        Err(e) => {
            machine.step(Instant::now(), false, Input::Prepared(Err(e.clone())));
            return Err(e);
        }
    };
    let mut input = Input::Prepared(Ok(()));
    loop {
        match machine.step(Instant::now(), f.observing(), input) {
            Request::Done(outcome) => return outcome,
            request => {
                let waits = reaches_device(&request) && f.sleeping();
                machine.waiting_for_wake_up(waits);
                publish(machine, jobs, hook);
                input = f.carry(request, &payload).await;
                machine.waiting_for_wake_up(false);
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
    let ep = job.ep.clone();
    let mut machine = UpdateMachine::new(job, plan.method, cfg);
    let outcome = drive(shim, jobs, hook, &mut machine, plan, cfg).await;
    // The job's observations of State and Update Result end with it.
    for r in [3, 5] {
        shim.cancel_observation(&ep, &resource(5, r));
    }
    if let Err(e) = outcome {
        tracing::info!(%ep, error = %e, "firmware update failed");
    }
    publish(&mut machine, jobs, hook);
    machine.status().clone()
}
