//! The package host's CoAP-over-TCP and CoAP-over-TLS face (RFC 8323): `GET /fw/<name>` on
//! coap+tcp:// and coaps+tcp:// listeners, with BERT blocks (§6) for peers that announce
//! Block-Wise-Transfer in their CSM.
//!
//! Each connection opens with the host's CSM (§5.3) and must open with the peer's; Ping is
//! answered with Pong (§5.4), Release and Abort end the connection (§5.5, §5.6). Resources per
//! connection are bounded: at most [`TcpHostLimits::max_connections`] at once, messages up to
//! the announced Max-Message-Size (the header of a longer one is enough to refuse it), a
//! bounded read buffer, requests answered one at a time (a client that does not read its
//! answers stops being read), and idle connections closed. Anything malformed gets an Abort
//! with a diagnostic and the connection is closed.
//!
//! Blocks of SZX 0-6 are answered by the UDP face's handler ([`super::coap::handle`]), so both
//! transports serve the same ETag, Size2 and error codes; BERT blocks carry up to
//! [`TcpHostLimits::bert_max`] bytes, within the peer's Max-Message-Size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{
    CoapOption, ContentFormat as LiteFormat, MessageClass, Packet, RequestType, ResponseType,
};
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::coap_tcp::{
    self, BertBlock, FrameError, Signal, BASE_MAX_MESSAGE_SIZE, BERT_SZX, BERT_UNIT,
};
use lwm2m_client::host::dtls::{accept_psk_over_tls, PskLookup};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;

use crate::coap::message::{response, uri_path};
use crate::packages::coap::{self as package_coap, PACKAGE_PATH};
use crate::packages::host::PackageHost;

/// Room for a response's header, token and options next to its payload.
const HEADER_ROOM: usize = 128;

/// Bytes read from a connection at a time; also how many answer bytes are gathered before
/// they are written.
const READ_CHUNK: usize = 16 * 1024;

/// Bounds on the connections of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHostLimits {
    /// Connections served at once; one more is sent an Abort and closed.
    pub max_connections: usize,
    /// Max-Message-Size announced in the host's CSM: the largest request accepted.
    pub max_message_size: u32,
    /// Largest BERT block payload sent (a multiple of 1024), further bounded by each peer's
    /// Max-Message-Size.
    pub bert_max: usize,
    /// How long a connection may send nothing (the TLS handshake and the CSM included).
    pub idle: Duration,
}

impl Default for TcpHostLimits {
    /// 256 connections, 8 KiB requests, 64 KiB BERT blocks, 60 s idle.
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_message_size: 8 * 1024,
            bert_max: 64 * 1024,
            idle: Duration::from_secs(60),
        }
    }
}

/// The TLS certificate and key of a coaps+tcp listener (PEM).
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    /// Certificate, optionally followed by its chain.
    pub cert_pem: Vec<u8>,
    /// Private key of the certificate.
    pub key_pem: Vec<u8>,
}

/// How a coaps+tcp listener authenticates: with its certificate, and with the devices' PSKs
/// when `psk` is given (the LwM2M PSK suites, Transport 1.1 §5.2.8.1, for a device in PSK
/// mode, as the coaps listener takes them over DTLS).
#[derive(Clone)]
pub struct TlsCredentials {
    /// The listener's certificate and key.
    pub identity: TlsIdentity,
    /// Keys by PSK identity (the shim's security store).
    pub psk: Option<PskLookup>,
}

impl From<TlsIdentity> for TlsCredentials {
    fn from(identity: TlsIdentity) -> Self {
        Self {
            identity,
            psk: None,
        }
    }
}

/// TLS 1.2 suites of the certificate: Mozilla's intermediate list (v5) for ECDSA and RSA keys
/// without its finite-field DHE suites, which no device needs.
const CERTIFICATE_SUITES: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
    ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
    ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Why a coaps+tcp listener could not be set up.
#[derive(Debug)]
pub struct TlsError(openssl::error::ErrorStack);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS certificate or key unusable: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

impl From<openssl::error::ErrorStack> for TlsError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self(e)
    }
}

