//! The same fleet work against Eclipse Leshan's demo server and against the shim, in one run
//! (issue 14): N simulated devices register with the server under test; then, through that
//! server's REST API only, each device gets an Observe of State (/5/0/3), a Write of Package URI
//! (/5/0/1), and once a NOTIFICATION says State 2 (Downloaded), an Execute of Update (/5/0/2).
//! A device counts as updated when it registers again after the Execute (it verified the
//! package, installed it and rebooted). The REST calls and event-stream records are the ones a
//! Leshan user's script makes and reads, and both servers get exactly the same calls.
//!
//! The package comes from a separate package host (the shim binary in child mode, serving only
//! `coap://.../fw/NAME`) in both runs, so neither server under test carries downloads. Both
//! servers run as their own processes; the figures are their wall times, CPU seconds and peak
//! resident memory (VmHWM of `/proc/PID/status`). Leshan's JVM runs with its default heap
//! settings (a quarter of the machine's memory as the maximum heap).
//!
//! Events lost by a slow event-stream reader are caught up by polling: a device waiting for
//! State 2 longer than [`STALL`] gets a Read of /5/0/3, one waiting for its re-registration a
//! `GET /api/clients/{ep}`.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lwm2m_client::sim::device::DeviceOptions;
use serde_json::{json, Value};
use tests::leshan::{node_int, LeshanServer};

use super::{cpu_s, list, peak_rss_kib, read_events, start_devices, ShimProcess};

/// REST calls in flight at once (threads of HTTP clients), as a script with a thread pool.
const CALLERS: usize = 16;

/// How long a device may wait for an event before it is polled.
const STALL: Duration = Duration::from_secs(15);

/// Per-call device timeout the REST calls ask for (seconds).
const CALL_TIMEOUT_S: u32 = 30;

/// A server under test.
pub(crate) enum Server {
    /// The shim (`app::start` in a child process).
    Shim(ShimProcess),
    /// Leshan's demo server (a JVM).
    Leshan(LeshanServer),
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Self::Shim(_) => "shim",
            Self::Leshan(_) => "Leshan 2.0.0-M4",
        }
    }

    fn coap(&self) -> String {
        match self {
            Self::Shim(s) => s.coap.clone(),
            Self::Leshan(l) => l.coap.to_string(),
        }
    }

    fn http(&self) -> String {
        match self {
            Self::Shim(s) => s.http.clone(),
            Self::Leshan(l) => l.rest.base.clone(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Self::Shim(s) => s.child.id(),
            Self::Leshan(l) => l.pid(),
        }
    }
}

/// What one server did with the fleet.
pub(crate) struct Outcome {
    pub(crate) server: &'static str,
    pub(crate) registered: usize,
    pub(crate) reg_time: Duration,
    pub(crate) updated: usize,
    pub(crate) failed: usize,
    pub(crate) update_time: Duration,
    pub(crate) peak_kib: Option<u64>,
    pub(crate) cpu_s: Option<f64>,
    pub(crate) calls: usize,
    pub(crate) polls: usize,
    pub(crate) first_error: Option<String>,
    /// When (after the registrations) the last device finished its update.
    pub(crate) last_done: Duration,
    /// Devices that neither finished nor failed, by the step they were stuck in.
    pub(crate) stuck: Vec<(String, usize)>,
}

impl Outcome {
    pub(crate) fn total(&self) -> Duration {
        self.reg_time + self.update_time
    }

    /// Updates per second until the last one finished (a run that waited in vain for a few
    /// stuck devices is not charged for the wait).
    pub(crate) fn updates_per_s(&self) -> f64 {
        self.updated as f64 / (self.reg_time + self.last_done).as_secs_f64().max(1e-9)
    }
}

/// How long the update phase goes on without any device finishing or failing before the run
/// stops and reports the devices left (`FLEET_STALL_S`).
fn stall_limit() -> Duration {
    Duration::from_secs(super::env_or("FLEET_STALL_S", 120))
}

/// What the event stream and the REST calls told.
enum Seen {
    Registered {
        ep: String,
        id: String,
    },
    State {
        ep: String,
        state: i64,
    },
    Answered {
        ep: String,
        call: Call,
        result: Result<Value, String>,
    },
}

/// The REST calls of the fleet work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Observe,
    Write,
    Execute,
    /// Read of /5/0/3 (a lost NOTIFICATION).
    PollState,
    /// `GET /api/clients/{ep}` (a lost REGISTRATION).
    PollRegistration,
}

