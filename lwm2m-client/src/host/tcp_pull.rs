//! Drives a [`TcpPull`] over a tokio TCP stream, through TLS (OpenSSL) for coaps+tcp://
//! (RFC 8323 §9: TLS 1.2 or later, the host's certificate checked against the trust store and
//! the URI's host name or address).
//!
//! Trust as for https:// pulls: the system's trust store (OpenSSL's default paths, which
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` redirect), plus the CA certificates the device was given
//! for package hosts. A device in PSK mode offers its PSK instead, as over DTLS: the LwM2M
//! PSK suites in TLS 1.2, the same key in TLS 1.3; a TLS 1.3 host that takes no PSK
//! answers with its certificate, which is checked as above. The connection is the pull's
//! own, like the UDP pull's socket; a stall longer than [`TcpPullConfig::stall`] or a closed
//! connection is "connection lost".

use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::host::dtls::{offer_psk_over_tls, Psk};
use crate::pull::coap::Pulled;
use crate::pull::coap_tcp::{TcpPull, TcpPullParams, TcpUri};
use crate::pull::{PackageSink, PullError, Resume};

/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How a CoAP-over-TCP pull is made.
#[derive(Clone, Debug)]
pub struct TcpPullConfig {
    /// Max-Message-Size, requests in flight and the slot's capacity.
    pub params: TcpPullParams,
    /// Connect and TLS handshake timeout, and the longest the host may stay silent while
    /// an answer is due.
    pub stall: Duration,
    /// CA certificates (PEM, one or more) trusted for coaps+tcp package hosts besides the
    /// system trust store.
    pub ca_pem: Option<Vec<u8>>,
    /// The device's PSK (its LwM2M server credentials), offered to coaps+tcp hosts.
    pub psk: Option<Psk>,
}

impl Default for TcpPullConfig {
    fn default() -> Self {
        Self {
            params: TcpPullParams::default(),
            stall: Duration::from_secs(30),
            ca_pem: None,
            psk: None,
        }
    }
}

fn lost(e: impl std::fmt::Display) -> PullError {
    PullError::ConnectionLost(e.to_string())
}

/// Trust configurations whose TLS contexts are kept: loading the system trust store parses
/// every certificate in it (tens of milliseconds), which a pull should not pay each time.
const KEPT_CONTEXTS: usize = 4;

/// What a TLS client context is made from: trusted CAs and the PSK, if any.
type Trust = (Option<Vec<u8>>, Option<(Vec<u8>, Vec<u8>)>);

/// The TLS client context for `config`'s CAs and PSK, made once per process (the system
/// store is read when it is made: a CA added to it later is seen after a restart).
fn connector(config: &TcpPullConfig) -> Result<SslConnector, PullError> {
    static KEPT: std::sync::Mutex<Vec<(Trust, SslConnector)>> = std::sync::Mutex::new(Vec::new());
    let trust: Trust = (
        config.ca_pem.clone(),
        config
            .psk
            .as_ref()
            .map(|p| (p.identity.clone(), p.key.clone())),
    );
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = kept.iter().find(|(k, _)| *k == trust) {
        return Ok(c.clone());
    }
    let c = new_connector(config)?;
    if kept.len() >= KEPT_CONTEXTS {
        kept.remove(0);
    }
    kept.push((trust, c.clone()));
    Ok(c)
}

/// A TLS client context: system trust store plus the configured CAs, peer verification on,
/// TLS 1.2+, and the PSK when the device has one.
fn new_connector(config: &TcpPullConfig) -> Result<SslConnector, PullError> {
    let tls = |e: openssl::error::ErrorStack| lost(format!("TLS setup: {e}"));
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(tls)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(tls)?;
    b.set_verify(SslVerifyMode::PEER);
    if let Some(pem) = &config.ca_pem {
        let certs = X509::stack_from_pem(pem).map_err(tls)?;
        for c in certs {
            b.cert_store_mut().add_cert(c).map_err(tls)?;
        }
    }
    if let Some(psk) = &config.psk {
        offer_psk_over_tls(&mut b, psk.clone()).map_err(tls)?;
    }
    Ok(b.build())
}

/// Pulls a coap+tcp:// or coaps+tcp:// `uri` into `sink`, resuming from `resume` when the
/// host still has the same ETag.
pub async fn fetch(
    uri: &str,
    resume: Option<&Resume>,
    config: &TcpPullConfig,
    sink: &mut dyn PackageSink,
) -> Result<Pulled, PullError> {
    let uri = TcpUri::parse(uri)?;
    let target = (uri.coap.host.as_str(), uri.coap.port);
    let addrs: Vec<_> = tokio::net::lookup_host(target)
        .await
        .map_err(|_| PullError::InvalidUri(format!("cannot resolve host {}", uri.coap.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(PullError::InvalidUri(format!(
            "no address for host {}",
            uri.coap.host
        )));
    }
    let stream = tokio::time::timeout(config.stall, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| lost("connect timed out"))?
        .map_err(lost)?;
    // Requests are small and answered one round trip later: no Nagle delay.
    stream.set_nodelay(true).map_err(lost)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let pull = TcpPull::new(uri.coap.clone(), resume, config.params, seed);
    if !uri.secure {
        return drive(stream, pull, sink, config.stall).await;
    }
    let ssl = connector(config)?
        .configure()
        .and_then(|c| c.into_ssl(&uri.coap.host))
        .map_err(|e| lost(format!("TLS setup: {e}")))?;
    let mut tls = SslStream::new(ssl, stream).map_err(|e| lost(format!("TLS setup: {e}")))?;
    tokio::time::timeout(config.stall, Pin::new(&mut tls).connect())
        .await
        .map_err(|_| lost("TLS handshake timed out"))?
        .map_err(|e| lost(format!("TLS handshake with the package host: {e}")))?;
    drive(tls, pull, sink, config.stall).await
}

/// Moves bytes between `stream` and `pull` until the package is stored or the link fails.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut pull: TcpPull,
    sink: &mut dyn PackageSink,
    stall: Duration,
) -> Result<Pulled, PullError> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if let Some(out) = pull.poll_transmit() {
            stream.write_all(&out).await.map_err(lost)?;
        }
        let n = match tokio::time::timeout(stall, stream.read(&mut buf)).await {
            Err(_) => {
                return Err(lost(format!(
                    "no answer from the package host in {stall:?}"
                )))
            }
            Ok(Err(e)) => return Err(lost(e)),
            Ok(Ok(0)) => return Err(lost("the package host closed the connection")),
            Ok(Ok(n)) => n,
        };
        match pull.handle_bytes(buf.get(..n).unwrap_or_default(), sink) {
            Ok(None) => {}
            Ok(Some(done)) => {
                // Done with the connection: close it (TLS: with close_notify).
                let _ = tokio::time::timeout(stall, stream.shutdown()).await;
                return Ok(done);
            }
            Err(e) => {
                // A protocol error leaves an Abort to send (RFC 8323 §5.6) before closing.
                if let Some(abort) = pull.poll_transmit() {
                    let _ = tokio::time::timeout(stall, stream.write_all(&abort)).await;
                }
                return Err(e);
            }
        }
    }
}