impl TlsIdentity {
    /// A self-signed P-256 certificate valid for a year, for `localhost`, 127.0.0.1, ::1 and
    /// `extra` addresses: a device trusts it by taking the certificate as a CA.
    pub fn self_signed(extra: &[IpAddr]) -> Result<Self, TlsError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "lwm2m-server-shim package host")?;
        let name = name.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let mut serial = BigNum::new()?;
        serial.rand(120, MsbOption::MAYBE_ZERO, false)?;
        b.set_serial_number(&*serial.to_asn1_integer()?)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(365)?)?;
        let mut san = SubjectAlternativeName::new();
        san.dns("localhost");
        let loopback = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        for ip in loopback
            .iter()
            .chain(extra)
            .filter(|ip| !ip.is_unspecified())
        {
            san.ip(&ip.to_string());
        }
        let san = san.build(&b.x509v3_context(None, None))?;
        b.append_extension(san)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            cert_pem: b.build().to_pem()?,
            key_pem: key.private_key_to_pem_pkcs8()?,
        })
    }
}

impl TlsCredentials {
    fn acceptor(&self) -> Result<SslAcceptor, TlsError> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        match &self.psk {
            Some(lookup) => accept_psk_over_tls(&mut b, CERTIFICATE_SUITES, lookup.clone())?,
            None => b.set_cipher_list(CERTIFICATE_SUITES)?,
        }
        let id = &self.identity;
        let mut chain = X509::stack_from_pem(&id.cert_pem)?.into_iter();
        let leaf = chain.next().ok_or_else(openssl::error::ErrorStack::get)?;
        b.set_certificate(&leaf)?;
        for c in chain {
            b.add_extra_chain_cert(c)?;
        }
        b.set_private_key(&*PKey::private_key_from_pem(&id.key_pem)?)?;
        b.check_private_key()?;
        Ok(b.build())
    }
}

/// Why a listener could not start.
#[derive(Debug)]
pub enum TcpHostError {
    /// The address cannot be bound.
    Bind(std::io::Error),
    /// The TLS certificate or key is unusable.
    Tls(TlsError),
}

impl std::fmt::Display for TcpHostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind(e) => write!(f, "{e}"),
            Self::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TcpHostError {}

/// A running coap+tcp or coaps+tcp listener; dropping it stops it (open connections end
/// with their tasks).
pub struct TcpPackageHost {
    addr: SocketAddr,
    secure: bool,
    task: JoinHandle<()>,
}

impl TcpPackageHost {
    /// Starts serving `host`'s packages on `addr` (port 0: a free port), over TLS with `tls`.
    pub async fn start(
        addr: SocketAddr,
        host: Arc<PackageHost>,
        tls: Option<&TlsCredentials>,
        limits: TcpHostLimits,
    ) -> Result<Self, TcpHostError> {
        let acceptor = match tls {
            Some(id) => Some(Arc::new(id.acceptor().map_err(TcpHostError::Tls)?)),
            None => None,
        };
        let listener = TcpListener::bind(addr).await.map_err(TcpHostError::Bind)?;
        let addr = listener.local_addr().map_err(TcpHostError::Bind)?;
        let secure = acceptor.is_some();
        let task = tokio::spawn(accept_loop(listener, host, acceptor, limits));
        Ok(Self { addr, secure, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of package `name` here (`coap+tcp://` or `coaps+tcp://`), with a loopback
    /// address in place of a wildcard bind.
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.secure { "coaps+tcp" } else { "coap+tcp" };
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("{scheme}://{addr}/{PACKAGE_PATH}/{name}")
    }
}

impl Drop for TcpPackageHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    host: Arc<PackageHost>,
    tls: Option<Arc<SslAcceptor>>,
    limits: TcpHostLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "coap+tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "coap+tcp: connection limit reached");
            tokio::spawn(async move {
                let abort = coap_tcp::abort("too many connections", None);
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&abort)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (host, tls) = (host.clone(), tls.clone());
        tokio::spawn(async move {
            let outcome = match tls {
                None => serve_connection(stream, &host, limits).await,
                Some(acceptor) => match handshake(stream, &acceptor, limits.idle).await {
                    Ok(s) => serve_connection(s, &host, limits).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "coap+tcp connection closed");
            }
            drop(permit);
        });
    }
}

async fn handshake(
    stream: TcpStream,
    acceptor: &SslAcceptor,
    limit: Duration,
) -> Result<SslStream<TcpStream>, String> {
    let ssl = Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
    let mut s = SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
    tokio::time::timeout(limit, Pin::new(&mut s).accept())
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(s)
}

/// What the peer's CSM said.
#[derive(Clone, Copy, Debug)]
struct PeerSettings {
    max_message_size: u32,
    block_wise: bool,
}

/// Serves one connection until the peer leaves, breaks the protocol or goes idle. Public for
/// tests that drive a host over any byte stream.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &PackageHost,
    limits: TcpHostLimits,
) -> Result<(), String> {
    stream
        .write_all(&coap_tcp::csm(limits.max_message_size, true))
        .await
        .map_err(|e| e.to_string())?;
    let mut peer: Option<PeerSettings> = None;
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match tokio::time::timeout(limits.idle, stream.read(&mut chunk)).await {
            Err(_) => {
                let _ = stream.write_all(&coap_tcp::abort("idle", None)).await;
                return Err("idle".into());
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
        };
        input.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut used = 0;
        let mut out = Vec::new();
        let step = loop {
            let rest = input.get(used..).unwrap_or_default();
            match coap_tcp::decode(rest, limits.max_message_size) {
                Ok(None) => break Ok(()),
                Ok(Some((p, n))) => {
                    used += n;
                    match on_message(&p, &mut peer, host, limits) {
                        Ok(Some(reply)) => out.extend_from_slice(&reply),
                        Ok(None) => {}
                        Err(end) => break Err(end),
                    }
                    // Many small requests in one read must not pile up their answers: write
                    // them out as they grow (and wait while the peer does not read).
                    if out.len() >= READ_CHUNK {
                        stream.write_all(&out).await.map_err(|e| e.to_string())?;
                        out.clear();
                    }
                }
                Err(e) => break Err(Ending::Abort(e.to_string(), None)),
            }
        };
        input.drain(..used.min(input.len()));
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        match step {
            Ok(()) => {}
            Err(Ending::Closed(why)) => {
                tracing::debug!(why, "coap+tcp peer closed the connection");
                return Ok(());
            }
            Err(Ending::Abort(why, option)) => {
                let _ = stream.write_all(&coap_tcp::abort(&why, option)).await;
                let _ = stream.shutdown().await;
                return Err(why);
            }
        }
    }
}

