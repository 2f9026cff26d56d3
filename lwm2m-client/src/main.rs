//! `lwm2m-client`: a simulated LwM2M device on loopback (see `lwm2m_client::sim::device`).

use clap::Parser;
use lwm2m_client::codec::content_format::DATA_FORMATS;
use lwm2m_client::codec::ContentFormat;
use lwm2m_client::sim::{
    self,
    device::{CliError, DeviceOptions},
};
use std::process::ExitCode;

/// A simulated LwM2M 1.1 device (CoAP over UDP, plain or DTLS with PSK or certificates) that
/// registers with an LwM2M server, answers device-management requests (TLV, SenML JSON/CBOR,
/// LwM2M JSON/CBOR, CBOR, text, opaque, link-format), keeps its flash in a state directory and
/// updates its firmware through Object 5 (signed SUIT packages, pulled over CoAP/HTTP(S) or
/// pushed with Block1).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    device: DeviceOptions,
    /// The content format announced as preferred at registration (Register `ct`, OMA TS
    /// Core 1.1 section 6.2.1): senml-cbor, senml-json, tlv or lwm2m-cbor. Reads without an
    /// Accept option of instances, objects and multiple resources are answered in it; requests
    /// in any of them (and text/plain, opaque, CBOR, LwM2M JSON) are accepted whichever is
    /// announced.
    #[arg(long, default_value = "senml-cbor", value_parser = parse_format)]
    preferred_format: ContentFormat,
}

fn parse_format(name: &str) -> Result<ContentFormat, String> {
    ContentFormat::from_data_format_name(name).ok_or_else(|| {
        let names: Vec<&str> = DATA_FORMATS.iter().map(|(n, _)| *n).collect();
        format!("unknown format {name:?} ({})", names.join(", "))
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what `kill`, service managers and container
/// runtimes send): either one ends the device the same way, with a De-register first (OMA
/// LwM2M TS Core 1.1 §6.2.3), so the server does not keep a stale registration until its
/// lifetime expires.
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGTERM; only Ctrl-C deregisters");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
        stop_requested().await;
        let _ = stop.send(true);
    });
    match sim::device::run_preferring(args.device, args.preferred_format, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Device(device_port::DeviceError::PowerLost)) => {
            ExitCode::from(device_port::device::POWER_CUT_EXIT_CODE as u8)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
