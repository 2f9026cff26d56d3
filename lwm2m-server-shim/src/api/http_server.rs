//! HTTP/1.1 plumbing on hyper: the accept loop, the response body type and small helpers the
//! REST API, the event stream and the package host share.
//!
//! Connections are bounded ([`HttpLimits`]): a request head must arrive within a time, an idle
//! connection is closed, and at most so many are open, below the descriptor limit, so that
//! thousands of idle or half-open connections cannot starve the REST API or the package host
//! of file descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

mod connections;

pub use connections::{descriptor_limit, effective_max, RESERVED_DESCRIPTORS};
use connections::{Conn, InFlight, Registry, Watched};

/// Bounds on the HTTP server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head (request line and header fields) must arrive in full within this time of
    /// its first byte; slower clients (slowloris) are disconnected.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress (never used, or kept alive after a response) is
    /// closed after this long.
    pub idle_timeout: Duration,
    /// Connections open at once. At the cap a new connection closes the one idle the longest;
    /// when all serve a request, it is answered 503 and closed. Lowered at start so that it stays
    /// [`RESERVED_DESCRIPTORS`] below the descriptor limit (RLIMIT_NOFILE).
    pub max_connections: usize,
}

/// Default [`HttpLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Response body: a whole buffer, or a stream of chunks (server-sent events).
pub enum Body {
    /// A complete body.
    Full(Full<Bytes>),
    /// Chunks as they are produced; the stream ends when the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Stream(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// A response with a complete body.
pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::Full(Full::new(body.into())));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A JSON response.
pub fn json(status: StatusCode, v: &Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

/// A plain-text error response (Leshan's servlets answer errors with a text message).
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", msg.into())
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the allowed limit (bytes).
    TooLarge(usize),
    /// The connection failed while reading.
    Read(String),
}

impl BodyError {
    /// The answer to the request: 413 Content Too Large (RFC 9110 15.5.14) or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge(limit) => write!(f, "request body larger than {limit} bytes"),
            Self::Read(e) => write!(f, "cannot read request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Reads a whole request body, refusing more than `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// Decodes `%XX` escapes and `+` of a query component; `None` on a broken escape or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Query parameters as decoded (name, value) pairs; undecodable pairs are skipped.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Something that answers HTTP requests.
pub trait HttpService: Send + Sync + 'static {
    /// Answers one request.
    fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

/// A response body that counts as a request in progress until it is written out.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves HTTP/1.1 connections from `listener` within `limits` until the task is dropped.
pub async fn serve<S: HttpService>(listener: TcpListener, service: Arc<S>, limits: HttpLimits) {
    let limit = descriptor_limit();
    let max = effective_max(limits.max_connections, limit);
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            max_connections = max,
            descriptor_limit = limit,
            "HTTP connection cap lowered below the descriptor limit (RLIMIT_NOFILE)"
        );
    }
    let registry = Arc::new(Registry::new(max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(conn) = registry.admit(Instant::now()) else {
            tracing::debug!(%peer, "HTTP connection refused: every connection is busy");
            let _ = stream.try_write(connections::BUSY_RESPONSE);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            service.clone(),
            conn,
            limits,
            registry.clone(),
        ));
    }
}

async fn serve_connection<S: HttpService>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    svc: Arc<S>,
    conn: Arc<Conn>,
    limits: HttpLimits,
    registry: Arc<Registry>,
) {
    let io = hyper_util::rt::TokioIo::new(Watched::new(stream, conn.clone()));
    let requests = conn.clone();
    let handler = hyper::service::service_fn(move |req| {
        let svc = svc.clone();
        let in_flight = requests.request_started(Instant::now());
        async move {
            let (parts, body) = svc.call(req).await.into_parts();
            let body = Tracked {
                body,
                _in_flight: in_flight,
            };
            Ok::<_, Infallible>(Response::from_parts(parts, body))
        }
    });
    let served = hyper::server::conn::http1::Builder::new().serve_connection(io, handler);
    tokio::pin!(served);
    loop {
        tokio::select! {
            r = &mut served => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                break;
            }
            () = connections::sleep_until(conn.deadline(&limits)) => {
                if let Some(why) = conn.expired(Instant::now(), &limits) {
                    tracing::debug!(%peer, reason = %why, "HTTP connection closed");
                    break;
                }
            }
            () = conn.woken() => {}
            () = conn.evicted() => {
                if conn.busy() {
                    // A request began after the connection was picked: answer it, then close.
                    served.as_mut().graceful_shutdown();
                    continue;
                }
                tracing::debug!(%peer, "HTTP connection closed to make room for a new one");
                break;
            }
        }
    }
    registry.remove(&conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = query_pairs(Some("format=TLV&timeout=5&x=a%2Fb+c&bad=%zz&flag"));
        assert_eq!(
            q,
            vec![
                ("format".into(), "TLV".into()),
                ("timeout".into(), "5".into()),
                ("x".into(), "a/b c".into()),
                ("flag".into(), "".into()),
            ]
        );
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
