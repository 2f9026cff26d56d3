//! Firmware jobs: the status of one device's update as it moves through its phases, kept in a
//! registry so the REST API can answer `GET /api/jobs[/{id}]` while campaigns run.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use object5::status::{State, UpdateResult};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use crate::server::events::EventBus;
use crate::server::readings::ReadingStamp;

/// Finished jobs kept for `GET /api/jobs`; older finished ones are dropped first.
pub const MAX_KEPT_JOBS: usize = 10_000;

/// Default for how many jobs started through the REST API run at once
/// ([`JobRegistry::new`]).
pub const DEFAULT_MAX_ACTIVE_JOBS: u32 = 1000;

/// How the package reaches the device (core TS 1.1 Appendix E.6: Package /5/0/0 or Package URI
/// /5/0/1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Write the Package URI (/5/0/1); the device downloads from the package host.
    Pull,
    /// Write the package to /5/0/0 with Block1.
    Push,
}

impl Method {
    /// Lower-case name as in the REST body and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }

    /// Parses `pull` or `push`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pull" => Some(Self::Pull),
            "push" => Some(Self::Push),
            _ => None,
        }
    }
}

/// Where an update stands, from the server's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    /// Waiting for a concurrency slot.
    Queued,
    /// Reading the device's Object 5 and resetting a leftover download.
    Starting,
    /// URI written or push under way; waiting for State 2.
    Downloading,
    /// The device holds the package (State 2).
    Downloaded,
    /// Execute Update sent.
    Updating,
    /// Waiting for the device to come back after its reboot.
    Rebooting,
    /// Re-registered; waiting for the final State / Update Result.
    Verifying,
    /// State 0, Update Result 1.
    Succeeded,
    /// Anything else; `error` says why.
    Failed,
}

impl JobPhase {
    /// Upper-case name used in JSON and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Starting => "STARTING",
            Self::Downloading => "DOWNLOADING",
            Self::Downloaded => "DOWNLOADED",
            Self::Updating => "UPDATING",
            Self::Rebooting => "REBOOTING",
            Self::Verifying => "VERIFYING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for JobPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A State or Update Result value and when it was taken.
pub type Reading<T> = (T, ReadingStamp);

/// When the kept State and Update Result were taken, and since when readings count at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadingStamps {
    state: Option<ReadingStamp>,
    result: Option<ReadingStamp>,
    /// Readings that arrived before this (the device rebooted since) are stale.
    since: Option<Instant>,
}

impl ReadingStamps {
    fn apply<T>(
        kept: &mut Option<ReadingStamp>,
        since: Option<Instant>,
        value: &mut Option<T>,
        r: Reading<T>,
    ) {
        let (v, stamp) = r;
        if since.is_some_and(|t| stamp.received < t)
            || kept.is_some_and(|k| !stamp.is_newer_than(&k))
        {
            return;
        }
        *value = Some(v);
        *kept = Some(stamp);
    }

    /// Applies a read or notification to the job's last known State and Update Result: a
    /// value that could not be read keeps the last known one, and so does a reading older
    /// than the one kept (a notification sent before a poll's answer, processed after it).
    pub fn merge(
        &mut self,
        job: &mut JobStatus,
        state: Option<Reading<State>>,
        result: Option<Reading<UpdateResult>>,
    ) {
        if let Some(r) = state {
            Self::apply(&mut self.state, self.since, &mut job.state, r);
        }
        if let Some(r) = result {
            Self::apply(&mut self.result, self.since, &mut job.result, r);
        }
    }

    /// Forgets the job's State and Update Result as of `now` (the device rebooted: what it
    /// said before no longer holds), so only readings that arrive from now on decide.
    pub fn forget(&mut self, job: &mut JobStatus, now: Instant) {
        job.state = None;
        job.result = None;
        *self = Self {
            since: Some(now),
            ..Self::default()
        };
    }
}

/// One device's update as last observed.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Job id (unique per shim).
    pub id: u64,
    /// Endpoint name of the device.
    pub ep: String,
    /// Package name in the package host.
    pub package: String,
    /// Pull or push.
    pub method: Method,
    /// Current phase.
    pub phase: JobPhase,
    /// Last known State (/5/0/3).
    pub state: Option<State>,
    /// Last known Update Result (/5/0/5).
    pub result: Option<UpdateResult>,
    /// Why the job failed.
    pub error: Option<String>,
    /// Firmware version (/3/0/3) read at the end.
    pub firmware_version: Option<String>,
    /// Package version (/5/0/7) read at the end.
    pub pkg_version: Option<String>,
    /// The job's next request waits for its queue-mode device to wake up (LwM2M core TS 1.1
    /// §6.5: nothing is sent to a sleeping client).
    pub waiting_for_wake_up: bool,
}

impl JobStatus {
    /// A queued job.
    pub fn new(id: u64, ep: &str, package: &str, method: Method) -> Self {
        Self {
            id,
            ep: ep.to_string(),
            package: package.to_string(),
            method,
            phase: JobPhase::Queued,
            state: None,
            result: None,
            error: None,
            firmware_version: None,
            pkg_version: None,
            waiting_for_wake_up: false,
        }
    }
}

