//! `lwm2m-client`: a simulated LwM2M device on loopback.
//!
//! Its flash, slots and bootloader are device-port's `SimDevice` kept in `--state-dir`: the
//! first run installs a factory image (signed with a factory key created there), and /3/0/3
//! reports the version of the image actually booted. Ctrl-C deregisters before exiting.

use clap::Parser;
use device_port::image::ImageBuilder;
use device_port::{FactoryImage, SimConfig, SimDevice};
use lwm2m_client::codec::Path;
use lwm2m_client::objects::{Device, DeviceInfo, FirmwareUpdate, PackageSink, Security, Server};
use lwm2m_client::runtime::{self, Control};
use lwm2m_client::{Config, Engine, Event, ObjectHandler};
use object5::author::{self, Delivery, PackageSpec, SignAlg};
use object5::UpdateResult;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A simulated LwM2M 1.1 device (UDP, NoSec) that registers with an LwM2M server, answers
/// device-management requests (TLV, SenML JSON/CBOR, text, opaque, link-format) and keeps its
/// flash in a state directory.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// LwM2M server URI (coap://host[:port], IPv4, [IPv6] or a name).
    #[arg(long, default_value = "coap://127.0.0.1:5683")]
    server: String,
    /// Bootstrap server URI: bootstrap first (client-initiated) and register with the server
    /// it provisions; --server is then ignored.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Endpoint client name sent as `ep`.
    #[arg(long, default_value = "sim-device")]
    endpoint: String,
    /// Directory holding the simulated flash (flash.bin), key-value store and factory key.
    #[arg(long, default_value = "lwm2m-client-state")]
    state_dir: PathBuf,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    lifetime: u32,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// PEM public key (SPKI, P-256) of an update signer; repeat for several.
    #[arg(long = "trust-anchor")]
    trust_anchors: Vec<PathBuf>,
    /// Version of the factory image installed on the first run.
    #[arg(long, default_value = "1.0.0")]
    factory_version: String,
}

/// Failures that end the process with one line on stderr.
#[derive(Debug)]
enum CliError {
    Io(PathBuf, std::io::Error),
    Key(author::KeyError),
    Device(device_port::DeviceError),
    Uri(runtime::BadServerUri),
    Net(std::io::Error),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Key(e) => write!(f, "key: {e}"),
            Self::Device(e) => write!(f, "device: {e}"),
            Self::Uri(e) => write!(f, "{e}"),
            Self::Net(e) => write!(f, "network: {e}"),
        }
    }
}

/// Pushed packages go to `<state-dir>/package.bin` as they arrive. Installing them needs the
/// Object 5 verifier and slot manager (a separate issue), so Execute Update reports Update
/// Result 8 (update failed) instead of pretending to install.
struct StateDirPackage {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl PackageSink for StateDirPackage {
    fn begin(&mut self, _total: Option<u32>) -> Result<(), UpdateResult> {
        self.file =
            Some(std::fs::File::create(&self.path).map_err(|_| UpdateResult::NotEnoughFlash)?);
        Ok(())
    }
    fn write(&mut self, _offset: u64, data: &[u8]) -> Result<(), UpdateResult> {
        let f = self.file.as_mut().ok_or(UpdateResult::ConnectionLost)?;
        f.write_all(data).map_err(|_| UpdateResult::NotEnoughFlash)
    }
    fn finish(&mut self) -> Result<(String, String), UpdateResult> {
        let f = self.file.take().ok_or(UpdateResult::ConnectionLost)?;
        f.sync_all().map_err(|_| UpdateResult::NotEnoughFlash)?;
        Ok((String::new(), String::new()))
    }
    fn reset(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.path);
    }
    fn install(&mut self) -> Result<(), UpdateResult> {
        tracing::warn!(
            "installing needs the Object 5 verifier and slot manager, not wired in this build"
        );
        Err(UpdateResult::UpdateFailed)
    }
}

fn read(path: &FsPath) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Io(path.to_owned(), e))
}

/// The factory signing key lives in the state directory so every run trusts the same key.
fn factory_key(state_dir: &FsPath) -> Result<String, CliError> {
    let path = state_dir.join("factory-key.pem");
    if path.exists() {
        return read(&path);
    }
    let (private, _public) = author::generate_key_pem().map_err(CliError::Key)?;
    std::fs::write(&path, &private).map_err(|e| CliError::Io(path.clone(), e))?;
    Ok(private)
}

