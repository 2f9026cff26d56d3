//! The `demo` subcommand: one signed firmware update end to end on loopback. It starts the
//! shim, generates a signing key, builds and signs a 2.0.0 package, starts the simulated
//! device (the `lwm2m-client` binary next to this one; when cargo started the demo and that
//! binary was not built, cargo builds it first, so `cargo run -p lwm2m-server-shim -- demo`
//! works alone) trusting that key, runs a pull update with progress and prints the final
//! State, Update Result and firmware version.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use lwm2m_server_shim::app::{self, ShimConfig};
use lwm2m_server_shim::firmware::campaign::{self, CampaignConfig, PhaseTimeouts, UpdatePlan};
use lwm2m_server_shim::firmware::jobs::{JobPhase, Method};
use lwm2m_server_shim::packages::test_packages::{fresh_sequence, Kind, Signer};
use object5::status::{State, UpdateResult};

use crate::cli::campaign_view::{self, ProgressView};
use crate::cli::update::private_package_dir;

/// Options of `demo`; with none it runs on ephemeral loopback ports.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// UDP address of the shim's CoAP endpoint (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    coap: SocketAddr,
    /// TCP address of the REST API (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// The simulated device binary; default: `lwm2m-client` next to this executable (when it
    /// was not built and cargo runs the demo, cargo builds it first).
    #[arg(long)]
    client: Option<PathBuf>,
    /// Firmware version of the demo package.
    #[arg(long, default_value = "2.0.0")]
    version: String,
    /// Push the package block-wise instead of letting the device pull it.
    #[arg(long)]
    push: bool,
    /// Keep the work directory (key, package, device state, device log) for inspection.
    #[arg(long)]
    keep: bool,
}

/// Failures that end the demo with one line.
#[derive(Debug)]
enum DemoError {
    Io(PathBuf, std::io::Error),
    Key(object5::author::KeyError),
    Start(app::StartError),
    Package(String),
    NoClient(PathBuf),
    NotBuilt(PathBuf),
    Build(String),
    Spawn(std::io::Error),
    NotRegistered(PathBuf),
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Key(e) => write!(f, "signing key: {e}"),
            Self::Start(e) => write!(f, "shim: {e}"),
            Self::Package(e) => write!(f, "package host: {e}"),
            Self::NoClient(p) => write!(f, "no simulated device at {}", p.display()),
            Self::NotBuilt(p) => write!(
                f,
                "no simulated device at {} (build it: cargo build -p lwm2m-client, or pass --client)",
                p.display()
            ),
            Self::Build(e) => write!(f, "building the simulated device: {e}"),
            Self::Spawn(e) => write!(f, "cannot start the simulated device: {e}"),
            Self::NotRegistered(log) => write!(
                f,
                "the simulated device did not register within 30 s (its log: {})",
                log.display()
            ),
        }
    }
}

/// The device binary built alongside this one (same target directory and profile).
fn sibling_client() -> PathBuf {
    let name = format!("lwm2m-client{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(&name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The `cargo build` arguments for the device binary in this executable's profile (read from
/// the directory it runs from: `target/debug`, `target/release` or `target/<profile>`).
fn build_args() -> Vec<String> {
    let profile = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()));
    let mut args: Vec<String> = ["build", "-p", "lwm2m-client", "--bin", "lwm2m-client"]
        .map(String::from)
        .into();
    match profile.as_deref() {
        None | Some("debug") => {}
        Some("release") => args.push("--release".into()),
        Some(other) => args.extend(["--profile".into(), other.to_string()]),
    }
    args
}

