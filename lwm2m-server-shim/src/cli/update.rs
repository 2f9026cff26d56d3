//! The `update` subcommand: starts a shim on the given ports (or, with `--server`, drives one
//! already running through its REST API, see [`crate::cli::update_remote`]), hosts the package,
//! waits for the devices to register, runs a firmware campaign with a progress bar per device
//! and prints a final table. Exits non-zero if any device did not end in State 0 / Update
//! Result 1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use std::sync::Arc;

use lwm2m_server_shim::app::{self, RunningShim, ShimConfig};
use lwm2m_server_shim::firmware::campaign::{self, CampaignConfig, PhaseTimeouts, UpdatePlan};
use lwm2m_server_shim::firmware::jobs::{JobPhase, Method};
use lwm2m_server_shim::server::registration::store::InMemoryStore;
use lwm2m_server_shim::server::security::store::InMemorySecurityStore;

use crate::cli::campaign_view::{self, ProgressView};
use crate::cli::update_remote;

/// How the package reaches the devices.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// Write the Package URI (/5/0/1): devices download from the shim's CoAP package host.
    Pull,
    /// Block1 PUT of the package to /5/0/0.
    Push,
}

/// Options of `update`; the defaults work on loopback.
#[derive(Args, Debug)]
#[command(
    after_help = "Example: lwm2m-server-shim update --endpoint dev1 --package fw.suit \
    --method pull\n(then start the device: lwm2m-client --server coap://127.0.0.1:5683 \
    --endpoint dev1)\n\nupdate starts its own shim on --coap and --http; with a shim already \
    running (lwm2m-server-shim serve), pass its REST API instead: --server http://127.0.0.1:8080"
)]
pub struct UpdateArgs {
    /// Endpoint to update; repeat for several.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    endpoint: Vec<String>,
    /// Update every device registered once --min-devices have registered.
    #[arg(long)]
    all: bool,
    /// With --all: how many devices to wait for before starting.
    #[arg(long, default_value_t = 1)]
    min_devices: usize,
    /// Signed package file (from `package build`); it is served as /fw/<file name>.
    #[arg(long)]
    package: PathBuf,
    /// Pull (devices fetch the package) or push (the shim writes it block-wise).
    #[arg(long, value_enum, default_value = "pull")]
    method: MethodArg,
    /// Package URI to write instead of the shim's own coap://<coap>/fw/<name> (pull only).
    #[arg(long)]
    uri: Option<String>,
    /// Devices updated at the same time.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds to wait for the devices to register.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// Seconds of each CoAP exchange (every block restarts it).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_request: u64,
    /// Seconds from writing the URI / starting the push until State 2 (Downloaded).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_download: u64,
    /// Seconds from Execute until the device is back.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_update: u64,
    /// Seconds from re-registration until the final State / Update Result.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_verify: u64,
    /// Extra attempts for unanswered requests and for downloads ending in Result 4.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Milliseconds between polls of State / Update Result of a device that does not notify
    /// them (it refused to observe them).
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Milliseconds without a notification before State / Update Result of a device that
    /// notifies them are polled anyway (the fallback for lost notifications).
    #[arg(long, default_value_t = 8000)]
    observed_poll_ms: u64,
    /// UDP address of the CoAP endpoint devices register with.
    #[arg(long, default_value = "127.0.0.1:5683")]
    coap: SocketAddr,
    /// TCP address of the REST API (jobs are visible at /api/jobs while the campaign runs).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Block size in bytes for pushes and the package host (16..=1024).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(16..=1024))]
    block_size: u16,
    /// Drive a shim that is already running, through its REST API (e.g. http://127.0.0.1:8080),
    /// instead of starting one: the package is uploaded to it and one firmware job started per
    /// device; its own settings (request timeout, --max-active-jobs) apply.
    #[arg(long, value_name = "URL", conflicts_with_all = [
        "coap", "http", "block_size", "concurrency", "timeout_request", "timeout_download",
        "timeout_update", "timeout_verify", "retries", "poll_ms", "observed_poll_ms",
    ])]
    server: Option<String>,
}

impl UpdateArgs {
    fn campaign_config(&self) -> CampaignConfig {
        CampaignConfig {
            timeouts: PhaseTimeouts {
                request: Duration::from_secs(self.timeout_request.max(1)),
                download: Duration::from_secs(self.timeout_download.max(1)),
                update: Duration::from_secs(self.timeout_update.max(1)),
                verify: Duration::from_secs(self.timeout_verify.max(1)),
            },
            poll_interval: Duration::from_millis(self.poll_ms.max(10)),
            observed_poll_interval: Duration::from_millis(self.observed_poll_ms.max(10)),
            retries: self.retries,
        }
    }
}