/// How a connection ends.
enum Ending {
    /// The peer released or aborted it.
    Closed(&'static str),
    /// A protocol error: send an Abort with this diagnostic (and Bad-CSM-Option).
    Abort(String, Option<u16>),
}

fn on_message(
    p: &Packet,
    peer: &mut Option<PeerSettings>,
    host: &PackageHost,
    limits: TcpHostLimits,
) -> Result<Option<Vec<u8>>, Ending> {
    match coap_tcp::signal(p) {
        Some(Ok(Signal::Csm {
            max_message_size,
            block_wise,
        })) => {
            *peer = Some(PeerSettings {
                max_message_size: max_message_size.unwrap_or(BASE_MAX_MESSAGE_SIZE),
                block_wise,
            });
            return Ok(None);
        }
        Some(Ok(Signal::Ping)) => return Ok(Some(coap_tcp::pong(p.get_token()))),
        Some(Ok(Signal::Pong | Signal::Other(_))) => return Ok(None),
        Some(Ok(Signal::Release)) => return Err(Ending::Closed("release")),
        Some(Ok(Signal::Abort)) => return Err(Ending::Closed("abort")),
        Some(Err(e)) => {
            let option = match e {
                FrameError::BadCsmOption(n) => Some(n),
                _ => None,
            };
            return Err(Ending::Abort(e.to_string(), option));
        }
        None => {}
    }
    if p.header.code == MessageClass::Empty {
        return Ok(None); // may be sent at any time and is ignored (RFC 8323 §3.4)
    }
    let Some(settings) = *peer else {
        return Err(Ending::Abort("CSM expected first".into(), None));
    };
    if !matches!(p.header.code, MessageClass::Request(_)) {
        return Ok(None); // a response to nothing the host asked: ignored
    }
    let mut reply = respond(host, p, settings, limits);
    reply.set_token(p.get_token().to_vec());
    Ok(Some(coap_tcp::encode(&reply)))
}

/// The answer to one request.
fn respond(
    host: &PackageHost,
    request: &Packet,
    peer: PeerSettings,
    limits: TcpHostLimits,
) -> Packet {
    let path = uri_path(request);
    if path.first().map(String::as_str) != Some(PACKAGE_PATH) {
        return response(ResponseType::NotFound);
    }
    let asked = match request.get_first_option(CoapOption::Block2) {
        None => None,
        Some(raw) => match BertBlock::decode(raw) {
            Some(b) => Some(b),
            None => return response(ResponseType::BadOption),
        },
    };
    // Room the peer has for a payload (it announced how large a message it takes).
    let room = (peer.max_message_size as usize).saturating_sub(HEADER_ROOM);
    let bert = limits.bert_max.min(room) / BERT_UNIT as usize * BERT_UNIT as usize;
    let wants_bert = asked.is_none_or(|b| b.is_bert());
    if peer.block_wise && wants_bert && bert >= BERT_UNIT as usize {
        if let Some(r) = bert_block(host, request, &path, asked.map_or(0, |b| b.num), bert) {
            return r;
        }
    }
    // Not BERT (or a request the UDP face answers the same way, such as an error): the
    // largest SZX the peer's messages hold, a BERT request read as 1024-byte blocks
    // (SZX 6 counts in the same units).
    let mut max_szx = 6u8;
    while max_szx > 0 && (16usize << max_szx) > room {
        max_szx -= 1;
    }
    let mut plain = request.clone();
    if let Some(b) = asked.filter(|b| b.is_bert()) {
        let as_6 = BertBlock { szx: 6, ..b }.encode().unwrap_or_default();
        plain.clear_option(CoapOption::Block2);
        plain.add_option(CoapOption::Block2, as_6);
    }
    package_coap::handle(host, &plain, &path, max_szx)
}

/// A BERT block of up to `bert` bytes at 1024-byte block `num` (RFC 8323 §6), or `None` when
/// the request is one the UDP face must answer (unknown package, offset past the end, not a
/// GET).
fn bert_block(
    host: &PackageHost,
    request: &Packet,
    path: &[String],
    num: u32,
    bert: usize,
) -> Option<Packet> {
    if request.header.code != MessageClass::Request(RequestType::Get) {
        return None;
    }
    let [_, name] = path else { return None };
    let snapshot = host.snapshot(name).ok()?;
    let size = snapshot.info.size;
    let offset = u64::from(num) * BERT_UNIT;
    if offset > 0 && offset >= size {
        return None;
    }
    let data = snapshot.read(offset, bert).ok()?;
    let more = offset + (data.len() as u64) < size;
    let mut r = response(ResponseType::Content);
    r.set_content_format(LiteFormat::ApplicationOctetStream);
    r.add_option(CoapOption::ETag, snapshot.info.etag.to_vec());
    let block = BertBlock {
        num,
        more,
        szx: BERT_SZX,
    };
    r.add_option(CoapOption::Block2, block.encode()?);
    r.add_option(
        CoapOption::Size2,
        uint_option(u32::try_from(size).unwrap_or(u32::MAX)),
    );
    r.payload = data;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn host(tag: &str, body: &[u8]) -> (PackageHost, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("shim-pkgtcp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let h = PackageHost::new(&dir).expect("dir");
        h.store("p.bin", body).expect("store");
        (h, dir)
    }

    fn get(token: u8, block: Option<BertBlock>) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.set_token(vec![token]);
        p.add_option(CoapOption::UriPath, b"fw".to_vec());
        p.add_option(CoapOption::UriPath, b"p.bin".to_vec());
        if let Some(b) = block {
            p.add_option(CoapOption::Block2, b.encode().unwrap());
        }
        coap_tcp::encode(&p)
    }

    /// Sends `wire` to a host connection, closes the sending side and returns all it answered.
    async fn exchange(
        host: &PackageHost,
        limits: TcpHostLimits,
        wire: &[u8],
    ) -> (Vec<Packet>, Result<(), String>) {
        let (mut client, server) = duplex(1 << 20);
        let (served, ()) = tokio::join!(serve_connection(server, host, limits), async {
            client.write_all(wire).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((p, n)) = coap_tcp::decode(&back[at..], u32::MAX).unwrap() {
            out.push(p);
            at += n;
        }
        (out, served)
    }

    fn block_of(p: &Packet) -> BertBlock {
        BertBlock::decode(p.get_first_option(CoapOption::Block2).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn bert_blocks_within_the_peer_max_message_size() {
        let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (h, dir) = host("bert", &body);
        let mut wire = coap_tcp::csm(5000, true);
        wire.extend(get(
            1,
            Some(BertBlock {
                num: 0,
                more: false,
                szx: 7,
            }),
        ));
        wire.extend(get(
            2,
            Some(BertBlock {
                num: 16,
                more: false,
                szx: 7,
            }),
        ));
        wire.extend(coap_tcp::ping(&[9]));
        let (answers, ended) = exchange(&h, TcpHostLimits::default(), &wire).await;
        assert_eq!(ended, Ok(()));
        assert_eq!(
            coap_tcp::signal(&answers[0]),
            Some(Ok(Signal::Csm {
                max_message_size: Some(8192),
                block_wise: true
            }))
        );
        // 5000 - 128 bytes of room: 4 KiB blocks.
        let b0 = &answers[1];
        assert_eq!(
            (block_of(b0).num, block_of(b0).more, block_of(b0).szx),
            (0, true, 7)
        );
        assert_eq!(b0.payload, body[..4096]);
        assert_eq!(b0.get_token(), &[1]);
        let b16 = &answers[2];
        assert_eq!((block_of(b16).num, block_of(b16).more), (16, false));
        assert_eq!(b16.payload, body[16384..]);
        assert_eq!(coap_tcp::signal(&answers[3]), Some(Ok(Signal::Pong)));
        assert_eq!(answers[3].get_token(), &[9]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn without_bert_the_udp_rules_apply() {
        let body = vec![7u8; 3000];
        let (h, dir) = host("plain", &body);
        let mut wire = coap_tcp::csm(1152, false);
        wire.extend(get(
            1,
            Some(BertBlock {
                num: 1,
                more: false,
                szx: 7,
            }),
        ));
        wire.extend(get(
            2,
            Some(BertBlock {
                num: 5,
                more: false,
                szx: 4,
            }),
        ));
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.set_token(vec![3]);
        p.add_option(CoapOption::UriPath, b"fw".to_vec());
        p.add_option(CoapOption::UriPath, b"nope".to_vec());
        wire.extend(coap_tcp::encode(&p));
        let (answers, _) = exchange(&h, TcpHostLimits::default(), &wire).await;
        assert_eq!(
            block_of(&answers[1]),
            BertBlock {
                num: 1,
                more: true,
                szx: 6
            }
        );
        assert_eq!(answers[1].payload.len(), 1024);
        assert_eq!(
            block_of(&answers[2]),
            BertBlock {
                num: 5,
                more: true,
                szx: 4
            }
        );
        assert_eq!(
            answers[3].header.code,
            MessageClass::Response(ResponseType::NotFound)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn malformed_and_out_of_order_input_aborts() {
        let (h, dir) = host("bad", &[1u8; 100]);
        let limits = TcpHostLimits::default();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // A request before the CSM.
            (get(1, None), "CSM expected"),
            // Reserved token length.
            (
                [coap_tcp::csm(2000, true), vec![0x09, 0x01]].concat(),
                "token length",
            ),
            // A 4-byte length far over the announced Max-Message-Size.
            (
                [
                    coap_tcp::csm(2000, true),
                    vec![0xF0, 0x7F, 0xFF, 0xFF, 0xFF],
                ]
                .concat(),
                "Max-Message-Size",
            ),
            // Options running past the frame.
            (
                [coap_tcp::csm(2000, true), vec![0x20, 0x01, 0xB5, b'x']].concat(),
                "malformed",
            ),
            // A CSM with an unknown critical option.
            (
                {
                    let mut c = Packet::new();
                    c.header.code = MessageClass::from(coap_tcp::CODE_CSM);
                    c.add_option(CoapOption::from(9), vec![1]);
                    coap_tcp::encode(&c)
                },
                "critical CSM option 9",
            ),
        ];
        for (wire, why) in cases {
            let (answers, ended) = exchange(&h, limits, &wire).await;
            let last = answers.last().expect("an Abort");
            assert_eq!(coap_tcp::signal(last), Some(Ok(Signal::Abort)), "{why}");
            let diag = String::from_utf8_lossy(&last.payload).into_owned();
            assert!(diag.contains(why), "{diag} / {why}");
            assert_eq!(ended, Err(diag));
        }
        // A truncated frame at the end of the stream: no answer to it, no panic.
        let mut wire = coap_tcp::csm(2000, true);
        let full = get(1, None);
        wire.extend_from_slice(&full[..full.len() - 2]);
        let (answers, ended) = exchange(&h, limits, &wire).await;
        assert_eq!((answers.len(), ended), (1, Ok(())));
        let _ = std::fs::remove_dir_all(dir);
    }
}
