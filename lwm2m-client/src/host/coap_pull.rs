//! Drives a [`QBlock2Pull`] (Q-Block2 or Block2) over a real UDP socket (tokio), through DTLS
//! for coaps://.
//!
//! The pull uses its own ephemeral socket, separate from the LwM2M server's, so a package host
//! elsewhere than the server works and a slow download never delays registration updates.
//! Only the package host is listened to on it: a datagram from any other source is dropped and
//! counted (a forged Block2 response would otherwise be fed to the verifier, RFC 7252 §5.3.2
//! matches responses by endpoint and token).
//!
//! Over DTLS a host that stops answering may have lost the session: a NAT gave the device a
//! new address (its mapping expired, the device changed cells), where a host without
//! Connection ID (RFC 9146; OpenSSL has none) has no session and drops the records, or the host
//! restarted. Once half the retransmissions went unanswered the pull handshakes again
//! (offering the session for resumption) on the same socket and goes on from the block it is
//! at, instead of giving up and starting the download over.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::coap::TxParams;
use crate::host::dtls::{DtlsContext, Plaintexts};
use crate::host::dtls_udp::DtlsUdp;
use crate::host::runtime::{default_local, ForeignDatagrams};
use crate::pull::coap::{CoapUri, Pulled};
use crate::pull::qblock::{QBlock2Pull, QBlockParams};
use crate::pull::{PackageSink, PullError, Resume};

/// How a CoAP pull is made.
#[derive(Clone)]
pub struct CoapPullConfig {
    /// Block size to ask for (16..=1024).
    pub block_size: usize,
    /// Retransmission parameters (RFC 7252 defaults; tests shorten them).
    pub tx: TxParams,
    /// Largest package accepted (the candidate slot's capacity).
    pub max_size: u64,
    /// DTLS context for coaps:// URIs (PSK or certificate); `None` refuses coaps://.
    pub dtls: Option<DtlsContext>,
    /// Ask with Q-Block2 (RFC 9177) and these parameters, falling back to Block2 when the
    /// host does not answer with it; `None` pulls with Block2 only.
    pub qblock: Option<QBlockParams>,
}

/// Transport below the pull: plain UDP, or a DTLS association on the same socket.
struct Link {
    socket: UdpSocket,
    peer: SocketAddr,
    dtls: Option<DtlsUdp>,
    /// The context and budget of coaps:// handshakes.
    handshake: Option<(DtlsContext, Duration)>,
}

/// The pull ended, done or not: the package host need not keep the session until its idle
/// timeout.
impl Drop for Link {
    fn drop(&mut self) {
        if let Some(d) = &mut self.dtls {
            d.close(&self.socket);
        }
    }
}

fn lost(e: impl std::fmt::Display) -> PullError {
    PullError::ConnectionLost(e.to_string())
}

impl Link {
    /// A DTLS session with the host, offering the current one (if any) for resumption; it
    /// replaces the current one, which the host no longer answers (its close_notify would not
    /// reach it either). A no-op in clear.
    async fn handshake(&mut self) -> Result<(), PullError> {
        let Some((ctx, budget)) = &self.handshake else {
            return Ok(());
        };
        let resume = self.dtls.as_ref().and_then(DtlsUdp::session);
        let fresh = DtlsUdp::connect(&self.socket, self.peer, ctx, resume.as_ref(), *budget)
            .await
            .map_err(lost)?;
        if resume.is_some() {
            tracing::info!(host = %self.peer, resumed = fresh.resumed(), "pull: new DTLS session");
        }
        // Put aside, not freed: the two share a resumed session, which OpenSSL would mark
        // not resumable for the next time.
        if let Some(old) = self.dtls.replace(fresh) {
            old.put_aside();
        }
        Ok(())
    }

    async fn send(&mut self, datagram: &[u8]) -> Result<(), PullError> {
        match &mut self.dtls {
            None => self.socket.send_to(datagram, self.peer).await.map(|_| ()),
            Some(d) => d.send(&self.socket, datagram).await,
        }
        .map_err(lost)
    }
}

async fn resolve(uri: &CoapUri) -> Result<SocketAddr, PullError> {
    let mut addrs = tokio::net::lookup_host((uri.host.as_str(), uri.port))
        .await
        .map_err(|_| PullError::InvalidUri(format!("cannot resolve host {}", uri.host)))?;
    addrs
        .next()
        .ok_or_else(|| PullError::InvalidUri(format!("no address for host {}", uri.host)))
}

