//! The `conformance` subcommand: starts a shim, waits for the device under test to register,
//! runs the OMA ETS firmware cases (751-780 as far as a server can drive them) and prints a
//! table of case, verdict and evidence. Exits non-zero on any failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use lwm2m_server_shim::firmware::campaign::{CampaignConfig, PhaseTimeouts};
use lwm2m_server_shim::firmware::conformance::{self, ConformanceConfig, Verdict};
use lwm2m_server_shim::packages::test_packages::{Signer, SIM_CLASS, SIM_VENDOR};

use crate::cli::campaign_view;
use crate::cli::update::{in_process_config, private_package_dir, start_logged};

/// Options of `conformance`; the defaults work on loopback with `lwm2m-client`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  lwm2m-server-shim keygen --out k.pem\n  \
    lwm2m-server-shim conformance --endpoint dev1 --key k.pem &\n  \
    lwm2m-client --endpoint dev1 --trust-anchor k.pub.pem")]
pub struct ConformanceArgs {
    /// Endpoint name of the device under test.
    #[arg(long)]
    endpoint: String,
    /// PKCS#8 P-256 key that signs the test packages; the device must trust its public key
    /// (for lwm2m-client: --trust-anchor <key>.pub.pem).
    #[arg(long)]
    key: PathBuf,
    /// Vendor the device accepts (name or UUID).
    #[arg(long, default_value = SIM_VENDOR)]
    vendor_id: String,
    /// Device class the device accepts (name or UUID).
    #[arg(long, default_value = SIM_CLASS)]
    class_id: String,
    /// Cases to run, e.g. `770,779` or `1.0-int-751`; default: all but 774 (out of RAM cannot
    /// be provoked from the server).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Seconds to wait for the device to register.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// Seconds of each CoAP exchange.
    #[arg(long, default_value_t = 5)]
    timeout_request: u64,
    /// Seconds a download may take.
    #[arg(long, default_value_t = 120)]
    timeout_download: u64,
    /// Seconds from Execute until the device is back.
    #[arg(long, default_value_t = 60)]
    timeout_update: u64,
    /// UDP address of the CoAP endpoint the device registers with.
    #[arg(long, default_value = "127.0.0.1:5683")]
    coap: SocketAddr,
    /// TCP address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
}

/// Runs the cases.
pub fn conformance(args: ConformanceArgs) -> ExitCode {
    campaign_view::init_logging("warn");
    let Some(runtime) = campaign_view::runtime() else {
        return ExitCode::FAILURE;
    };
    let signer = match std::fs::read_to_string(&args.key)
        .map_err(|e| e.to_string())
        .and_then(|pem| {
            Signer::from_pem(&pem, &args.vendor_id, &args.class_id).map_err(|e| e.to_string())
        }) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(key = %args.key.display(), error = %e, "cannot use the signing key");
            return ExitCode::FAILURE;
        }
    };
    let cfg = ConformanceConfig {
        signer,
        campaign: CampaignConfig {
            timeouts: PhaseTimeouts {
                request: Duration::from_secs(args.timeout_request.max(1)),
                download: Duration::from_secs(args.timeout_download.max(1)),
                update: Duration::from_secs(args.timeout_update.max(1)),
                verify: Duration::from_secs(args.timeout_update.max(1)),
            },
            poll_interval: Duration::from_millis(500),
            retries: 1,
            ..CampaignConfig::default()
        },
        notify_within: Duration::from_secs(15),
    };
    let dir = private_package_dir("conformance");
    let config = in_process_config(args.coap, args.http, &dir, args.timeout_request);
    let code = runtime.block_on(async {
        let Some(running) = start_logged(config).await else {
            return ExitCode::FAILURE;
        };
        let shim = running.shim.clone();
        eprintln!(
            "shim on coap://{}; waiting for {}...",
            args.coap, args.endpoint
        );
        let wanted = std::slice::from_ref(&args.endpoint);
        if campaign_view::wait_for(&shim, wanted, Duration::from_secs(args.wait))
            .await
            .is_err()
        {
            tracing::error!(endpoint = %args.endpoint, "device did not register in time");
            return ExitCode::FAILURE;
        }
        let reports =
            match conformance::run(&shim, &running.jobs, &args.endpoint, &cfg, &args.cases).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "conformance run failed");
                    return ExitCode::FAILURE;
                }
            };
        println!("{:<12} {:<46} {:<7} evidence", "case", "title", "verdict");
        for r in &reports {
            println!(
                "{:<12} {:<46} {:<7} {}",
                r.id,
                r.title,
                r.verdict.as_str(),
                r.evidence
            );
        }
        let failed = reports
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .count();
        println!("{} cases, {failed} failed", reports.len());
        if failed == 0 && !reports.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}
