//! `lwm2m-client`: a simulated LwM2M device on loopback (see `lwm2m_client::sim_device`).

use clap::Parser;
use lwm2m_client::sim_device::{self, CliError, DeviceOptions};
use std::process::ExitCode;

/// A simulated LwM2M 1.1 device (UDP, NoSec) that registers with an LwM2M server, answers
/// device-management requests (TLV, SenML JSON/CBOR, text, opaque, link-format), keeps its
/// flash in a state directory and updates its firmware through Object 5 (signed SUIT packages,
/// pulled over CoAP/HTTP(S) or pushed with Block1).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    device: DeviceOptions,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.device.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    match sim_device::run(args.device, shutdown).await {
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