/// Follows `/api/event`: REGISTRATION and the NOTIFICATIONs of State.
fn follow_events(base: &str, tx: mpsc::Sender<Seen>) -> Result<(), String> {
    read_events(base, move |event, v| {
        let seen = match event {
            "REGISTRATION" => v["endpoint"].as_str().map(|e| Seen::Registered {
                ep: e.into(),
                id: v["registrationId"].as_str().unwrap_or_default().into(),
            }),
            "NOTIFICATION" if v["res"] == "/5/0/3" => match (v["ep"].as_str(), node_int(&v["val"]))
            {
                (Some(ep), Some(state)) => Some(Seen::State {
                    ep: ep.into(),
                    state,
                }),
                _ => None,
            },
            _ => None,
        };
        seen.is_none_or(|s| tx.send(s).is_ok())
    })
}

/// Threads making the REST calls; (endpoint, call) go in, [`Seen::Answered`] comes back.
fn callers(base: &str, package_uri: &str, tx: mpsc::Sender<Seen>) -> mpsc::Sender<(String, Call)> {
    let (to_call, queue) = mpsc::channel::<(String, Call)>();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    for _ in 0..CALLERS {
        let (base, uri, tx, queue) = (
            base.to_string(),
            package_uri.to_string(),
            tx.clone(),
            queue.clone(),
        );
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(u64::from(CALL_TIMEOUT_S) + 30)))
                .build()
                .into();
            loop {
                let next = queue.lock().map(|q| q.recv());
                let Ok(Ok((ep, call))) = next else { return };
                let result = rest_call(&agent, &base, &ep, call, &uri);
                if tx.send(Seen::Answered { ep, call, result }).is_err() {
                    return;
                }
            }
        });
    }
    to_call
}

/// One REST call; the JSON answer when the server answered 200, the error otherwise.
fn rest_call(
    agent: &ureq::Agent,
    base: &str,
    ep: &str,
    call: Call,
    uri: &str,
) -> Result<Value, String> {
    let t = CALL_TIMEOUT_S;
    let url = |p: &str| format!("{base}/api/clients/{ep}{p}");
    let resp = match call {
        Call::Observe => agent
            .post(url(&format!("/5/0/3/observe?format=TLV&timeout={t}")))
            .send_empty(),
        Call::Write => agent
            .put(url(&format!("/5/0/1?format=TLV&timeout={t}")))
            .header("content-type", "application/json")
            .send(
                json!({"id": 1, "kind": "singleResource", "type": "string", "value": uri})
                    .to_string(),
            ),
        Call::Execute => agent.post(url(&format!("/5/0/2?timeout={t}"))).send_empty(),
        Call::PollState => agent
            .get(url(&format!("/5/0/3?format=TLV&timeout={t}")))
            .call(),
        Call::PollRegistration => agent.get(url("")).call(),
    };
    let mut resp = resp.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// Where a device is in the fleet work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Observing,
    Writing,
    Downloading,
    Executing,
    Rebooting,
    Done,
    Failed,
}

struct Device {
    phase: Phase,
    /// Registration id before the Execute (a new one means it came back).
    reg_id: String,
    /// State 2 was notified (possibly before the Write's answer).
    downloaded: bool,
    since: Instant,
    polling: bool,
}

