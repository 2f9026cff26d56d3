//! Fleet benchmark (issue 7): N simulated devices register with one shim and complete a pull
//! update of a signed 64 KiB image, for N = 100, 1 000 and 10 000 (`FLEET_N=100,1000`).
//!
//! The devices are the whole client (`lwm2m_client::sim::device`: engine, Object 5, SUIT
//! verification, slot manager, bootloader, in-process reset, confirmation) with in-memory
//! flash, run as local tasks on two `InThreadDevice` threads in this process, over real
//! loopback UDP. They verify signatures with `--crypto=openssl`, as devices with a P-256
//! accelerator would (`FLEET_CRYPTO=software` for the portable backend, about 8x the CPU per
//! check): on two shared cores the simulated devices, not the shim, are otherwise most of
//! the load. The shim runs as a separate process (this binary re-executed with
//! `FLEET_SHIM_CHILD`, calling `app::start` exactly as `serve --coap` does), so its peak
//! resident memory (VmHWM) is its own, not the devices'. Everything the bench does to the
//! shim goes through its REST API, as an operator's script would: it follows REGISTRATION
//! and FIRMWARE events on `/api/event`, starts each update with
//! `POST /api/clients/{ep}/firmware` and confirms the final counts with `/api/clients` and
//! `/api/jobs`. An update counts when its job SUCCEEDED: the device pulled, verified,
//! installed, reset into the new image, re-registered and reported State 0 / Update Result 1.
//!
//! The shim's CoAP socket gets the receive buffer `serve` gives it (`--udp-recv-buffer`,
//! 4 MiB by default; the kernel caps it at net.core.rmem_max).
//! By default the bench starts every job at once and the shim runs at most
//! `--max-active-jobs` (1 000) of them, the rest waiting QUEUED; `FLEET_WINDOW=k` makes the
//! bench itself keep at most k jobs started, as `update --concurrency` does.
//! `FLEET_TIMEOUT_S` bounds each run (default 300 s).
//!
//! The comparison with Eclipse Leshan (module `compare`, issue 14) runs a second kind of fleet
//! work against Leshan's demo server and against the shim in the same run: register, then
//! Observe State, Write Package URI and Execute Update through each server's REST API, as a
//! Leshan user's script does, and prints both servers' times, CPU and peak RSS and their ratio
//! (`fleet-vs-leshan` lines). `FLEET_MODE=jobs` runs only the shim's own job API run above,
//! `FLEET_MODE=compare` only the comparison; both run by default. A comparison run stops
//! when no device finished for `FLEET_STALL_S` (120 s) and names the steps the unfinished
//! devices were left in.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lwm2m_client::sim::{device::DeviceOptions, InThreadDevice};
use lwm2m_server_shim::app::{self, ShimConfig};
use lwm2m_server_shim::packages::test_packages::{fresh_sequence, Kind, Signer};
use serde_json::Value;
use tests::leshan::LeshanServer;

#[path = "fleet/compare.rs"]
mod compare;

const IMAGE_LEN: usize = 64 * 1024;
/// Slot just above the image and its envelope: less memory per device.
const SLOT_KIB: u32 = 72;
/// One current-thread runtime per core.
const DEVICE_THREADS: usize = 2;
const PACKAGE: &str = "fleet.suit";
/// Set in the child process: the package directory the shim serves.
const CHILD_ENV: &str = "FLEET_SHIM_CHILD";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// The shim process: plain CoAP and HTTP on loopback ports chosen by the OS, printed as one
/// line; it runs until its stdin closes (the bench ended or died).
fn shim_child(package_dir: PathBuf) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let any = "127.0.0.1:0".parse().map_err(|_| "addr")?;
    let config = ShimConfig {
        coap_addr: Some(any),
        coaps_addr: None,
        http_addr: any,
        package_dir,
        ..ShimConfig::default()
    };
    let running = rt.block_on(app::start(config)).map_err(|e| e.to_string())?;
    let coap = running.coap_addr.ok_or("no coap listener")?;
    println!("{coap} {}", running.http_addr);
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(running);
    Ok(())
}

/// The running shim process; killed and reaped on drop.
struct ShimProcess {
    child: Child,
    coap: String,
    http: String,
}

