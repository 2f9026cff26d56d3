//! Bookkeeping of the HTTP server's connections: what each one is doing (idle, receiving a
//! request head, or serving a request), when it must be closed for taking too long, and which
//! one gives way when the connection cap is reached.
//!
//! A connection that never sends a request, or sends its head byte by byte (slowloris), or
//! sits in keep-alive forever, holds a file descriptor; thousands of them used to exhaust the
//! descriptor table and take the REST API and the package host down with them.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::HttpLimits;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress and no byte of the next one received.
    Idle,
    /// Bytes of a request head arrived, the head is not complete yet.
    ReadingHead,
    /// This many requests are being answered (the service was called, the response body has
    /// not been written out yet). Never timed out here: a REST call may wait for a device,
    /// an event stream lasts as long as its client.
    InFlight(usize),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the phase began.
    since: Instant,
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No request within [`HttpLimits::idle_timeout`].
    Idle,
    /// The request head did not complete within [`HttpLimits::header_read_timeout`].
    HeadTimeout,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Idle => "idle timeout",
            Self::HeadTimeout => "request head not received in time",
        })
    }
}

/// One accepted connection.
pub(super) struct Conn {
    id: u64,
    state: Mutex<State>,
    /// Wakes the connection's watchdog when its deadline may have moved earlier.
    wake: Notify,
    /// Tells the connection to close (it was evicted for a new one).
    close: Notify,
}

impl Conn {
    fn new(id: u64, now: Instant) -> Self {
        Self {
            id,
            state: Mutex::new(State {
                phase: Phase::Idle,
                since: now,
            }),
            wake: Notify::new(),
            close: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: an idle connection starts receiving a request head.
    fn on_read(&self, now: Instant) {
        let mut s = self.lock();
        if s.phase == Phase::Idle {
            *s = State {
                phase: Phase::ReadingHead,
                since: now,
            };
            drop(s);
            self.wake.notify_one();
        }
    }

    /// The service was called with a complete request head.
    pub(super) fn request_started(self: &Arc<Self>, now: Instant) -> InFlight {
        let mut s = self.lock();
        let n = match s.phase {
            Phase::InFlight(n) => n,
            Phase::Idle | Phase::ReadingHead => 0,
        };
        *s = State {
            phase: Phase::InFlight(n + 1),
            since: now,
        };
        InFlight(self.clone())
    }

    fn request_finished(&self, now: Instant) {
        let mut s = self.lock();
        if let Phase::InFlight(n) = s.phase {
            *s = if n > 1 {
                State {
                    phase: Phase::InFlight(n - 1),
                    since: s.since,
                }
            } else {
                State {
                    phase: Phase::Idle,
                    since: now,
                }
            };
        }
        drop(s);
        self.wake.notify_one();
    }

    /// When the connection must be closed unless its phase changes first.
    pub(super) fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        let s = self.lock();
        match s.phase {
            Phase::Idle => Some(s.since + limits.idle_timeout),
            Phase::ReadingHead => Some(s.since + limits.header_read_timeout),
            Phase::InFlight(_) => None,
        }
    }

    /// Whether the connection has overstayed at `now`, and why.
    pub(super) fn expired(&self, now: Instant, limits: &HttpLimits) -> Option<Expiry> {
        let s = self.lock();
        let waited = now.saturating_duration_since(s.since);
        match s.phase {
            Phase::Idle if waited >= limits.idle_timeout => Some(Expiry::Idle),
            Phase::ReadingHead if waited >= limits.header_read_timeout => Some(Expiry::HeadTimeout),
            _ => None,
        }
    }

    /// Resolves when the watchdog should look at the deadline again.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Resolves when the connection was evicted.
    pub(super) async fn evicted(&self) {
        self.close.notified().await;
    }

    /// Whether a request is being answered.
    pub(super) fn busy(&self) -> bool {
        self.evictable_since().is_none()
    }

    /// When the connection became evictable, or `None` while it serves a request.
    fn evictable_since(&self) -> Option<Instant> {
        let s = self.lock();
        match s.phase {
            Phase::InFlight(_) => None,
            Phase::Idle | Phase::ReadingHead => Some(s.since),
        }
    }
}

/// A request being answered; dropped when its response body is done (or abandoned).
pub(super) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished(Instant::now());
    }
}