/// Builds the device binary with `cargo` (this workspace, this executable's profile); returns
/// where cargo put it. Cargo's progress goes to stderr as usual.
fn build_client(cargo: &OsStr) -> Result<PathBuf, DemoError> {
    let args = build_args();
    println!("   lwm2m-client is not built yet: cargo {}", args.join(" "));
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(cargo)
        .args(&args)
        .args([
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| DemoError::Build(e.to_string()))?;
    if !out.status.success() {
        return Err(DemoError::Build(format!("cargo build {}", out.status)));
    }
    // Cargo's JSON messages name the executable of each binary it built or found fresh.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "lwm2m-client")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| DemoError::Build("cargo named no lwm2m-client executable".into()))
}

/// The device binary: `--client`, else the one next to this executable, else (when cargo
/// started this program, which it says in `CARGO`) the one cargo builds now.
fn device_binary(explicit: Option<&Path>) -> Result<PathBuf, DemoError> {
    if let Some(c) = explicit {
        return if c.is_file() {
            Ok(c.to_owned())
        } else {
            Err(DemoError::NoClient(c.to_owned()))
        };
    }
    let sibling = sibling_client();
    if sibling.is_file() {
        return Ok(sibling);
    }
    match std::env::var_os("CARGO") {
        Some(cargo) => build_client(&cargo),
        None => Err(DemoError::NotBuilt(sibling)),
    }
}

/// The device process; stopped on drop.
struct RunningDevice(Child);

impl Drop for RunningDevice {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

/// SIGINT first (the device deregisters), a kill after 3 s.
fn stop_child(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill")
        .args(["-INT", &pid])
        .stderr(Stdio::null())
        .status();
    for _ in 0..30 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    std::fs::write(path, bytes).map_err(|e| DemoError::Io(path.to_owned(), e))
}

/// Runs the demo.
pub fn demo(args: DemoArgs) -> ExitCode {
    campaign_view::init_logging("warn");
    let Some(runtime) = campaign_view::runtime() else {
        return ExitCode::FAILURE;
    };
    let work = private_package_dir("demo");
    let outcome = runtime.block_on(run(&args, &work));
    if args.keep {
        println!("work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &DemoArgs, work: &Path) -> Result<bool, DemoError> {
    let client = device_binary(args.client.as_deref())?;
    std::fs::create_dir_all(work).map_err(|e| DemoError::Io(work.to_owned(), e))?;

    // 1. Key and signed package.
    let signer = Signer::generate().map_err(DemoError::Key)?;
    let anchor = work.join("demo-key.pub.pem");
    write(&anchor, signer.public_pem.as_bytes())?;
    let package = signer
        .build(Kind::Good, &args.version, fresh_sequence())
        .map_err(DemoError::Key)?;
    let name = format!("demo-{}.suit", args.version);
    println!(
        "1. signed package {name}: {} bytes, firmware {}, key {}",
        package.len(),
        args.version,
        anchor.display()
    );

    // 2. The shim.
    let config = ShimConfig {
        coap_addr: Some(args.coap),
        coaps_addr: None,
        http_addr: args.http,
        package_dir: work.join("packages"),
        ..ShimConfig::default()
    };
    let running = app::start(config).await.map_err(DemoError::Start)?;
    let shim = running.shim.clone();
    let coap = running
        .coap_addr
        .ok_or(DemoError::Package("no CoAP listener".into()))?;
    shim.packages
        .store(&name, &package)
        .map_err(|e| DemoError::Package(e.to_string()))?;
    println!(
        "2. shim: coap://{coap}, REST http://{}/api/clients, package coap://{coap}/fw/{name}",
        running.http_addr
    );

    // 3. The simulated device.
    let endpoint = "demo-device".to_string();
    let log_path = work.join("device.log");
    let log = std::fs::File::create(&log_path).map_err(|e| DemoError::Io(log_path.clone(), e))?;
    let device_args = [
        format!("--server=coap://{coap}"),
        format!("--endpoint={endpoint}"),
        format!("--state-dir={}", work.join("device-state").display()),
        format!("--trust-anchor={}", anchor.display()),
        "--log-level=info".to_string(),
    ];
    println!(
        "   simulated device: {} (log {})",
        client.display(),
        log_path.display()
    );
    let _device = RunningDevice(
        Command::new(&client)
            .args(&device_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(DemoError::Spawn)?,
    );
    if campaign_view::wait_for(
        &shim,
        std::slice::from_ref(&endpoint),
        Duration::from_secs(30),
    )
    .await
    .is_err()
    {
        return Err(DemoError::NotRegistered(log_path));
    }
    let reg = shim.store.get_by_endpoint(&endpoint);
    let before = match reg.and_then(|r| shim.device(&r, Duration::from_secs(5))) {
        Some(d) => campaign::read_string(&d, &campaign::resource(3, 3))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    println!(
        "3. device {endpoint} registered, running firmware {}",
        before.as_deref().unwrap_or("?")
    );

    // 4. The update.
    let method = if args.push {
        Method::Push
    } else {
        Method::Pull
    };
    println!("4. {} update:", method.as_str());
    let plan = UpdatePlan {
        package: name,
        method,
        uri: None,
    };
    let cfg = CampaignConfig {
        timeouts: PhaseTimeouts {
            download: Duration::from_secs(120),
            update: Duration::from_secs(60),
            verify: Duration::from_secs(30),
            ..PhaseTimeouts::default()
        },
        poll_interval: Duration::from_millis(500),
        retries: 2,
        ..CampaignConfig::default()
    };
    let view = ProgressView::default();
    let jobs = campaign::run_campaign(
        &shim,
        &running.jobs,
        &[endpoint],
        &plan,
        cfg,
        1,
        view.hook(),
    )
    .await;
    let Some(job) = jobs.first() else {
        return Ok(false);
    };
    let opt = |v: Option<u8>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    println!(
        "5. final: State {}, Update Result {} ({}), firmware version {}",
        opt(job.state.map(State::code)),
        opt(job.result.map(UpdateResult::code)),
        job.result.map_or("no result", UpdateResult::meaning),
        job.firmware_version.as_deref().unwrap_or("?")
    );
    let ok = job.phase == JobPhase::Succeeded
        && job.firmware_version.as_deref() == Some(args.version.as_str());
    if ok {
        println!("demo: firmware updated to {}", args.version);
    } else {
        println!(
            "demo: update FAILED: {} (device log: {})",
            job.error
                .as_deref()
                .unwrap_or("firmware version did not change"),
            log_path.display()
        );
    }
    Ok(ok)
}