impl ShimProcess {
    fn spawn(package_dir: &Path, log: &Path) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env(CHILD_ENV, package_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn shim: {e}"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(c), Some(h)) => Ok(Self {
                coap: c.to_string(),
                http: format!("http://{h}"),
                child,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err("the shim process did not report its addresses".into())
            }
        }
    }

    /// Peak resident set (VmHWM) of the shim process in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.child.id())
    }

    /// CPU seconds (user + system) the shim process has used so far.
    fn cpu_s(&self) -> Option<f64> {
        cpu_s(&self.child.id().to_string())
    }
}

/// Peak resident set (VmHWM) of process `pid` in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Drop for ShimProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the event stream reported.
enum Seen {
    Registered(String),
    JobEnded {
        ep: String,
        ok: bool,
    },
    /// The answer to starting `ep`'s job (202 when it started) and how long it took.
    Started {
        ep: String,
        status: Result<u16, String>,
        took: Duration,
    },
    /// A job entered `phase` (every FIRMWARE event, final ones too).
    Phase {
        ep: String,
        phase: String,
        at: Instant,
    },
}

/// Reads `/api/event` of the REST API at `base` on a thread, handing each record (event name,
/// JSON data) to `on` until it returns `false` or the stream ends. The `text/event-stream`
/// Accept header is what Leshan's demo server needs to open the stream.
fn read_events(
    base: &str,
    mut on: impl FnMut(&str, Value) -> bool + Send + 'static,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(format!("{base}/api/event"))
        .header("Accept", "text/event-stream")
        .call()
        .map_err(|e| format!("event stream: {e}"))?;
    let reader = BufReader::new(resp.into_body().into_reader());
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if !on(&event, v) {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// Follows `/api/event` on a thread: REGISTRATION and FIRMWARE events.
fn follow_events(base: &str, tx: mpsc::Sender<Seen>) -> Result<(), String> {
    read_events(base, move |event, v| {
        let seen = match event {
            "REGISTRATION" => v["endpoint"].as_str().map(|e| Seen::Registered(e.into())),
            "FIRMWARE" => {
                if let (Some(ep), Some(phase)) = (v["ep"].as_str(), v["phase"].as_str()) {
                    let seen = Seen::Phase {
                        ep: ep.into(),
                        phase: phase.into(),
                        at: Instant::now(),
                    };
                    if tx.send(seen).is_err() {
                        return false;
                    }
                }
                match (v["ep"].as_str(), v["phase"].as_str()) {
                    (Some(ep), Some("SUCCEEDED")) => Some(Seen::JobEnded {
                        ep: ep.into(),
                        ok: true,
                    }),
                    (Some(ep), Some("FAILED")) => Some(Seen::JobEnded {
                        ep: ep.into(),
                        ok: false,
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        seen.is_none_or(|s| tx.send(s).is_ok())
    })
}

/// Threads that start jobs with `POST /api/clients/{ep}/firmware`, several at once as an
/// operator's script would, so starting is not serialized behind the event handling; each
/// answer comes back as [`Seen::Started`]. Endpoints go in through the returned sender.
fn start_jobs(base: &str, body: &str, tx: mpsc::Sender<Seen>) -> mpsc::Sender<String> {
    const STARTERS: usize = 4;
    let (to_start, queue) = mpsc::channel::<String>();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    for _ in 0..STARTERS {
        let (base, body, tx, queue) = (
            base.to_string(),
            body.to_string(),
            tx.clone(),
            queue.clone(),
        );
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            loop {
                let next = queue.lock().map(|q| q.recv());
                let Ok(Ok(ep)) = next else { return };
                let posted = Instant::now();
                let status = agent
                    .post(format!("{base}/api/clients/{ep}/firmware"))
                    .header("content-type", "application/json")
                    .send(body.as_str())
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                let took = posted.elapsed();
                if tx.send(Seen::Started { ep, status, took }).is_err() {
                    return;
                }
            }
        });
    }
    to_start
}

/// Runs `options` as local tasks on `DEVICE_THREADS` threads, until they are stopped.
fn start_devices(options: Vec<DeviceOptions>) -> Vec<InThreadDevice> {
    let mut shares: Vec<Vec<DeviceOptions>> = (0..DEVICE_THREADS).map(|_| Vec::new()).collect();
    for (i, o) in options.into_iter().enumerate() {
        if let Some(s) = shares.get_mut(i % DEVICE_THREADS) {
            s.push(o);
        }
    }
    shares.into_iter().map(InThreadDevice::start_all).collect()
}

struct Figures {
    registered: usize,
    reg_time: Duration,
    updated: usize,
    failed: usize,
    update_time: Duration,
    peak_kib: Option<u64>,
    shim_cpu_s: Option<f64>,
    devices_cpu_s: Option<f64>,
    window: usize,
    device_errors: usize,
    udp_drops: Option<u64>,
    first_error: Option<String>,
    ends_via_events: usize,
    ends_via_lists: usize,
    /// Mean milliseconds the bench's `POST .../firmware` took.
    start_ms: f64,
    phases: String,
}

/// Where a job's time goes: mean time spent in each phase, from the FIRMWARE events' arrival
/// times (a phase whose event was lost is folded into the one before it).
#[derive(Default)]
struct PhaseTimes {
    current: std::collections::HashMap<String, (String, Instant)>,
    spent: std::collections::BTreeMap<String, (Duration, u32)>,
}

impl PhaseTimes {
    fn entered(&mut self, ep: String, phase: String, at: Instant) {
        let last = if matches!(phase.as_str(), "SUCCEEDED" | "FAILED") {
            self.current.remove(&ep)
        } else {
            self.current.insert(ep, (phase, at))
        };
        if let Some((name, since)) = last {
            let e = self.spent.entry(name).or_default();
            e.0 += at.saturating_duration_since(since);
            e.1 += 1;
        }
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .spent
            .iter()
            .map(|(name, (d, n))| {
                format!(
                    "{name} {:.0} ms",
                    d.as_secs_f64() * 1e3 / f64::from((*n).max(1))
                )
            })
            .collect();
        parts.join(", ")
    }
}

/// Datagrams the kernel dropped for full UDP receive buffers, machine-wide (/proc/net/snmp).
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// How often the bench checks the REST lists for what the event stream may have lost.
const RECONCILE: Duration = Duration::from_secs(3);

/// `GET /api/{what}` as a JSON array (empty if the shim did not answer).
fn list(agent: &ureq::Agent, base: &str, what: &str) -> Vec<Value> {
    let body = agent
        .get(format!("{base}/api/{what}"))
        .call()
        .ok()
        .and_then(|mut r| {
            r.body_mut()
                .with_config()
                .limit(256 * 1024 * 1024)
                .read_to_vec()
                .ok()
        })
        .unwrap_or_default();
    match serde_json::from_slice(&body) {
        Ok(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

fn run(n: usize) -> Result<Figures, String> {
    let limit = Duration::from_secs(env_or("FLEET_TIMEOUT_S", 300));
    let window = env_or("FLEET_WINDOW", n).max(1);
    let dir = tests::e2e::temp_dir(&format!("fleet-{n}"));
    let (packages, anchor) = signed_package(&dir)?;

    let shim = ShimProcess::spawn(&packages, &dir.join("shim.log"))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let (tx, events) = mpsc::channel();
    follow_events(&shim.http, tx.clone())?;

    let eps: Vec<String> = (0..n).map(|i| format!("fleet-{i:05}")).collect();
    let crypto = std::env::var("FLEET_CRYPTO").unwrap_or_else(|_| "openssl".into());
    let options = eps
        .iter()
        .map(|ep| {
            DeviceOptions::from_args([
                format!("--server=coap://{}", shim.coap),
                format!("--endpoint={ep}"),
                "--in-memory".to_string(),
                format!("--trust-anchor={}", anchor.display()),
                format!("--slot-kib={SLOT_KIB}"),
                "--lifetime=3600".to_string(),
                format!("--crypto={crypto}"),
            ])
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let drops_before = udp_rcvbuf_errors();
    let cpu_before = cpu_s("self");
    let started = Instant::now();
    let threads = start_devices(options);

    // Registrations, as the event stream reports them; the event stream drops events when
    // its reader falls behind, so the client list is consulted every few seconds too.
    let mut registered = HashSet::new();
    let mut listed = 0;
    let mut checked = Instant::now();
    while registered.len().max(listed) < n && started.elapsed() < limit {
        if checked.elapsed() >= RECONCILE {
            checked = Instant::now();
            listed = list(&agent, &shim.http, "clients").len();
        }
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(Seen::Registered(ep)) => {
                registered.insert(ep);
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let reg_time = started.elapsed();
    let listed = list(&agent, &shim.http, "clients").len();

    // Updates: at most `window` jobs running; each finished job makes room for the next.
    let update_start = Instant::now();
    let body = format!(r#"{{"package":"{PACKAGE}","method":"pull"}}"#);
    let mut pending = eps.iter();
    let mut running = HashSet::new();
    let (mut updated, mut failed) = (0usize, 0usize);
    let mut first_error = None;
    let mut checked = Instant::now();
    // Where the bench first learnt that a job ended: its FIRMWARE event, or a job list read
    // every few seconds (the event was lost, or was still on its way when the list came).
    let (mut ends_via_events, mut ends_via_lists) = (0usize, 0usize);
    let (mut post_time, mut posts) = (Duration::ZERO, 0u32);
    let mut phases = PhaseTimes::default();
    let to_start = start_jobs(&shim.http, &body, tx.clone());
    while updated + failed < n && update_start.elapsed() < limit {
        if checked.elapsed() >= RECONCILE {
            // Jobs whose final FIRMWARE event the stream lost.
            checked = Instant::now();
            for j in list(&agent, &shim.http, "jobs") {
                let (Some(ep), Some(phase)) = (j["ep"].as_str(), j["phase"].as_str()) else {
                    continue;
                };
                if matches!(phase, "SUCCEEDED" | "FAILED") && running.remove(ep) {
                    ends_via_lists += 1;
                    if phase == "SUCCEEDED" {
                        updated += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        while running.len() < window {
            let Some(ep) = pending.next() else { break };
            if to_start.send(ep.clone()).is_err() {
                break;
            }
            running.insert(ep.clone());
        }
        match events.recv_timeout(Duration::from_millis(500)) {
            Ok(Seen::JobEnded { ep, ok }) => {
                if running.remove(&ep) {
                    ends_via_events += 1;
                    if ok {
                        updated += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            Ok(Seen::Phase { ep, phase, at }) => phases.entered(ep, phase, at),
            Ok(Seen::Started { ep, status, took }) => {
                post_time += took;
                posts += 1;
                if status != Ok(202) && running.remove(&ep) {
                    failed += 1;
                    first_error.get_or_insert(format!("{ep}: start answered {status:?}"));
                }
            }
            Ok(Seen::Registered(_)) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let update_time = update_start.elapsed();
    let start_ms = post_time.as_secs_f64() * 1e3 / f64::from(posts.max(1));
    // The job list is the authority (an event stream may drop events under load).
    let all = list(&agent, &shim.http, "jobs");
    if !all.is_empty() {
        updated = all.iter().filter(|j| j["phase"] == "SUCCEEDED").count();
        failed = all.iter().filter(|j| j["phase"] == "FAILED").count();
        if let Some(e) = all.iter().find_map(|j| j["error"].as_str()) {
            first_error.get_or_insert(e.to_string());
        }
    }
    let peak_kib = shim.peak_rss_kib();
    let shim_cpu_s = shim.cpu_s();
    let devices_cpu_s = cpu_s("self").zip(cpu_before).map(|(a, b)| a - b);
    let udp_drops = udp_rcvbuf_errors()
        .zip(drops_before)
        .map(|(a, b)| a.saturating_sub(b));
    // Devices that ended with an error (each is one line of the report).
    let device_errors = threads
        .into_iter()
        .flat_map(InThreadDevice::stop_all)
        .filter(Result::is_err)
        .count();
    drop(shim);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        registered: registered.len().max(listed.min(n)),
        reg_time,
        updated,
        failed,
        update_time,
        peak_kib,
        shim_cpu_s,
        devices_cpu_s,
        window,
        device_errors,
        udp_drops,
        first_error,
        ends_via_events,
        ends_via_lists,
        start_ms,
        phases: phases.summary(),
    })
}

/// A fresh signing key and a signed package of [`IMAGE_LEN`] bytes in `dir/packages`; the
/// package directory and the public key the devices trust.
fn signed_package(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let packages = dir.join("packages");
    std::fs::create_dir_all(&packages).map_err(|e| e.to_string())?;
    let signer = Signer::generate().map_err(|e| e.to_string())?;
    let anchor = dir.join("signer.pub.pem");
    std::fs::write(&anchor, &signer.public_pem).map_err(|e| e.to_string())?;
    let package = signer
        .build_sized(Kind::Good, "2.0.0", fresh_sequence(), IMAGE_LEN)
        .map_err(|e| e.to_string())?;
    std::fs::write(packages.join(PACKAGE), &package).map_err(|e| e.to_string())?;
    Ok((packages, anchor))
}

/// The comparison run (module `compare`): one package host, then the shim and Leshan's demo
/// server in turn as the server under test, each with a fresh fleet of `n` devices.
fn compare_run(n: usize) -> Result<(compare::Outcome, compare::Outcome), String> {
    let limit = Duration::from_secs(env_or("FLEET_TIMEOUT_S", 300));
    let window = env_or("FLEET_WINDOW", DEFAULT_COMPARE_WINDOW).max(1);
    let dir = tests::e2e::temp_dir(&format!("fleet-cmp-{n}"));
    let (packages, anchor) = signed_package(&dir)?;
    let empty = dir.join("no-packages");
    std::fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
    let host = ShimProcess::spawn(&packages, &dir.join("package-host.log"))?;
    let uri = format!("coap://{}/fw/{PACKAGE}", host.coap);

    let shim = compare::Server::Shim(ShimProcess::spawn(&empty, &dir.join("shim.log"))?);
    let shim_outcome = compare::run(&shim, n, &uri, &anchor, limit, window)?;
    drop(shim);
    let leshan = compare::Server::Leshan(LeshanServer::start(&format!("fleet-leshan-{n}")));
    let leshan_outcome = compare::run(&leshan, n, &uri, &anchor, limit, window)?;
    drop(leshan);
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((shim_outcome, leshan_outcome))
}

/// Devices in the middle of their update at once in the comparison, as the shim's
/// `--max-active-jobs` default keeps its own campaigns.
const DEFAULT_COMPARE_WINDOW: usize = 1000;

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        if let Err(e) = shim_child(PathBuf::from(dir)) {
            eprintln!("shim process: {e}");
            std::process::exit(1);
        }
        return;
    }
    let sizes: Vec<usize> = std::env::var("FLEET_N")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let crypto = std::env::var("FLEET_CRYPTO").unwrap_or_else(|_| "openssl".into());
    let mode = std::env::var("FLEET_MODE").unwrap_or_default();
    for n in sizes {
        if mode != "jobs" {
            match compare_run(n) {
                Ok((shim, leshan)) => compare::report(n, &shim, &leshan),
                Err(e) => println!("fleet-vs-leshan N={n}: failed to run: {e}"),
            }
        }
        if mode == "compare" {
            continue;
        }
        match run(n) {
            Ok(f) => {
                let secs = |d: Duration| d.as_secs_f64().max(1e-9);
                println!(
                    "fleet N={n:>5} window={}: {}/{n} registered in {:.2} s ({:.0} registrations/s); \
                     {}/{n} updated ({} failed) in {:.2} s ({:.1} updates/s); total {:.2} s; \
                     shim peak RSS {} MiB, shim CPU {:.1} s, devices (this process, --crypto={crypto}) CPU {:.1} s; {} devices ended with an error; \
                     {} UDP datagrams dropped for full receive buffers (machine-wide); \
                     job ends first seen as events {} / in job lists {}; starting a job {:.1} ms; \
                     mean time per phase: {}; ratio against Leshan: the fleet-vs-leshan \
                     lines (the job API is the shim's own){}",
                    f.window,
                    f.registered,
                    secs(f.reg_time),
                    f.registered as f64 / secs(f.reg_time),
                    f.updated,
                    f.failed,
                    secs(f.update_time),
                    f.updated as f64 / secs(f.update_time),
                    secs(f.reg_time + f.update_time),
                    f.peak_kib
                        .map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                    f.shim_cpu_s.unwrap_or(f64::NAN),
                    f.devices_cpu_s.unwrap_or(f64::NAN),
                    f.device_errors,
                    f.udp_drops.map_or("?".into(), |d| d.to_string()),
                    f.ends_via_events,
                    f.ends_via_lists,
                    f.start_ms,
                    f.phases,
                    f.first_error
                        .map(|e| format!("; first failure: {e}"))
                        .unwrap_or_default(),
                );
            }
            Err(e) => println!("fleet N={n}: failed to run: {e}"),
        }
    }
}
