//! Fleet benchmark (issue 7): N of our simulated devices (`lwm2m_client::sim_device`, the
//! whole client with SUIT verification and SimFlash slots, in-process over real loopback UDP)
//! register with one shim and complete a pull campaign of a signed 64 KiB image. Prints
//! registrations per second, updates per second and the process's peak resident memory
//! (shim and devices together, from /proc/self/status VmHWM).
//!
//! `FLEET_SIZES=100,1000,10000 [FLEET_CONCURRENCY=k] cargo bench -p lwm2m-server-shim --bench
//! fleet` (default sizes 100,1000, all devices at once;
//! every device keeps a flash file of about 3 slots in a temporary directory). No peer LwM2M
//! server is installed here to run the same fleet against, so no ratio is printed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lwm2m_client::sim_device::{self, DeviceOptions};
use lwm2m_server_shim::campaign::{self, CampaignConfig, PhaseTimeouts, UpdatePlan};
use lwm2m_server_shim::in_process_device::parse_options;
use lwm2m_server_shim::jobs::{JobStatus, Method, Phase};
use lwm2m_server_shim::server::{self, ShimConfig};
use lwm2m_server_shim::test_packages::{fresh_sequence, Kind, Signer};

const IMAGE_LEN: usize = 64 * 1024;
/// Slot just above the image and its envelope, to keep the flash files small.
const SLOT_KIB: u32 = 72;
const DEVICE_THREADS: usize = 2;

/// Per job: (seconds since the campaign started, phase and State/Result) at each change.
type Timeline = HashMap<u64, Vec<(f64, String)>>;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn temp_dir(n: usize) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("shim-fleet-{n}-{}-{nanos}", std::process::id()))
}

/// Devices updated at once: `FLEET_CONCURRENCY`, default all of them.
fn concurrency(n: usize) -> usize {
    std::env::var("FLEET_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n)
}

fn run(n: usize) -> Result<(), String> {
    let dir = temp_dir(n);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let config = ShimConfig {
        coap_addr: Some("127.0.0.1:0".parse().map_err(|_| "addr")?),
        coaps_addr: None,
        http_addr: "127.0.0.1:0".parse().map_err(|_| "addr")?,
        package_dir: dir.join("packages"),
        default_timeout: Duration::from_secs(30),
        ..ShimConfig::default()
    };
    let running = rt
        .block_on(server::start(config))
        .map_err(|e| e.to_string())?;
    let shim = running.shim.clone();
    let coap = running.coap_addr.ok_or("no coap listener")?;
    let signer = Signer::generate().map_err(|e| e.to_string())?;
    let anchor = dir.join("anchor.pub.pem");
    std::fs::write(&anchor, &signer.public_pem).map_err(|e| e.to_string())?;
    let package = signer
        .build_sized(Kind::Good, "2.0.0", fresh_sequence(), IMAGE_LEN)
        .map_err(|e| e.to_string())?;
    shim.packages
        .store("fleet.suit", &package)
        .map_err(|e| e.to_string())?;

    let eps: Vec<String> = (0..n).map(|i| format!("fleet-{i:05}")).collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut threads = Vec::new();
    for t in 0..DEVICE_THREADS {
        let mine: Vec<DeviceOptions> = eps
            .iter()
            .skip(t)
            .step_by(DEVICE_THREADS)
            .map(|ep| {
                parse_options([
                    format!("--server=coap://{coap}"),
                    format!("--endpoint={ep}"),
                    format!("--state-dir={}", dir.join(ep).display()),
                    format!("--trust-anchor={}", anchor.display()),
                    format!("--slot-kib={SLOT_KIB}"),
                    "--lifetime=3600".to_string(),
                ])
                .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let stopped = stopped.clone();
        threads.push(std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let handles: Vec<_> = mine
                    .into_iter()
                    .map(|o| tokio::task::spawn_local(sim_device::run(o, stopped.clone())))
                    .collect();
                for h in handles {
                    let _ = h.await;
                }
            });
        }));
    }
    let registered = rt.block_on(async {
        let until = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            let count = shim.store.all().len();
            if count >= n || tokio::time::Instant::now() >= until {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let reg_time = started.elapsed();
    let plan = UpdatePlan {
        package: "fleet.suit".into(),
        method: Method::Pull,
        uri: None,
    };
    let cfg = CampaignConfig {
        timeouts: PhaseTimeouts {
            request: Duration::from_secs(30),
            download: Duration::from_secs(600),
            update: Duration::from_secs(600),
            verify: Duration::from_secs(600),
        },
        poll_interval: Duration::from_secs(2),
        retries: 2,
    };
    let update_start = Instant::now();
    // Phase timeline of every job, to show where the slowest one waited.
    let timeline: Arc<Mutex<Timeline>> = Arc::default();
    let log = timeline.clone();
    let hook = Arc::new(move |j: &JobStatus| {
        if let Ok(mut m) = log.lock() {
            let entry = m.entry(j.id).or_default();
            let what = format!("{} {:?}/{:?}", j.phase, j.state, j.result);
            if entry.last().map(|(_, w)| w != &what).unwrap_or(true) {
                entry.push((update_start.elapsed().as_secs_f64(), what));
            }
        }
    });
    let jobs = rt.block_on(campaign::run_campaign(
        &shim,
        &eps,
        &plan,
        cfg,
        concurrency(n),
        hook,
    ));
    let update_time = update_start.elapsed();
    if let Ok(m) = timeline.lock() {
        let slowest = m.values().max_by(|a, b| {
            let span = |v: &Vec<(f64, String)>| {
                v.last().map(|l| l.0).unwrap_or(0.0) - v.first().map(|f| f.0).unwrap_or(0.0)
            };
            span(a).total_cmp(&span(b))
        });
        if let Some(t) = slowest {
            let steps: Vec<String> = t.iter().map(|(at, w)| format!("{at:.2}s {w}")).collect();
            println!("slowest job: {}", steps.join(" -> "));
        }
    }
    let ok = jobs.iter().filter(|j| j.phase == Phase::Succeeded).count();
    let first_error = jobs.iter().find_map(|j| j.error.clone());
    println!(
        "fleet N={n:>5} (concurrency {}): {registered} registered in {:.2} s ({:.0} registrations/s); {ok}/{n} updated in {:.2} s ({:.1} updates/s); peak RSS {} MiB (shim + devices){}",
        concurrency(n),
        reg_time.as_secs_f64(),
        registered as f64 / reg_time.as_secs_f64().max(1e-9),
        update_time.as_secs_f64(),
        ok as f64 / update_time.as_secs_f64().max(1e-9),
        peak_rss_kib().map(|k| k / 1024).unwrap_or(0),
        first_error
            .map(|e| format!("; first failure: {e}"))
            .unwrap_or_default()
    );
    let _ = stop.send(true);
    for t in threads {
        let _ = t.join();
    }
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() {
    let sizes: Vec<usize> = std::env::var("FLEET_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000]);
    for n in sizes {
        if let Err(e) = run(n) {
            println!("fleet N={n}: failed to run: {e}");
        }
    }
}
