//! CoAP over TCP/TLS (RFC 8323) for benchmarks and tests: a package host serving one package
//! on loopback, and a timed pull from it, so a bench can put coap+tcp rows next to its others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lwm2m_client::host::tcp_pull::{fetch, TcpPullConfig};
use lwm2m_client::pull::{MemSink, PullError};
use lwm2m_server_shim::packages::coap_tcp::{
    TcpHostError, TcpHostLimits, TcpPackageHost, TlsCredentials, TlsIdentity,
};
use lwm2m_server_shim::packages::host::PackageHost;

/// A running coap+tcp or coaps+tcp host with one package.
pub struct TcpHost {
    /// The listener (stops when dropped).
    pub listener: TcpPackageHost,
    /// The package's URL (`coap+tcp://127.0.0.1:PORT/fw/NAME` or `coaps+tcp://...`).
    pub url: String,
    /// The host's self-signed certificate (PEM) for coaps+tcp, to trust when pulling.
    pub ca_pem: Option<Vec<u8>>,
}

/// Starts a host on `addr` (port 0: a free one; must run inside a tokio runtime) serving
/// `body` as `name` from `dir`, over TLS with a fresh self-signed certificate when `secure`.
pub async fn start_tcp_host(
    addr: SocketAddr,
    dir: &Path,
    name: &str,
    body: &[u8],
    secure: bool,
) -> Result<TcpHost, TcpHostError> {
    let packages =
        Arc::new(PackageHost::new(dir).map_err(|e| TcpHostError::Bind(std::io::Error::other(e)))?);
    packages
        .store(name, body)
        .map_err(|e| TcpHostError::Bind(std::io::Error::other(e)))?;
    let identity = match secure {
        true => Some(TlsIdentity::self_signed(&[addr.ip()]).map_err(TcpHostError::Tls)?),
        false => None,
    };
    let tls = identity.clone().map(TlsCredentials::from);
    let listener =
        TcpPackageHost::start(addr, packages, tls.as_ref(), TcpHostLimits::default()).await?;
    Ok(TcpHost {
        url: listener.url(name),
        listener,
        ca_pem: identity.map(|i| i.cert_pem),
    })
}

/// Pulls `url` (coap+tcp:// or coaps+tcp://, trusting `ca_pem`) into memory with the device's
/// default settings (17 KiB messages, 4 requests in flight); returns the bytes and how long
/// the pull took, connection set-up included.
pub async fn timed_tcp_pull(
    url: &str,
    ca_pem: Option<&[u8]>,
) -> Result<(Vec<u8>, Duration), PullError> {
    let config = TcpPullConfig {
        ca_pem: ca_pem.map(<[u8]>::to_vec),
        ..TcpPullConfig::default()
    };
    let mut sink = MemSink::default();
    let t0 = Instant::now();
    fetch(url, None, &config, &mut sink).await?;
    Ok((sink.data, t0.elapsed()))
}
