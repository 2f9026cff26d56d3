//! The tokio shell around the sans-IO engine: one UDP socket (IPv4 or IPv6), a monotonic clock
//! and a loop that feeds datagrams and timer expiries to the engine and sends what it returns.
//! The same socket answers requests from any peer (the server, or a CoAP tool).

use crate::{Engine, Event};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Largest datagram accepted (a 1024-byte block plus CoAP header and options fits easily).
const MAX_DATAGRAM: usize = 2048;

/// What the event handler wants the loop to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep running.
    Continue,
    /// Deregister, then return.
    Shutdown,
    /// Return at once (e.g. to simulate a reboot after the response went out).
    Stop,
}

/// Drives `engine` over `socket` until shutdown: `shutdown` resolving (e.g. Ctrl-C) or the
/// handler answering [`Control::Shutdown`] deregisters first, waiting at most `dereg_wait`
/// for the server's answer. Every event goes to `on_event` together with the engine.
pub async fn run<F, S>(
    engine: &mut Engine<SocketAddr>,
    socket: &UdpSocket,
    shutdown: S,
    dereg_wait: Duration,
    mut on_event: F,
) -> io::Result<()>
where
    F: FnMut(&mut Engine<SocketAddr>, u64, Event) -> Control,
    S: Future<Output = ()>,
{
    let mut tasks: Tasks<()> = Tasks::default();
    run_with_tasks(
        engine,
        socket,
        shutdown,
        dereg_wait,
        &mut tasks,
        |e, now, ev, _| on_event(e, now, ev),
        |_, _, (), _| Control::Continue,
    )
    .await
}

/// Work the application runs beside the engine on the same task (e.g. a package pull that
/// streams into Object 5 while the device keeps answering its server): futures that each
/// yield one message, handed to `on_done` with the engine.
pub struct Tasks<M> {
    list: Vec<Pin<Box<dyn Future<Output = M>>>>,
}

impl<M> Default for Tasks<M> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

impl<M> Tasks<M> {
    /// Starts `task`; it is polled by the run loop.
    pub fn spawn(&mut self, task: impl Future<Output = M> + 'static) {
        self.list.push(Box::pin(task));
    }

    /// Number of tasks still running.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No task running.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The next task to finish.
    async fn next(&mut self) -> M {
        std::future::poll_fn(|cx| {
            for i in 0..self.list.len() {
                if let Poll::Ready(m) = self.list[i].as_mut().poll(cx) {
                    drop(self.list.swap_remove(i));
                    return Poll::Ready(m);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// [`run`] with background [`Tasks`]: handlers may start tasks, and each finished task's
/// message goes to `on_done`.
pub async fn run_with_tasks<M, F, G, S>(
    engine: &mut Engine<SocketAddr>,
    socket: &UdpSocket,
    shutdown: S,
    dereg_wait: Duration,
    tasks: &mut Tasks<M>,
    mut on_event: F,
    mut on_done: G,
) -> io::Result<()>
where
    F: FnMut(&mut Engine<SocketAddr>, u64, Event, &mut Tasks<M>) -> Control,
    G: FnMut(&mut Engine<SocketAddr>, u64, M, &mut Tasks<M>) -> Control,
    S: Future<Output = ()>,
{
    let epoch = Instant::now();
    let now = |epoch: Instant| epoch.elapsed().as_millis() as u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut stopping: Option<Instant> = None;
    // An engine the caller put into bootstrap keeps bootstrapping; otherwise register.
    if engine.registration() != crate::RegState::Bootstrapping {
        engine.start(now(epoch));
    }
    tokio::pin!(shutdown);
    let mut shutdown_done = false;
    loop {
        flush(engine, socket).await?;
        let mut control = Control::Continue;
        while let Some(ev) = engine.poll_event() {
            let deregistered = ev == Event::Deregistered;
            let c = on_event(engine, now(epoch), ev, tasks);
            if c != Control::Continue {
                control = c;
            }
            if deregistered && stopping.is_some() {
                flush(engine, socket).await?;
                return Ok(());
            }
        }
        flush(engine, socket).await?;
        match control {
            Control::Stop => return Ok(()),
            Control::Shutdown if stopping.is_none() => {
                stopping = Some(Instant::now() + dereg_wait);
                engine.deregister(now(epoch));
                continue;
            }
            _ => {}
        }
        if let Some(limit) = stopping {
            if Instant::now() >= limit {
                return Ok(());
            }
        }
        let deadline = engine
            .poll_timeout()
            .map(|t| epoch + Duration::from_millis(t));
        let wake = match (deadline, stopping) {
            (Some(d), Some(s)) => d.min(s),
            (Some(d), None) => d,
            (None, Some(s)) => s,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    engine.handle_datagram(now(epoch), peer, data);
                }
                // ICMP errors surface here on some systems; the engine's retransmission and
                // back-off already handle an unreachable server.
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            },
            _ = tokio::time::sleep_until(wake) => engine.handle_timeout(now(epoch)),
            m = tasks.next(), if !tasks.is_empty() => {
                if on_done(engine, now(epoch), m, tasks) == Control::Stop {
                    flush(engine, socket).await?;
                    return Ok(());
                }
            }
            _ = &mut shutdown, if !shutdown_done => {
                shutdown_done = true;
                if stopping.is_none() {
                    stopping = Some(Instant::now() + dereg_wait);
                    engine.deregister(now(epoch));
                }
            }
        }
    }
}

async fn flush(engine: &mut Engine<SocketAddr>, socket: &UdpSocket) -> io::Result<()> {
    while let Some(t) = engine.poll_transmit() {
        // A send error to one peer (e.g. ICMP unreachable reported late) must not stop the
        // client: the engine's retransmission and back-off handle an unreachable server.
        if let Err(e) = socket.send_to(&t.data, t.peer).await {
            tracing::debug!(peer = %t.peer, error = %e, "send failed");
        }
    }
    Ok(())
}

/// Why a server URI was not usable.
#[derive(Debug, PartialEq, Eq)]
pub struct BadServerUri(pub String);

impl std::fmt::Display for BadServerUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bad server URI {:?}: expected coap://host[:port]",
            self.0
        )
    }
}

impl std::error::Error for BadServerUri {}

/// The `host:port` part of `coap://host[:port][/...]` (default port 5683).
fn authority(uri: &str) -> Result<String, BadServerUri> {
    let bad = || BadServerUri(uri.to_owned());
    let rest = uri.strip_prefix("coap://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad());
    }
    Ok(if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_owned()
        } else {
            format!("{authority}:5683")
        }
    } else if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:5683")
    })
}

/// Resolves `coap://host[:port]` (IPv4, `[IPv6]` or a name; default port 5683).
pub async fn resolve_server(uri: &str) -> Result<SocketAddr, BadServerUri> {
    let bad = || BadServerUri(uri.to_owned());
    tokio::net::lookup_host(authority(uri)?)
        .await
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// Blocking variant of [`resolve_server`] for event handlers (e.g. after bootstrap).
pub fn resolve_server_now(uri: &str) -> Result<SocketAddr, BadServerUri> {
    use std::net::ToSocketAddrs;
    let bad = || BadServerUri(uri.to_owned());
    authority(uri)?
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// Binds a UDP socket on the wildcard address of the server's family, ephemeral port.
pub async fn bind_for(server: &SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse()
    } else {
        "0.0.0.0:0".parse()
    }
    .map_err(|_| io::Error::other("bad wildcard address"))?;
    UdpSocket::bind(local).await
}
