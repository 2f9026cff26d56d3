//! The `serve` subcommand: runs the shim until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use clap::Args;
use lwm2m_server_shim::api::http_server::{HttpLimits, DEFAULT_MAX_CONNECTIONS};
use lwm2m_server_shim::app::{self, ShimConfig};
use lwm2m_server_shim::packages::coap_tcp::TlsIdentity;
use lwm2m_server_shim::server::registration::store::InMemoryStore;
use lwm2m_server_shim::server::security::store::InMemorySecurityStore;

use crate::cli::campaign_view;
use crate::cli::dtls_credentials::{CertCredentials, PskCredentials};
use crate::cli::read_file;
use object5::author;

/// Options of `serve`; the defaults work on loopback.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// UDP address of a plain (unauthenticated) CoAP endpoint: registrations, device
    /// management, package host /fw/<name>. Closed unless given, e.g. `--coap 127.0.0.1:5683`.
    #[arg(long)]
    coap: Option<SocketAddr>,
    /// UDP address of the CoAP-over-DTLS endpoint (PSK: TLS_PSK_WITH_AES_128_CCM_8 preferred,
    /// AES_128_GCM_SHA256 and AES_128_CBC_SHA256 taken): the same resources, for peers with a
    /// key from --psk, --security-file or /api/security/clients.
    #[arg(long, default_value = "127.0.0.1:5684")]
    coaps: SocketAddr,
    /// Do not open the coaps endpoint (then --coap is required).
    #[arg(long)]
    no_coaps: bool,
    #[command(flatten)]
    psk: PskCredentials,
    #[command(flatten)]
    cert: CertCredentials,
    /// TCP address of a CoAP-over-TCP package host (RFC 8323 coap+tcp, BERT blocks):
    /// `GET /fw/<name>`. Port 0 picks a free port; the URL is printed. Closed unless given.
    #[arg(long, value_name = "ADDR")]
    coap_tcp: Option<SocketAddr>,
    /// TCP address of a CoAP-over-TLS package host (coaps+tcp), like --coap-tcp. Its
    /// certificate is --tls-cert, else the DTLS --cert, else a self-signed one whose PEM is
    /// written to a file named in the printed line (devices trust it with --pull-ca).
    #[arg(long, value_name = "ADDR")]
    coaps_tcp: Option<SocketAddr>,
    /// Certificate (PEM, chain allowed) of the coaps+tcp host.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// TCP address of the HTTP REST API (/api/clients, /api/event, /api/packages, /fw/<name>).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// HTTP connections open at once. At the cap a new connection closes the one idle the
    /// longest (or gets 503 when all serve a request); lowered at start to stay 256 below the
    /// descriptor limit (`ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    http_max_connections: u32,
    /// Seconds an HTTP client may take to send a request head once it began (slow clients are
    /// disconnected).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    http_header_timeout: u64,
    /// Seconds an HTTP connection with no request in progress stays open.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    http_idle_timeout: u64,
    /// Directory of firmware packages to serve; uploads land here too.
    #[arg(long, default_value = "packages")]
    packages: PathBuf,
    /// Directory of OMA DDF object models (`*.xml`, as OMA publishes them) shown by
    /// GET /api/objectspecs/{ep} besides the built-in objects 0, 1, 3 and 5, as Leshan's demo
    /// loads them with -m; a file that is not a valid model stops the start.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Seconds a queue-mode client (b=UQ, or Q in LwM2M 1.1) stays reachable after it last sent
    /// something; then it counts as sleeping (SLEEPING event) and REST calls to it wait until
    /// it sends again (answered {"delayed":true}, then a REQUEST_RESPONSE event).
    #[arg(long, value_name = "SECONDS", default_value_t = 93, value_parser = clap::value_parser!(u64).range(1..))]
    awake_time: u64,
    /// Block size in bytes for Block1 pushes and Block2 package downloads (16..=1024).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(16..=1024))]
    block_size: u16,
    /// Serve package downloads with Block2 only, ignoring RFC 9177 Q-Block2 requests (by
    /// default a device asking with Q-Block2 gets bursts of 10 blocks per round trip).
    #[arg(long)]
    no_qblock: bool,
    /// Push firmware packages with RFC 9177 Q-Block1: bursts of 10 blocks per round trip
    /// instead of Block1's one, falling back to Block1 for each device that answers 4.02 Bad
    /// Option or takes the first block as the whole body. Off by default: a device that
    /// ignores the critical option (RFC 7252 5.4.1 says it must refuse it; Leshan's client
    /// does not) is first written a 1 KiB package before Block1 sends the whole one.
    #[arg(long)]
    qblock_push: bool,
    /// Default request timeout in seconds when a REST call gives no `timeout`; each block of a
    /// block-wise transfer restarts it.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Kernel receive buffer (SO_RCVBUF) in bytes of the coap and coaps UDP sockets. The
    /// system default (208 KiB on Linux) overflows when thousands of devices send at once and
    /// the kernel drops what does not fit; the kernel caps the value at net.core.rmem_max and
    /// the granted size is logged. 0 keeps the system default.
    #[arg(long, value_name = "BYTES", default_value_t = app::DEFAULT_UDP_RECV_BUFFER)]
    udp_recv_buffer: usize,
    /// Kernel send buffer (SO_SNDBUF) in bytes of the same sockets (capped at
    /// net.core.wmem_max); the system default unless given.
    #[arg(long, value_name = "BYTES")]
    udp_send_buffer: Option<usize>,
    /// Firmware jobs started through the REST API (POST /api/clients/{ep}/firmware) that run
    /// at once; later ones wait in phase QUEUED, so a script may start a whole fleet.
    #[arg(long, default_value_t = lwm2m_server_shim::firmware::jobs::DEFAULT_MAX_ACTIVE_JOBS, value_parser = clap::value_parser!(u32).range(1..))]
    max_active_jobs: u32,
}