#[derive(Default)]
struct Jobs {
    all: BTreeMap<u64, JobStatus>,
    /// Ids of the unfinished jobs of each endpoint, oldest first.
    running: HashMap<String, Vec<u64>>,
}

impl Jobs {
    /// Keeps `running` in step with a job's phase.
    fn index(&mut self, job: &JobStatus) {
        if job.phase.is_final() {
            if let Some(ids) = self.running.get_mut(&job.ep) {
                ids.retain(|id| *id != job.id);
                if ids.is_empty() {
                    self.running.remove(&job.ep);
                }
            }
        } else {
            let ids = self.running.entry(job.ep.clone()).or_default();
            if !ids.contains(&job.id) {
                ids.push(job.id);
            }
        }
    }
}

/// All jobs of one shim. Every recorded change is published as a FIRMWARE event.
pub struct JobRegistry {
    next: AtomicU64,
    jobs: Mutex<Jobs>,
    events: EventBus<JobStatus>,
    /// Permits for REST-started jobs to leave QUEUED.
    slots: Arc<Semaphore>,
}

impl Default for JobRegistry {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ACTIVE_JOBS)
    }
}

impl JobRegistry {
    /// A registry letting `max_active` jobs started with [`Self::active_slot`] run at once;
    /// the rest wait in phase QUEUED. Thousands of devices pulling at the same instant
    /// overflow socket buffers and then spend their time in retransmission back-off (fleet
    /// bench: 10 000 at once took 160 s, 1 000 at a time 32 s), as campaign managers of
    /// device-management servers know.
    pub fn new(max_active: u32) -> Self {
        Self {
            next: AtomicU64::new(0),
            jobs: Mutex::default(),
            events: EventBus::default(),
            slots: Arc::new(Semaphore::new(max_active.max(1) as usize)),
        }
    }

    /// Waits until fewer than `max_active` slot holders run; the slot is freed when the
    /// permit is dropped.
    pub async fn active_slot(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so a permit always comes.
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Every job change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobStatus>> {
        self.events.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new queued job and returns it.
    pub fn create(&self, ep: &str, package: &str, method: Method) -> JobStatus {
        let id = self.next.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let job = JobStatus::new(id, ep, package, method);
        let mut m = self.lock();
        m.all.insert(id, job.clone());
        m.index(&job);
        if m.all.len() > MAX_KEPT_JOBS {
            let excess = m.all.len() - MAX_KEPT_JOBS;
            let old: Vec<u64> = m
                .all
                .iter()
                .filter(|(_, j)| j.phase.is_final())
                .map(|(id, _)| *id)
                .take(excess)
                .collect();
            for id in old {
                m.all.remove(&id);
            }
        }
        job
    }

    /// Like [`Self::create`], unless `ep` has an unfinished job: two updates of one device at
    /// once would fight over its Object 5. Returns the running job as the error.
    pub fn create_exclusive(
        &self,
        ep: &str,
        package: &str,
        method: Method,
    ) -> Result<JobStatus, Box<JobStatus>> {
        {
            let m = self.lock();
            let running = m.running.get(ep).and_then(|ids| ids.first());
            if let Some(job) = running.and_then(|id| m.all.get(id)) {
                return Err(Box::new(job.clone()));
            }
        }
        // Holding no lock here is fine for the REST API: a second request for the same
        // endpoint in the same instant is the only race, and it only costs a refused update.
        Ok(self.create(ep, package, method))
    }

    /// Records a job's new status and publishes it.
    pub fn update(&self, job: &JobStatus) {
        {
            let mut m = self.lock();
            m.all.insert(job.id, job.clone());
            m.index(job);
        }
        self.events.publish(job.clone());
    }

    /// One job.
    pub fn get(&self, id: u64) -> Option<JobStatus> {
        self.lock().all.get(&id).cloned()
    }

    /// Every kept job, oldest first.
    pub fn all(&self) -> Vec<JobStatus> {
        self.lock().all.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_updates_are_kept() {
        let r = JobRegistry::default();
        let a = r.create("a", "p", Method::Pull);
        let mut b = r.create("b", "p", Method::Push);
        assert_ne!(a.id, b.id);
        b.phase = JobPhase::Failed;
        b.result = Some(UpdateResult::IntegrityFailure);
        r.update(&b);
        assert_eq!(r.get(b.id), Some(b.clone()));
        assert_eq!(r.all().len(), 2);
        assert_eq!(
            r.create_exclusive("a", "q", Method::Pull),
            Err(Box::new(a.clone()))
        );
        assert!(r.create_exclusive("b", "q", Method::Pull).is_ok());
        let mut a = a;
        a.phase = JobPhase::Downloading;
        r.update(&a);
        assert!(r.create_exclusive("a", "q", Method::Pull).is_err());
        a.phase = JobPhase::Succeeded;
        r.update(&a);
        let again = r
            .create_exclusive("a", "q", Method::Pull)
            .expect("a's job ended");
        assert_eq!(
            r.create_exclusive("a", "q", Method::Pull),
            Err(Box::new(again))
        );
        assert_eq!(Method::parse("pull"), Some(Method::Pull));
        assert_eq!(Method::parse("PULL"), None);
    }
}
