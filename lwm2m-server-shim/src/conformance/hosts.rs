//! Where a device pulls from: the shim's package host over each protocol it can serve (coap,
//! coaps, http, coap+tcp, coaps+tcp), and, for case 775, hosts that cut a transfer half-way (an HTTP server that
//! closes the connection, a CoAP Block2 server that falls silent).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::codec::BlockOpt;
use object5::machine::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::firmware::campaign::package_uri_with;
use crate::packages::coap::PACKAGE_PATH;

/// The shim's package host addresses a run may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hosts {
    /// Plain CoAP listener.
    pub coap: Option<SocketAddr>,
    /// coaps listener, when the device registered over it (it then has DTLS credentials the
    /// shim knows).
    pub coaps: Option<SocketAddr>,
    /// Whether the shim has a coaps listener at all (for the N/A reason).
    pub coaps_listener: bool,
    /// HTTP listener (`GET /fw/{name}`).
    pub http: Option<SocketAddr>,
    /// coap+tcp listener (RFC 8323).
    pub coap_tcp: Option<SocketAddr>,
    /// coaps+tcp listener, when the device trusts its certificate.
    pub coaps_tcp: Option<SocketAddr>,
}

impl Hosts {
    /// The Package URI of `package` over `protocol`, or why the shim cannot serve it.
    pub fn uri(&self, protocol: Protocol, package: &str) -> Result<String, String> {
        match protocol {
            Protocol::Coap => self
                .coap
                .map(|a| package_uri_with("coap", a, package))
                .ok_or_else(|| "the shim has no plain CoAP listener to serve it".into()),
            Protocol::Coaps => match (self.coaps, self.coaps_listener) {
                (Some(a), _) => Ok(package_uri_with("coaps", a, package)),
                (None, false) => Err("the shim has no coaps listener to serve it".into()),
                (None, true) => Err("the device registered over plain coap, so the shim knows \
                     no DTLS credentials for a coaps pull"
                    .into()),
            },
            Protocol::Http => self
                .http
                .map(|a| format!("http://{}/{PACKAGE_PATH}/{package}", loopback(a)))
                .ok_or_else(|| "the run has no HTTP package host address".into()),
            Protocol::Https => Err("the shim cannot host https packages".into()),
            Protocol::CoapTcp => self
                .coap_tcp
                .map(|a| format!("coap+tcp://{}/{PACKAGE_PATH}/{package}", loopback(a)))
                .ok_or_else(|| "the run has no coap+tcp package host address".into()),
            Protocol::CoapTls => self
                .coaps_tcp
                .map(|a| format!("coaps+tcp://{}/{PACKAGE_PATH}/{package}", loopback(a)))
                .ok_or_else(|| {
                    "the run has no coaps+tcp package host whose certificate the device trusts"
                        .into()
                }),
        }
    }
}

/// A wildcard bind address as reachable on loopback.
fn loopback(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        let ip: std::net::IpAddr = if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, a.port())
    } else {
        a
    }
}

/// A package host that serves the first half of a package and then cuts the transfer.
pub(crate) struct Cutter {
    /// The Package URI to write.
    pub uri: String,
    /// Bytes sent before the cut (so far).
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Cutter {
    /// Bytes sent before the cut.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// An HTTP host that answers 200 with the full Content-Length, sends the first half of
    /// `package` and closes the connection: a lost connection, not a bad package.
    pub async fn http(package: Vec<u8>, name: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            let half = package.len() / 2;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    package.len()
                );
                let _ = s.write_all(header.as_bytes()).await;
                if s.write_all(package.get(..half).unwrap_or_default())
                    .await
                    .is_ok()
                {
                    counter.store(half as u64, Ordering::Relaxed);
                }
                let _ = s.flush().await;
                // Dropping the stream cuts the download.
            }
        });
        Ok(Self {
            uri: format!("http://{addr}/{PACKAGE_PATH}/{name}"),
            sent,
            task,
        })
    }

    /// A CoAP host that serves Block2 requests (RFC 7959 section 2.4) for the first half of
    /// `package`, then answers nothing more: to the device the server is gone.
    pub async fn coap(package: Vec<u8>, name: &str) -> std::io::Result<Self> {
        let socket = tokio::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = socket.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            let half = package.len() as u64 / 2;
            let mut buf = vec![0u8; 2048];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Some(req) = buf.get(..n).and_then(|b| Packet::from_bytes(b).ok()) else {
                    continue;
                };
                if req.header.code != MessageClass::Request(RequestType::Get) {
                    continue;
                }
                let want = req
                    .get_first_option(CoapOption::Block2)
                    .and_then(|v| BlockOpt::decode(v).ok());
                let szx = want.map_or(6, |b| b.szx.min(6));
                let num = want.map_or(0, |b| b.num);
                let Ok(block) = BlockOpt::new(num, false, szx) else {
                    continue;
                };
                if block.offset() >= half {
                    // The cut: silence from here on.
                    continue;
                }
                let start = block.offset() as usize;
                let end = (start + block.size()).min(package.len());
                let Ok(opt) = BlockOpt::new(num, end < package.len(), szx) else {
                    continue;
                };
                let mut resp = Packet::new();
                resp.header
                    .set_type(if req.header.get_type() == MessageType::Confirmable {
                        MessageType::Acknowledgement
                    } else {
                        MessageType::NonConfirmable
                    });
                resp.header.message_id = req.header.message_id;
                resp.header.code = MessageClass::Response(ResponseType::Content);
                resp.set_token(req.get_token().to_vec());
                resp.add_option(CoapOption::ContentFormat, vec![42]);
                resp.add_option(CoapOption::ETag, b"cut".to_vec());
                resp.add_option(CoapOption::Block2, opt.encode());
                if num == 0 {
                    resp.add_option(
                        CoapOption::Size2,
                        lwm2m_client::codec::block::uint_option(package.len() as u32),
                    );
                }
                resp.payload = package.get(start..end).unwrap_or_default().to_vec();
                if let Ok(bytes) = resp.to_bytes() {
                    if socket.send_to(&bytes, peer).await.is_ok() {
                        counter.fetch_max(end as u64, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self {
            uri: format!("coap://{addr}/{PACKAGE_PATH}/{name}"),
            sent,
            task,
        })
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_per_protocol_and_why_not() {
        let h = Hosts {
            coap: Some("0.0.0.0:5683".parse().unwrap()),
            coaps: None,
            coaps_listener: true,
            http: Some("127.0.0.1:8080".parse().unwrap()),
            coap_tcp: Some("0.0.0.0:5683".parse().unwrap()),
            coaps_tcp: None,
        };
        assert_eq!(
            h.uri(Protocol::Coap, "a.bin").unwrap(),
            "coap://127.0.0.1:5683/fw/a.bin"
        );
        assert_eq!(
            h.uri(Protocol::Http, "a.bin").unwrap(),
            "http://127.0.0.1:8080/fw/a.bin"
        );
        assert!(h
            .uri(Protocol::Coaps, "a")
            .unwrap_err()
            .contains("plain coap"));
        assert!(h.uri(Protocol::Https, "a").unwrap_err().contains("https"));
        assert_eq!(
            h.uri(Protocol::CoapTcp, "a.bin").unwrap(),
            "coap+tcp://127.0.0.1:5683/fw/a.bin"
        );
        assert!(h
            .uri(Protocol::CoapTls, "a")
            .unwrap_err()
            .contains("certificate the device trusts"));
    }
}
