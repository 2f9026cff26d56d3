//! The `conformance` subcommand: starts a shim, waits for the device under test to register,
//! runs the conformance cases (OMA ETS firmware cases 751-780 and the core client cases a
//! server can drive) with the device's own packages or SUIT packages for `lwm2m-client`, prints
//! a table of case, verdict and evidence, and writes JUnit XML and JSON reports on request.
//! Exits non-zero only when a case FAILed (or the run could not start).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use lwm2m_server_shim::conformance::profile::{PackageFile, PackageRole, Profile};
use lwm2m_server_shim::conformance::{report, ConformanceConfig, PackageSource, Selection};
use lwm2m_server_shim::packages::test_packages::{Signer, SIM_CLASS, SIM_VENDOR};

use crate::cli::campaign_view;
use crate::cli::dtls_credentials::{DtlsCertCredentials, PskCredentials};
use crate::cli::read_file;
use crate::cli::update::{in_process_config, private_package_dir, start_logged};
use object5::author;

/// Options of `conformance`; the defaults work on loopback with `lwm2m-client`.
#[derive(Args, Debug)]
#[command(
    after_help = "Our simulated device (SUIT packages signed with --key):\n  \
    lwm2m-server-shim keygen --out k.pem\n  \
    lwm2m-server-shim conformance --endpoint dev1 --key k.pem --report out &\n  \
    lwm2m-client --endpoint dev1 --trust-anchor k.pub.pem\n\
    Any other client, with its own firmware packages:\n  \
    lwm2m-server-shim conformance --endpoint board7 --package-good fw2.bin \
    --package-corrupt bad.bin --report out\n  \
    (or --profile board7.toml; see the conformance::profile docs)\n\
    Verdicts: PASS, FAIL, N/A (the case does not apply: the reason says why), INCONCLUSIVE \
    (no answer, timeout named; or not provokable from a server)."
)]
pub struct ConformanceArgs {
    /// Endpoint name of the device under test.
    #[arg(long)]
    endpoint: String,
    /// PKCS#8 P-256 key that signs SUIT test packages for lwm2m-client (which must trust its
    /// public key: --trust-anchor <key>.pub.pem). Not needed with device-native packages.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Vendor the device accepts (name or UUID), for SUIT packages.
    #[arg(long, default_value = SIM_VENDOR)]
    vendor_id: String,
    /// Device class the device accepts (name or UUID), for SUIT packages.
    #[arg(long, default_value = SIM_CLASS)]
    class_id: String,
    /// Device-native package that installs and succeeds (Update Result 1). Repeat it to give
    /// one per update to a device that refuses a version it ran before; updates use them in
    /// turn.
    #[arg(long, value_name = "FILE")]
    package_good: Vec<PathBuf>,
    /// A second good package, for cases that update more than once.
    #[arg(long = "package-good-2", value_name = "FILE")]
    package_good_2: Option<PathBuf>,
    /// Package that fails the integrity check (Update Result 5).
    #[arg(long, value_name = "FILE")]
    package_corrupt: Option<PathBuf>,
    /// Package of a type the device does not take (Update Result 6).
    #[arg(long, value_name = "FILE")]
    package_wrong_type: Option<PathBuf>,
    /// Package too large for the device (Update Result 2, or 4.13 on a push).
    #[arg(long, value_name = "FILE")]
    package_too_large: Option<PathBuf>,
    /// Package that installs and then fails (Update Result 8).
    #[arg(long, value_name = "FILE")]
    package_failing: Option<PathBuf>,
    /// Device profile (TOML, or JSON): its packages and expectations (Update Results used,
    /// reboot on update, timeouts). Package flags override its entries.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Cases to run: ids (1.0-int-771), ETS numbers (771), core-<number>, or groups (fw, core,
    /// reg, dm, ir, send, all); default: every case a server can provoke.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Folder for junit.xml and report.json.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
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
    /// Seconds to wait for a notification or registration Update the device owes.
    #[arg(long, default_value_t = 15)]
    timeout_notify: u64,
    /// Longest wait, in seconds, for a queue-mode device that sleeps to wake up (its next
    /// Update or other message) before a request is sent; the device's remaining lifetime
    /// bounds it too. A device still asleep then makes the rest INCONCLUSIVE.
    #[arg(long, default_value_t = 300)]
    timeout_wake: u64,
    /// UDP address of the CoAP endpoint the device registers with.
    #[arg(long, default_value = "127.0.0.1:5683")]
    coap: SocketAddr,
    /// UDP address of a CoAP-over-DTLS endpoint too, for a device that registers only over
    /// DTLS (PSK from --psk or --security-file, as `serve` takes them; certificates from
    /// --dtls-cert, --dtls-key and --dtls-ca, as `serve` takes --cert, --key and --ca); the
    /// cases run the same over whichever the device registered on. Closed unless given.
    #[arg(long, value_name = "ADDR")]
    coaps: Option<SocketAddr>,
    #[command(flatten)]
    psk: PskCredentials,
    #[command(flatten)]
    cert: DtlsCertCredentials,
    /// TCP address of the REST API and the http:// package host.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
}