/// Runs the server; a start-up failure is one `error:` line naming the file or address.
pub fn serve(args: ServeArgs) -> ExitCode {
    campaign_view::init_logging("info");
    // A self-signed coaps+tcp certificate is made at start: its PEM must be shown.
    let generated_cert =
        args.coaps_tcp.is_some() && args.tls_cert.is_none() && args.cert.cert.is_none();
    let (config, security) = match configure(args) {
        Ok(c) => c,
        Err(e) => return crate::fail(e),
    };
    let Some(runtime) = campaign_view::runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let store = Arc::new(InMemoryStore::new());
        let running = match app::start_with_stores(config, store, security).await {
            Ok(r) => r,
            Err(e) => return crate::fail(e),
        };
        if let Err(e) = print_tcp_hosts(&running, generated_cert) {
            return crate::fail(e);
        }
        tracing::info!(coap = ?running.coap_addr, coaps = ?running.coaps_addr, http = %running.http_addr, "serving; Ctrl-C stops");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            () = running.wait() => ExitCode::FAILURE,
        }
    })
}

/// Prints the URL of each CoAP-over-TCP/TLS package host, and writes a self-signed coaps+tcp
/// certificate where devices can be pointed at it.
fn print_tcp_hosts(running: &app::RunningShim, generated_cert: bool) -> Result<(), String> {
    if let Some(h) = &running.coap_tcp {
        println!("coap+tcp package host: {}", h.url("<name>"));
    }
    let (Some(h), Some(pem)) = (&running.coaps_tcp, &running.tls_cert_pem) else {
        return Ok(());
    };
    if !generated_cert {
        println!("coaps+tcp package host: {}", h.url("<name>"));
        return Ok(());
    }
    let path = std::env::temp_dir().join(format!(
        "lwm2m-shim-coaps-tcp-{}.pem",
        h.local_addr().port()
    ));
    // In the shared temporary directory: an earlier run's file on this port goes, and the new
    // one is created afresh (a link planted under that name is not followed).
    let _ = std::fs::remove_file(&path);
    object5::author::create_pem_file(&path, pem, false)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "coaps+tcp package host: {} (self-signed certificate: {}; devices trust it with --pull-ca)",
        h.url("<name>"),
        path.display()
    );
    Ok(())
}

/// The shim's configuration and security store from the options and the files they name.
fn configure(args: ServeArgs) -> Result<(ShimConfig, Arc<InMemorySecurityStore>), String> {
    let security = args.psk.store()?;
    let dtls_certificate = args.cert.certificate()?;
    let tls_identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsIdentity {
            cert_pem: read_file(cert, author::CERT_FILE_LIMIT)?,
            key_pem: read_file(key, author::KEY_FILE_LIMIT)?,
        }),
        _ => None,
    };
    let config = ShimConfig {
        coap_tcp_addr: args.coap_tcp,
        coaps_tcp_addr: args.coaps_tcp,
        tls_identity,
        coap_addr: args.coap,
        coaps_addr: (!args.no_coaps).then_some(args.coaps),
        dtls_certificate,
        http_addr: args.http,
        http_limits: HttpLimits {
            header_read_timeout: Duration::from_secs(args.http_header_timeout),
            idle_timeout: Duration::from_secs(args.http_idle_timeout),
            max_connections: args.http_max_connections as usize,
        },
        package_dir: args.packages,
        block_size: usize::from(args.block_size),
        qblock: (!args.no_qblock).then(Default::default),
        push_qblock: args.qblock_push.then(Default::default),
        default_timeout: Duration::from_secs(args.timeout),
        udp_recv_buffer: (args.udp_recv_buffer > 0).then_some(args.udp_recv_buffer),
        udp_send_buffer: args.udp_send_buffer.filter(|b| *b > 0),
        max_active_jobs: args.max_active_jobs,
        models_dir: args.models,
        awake_time: Duration::from_secs(args.awake_time),
        ..ShimConfig::default()
    };
    Ok((config, security))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(args: &[&str]) -> ShimConfig {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("arguments parse");
        configure(cli.serve).expect("configuration").0
    }

    /// `conformance`'s names for the certificate options work for `serve` too.
    #[test]
    fn the_certificate_options_take_conformances_names_too() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
                .map(|c| c.serve.cert)
        };
        let names = [
            "--dtls-cert",
            "c.pem",
            "--dtls-key",
            "k.pem",
            "--dtls-ca",
            "ca.pem",
        ];
        let cert = parse(&names).expect("arguments parse");
        assert_eq!(cert.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(cert.key, Some(PathBuf::from("k.pem")));
        assert_eq!(cert.ca, Some(PathBuf::from("ca.pem")));
        let cert = parse(&["--cert", "c.pem", "--key", "k.pem", "--ca", "ca.pem"]).unwrap();
        assert_eq!(cert.cert, Some(PathBuf::from("c.pem")));
        assert!(
            parse(&["--dtls-cert", "c.pem"]).is_err(),
            "key and CA required"
        );
    }

    #[test]
    fn q_block2_is_served_unless_turned_off() {
        assert!(config(&[]).qblock.is_some());
        assert!(config(&["--no-qblock"]).qblock.is_none());
        assert!(config(&[]).push_qblock.is_none());
        assert!(config(&["--qblock-push"]).push_qblock.is_some());
    }
}