fn open_device(args: &Args) -> Result<SimDevice, CliError> {
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| CliError::Io(args.state_dir.clone(), e))?;
    let pem = factory_key(&args.state_dir)?;
    let key = author::signing_key_from_pem(&pem).map_err(CliError::Key)?;
    let public = author::public_pem_from_private(&pem).map_err(CliError::Key)?;
    let mut anchors = vec![author::public_sec1_from_pem(&public).map_err(CliError::Key)?];
    for p in &args.trust_anchors {
        anchors.push(author::public_sec1_from_pem(&read(p)?).map_err(CliError::Key)?);
    }
    let image = ImageBuilder::new("sim-fw", &args.factory_version)
        .total_len(16 * 1024)
        .build();
    let vendor = author::vendor_id("sim.example");
    let spec = PackageSpec {
        vendor_id: vendor,
        class_id: author::class_id("sim-device", &vendor),
        sequence_number: 1,
        version: args.factory_version.clone(),
        name: "sim-fw".into(),
        image: &image,
        delivery: Delivery::Uri("coap://127.0.0.1/factory".into()),
        alg: SignAlg::Esp256,
    };
    let envelope = author::build_envelope(&spec, &key).map_err(CliError::Key)?;
    let config = SimConfig::new(anchors, FactoryImage { envelope, image })
        .with_power_cut_from_env()
        .map_err(CliError::Device)?;
    SimDevice::open(&args.state_dir, config).map_err(CliError::Device)
}

async fn run(args: Args) -> Result<(), CliError> {
    let mut device = open_device(&args)?;
    let first_uri = args.bootstrap.as_deref().unwrap_or(&args.server);
    let server = runtime::resolve_server(first_uri)
        .await
        .map_err(CliError::Uri)?;
    loop {
        let booted = device.booted().cloned();
        let (name, version) = booted
            .as_ref()
            .map(|b| (b.image.name.clone(), b.image.version.clone()))
            .unwrap_or_default();
        tracing::info!(%version, slot = ?booted.as_ref().map(|b| b.slot), "booted");
        let info = DeviceInfo {
            manufacturer: "LwM2M SUIT project".into(),
            model: name,
            serial: args.endpoint.clone(),
            firmware_version: version,
        };
        let mut dev = Device::new(info);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        dev.set_time(0, i64::try_from(unix).unwrap_or(0));
        let package = StateDirPackage {
            path: args.state_dir.join("package.bin"),
            file: None,
        };
        let (security, mut server_object) = match &args.bootstrap {
            Some(bs) => (Security::bootstrap(bs), Server::new(args.lifetime)),
            None => (Security::no_sec(&args.server), Server::new(args.lifetime)),
        };
        // With a bootstrap server, the Server object is provisioned by it.
        server_object.present = args.bootstrap.is_none();
        let objects: Vec<Box<dyn ObjectHandler>> = vec![
            Box::new(security),
            Box::new(server_object),
            Box::new(dev),
            Box::new(FirmwareUpdate::new(package)),
        ];
        let mut config = Config::new(&args.endpoint);
        config.lifetime_s = args.lifetime;
        config.rng_seed = unix ^ u64::from(std::process::id()) << 32;
        let mut engine = Engine::new(config, server, objects);
        if args.bootstrap.is_some() {
            engine.bootstrap(0);
        }
        let socket = runtime::bind_for(&server).await.map_err(CliError::Net)?;
        tracing::info!(local = %socket.local_addr().map_err(CliError::Net)?, %server, endpoint = %args.endpoint, "starting");
        let mut reboot = false;
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        runtime::run(
            &mut engine,
            &socket,
            ctrl_c,
            Duration::from_secs(5),
            |e: &mut Engine<_>, now, ev| {
                match &ev {
                    Event::Bootstrapped { server_uri } => match runtime::resolve_server_now(server_uri) {
                        Ok(addr) => {
                            tracing::info!(%server_uri, "bootstrapped");
                            e.set_server(addr);
                            e.start(now);
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "bootstrap provisioned an unusable server");
                            return Control::Shutdown;
                        }
                    },
                    Event::BootstrapFailed { code, retry_in_ms } => tracing::warn!(
                        code = code.as_deref().unwrap_or("timeout"),
                        retry_in_ms,
                        "bootstrap failed"
                    ),
                    Event::Registered { location } => {
                        tracing::info!(%location, "registered");
                        if let Err(e) = device.confirm() {
                            tracing::debug!(error = %e, "image not confirmed");
                        }
                    }
                    Event::RegistrationFailed { code, retry_in_ms } => {
                        tracing::warn!(
                            code = code.as_deref().unwrap_or("timeout"),
                            retry_in_ms,
                            "registration failed"
                        )
                    }
                    Event::Deregistered => tracing::info!("deregistered"),
                    Event::Executed { path } if *path == Path::resource(3, 0, 4) => {
                        tracing::info!("reboot requested");
                        reboot = true;
                        return Control::Stop;
                    }
                    other => tracing::debug!(event = ?other, "event"),
                }
                Control::Continue
            },
        )
        .await
        .map_err(CliError::Net)?;
        if !reboot {
            return Ok(());
        }
        device.reboot().map_err(CliError::Device)?;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Device(device_port::DeviceError::PowerLost)) => {
            ExitCode::from(device_port::device::POWER_CUT_EXIT_CODE as u8)
        }
        Err(e) => {
            eprintln!("lwm2m-client: {e}");
            ExitCode::FAILURE
        }
    }
}