impl ConformanceArgs {
    /// The packages and expectations: the profile, with the flags over it; every named file
    /// must exist.
    fn profile(&self) -> Result<Option<Profile>, String> {
        let mut profile = match &self.profile {
            Some(p) => Profile::load(p).map_err(|e| e.to_string())?,
            None => Profile::default(),
        };
        let file = |p: &PathBuf| PackageFile {
            path: p.clone(),
            version: None,
        };
        for (role, files) in [
            (
                PackageRole::Good,
                self.package_good.iter().collect::<Vec<_>>(),
            ),
            (PackageRole::Good2, self.package_good_2.iter().collect()),
            (PackageRole::Corrupt, self.package_corrupt.iter().collect()),
            (
                PackageRole::WrongType,
                self.package_wrong_type.iter().collect(),
            ),
            (
                PackageRole::TooLarge,
                self.package_too_large.iter().collect(),
            ),
            (PackageRole::Failing, self.package_failing.iter().collect()),
        ] {
            if !files.is_empty() {
                profile
                    .packages
                    .set(role, files.into_iter().map(file).collect());
            }
        }
        profile.packages.check().map_err(|e| e.to_string())?;
        let native = self.profile.is_some() || !profile.packages.is_empty();
        Ok(native.then_some(profile))
    }

    fn signer(&self) -> Result<Signer, String> {
        let key = self.key.as_ref().ok_or(
            "give --key (SUIT packages for lwm2m-client) or the device's own packages \
             (--package-good ..., --profile)",
        )?;
        let pem = read_file(key, author::KEY_FILE_LIMIT)?;
        let pem = String::from_utf8_lossy(&pem);
        Signer::from_pem(&pem, &self.vendor_id, &self.class_id)
            .map_err(|e| format!("{}: {e}", key.display()))
    }

    /// The run's configuration, or the one line that says why there is none.
    fn config(&self, http: SocketAddr) -> Result<ConformanceConfig, String> {
        let (packages, expect) = match self.profile()? {
            Some(p) => (PackageSource::Native(p.packages), p.expect),
            None => (PackageSource::Suit(self.signer()?), Default::default()),
        };
        let secs = |s: u64| Duration::from_secs(s.max(1));
        let mut cfg = ConformanceConfig::new(packages).with_timeouts(
            secs(self.timeout_request),
            secs(self.timeout_download),
            secs(self.timeout_update),
        );
        cfg.expect = expect;
        cfg.notify_within = Duration::from_secs(self.timeout_notify.max(1));
        cfg.http_host = Some(http);
        cfg.register_within = Duration::from_secs(self.wait);
        cfg.wake_within = Duration::from_secs(self.timeout_wake);
        Ok(cfg)
    }
}

/// Runs the cases.
pub fn conformance(args: ConformanceArgs) -> ExitCode {
    campaign_view::init_logging("warn");
    // Everything that can be wrong with the options is reported before anything starts.
    let selection = match Selection::parse(&args.cases) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = args.config(args.http) {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    let security = match args.psk.store() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let dtls_certificate = match args.cert.certificate() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if dtls_certificate.is_some() && args.coaps.is_none() {
        tracing::error!("--dtls-cert is for the coaps endpoint: give --coaps too");
        return ExitCode::FAILURE;
    }
    let Some(runtime) = campaign_view::runtime() else {
        return ExitCode::FAILURE;
    };
    let dir = private_package_dir("conformance");
    let mut config = in_process_config(args.coap, args.http, &dir, args.timeout_request);
    // coap+tcp pulls from the same address as the CoAP endpoint, on a free port. No coaps+tcp:
    // the device could not know the certificate made for this run.
    config.coap_tcp_addr = Some(SocketAddr::new(args.coap.ip(), 0));
    config.coaps_addr = args.coaps;
    config.dtls_certificate = dtls_certificate;
    let code = runtime.block_on(async {
        let Some(running) = start_logged(config, security).await else {
            return ExitCode::FAILURE;
        };
        let cfg = match args.config(running.http_addr) {
            Ok(mut c) => {
                c.coap_tcp_host = running.coap_tcp.as_ref().map(|h| h.local_addr());
                c
            }
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let coaps = running
            .coaps_addr
            .map(|a| format!(" and coaps://{a}"))
            .unwrap_or_default();
        eprintln!(
            "shim on coap://{}{coaps}; waiting for {}...",
            args.coap, args.endpoint
        );
        let run = match running.conformance(&args.endpoint, &cfg, &selection).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        print!("{}", report::table(&run));
        if let Some(dir) = &args.report {
            if let Err(e) = report::write(dir, &run) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot write the reports");
                return ExitCode::FAILURE;
            }
            eprintln!("reports: {0}/junit.xml, {0}/report.json", dir.display());
        }
        if run.failed() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}
