//! What the `update`, `demo` and `conformance` commands share: the runtime and log setup,
//! waiting for devices to register, one progress bar per device, and the final table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lwm2m_server_shim::firmware::jobs::{JobPhase, JobStatus};
use lwm2m_server_shim::server::shim::Shim;
use object5::status::{State, UpdateResult};

/// Logs to stderr at `default` unless `RUST_LOG` says otherwise; colours only on a terminal,
/// so redirected logs and pipes carry no escape codes.
pub fn init_logging(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A multi-threaded runtime, or `None` after logging why not.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            None
        }
    }
}

/// Waits until every endpoint in `names` is registered; `None` lists the missing ones.
pub async fn wait_for(shim: &Shim, names: &[String], within: Duration) -> Result<(), Vec<String>> {
    let until = tokio::time::Instant::now() + within;
    loop {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| shim.store.get_by_endpoint(n).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(missing);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until at least `min` devices are registered, then returns every registered endpoint.
pub async fn wait_for_any(shim: &Shim, min: usize, within: Duration) -> Vec<String> {
    let until = tokio::time::Instant::now() + within;
    loop {
        let all: Vec<String> = shim.store.all().into_iter().map(|r| r.endpoint).collect();
        if all.len() >= min.max(1) || tokio::time::Instant::now() >= until {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Position of a phase on the progress bar (0..=PHASE_STEPS).
fn step(p: JobPhase) -> u64 {
    match p {
        JobPhase::Queued => 0,
        JobPhase::Starting => 1,
        JobPhase::Downloading => 2,
        JobPhase::Downloaded => 3,
        JobPhase::Updating => 4,
        JobPhase::Rebooting => 5,
        JobPhase::Verifying => 6,
        JobPhase::Succeeded | JobPhase::Failed => PHASE_STEPS,
    }
}

const PHASE_STEPS: u64 = 7;

fn describe(j: &JobStatus) -> String {
    let sr = match (j.state, j.result) {
        (Some(s), Some(r)) => format!(" State {} Result {}", s.code(), r.code()),
        _ => String::new(),
    };
    format!("{}{sr}", j.phase)
}

/// One progress bar per device, drawn on stderr (hidden when stderr is not a terminal).
#[derive(Clone)]
pub struct ProgressView {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<u64, ProgressBar>>>,
}

impl Default for ProgressView {
    fn default() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Arc::default(),
        }
    }
}

impl ProgressView {
    /// Shows a job's new status.
    pub fn show(&self, j: &JobStatus) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(j.id).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new(PHASE_STEPS));
            if let Ok(style) = ProgressStyle::with_template("{prefix:>16} [{bar:21}] {msg}") {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(j.ep.clone());
            b
        });
        bar.set_position(step(j.phase));
        bar.set_message(describe(j));
        if j.phase.is_final() {
            bar.finish();
        }
        if !self.multi.is_hidden() {
            return;
        }
        // No terminal: one plain line per change instead of bars (progress is the command's
        // output, not a log record).
        eprintln!("{:>16}  {}", j.ep, describe(j));
    }

    /// A hook for [`lwm2m_server_shim::firmware::campaign::run_campaign`].
    pub fn hook(&self) -> Arc<dyn Fn(&JobStatus) + Send + Sync> {
        let view = self.clone();
        Arc::new(move |j: &JobStatus| view.show(j))
    }
}

/// The final table on stdout: one line per device.
pub fn print_table(jobs: &[JobStatus]) {
    println!(
        "{:<20} {:<10} {:>5} {:>6}  {:<12} {:<12} detail",
        "endpoint", "outcome", "state", "result", "firmware", "package"
    );
    for j in jobs {
        let detail = match (&j.error, j.result) {
            (Some(e), _) => e.clone(),
            (None, Some(r)) => r.meaning().to_string(),
            (None, None) => String::new(),
        };
        let opt = |v: Option<u8>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<10} {:>5} {:>6}  {:<12} {:<12} {detail}",
            j.ep,
            if j.phase == JobPhase::Succeeded {
                "ok"
            } else {
                "FAILED"
            },
            opt(j.state.map(State::code)),
            opt(j.result.map(UpdateResult::code)),
            j.firmware_version.as_deref().unwrap_or("-"),
            j.pkg_version.as_deref().unwrap_or("-"),
        );
    }
}