/// The open connections, at most `max` of them.
pub(super) struct Registry {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection. At the cap, the connection idle (or stuck in its request
    /// head) the longest is told to close and makes room; when every connection is serving a
    /// request there is no room and `None` is returned.
    pub(super) fn admit(&self, now: Instant) -> Option<Arc<Conn>> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let victim = open
                .values()
                .filter_map(|c| Some((c.evictable_since()?, c.id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(c) = open.remove(&victim) {
                c.close.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id, now));
        open.insert(id, conn.clone());
        Some(conn)
    }

    /// Forgets a closed connection.
    pub(super) fn remove(&self, conn: &Conn) {
        self.lock().remove(&conn.id);
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A connection's byte stream that tells its [`Conn`] when request bytes arrive.
pub(super) struct Watched<T> {
    inner: T,
    conn: Arc<Conn>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read(Instant::now());
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Descriptors kept free for everything but HTTP connections: the UDP sockets, package files,
/// the runtime's own descriptors, in-process devices of the CLI commands.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The soft limit on open descriptors (RLIMIT_NOFILE), if the system has one.
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap in force: `configured`, lowered so that the connections together with
/// [`RESERVED_DESCRIPTORS`] stay below the descriptor limit `limit`.
pub fn effective_max(configured: usize, limit: Option<u64>) -> usize {
    let room = limit.map_or(u64::MAX, |l| l.saturating_sub(RESERVED_DESCRIPTORS).max(1));
    configured
        .max(1)
        .min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// How long to wait for a deadline that may be absent.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// What a refused connection is told before it is closed.
pub(super) const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    connection: close\r\ncontent-type: text/plain\r\ncontent-length: 42\r\n\r\n\
    every connection is serving a request now\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: HttpLimits = HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
        max_connections: 2,
    };

    #[test]
    fn phases_set_the_deadline() {
        let t0 = Instant::now();
        let c = Arc::new(Conn::new(0, t0));
        assert_eq!(c.deadline(&LIMITS), Some(t0 + LIMITS.idle_timeout));
        assert_eq!(c.expired(t0 + Duration::from_secs(9), &LIMITS), None);
        assert_eq!(
            c.expired(t0 + LIMITS.idle_timeout, &LIMITS),
            Some(Expiry::Idle)
        );
        let t1 = t0 + Duration::from_secs(1);
        c.on_read(t1);
        assert_eq!(c.deadline(&LIMITS), Some(t1 + LIMITS.header_read_timeout));
        // More bytes of the same head do not extend its time.
        c.on_read(t1 + Duration::from_secs(1));
        assert_eq!(
            c.expired(t1 + LIMITS.header_read_timeout, &LIMITS),
            Some(Expiry::HeadTimeout)
        );
        let req = c.request_started(t1);
        let second = c.request_started(t1);
        assert_eq!(c.deadline(&LIMITS), None);
        assert_eq!(c.expired(t1 + Duration::from_secs(3600), &LIMITS), None);
        drop(req);
        assert_eq!(c.deadline(&LIMITS), None, "one request still in flight");
        drop(second);
        let idle_from = c.evictable_since().expect("idle again");
        assert_eq!(c.deadline(&LIMITS), Some(idle_from + LIMITS.idle_timeout));
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_gives_way_but_busy_ones_do_not() {
        let r = Registry::new(2);
        let t0 = Instant::now();
        let old = r.admit(t0).expect("room");
        let young = r.admit(t0 + Duration::from_secs(1)).expect("room");
        let third = r.admit(t0 + Duration::from_secs(2)).expect("evicts");
        assert_eq!(r.len(), 2);
        assert!(!r.lock().contains_key(&old.id), "the oldest idle one left");
        let _busy = (
            young.request_started(t0 + Duration::from_secs(3)),
            third.request_started(t0 + Duration::from_secs(3)),
        );
        assert!(r.admit(t0 + Duration::from_secs(4)).is_none());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        assert_eq!(effective_max(1024, None), 1024);
        assert_eq!(effective_max(1024, Some(20_000)), 1024);
        assert_eq!(effective_max(1024, Some(1024)), 1024 - 256);
        assert_eq!(effective_max(1024, Some(100)), 1);
        assert_eq!(effective_max(0, None), 1);
    }
}