/// Pulls `uri` into `sink`, resuming from `resume` when the host still has the same ETag.
pub async fn fetch(
    uri: &str,
    resume: Option<&Resume>,
    config: &CoapPullConfig,
    sink: &mut dyn PackageSink,
) -> Result<Pulled, PullError> {
    fetch_counting(uri, resume, config, sink, &ForeignDatagrams::default()).await
}

/// [`fetch`], counting in `foreign` the datagrams dropped for coming from another source than
/// the package host.
pub async fn fetch_counting(
    uri: &str,
    resume: Option<&Resume>,
    config: &CoapPullConfig,
    sink: &mut dyn PackageSink,
    foreign: &ForeignDatagrams,
) -> Result<Pulled, PullError> {
    let uri = CoapUri::parse(uri)?;
    let peer = resolve(&uri).await?;
    let socket = UdpSocket::bind(default_local(&peer)).await.map_err(lost)?;
    // The handshake gets the same budget as one confirmable exchange.
    let budget = Duration::from_millis(
        config.tx.ack_timeout_ms * ((1u64 << (config.tx.max_retransmit + 1)) - 1),
    );
    let handshake = match (uri.secure, &config.dtls) {
        (false, _) => None,
        (true, Some(ctx)) => Some((ctx.clone().with_peer_name(&uri.host), budget)),
        (true, None) => {
            return Err(PullError::UnsupportedProtocol(
                "coaps (no credentials)".into(),
            ))
        }
    };
    let mut link = Link {
        socket,
        peer,
        dtls: None,
        handshake,
    };
    link.handshake().await?;
    // Silence from the host this long (its first half of the retransmissions, RFC 7252
    // §4.2) is taken for a lost session, once per silence.
    let half = (1u64 << config.tx.max_retransmit.clamp(1, 62).saturating_sub(1)) - 1;
    let lost_session_after =
        Duration::from_millis(config.tx.ack_timeout_ms.saturating_mul(half.max(1)));
    let mut last_heard = Instant::now();
    let mut rehandshaken = false;

    // Message ids and tokens must differ across pulls: seed from the wall clock.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(peer.port());
    let mut pull = QBlock2Pull::new(
        uri,
        resume,
        config.block_size,
        config.tx,
        config.qblock,
        seed,
        config.max_size,
    );
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut buf = vec![0u8; 2048];
    let mut plain = Plaintexts::default();
    loop {
        while let Some(d) = pull.poll_transmit(now_ms()) {
            link.send(&d).await?;
        }
        let wait = pull
            .poll_timeout()
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
            .unwrap_or(Duration::from_secs(1));
        match tokio::time::timeout(wait, link.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == link.peer => {
                last_heard = Instant::now();
                rehandshaken = false;
                let done = match &mut link.dtls {
                    None => deliver(&mut pull, &mut link, &buf[..n], sink, start).await?,
                    Some(d) => {
                        d.handle_into(&buf[..n], from, &mut plain).map_err(lost)?;
                        let mut done = None;
                        for d in plain.iter() {
                            done = deliver(&mut pull, &mut link, d, sink, start).await?;
                            if done.is_some() {
                                break;
                            }
                        }
                        done
                    }
                };
                if let Some(done) = done {
                    return Ok(done);
                }
            }
            Ok(Ok((n, from))) => foreign.drop_from(from, link.peer, n),
            Ok(Err(e)) => return Err(PullError::ConnectionLost(e.to_string())),
            Err(_) => {
                if !rehandshaken && last_heard.elapsed() >= lost_session_after {
                    rehandshaken = true;
                    link.handshake().await?;
                }
                pull.handle_timeout(now_ms())?
            }
        }
    }
}

/// Feeds one datagram from the package host to `pull`, sends what it queued (the request for
/// the next block, ACKs) and only then lets the sink store the block, so the sink's digest and
/// flash work overlaps the next round trip instead of lengthening it.
async fn deliver(
    pull: &mut QBlock2Pull,
    link: &mut Link,
    datagram: &[u8],
    sink: &mut dyn PackageSink,
    start: Instant,
) -> Result<Option<Pulled>, PullError> {
    let now_ms = || start.elapsed().as_millis() as u64;
    let done = pull.handle_datagram(datagram, now_ms(), sink)?;
    // A final confirmable response is acknowledged here too, before the pull returns.
    while let Some(d) = pull.poll_transmit(now_ms()) {
        link.send(&d).await?;
    }
    pull.store(sink)?;
    Ok(done)
}