/// Runs the fleet work of `n` devices against `server`.
pub(crate) fn run(
    server: &Server,
    n: usize,
    package_uri: &str,
    anchor: &std::path::Path,
    limit: Duration,
    window: usize,
) -> Result<Outcome, String> {
    let http = server.http();
    let (tx, events) = mpsc::channel();
    follow_events(&http, tx.clone())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let tag = match server {
        Server::Shim(_) => "s",
        Server::Leshan(_) => "l",
    };
    let eps: Vec<String> = (0..n).map(|i| format!("cmp{tag}-{i:05}")).collect();
    let crypto = std::env::var("FLEET_CRYPTO").unwrap_or_else(|_| "openssl".into());
    let options = eps
        .iter()
        .map(|ep| {
            DeviceOptions::from_args([
                format!("--server=coap://{}", server.coap()),
                format!("--endpoint={ep}"),
                "--in-memory".to_string(),
                format!("--trust-anchor={}", anchor.display()),
                format!("--slot-kib={}", super::SLOT_KIB),
                "--lifetime=3600".to_string(),
                format!("--crypto={crypto}"),
            ])
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cpu_before = cpu_s(&server.pid().to_string());
    let started = Instant::now();
    let devices_running = start_devices(options);

    let mut devices: HashMap<String, Device> = HashMap::new();
    let mut listed = 0;
    let mut checked = Instant::now();
    while devices.len().max(listed) < n && started.elapsed() < limit {
        if checked.elapsed() >= Duration::from_secs(3) {
            checked = Instant::now();
            for r in list(&agent, &http, "clients") {
                if let (Some(ep), Some(id)) = (r["endpoint"].as_str(), r["registrationId"].as_str())
                {
                    devices.entry(ep.to_string()).or_insert_with(|| Device {
                        phase: Phase::Waiting,
                        reg_id: id.to_string(),
                        downloaded: false,
                        since: Instant::now(),
                        polling: false,
                    });
                }
            }
            listed = devices.len();
        }
        if let Ok(Seen::Registered { ep, id }) = events.recv_timeout(Duration::from_millis(200)) {
            devices.entry(ep).or_insert_with(|| Device {
                phase: Phase::Waiting,
                reg_id: id,
                downloaded: false,
                since: Instant::now(),
                polling: false,
            });
        }
    }
    let reg_time = started.elapsed();
    let registered = devices.len();

    let update_start = Instant::now();
    let to_call = callers(&http, package_uri, tx.clone());
    let mut order: Vec<String> = devices.keys().cloned().collect();
    order.sort();
    let mut pending = order.into_iter();
    let (mut active, mut calls, mut polls) = (0usize, 0usize, 0usize);
    let (mut updated, mut failed) = (0usize, 0usize);
    let mut first_error: Option<String> = None;
    let send = |ep: &str, call: Call, calls: &mut usize| {
        *calls += 1;
        let _ = to_call.send((ep.to_string(), call));
    };
    let mut last_sweep = Instant::now();
    let (mut progress, mut last_done) = ((0usize, Instant::now()), Duration::ZERO);
    let stall = stall_limit();
    while updated + failed < registered
        && update_start.elapsed() < limit
        && progress.1.elapsed() < stall
    {
        if updated + failed != progress.0 {
            progress = (updated + failed, Instant::now());
        }
        while active < window {
            let Some(ep) = pending.next() else { break };
            if let Some(d) = devices.get_mut(&ep) {
                d.phase = Phase::Observing;
                d.since = Instant::now();
                active += 1;
                send(&ep, Call::Observe, &mut calls);
            }
        }
        let seen = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(s) => Some(s),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut fail = |d: &mut Device, why: String, active: &mut usize| {
            d.phase = Phase::Failed;
            *active -= 1;
            failed += 1;
            first_error.get_or_insert(why);
        };
        match seen {
            Some(Seen::Registered { ep, id }) => {
                if let Some(d) = devices.get_mut(&ep) {
                    if matches!(d.phase, Phase::Executing | Phase::Rebooting) && id != d.reg_id {
                        d.phase = Phase::Done;
                        active -= 1;
                        updated += 1;
                        last_done = update_start.elapsed();
                    }
                }
            }
            Some(Seen::State { ep, state }) => {
                if let Some(d) = devices.get_mut(&ep) {
                    if state == 2 && matches!(d.phase, Phase::Writing | Phase::Downloading) {
                        d.downloaded = true;
                        if d.phase == Phase::Downloading {
                            d.phase = Phase::Executing;
                            d.since = Instant::now();
                            send(&ep, Call::Execute, &mut calls);
                        }
                    }
                }
            }
            Some(Seen::Answered { ep, call, result }) => {
                let Some(d) = devices.get_mut(&ep) else {
                    continue;
                };
                d.polling = false;
                if matches!(d.phase, Phase::Done | Phase::Failed) {
                    continue;
                }
                let ok = |v: &Value| v["success"].as_bool() == Some(true);
                match (call, result) {
                    // A 404 while rebooting: the old registration is gone, the new not there.
                    (Call::PollRegistration, Err(_)) => {}
                    (_, Err(e)) => fail(d, format!("{ep} {call:?}: {e}"), &mut active),
                    (Call::Observe, Ok(v)) if ok(&v) => {
                        d.phase = Phase::Writing;
                        d.since = Instant::now();
                        send(&ep, Call::Write, &mut calls);
                    }
                    (Call::Write, Ok(v)) if ok(&v) => {
                        d.since = Instant::now();
                        if d.downloaded {
                            d.phase = Phase::Executing;
                            send(&ep, Call::Execute, &mut calls);
                        } else {
                            d.phase = Phase::Downloading;
                        }
                    }
                    (Call::Execute, Ok(v)) if ok(&v) => {
                        if d.phase == Phase::Executing {
                            d.phase = Phase::Rebooting;
                            d.since = Instant::now();
                        }
                    }
                    (Call::PollState, Ok(v)) => {
                        if d.phase == Phase::Downloading && node_int(&v["content"]) == Some(2) {
                            d.phase = Phase::Executing;
                            d.since = Instant::now();
                            send(&ep, Call::Execute, &mut calls);
                        }
                    }
                    (Call::PollRegistration, Ok(v)) => {
                        let id = v["registrationId"].as_str().unwrap_or_default();
                        if d.phase == Phase::Rebooting && !id.is_empty() && id != d.reg_id {
                            d.phase = Phase::Done;
                            active -= 1;
                            updated += 1;
                            last_done = update_start.elapsed();
                        }
                    }
                    (call, Ok(v)) => fail(d, format!("{ep} {call:?}: {v}"), &mut active),
                }
            }
            None => {}
        }
        if last_sweep.elapsed() >= Duration::from_secs(1) {
            last_sweep = Instant::now();
            for (ep, d) in devices.iter_mut() {
                if d.polling || d.since.elapsed() < STALL {
                    continue;
                }
                let call = match d.phase {
                    Phase::Downloading => Call::PollState,
                    Phase::Rebooting => Call::PollRegistration,
                    _ => continue,
                };
                d.polling = true;
                d.since = Instant::now();
                polls += 1;
                send(ep, call, &mut calls);
            }
        }
    }
    let update_time = update_start.elapsed();
    let mut stuck: HashMap<String, usize> = HashMap::new();
    for d in devices.values() {
        if !matches!(d.phase, Phase::Done | Phase::Failed) {
            *stuck.entry(format!("{:?}", d.phase)).or_default() += 1;
        }
    }
    let mut stuck: Vec<(String, usize)> = stuck.into_iter().collect();
    stuck.sort();
    let peak_kib = peak_rss_kib(server.pid());
    let cpu = cpu_s(&server.pid().to_string())
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    // Dropping them stops (deregisters) the devices and joins their threads.
    drop(devices_running);
    Ok(Outcome {
        server: server.name(),
        registered,
        reg_time,
        updated,
        failed,
        update_time,
        peak_kib,
        cpu_s: cpu,
        calls,
        polls,
        first_error,
        last_done,
        stuck,
    })
}

/// One line per server and the comparison line.
pub(crate) fn report(n: usize, shim: &Outcome, leshan: &Outcome) {
    for o in [shim, leshan] {
        println!(
            "fleet-vs-leshan N={n:>5} {}: {}/{n} registered in {:.2} s; {}/{n} updated ({} failed) \
             in {:.2} s (the last one {:.2} s after the registrations){}; total {:.2} s ({:.1} \
             updates/s); {} REST calls ({} polls for lost events); peak RSS {} MiB; CPU {:.1} s{}",
            o.server,
            o.registered,
            o.reg_time.as_secs_f64(),
            o.updated,
            o.failed,
            o.update_time.as_secs_f64(),
            o.last_done.as_secs_f64(),
            if o.stuck.is_empty() {
                String::new()
            } else {
                let left: Vec<String> = o.stuck.iter().map(|(p, k)| format!("{k} {p}")).collect();
                format!(" (left unfinished: {})", left.join(", "))
            },
            o.total().as_secs_f64(),
            o.updates_per_s(),
            o.calls,
            o.polls,
            o.peak_kib
                .map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            o.cpu_s.unwrap_or(f64::NAN),
            o.first_error
                .as_ref()
                .map(|e| format!("; first failure: {e}"))
                .unwrap_or_default(),
        );
    }
    let all = |o: &Outcome| o.updated == n;
    let time_ratio = if all(shim) && all(leshan) {
        format!(
            "{:.2}x (Leshan's total time / the shim's)",
            (leshan.reg_time + leshan.last_done).as_secs_f64()
                / (shim.reg_time + shim.last_done).as_secs_f64().max(1e-9)
        )
    } else {
        format!(
            "n/a (not every device updated: shim {}, Leshan {})",
            shim.updated, leshan.updated
        )
    };
    let rss = match (shim.peak_kib, leshan.peak_kib) {
        (Some(s), Some(l)) => format!("{:.1}x", l as f64 / (s as f64).max(1.0)),
        _ => "?".into(),
    };
    println!(
        "fleet-vs-leshan N={n:>5} ratio: time {time_ratio}; throughput {:.2}x (shim updates/s \
         / Leshan's); peak RSS {rss} (Leshan's / the shim's)",
        shim.updates_per_s() / leshan.updates_per_s().max(1e-9)
    );
}