/// A package directory private to this run.
pub fn private_package_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("lwm2m-shim-{tag}-{}-{nanos}", std::process::id()))
}

/// The shim a CLI run starts in-process: plain CoAP on `coap` only, REST on `http`, packages
/// in `dir`, `timeout_request` seconds (at least 1) per exchange. Shared so that `update` and
/// `conformance` listen alike.
pub fn in_process_config(
    coap: SocketAddr,
    http: SocketAddr,
    dir: &Path,
    timeout_request: u64,
) -> ShimConfig {
    ShimConfig {
        coap_addr: Some(coap),
        coaps_addr: None,
        http_addr: http,
        package_dir: dir.to_path_buf(),
        default_timeout: Duration::from_secs(timeout_request.max(1)),
        ..ShimConfig::default()
    }
}

/// Starts the shim with `security` as its PSK store, or prints why it cannot (one `error:`
/// line) so that the command only has to exit non-zero.
pub async fn start_logged(
    config: ShimConfig,
    security: Arc<InMemorySecurityStore>,
) -> Option<RunningShim> {
    let store = Arc::new(InMemoryStore::new());
    match app::start_with_stores(config, store, security).await {
        Ok(r) => Some(r),
        Err(e) => {
            crate::fail(e);
            None
        }
    }
}

/// Runs the campaign.
pub fn update(args: UpdateArgs) -> ExitCode {
    campaign_view::init_logging("warn");
    let Some(runtime) = campaign_view::runtime() else {
        return ExitCode::FAILURE;
    };
    let bytes = match std::fs::read(&args.package) {
        Ok(b) => b,
        Err(e) => return crate::fail(format!("{}: {e}", args.package.display())),
    };
    let name = args
        .package
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "package".into());
    let method = match args.method {
        MethodArg::Pull => Method::Pull,
        MethodArg::Push => Method::Push,
    };
    if let Some(url) = &args.server {
        return update_remote::run(
            url,
            &update_remote::Campaign {
                endpoints: &args.endpoint,
                all: args.all,
                min_devices: args.min_devices,
                wait: Duration::from_secs(args.wait),
                package: (&name, &bytes),
                method,
                uri: args.uri.as_deref(),
            },
        );
    }
    let dir = private_package_dir("update");
    let config = ShimConfig {
        block_size: usize::from(args.block_size),
        ..in_process_config(args.coap, args.http, &dir, args.timeout_request)
    };
    let code = runtime.block_on(async {
        let running = match app::start(config).await {
            Ok(r) => r,
            Err(e) => {
                return crate::fail(format!(
                    "{e}; update starts its own shim, to drive one already running pass \
                     --server http://HOST:PORT"
                ))
            }
        };
        let shim = running.shim.clone();
        if let Err(e) = shim.packages.store(&name, &bytes) {
            return crate::fail(format!("cannot host the package: {e}"));
        }
        eprintln!(
            "update starts its own shim: devices register at coap://{}, REST API at http://{} \
             (--server URL drives a shim already running); waiting for devices...",
            args.coap, running.http_addr
        );
        let within = Duration::from_secs(args.wait);
        let endpoints = if args.all {
            campaign_view::wait_for_any(&shim, args.min_devices, within).await
        } else {
            match campaign_view::wait_for(&shim, &args.endpoint, within).await {
                Ok(()) => args.endpoint.clone(),
                Err(missing) => {
                    return crate::fail(format!(
                        "not registered within {} s: {}",
                        args.wait,
                        missing.join(", ")
                    ))
                }
            }
        };
        if endpoints.len() < args.min_devices.max(1) {
            return crate::fail(format!(
                "{} of {} devices registered within {} s",
                endpoints.len(),
                args.min_devices,
                args.wait
            ));
        }
        let plan = UpdatePlan {
            package: name.clone(),
            method,
            uri: args.uri.clone(),
        };
        let view = ProgressView::default();
        let jobs = campaign::run_campaign(
            &shim,
            &running.jobs,
            &endpoints,
            &plan,
            args.campaign_config(),
            args.concurrency,
            view.hook(),
        )
        .await;
        campaign_view::print_table(&jobs);
        if jobs.iter().all(|j| j.phase == JobPhase::Succeeded) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}
