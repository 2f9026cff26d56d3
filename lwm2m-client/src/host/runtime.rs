//! The tokio shell around the sans-IO engine: one UDP socket (IPv4 or IPv6), a monotonic clock
//! and a loop that feeds datagrams and timer expiries to the engine and sends what it returns.
//!
//! Only the engine's server is listened to: a datagram from any other source is dropped before
//! the engine sees it (counted in [`ForeignDatagrams`], logged at debug), so nobody else on the
//! network can read or change the device (OMA LwM2M TS Core 1.1 §6.3: device-management
//! operations come from the server the client registered with; over DTLS the session binds
//! the peer too, RFC 6347 §4.1).

use crate::host::dtls::DtlsContext;
use crate::host::dtls_udp::DtlsUdp;
use crate::host::provisioned::TrustStore;
use crate::{Engine, Event};
use openssl::ssl::SslSession;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
        &mut Link::plain(socket),
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
    link: &mut Link<'_>,
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
    let mut draining: Option<Instant> = None;
    let mut stop_requested = false;
    // An engine the caller put into bootstrap keeps bootstrapping; otherwise register (over
    // DTLS: once the session is up, below).
    if engine.registration() != crate::RegState::Bootstrapping && !link.needs_handshake() {
        engine.start(now(epoch));
    }
    tokio::pin!(shutdown);
    let mut shutdown_done = false;
    // Whether the session was resumed for the request stalled now ([`Engine::stalled`]).
    let mut resumed_for_stall = false;
    loop {
        // After a failed handshake the next waits the engine's back-off (up to minutes),
        // during which finished tasks (a resumed download) are still taken in.
        let due = match link.hold_off_until() {
            Some(at) if link.needs_handshake() => tokio::select! {
                () = tokio::time::sleep_until(at) => true,
                m = tasks.next(), if !tasks.is_empty() => {
                    if on_done(engine, now(epoch), m, tasks) == Control::Stop {
                        stop_requested = true;
                    }
                    false
                }
                _ = &mut shutdown, if !shutdown_done => return Ok(()),
            },
            _ => true,
        };
        if due && link.needs_handshake() {
            let connected = tokio::select! {
                r = link.connect() => r,
                _ = &mut shutdown, if !shutdown_done => return Ok(()),
            };
            match connected {
                // A new security session requires a new Register (LwM2M transport §6.4.3).
                Ok(_) if engine.registration() != crate::RegState::Bootstrapping => {
                    engine.start(now(epoch));
                }
                Ok(_) => {}
                // As a Register the server did not answer: the engine's back-off, and after
                // enough of them perhaps a bootstrap (its events, below).
                Err(()) => {
                    let retry = engine.transport_failed(now(epoch));
                    link.hold_off(Duration::from_millis(retry));
                }
            }
        }
        // A request unanswered through half its retransmissions over DTLS: resumed once per
        // stall (below), the rest of them go over the session resumed from the device's port.
        let stalled = engine.stalled();
        resumed_for_stall &= stalled;
        let stall = stalled && link.is_secure() && !resumed_for_stall;
        if (link.resume_due() || stall) && engine.has_transmit() {
            resumed_for_stall |= stall;
            // A queue-mode device waking to send (its Update first), any device after a quiet
            // spell, or one whose request went unanswered: the session is resumed first, from
            // the port its NAT gives it now (as Zephyr's and Anjay's clients do on waking,
            // Californium's after a quiet spell). A resumed session keeps the registration; a
            // full handshake is a new security context and registers again.
            let connected = tokio::select! {
                r = link.connect() => r,
                _ = &mut shutdown, if !shutdown_done => return Ok(()),
            };
            match connected {
                Ok(true) => {}
                Ok(false) => engine.new_session(now(epoch)),
                // Put aside, there is no session left to send over.
                Err(()) if link.needs_handshake() => {
                    let retry = engine.transport_failed(now(epoch));
                    link.hold_off(Duration::from_millis(retry));
                }
                // The association stays; the engine's retransmissions decide.
                Err(()) => {}
            }
        }
        flush(engine, link).await?;
        let mut control = Control::Continue;
        while let Some(ev) = engine.poll_event() {
            let deregistered = ev == Event::Deregistered;
            match &ev {
                Event::Bootstrapped {
                    server_uri,
                    credentials,
                } => {
                    if let Err(e) = point_at(engine, link, server_uri, credentials) {
                        // Past Bootstrap-Finish's checks: what is left is the host's (the name
                        // does not resolve). Nothing to deregister from; the caller reports it.
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("bootstrap provisioned an unusable server {server_uri}: {e}"),
                        ));
                    }
                    // Over DTLS the Register waits for the handshake (the loop's next turn).
                    if !link.needs_handshake() {
                        engine.start(now(epoch));
                    }
                }
                // Disable (/1/0/4): the De-register is done; the session goes too, and the
                // next handshake waits for the Disable Timeout (LwM2M 1.1 Core E.2).
                Event::Disabled { for_ms } => link.disconnect(Duration::from_millis(*for_ms)),
                // An unanswered Register, Update or Bootstrap-Request over DTLS: the server may
                // have lost the session (it restarted, or a NAT gave the device another
                // address, where a server without Connection ID, RFC 9146, has none and drops
                // its records). The retry starts with a new handshake (offering the session for
                // resumption) after the engine's back-off; the Register follows it, as after
                // any new session (above).
                Event::RegistrationFailed {
                    code: None,
                    retry_in_ms,
                }
                | Event::BootstrapFailed {
                    code: None,
                    retry_in_ms,
                } if link.is_secure() => {
                    tracing::info!("no answer over the DTLS session; a new handshake next");
                    link.disconnect(Duration::from_millis(*retry_in_ms));
                }
                // Asleep in Queue Mode the radio is off, and a NAT may drop the device's
                // mapping: the session is put aside (nothing sent) to be resumed on waking.
                Event::Sleeping => link.sleep(),
                // The 2.04 to the Execute went out above, over the old link.
                Event::BootstrapTriggered {
                    server_uri,
                    credentials,
                    cause,
                } => match point_at(engine, link, server_uri, credentials) {
                    Ok(()) => engine.bootstrap(now(epoch)),
                    // Staying with the server beats bootstrapping with nothing to reach.
                    Err(e) => tracing::error!(
                        %server_uri,
                        %cause,
                        error = %e,
                        "cannot bootstrap: the bootstrap account cannot be used"
                    ),
                },
                _ => {}
            }
            let c = on_event(engine, now(epoch), ev, tasks);
            if c != Control::Continue {
                control = c;
            }
            if deregistered && stopping.is_some() {
                flush(engine, link).await?;
                return Ok(());
            }
        }
        flush(engine, link).await?;
        if control == Control::Stop || stop_requested {
            // Let a notification queued behind an unacknowledged one go out before stopping
            // (e.g. State = Updating right before a reset), for at most DRAIN.
            if !engine.notifications_pending() {
                return Ok(());
            }
            draining.get_or_insert(Instant::now() + DRAIN);
        }
        if let Some(limit) = draining {
            let pending = engine.notifications_pending();
            if !pending || Instant::now() >= limit {
                tracing::debug!(
                    drained = !pending,
                    left_ms = limit.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "stopping after the notification drain"
                );
                flush(engine, link).await?;
                return Ok(());
            }
        }
        match control {
            Control::Stop => {}
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
        if link.needs_handshake() && stopping.is_none() && draining.is_none() {
            // A bootstrap just pointed the link at a DTLS server: the handshake comes first.
            continue;
        }
        let deadline = engine
            .poll_timeout()
            .map(|t| epoch + Duration::from_millis(t));
        let stopping_or_draining = match (stopping, draining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wake = match (deadline, stopping_or_draining) {
            (Some(d), Some(s)) => d.min(s),
            (Some(d), None) => d,
            (None, Some(s)) => s,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            r = link.socket().recv_from(&mut buf) => match r {
                Ok((n, peer)) if peer != engine.server => {
                    link.foreign.drop_from(peer, engine.server, n);
                }
                Ok((n, peer)) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    for datagram in link.receive(data, peer) {
                        engine.handle_datagram(now(epoch), peer, &datagram);
                    }
                }
                // ICMP errors surface here on some systems; the engine's retransmission and
                // back-off already handle an unreachable server.
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            },
            _ = tokio::time::sleep_until(wake) => engine.handle_timeout(now(epoch)),
            m = tasks.next(), if !tasks.is_empty() => {
                if on_done(engine, now(epoch), m, tasks) == Control::Stop {
                    stop_requested = true;
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

/// Points `engine` and `link` at the server of a Security account (the management server a
/// bootstrap provisioned, or the bootstrap server a trigger asks for), over the transport its
/// credentials make.
fn point_at(
    engine: &mut Engine<SocketAddr>,
    link: &mut Link<'_>,
    server_uri: &str,
    credentials: &crate::objects::security::Credentials,
) -> Result<(), crate::host::provisioned::Unusable> {
    let (server, dtls) = link.trust.transport(server_uri, credentials)?;
    tracing::info!(%server_uri, %server, secure = dtls.is_some(), "switching server");
    link.retarget(server, dtls)
        .map_err(|e| crate::host::provisioned::Unusable::Socket(e.to_string()))?;
    engine.set_server(server);
    Ok(())
}

async fn flush(engine: &mut Engine<SocketAddr>, link: &mut Link<'_>) -> io::Result<()> {
    while let Some(t) = engine.poll_transmit() {
        // A send error to one peer (e.g. ICMP unreachable reported late) must not stop the
        // client: the engine's retransmission and back-off handle an unreachable server.
        if let Err(e) = link.send(&t.data, t.peer).await {
            tracing::debug!(peer = %t.peer, error = %e, "send failed");
        }
    }
    Ok(())
}

/// Datagrams dropped because they came from a source the device is not talking to (not its
/// server on the registration socket, not the package host on a pull's socket). Clones share
/// one count, so a test or the application can read it while the device runs.
#[derive(Clone, Debug, Default)]
pub struct ForeignDatagrams(Arc<AtomicU64>);

impl ForeignDatagrams {
    /// Datagrams dropped so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one datagram of `len` bytes from `from` dropped while expecting `expected`.
    pub(crate) fn drop_from(&self, from: SocketAddr, expected: SocketAddr, len: usize) {
        let dropped = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(%from, %expected, len, dropped, "dropped a datagram from a foreign source");
    }
}

/// The engine's transport: its UDP socket, plus a DTLS association with the server when the
/// server is coaps://. Only the engine's server is listened to, in clear or over DTLS;
/// anything else is dropped and counted.
pub struct Link<'s> {
    socket: &'s UdpSocket,
    /// A socket of its own, bound when the server moved where `socket` cannot send (see
    /// [`can_reach`]); used instead of `socket` while it is set.
    own: Option<UdpSocket>,
    secure: Option<Secure>,
    foreign: ForeignDatagrams,
    /// The device's own roots, for the servers a bootstrap server provisions.
    trust: TrustStore,
    /// Resume the DTLS session before sending after this long without a record either way
    /// ([`Link::resuming_after`]).
    auto_resume: Option<Duration>,
}

/// Whether a socket bound to `local` can send to `server`: the same address family, and a
/// loopback address only to loopback (the kernel refuses to route from 127.0.0.1 or ::1 to
/// another host).
pub fn can_reach(local: SocketAddr, server: SocketAddr) -> bool {
    local.is_ipv6() == server.is_ipv6()
        && (local.ip().is_unspecified() || local.ip().is_loopback() == server.ip().is_loopback())
}

struct Secure {
    ctx: DtlsContext,
    server: SocketAddr,
    assoc: Option<DtlsUdp>,
    /// The last session, offered for an abbreviated handshake on reconnect.
    resume: Option<SslSession>,
    /// Put aside while a queue-mode device sleeps ([`Link::sleep`]); the next datagram to
    /// send resumes it first.
    asleep: bool,
    /// The last record sent or authenticated from the server, or the last handshake.
    active_at: Instant,
    /// No handshake before this (the engine's back-off after a failed one).
    not_before: Option<Instant>,
}

impl Secure {
    /// No session with `server` yet.
    fn new(ctx: DtlsContext, server: SocketAddr) -> Self {
        Self {
            ctx,
            server,
            assoc: None,
            resume: None,
            asleep: false,
            active_at: Instant::now(),
            not_before: None,
        }
    }
}

/// Where a hold-off that cannot be represented ends instead: far enough never to come.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How long a stopping device waits for queued notifications to be acknowledged.
const DRAIN: Duration = Duration::from_secs(2);

/// Budget of one handshake attempt; a failed attempt is retried after the engine's back-off.
const HANDSHAKE_BUDGET: Duration = Duration::from_secs(30);

impl<'s> Link<'s> {
    /// Plain CoAP over `socket`.
    pub fn plain(socket: &'s UdpSocket) -> Self {
        Self {
            socket,
            own: None,
            secure: None,
            foreign: ForeignDatagrams::default(),
            trust: TrustStore::default(),
            auto_resume: None,
        }
    }

    /// CoAP over DTLS with `server`, credentials from `ctx` (PSK or certificate).
    pub fn secure(socket: &'s UdpSocket, server: SocketAddr, ctx: DtlsContext) -> Self {
        Self {
            socket,
            own: None,
            secure: Some(Secure::new(ctx, server)),
            foreign: ForeignDatagrams::default(),
            trust: TrustStore::default(),
            auto_resume: None,
        }
    }

    /// Resumes the DTLS session (an abbreviated handshake) before sending once `quiet` passed
    /// without a record either way, as Californium's clients do (DTLS_AUTO_RESUME_TIMEOUT,
    /// 30 s): a NAT may have dropped the device's mapping meanwhile, and a server without
    /// Connection ID (RFC 9146) drops records from the new port. `None`: never.
    pub fn resuming_after(mut self, quiet: Option<Duration>) -> Self {
        self.auto_resume = quiet;
        self
    }

    /// Counts dropped datagrams in `foreign` (e.g. one count shared with the device's pulls).
    pub fn counting(mut self, foreign: ForeignDatagrams) -> Self {
        self.foreign = foreign;
        self
    }

    /// Reaches the servers a bootstrap server provisions with `trust`: the roots the PKIX
    /// certificate usages need.
    pub fn trusting(mut self, trust: TrustStore) -> Self {
        self.trust = trust;
        self
    }

    /// The count of datagrams this link dropped for coming from another source than the
    /// server (shared: it keeps counting while the link runs).
    pub fn foreign(&self) -> ForeignDatagrams {
        self.foreign.clone()
    }

    /// The socket the link sends and receives on.
    pub fn socket(&self) -> &UdpSocket {
        self.own.as_ref().unwrap_or(self.socket)
    }

    /// Talks to `server` from now on: over DTLS with `dtls`'s credentials (a new session),
    /// or in clear. A server the given socket cannot send to (another address family, or off
    /// loopback: a bootstrap server on 127.0.0.1 provisioning one on `[::1]`) gets a socket of
    /// its own, on [`default_local`]; one it can reach gets the given socket back.
    fn retarget(&mut self, server: SocketAddr, dtls: Option<DtlsContext>) -> io::Result<()> {
        self.close();
        let given = self.socket.local_addr()?;
        if can_reach(given, server) {
            self.own = None;
        } else if !self
            .own
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .is_some_and(|own| can_reach(own, server))
        {
            let local = default_local(&server);
            let std = std::net::UdpSocket::bind(local)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {local}: {e}")))?;
            std.set_nonblocking(true)?;
            let socket = UdpSocket::from_std(std)?;
            tracing::info!(local = %socket.local_addr()?, %server, "new socket for the server");
            self.own = Some(socket);
        }
        self.secure = dtls.map(|ctx| Secure::new(ctx, server));
        Ok(())
    }

    /// Closes the DTLS session, if one is up (close_notify).
    fn close(&mut self) {
        let socket = self.own.as_ref().unwrap_or(self.socket);
        if let Some(a) = self.secure.as_mut().and_then(|s| s.assoc.as_mut()) {
            a.close(socket);
        }
    }

    /// Ends the DTLS session (close_notify) and makes the next handshake wait `delay`; in
    /// clear there is no connection to end.
    fn disconnect(&mut self, delay: Duration) {
        self.close();
        if let Some(s) = &mut self.secure {
            s.assoc = None;
            s.asleep = false;
        }
        self.hold_off(delay);
    }

    /// Makes the next handshake wait `delay`.
    fn hold_off(&mut self, delay: Duration) {
        if let Some(s) = &mut self.secure {
            // A server's timers reach 2^32 s; an Instant that far may not exist.
            let now = Instant::now();
            s.not_before = Some(now.checked_add(delay).unwrap_or(now + FAR_FUTURE));
        }
    }

    /// When the next handshake may start, if [`Link::hold_off`] set a time.
    fn hold_off_until(&self) -> Option<Instant> {
        self.secure.as_ref().and_then(|s| s.not_before)
    }

    fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// Whether a handshake is due now: over DTLS with no session, and not asleep.
    fn needs_handshake(&self) -> bool {
        self.secure
            .as_ref()
            .is_some_and(|s| s.assoc.is_none() && !s.asleep)
    }

    /// Puts the DTLS session aside while a queue-mode device sleeps, keeping it for
    /// resumption: nothing is sent (no close_notify: the radio is off), and the server keeps
    /// its side for the abbreviated handshake. In clear there is nothing to put aside.
    fn sleep(&mut self) {
        if let Some(s) = &mut self.secure {
            if let Some(assoc) = s.assoc.take() {
                assoc.put_aside();
                s.asleep = true;
                tracing::debug!(server = %s.server, "DTLS session put aside while asleep");
            }
        }
    }

    /// Whether the session must be resumed before the next send: it is put aside
    /// ([`Link::sleep`]), or quiet for longer than [`Link::resuming_after`] allows.
    fn resume_due(&self) -> bool {
        self.secure.as_ref().is_some_and(|s| {
            s.asleep
                || (s.assoc.is_some()
                    && self.auto_resume.is_some_and(|q| s.active_at.elapsed() >= q))
        })
    }

    /// One handshake, resuming the last session: `Ok(resumed)`, or `Err` when it failed
    /// (logged here). The caller waits for [`Link::hold_off_until`] first.
    async fn connect(&mut self) -> Result<bool, ()> {
        let Some(s) = &mut self.secure else {
            return Ok(false);
        };
        s.not_before = None;
        s.asleep = false;
        match DtlsUdp::connect(
            self.own.as_ref().unwrap_or(self.socket),
            s.server,
            &s.ctx,
            s.resume.as_ref(),
            HANDSHAKE_BUDGET,
        )
        .await
        {
            Ok(assoc) => {
                tracing::info!(
                    server = %s.server,
                    resumed = assoc.resumed(),
                    cipher = assoc.cipher().unwrap_or("?"),
                    "DTLS session established"
                );
                let resumed = assoc.resumed();
                s.resume = assoc.session();
                s.active_at = Instant::now();
                // The association replaced shares the resumed session: freed without a
                // shutdown, OpenSSL would mark that session not resumable.
                if let Some(old) = s.assoc.replace(assoc) {
                    old.put_aside();
                }
                Ok(resumed)
            }
            Err(e) => {
                tracing::warn!(server = %s.server, error = %e, "DTLS handshake failed");
                // Not again before another quiet spell (an association still up stays).
                s.active_at = Instant::now();
                Err(())
            }
        }
    }

    async fn send(&mut self, data: &[u8], peer: SocketAddr) -> io::Result<()> {
        let socket = self.own.as_ref().unwrap_or(self.socket);
        match &mut self.secure {
            None => socket.send_to(data, peer).await.map(|_| ()),
            Some(Secure {
                assoc: Some(a),
                server,
                active_at,
                ..
            }) if peer == *server => {
                a.send(socket, data).await?;
                *active_at = Instant::now();
                Ok(())
            }
            Some(_) => Ok(()), // no session yet, or not the server: nothing goes out in clear
        }
    }

    /// Plaintext datagrams carried by a received datagram.
    fn receive(&mut self, data: &[u8], from: SocketAddr) -> Vec<Vec<u8>> {
        let Some(s) = &mut self.secure else {
            return vec![data.to_vec()];
        };
        let Some(a) = &mut s.assoc else {
            return Vec::new();
        };
        match a.handle(data, from) {
            Ok(datagrams) => {
                if !datagrams.is_empty() {
                    s.active_at = Instant::now();
                }
                datagrams
            }
            Err(e) => {
                tracing::warn!(error = %e, "DTLS session lost; reconnecting");
                s.assoc = None;
                Vec::new()
            }
        }
    }
}

/// A link that goes (the device stops or resets) closes its session: the server would
/// otherwise keep it until its idle timeout, one more for each restart of each device.
impl Drop for Link<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Why a server URI was not usable.
#[derive(Debug, PartialEq, Eq)]
pub struct BadServerUri(pub String);

impl std::fmt::Display for BadServerUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bad server URI {:?}: expected coap://host[:port] or coaps://host[:port]",
            self.0
        )
    }
}

impl std::error::Error for BadServerUri {}

/// The `host:port` part of `coap[s]://host[:port][/...]` (default port 5683, or 5684).
fn authority(uri: &str) -> Result<String, BadServerUri> {
    let u = crate::pull::coap::CoapUri::parse(uri).map_err(|_| BadServerUri(uri.to_owned()))?;
    Ok(if u.host.contains(':') {
        format!("[{}]:{}", u.host, u.port)
    } else {
        format!("{}:{}", u.host, u.port)
    })
}

/// Resolves `coap[s]://host[:port]` (IPv4, `[IPv6]` or a name; default port 5683 / 5684).
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

/// The local address a device talking to `peer` binds by default, ephemeral port: the
/// loopback address when `peer` is on loopback (nothing outside the host can reach the device
/// then), else the wildcard address of `peer`'s family.
pub fn default_local(peer: &SocketAddr) -> SocketAddr {
    let ip: IpAddr = match (peer.ip().is_loopback(), peer.is_ipv6()) {
        (true, false) => Ipv4Addr::LOCALHOST.into(),
        (true, true) => Ipv6Addr::LOCALHOST.into(),
        (false, false) => Ipv4Addr::UNSPECIFIED.into(),
        (false, true) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// Binds a UDP socket for talking to `server`: on [`default_local`], ephemeral port.
pub async fn bind_for(server: &SocketAddr) -> io::Result<UdpSocket> {
    bind_local(None, server).await
}

/// Binds a UDP socket for talking to `server` on `local` (e.g. `--bind`), or on
/// [`default_local`] when `None`. A `local` of the other address family is refused: that
/// socket could never reach the server.
pub async fn bind_local(local: Option<SocketAddr>, server: &SocketAddr) -> io::Result<UdpSocket> {
    let local = local.unwrap_or_else(|| default_local(server));
    if local.is_ipv6() != server.is_ipv6() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot reach {server} from {local}: other address family"),
        ));
    }
    UdpSocket::bind(local)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {local}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket serves a new server of its family and, from loopback, only on loopback.
    #[test]
    fn a_socket_can_reach_servers_of_its_family_and_scope() {
        let reach =
            |local: &str, server: &str| can_reach(local.parse().unwrap(), server.parse().unwrap());
        assert!(reach("127.0.0.1:0", "127.0.0.1:5683"));
        assert!(!reach("127.0.0.1:0", "[::1]:5683"));
        assert!(!reach("[::1]:0", "127.0.0.1:5683"));
        assert!(!reach("127.0.0.1:0", "192.0.2.1:5683"));
        assert!(reach("0.0.0.0:0", "192.0.2.1:5683"));
        assert!(reach("0.0.0.0:0", "127.0.0.1:5683"));
        assert!(reach("[::]:0", "[2001:db8::1]:5683"));
        assert!(!reach("[::]:0", "192.0.2.1:5683"));
        assert!(reach("192.0.2.7:0", "192.0.2.1:5683"));
    }

    #[test]
    fn default_local_address_stays_on_loopback_for_a_loopback_server() {
        let local = |peer: &str| default_local(&peer.parse().unwrap()).to_string();
        assert_eq!(local("127.0.0.1:5683"), "127.0.0.1:0");
        assert_eq!(local("[::1]:5683"), "[::1]:0");
        assert_eq!(local("192.0.2.7:5683"), "0.0.0.0:0");
        assert_eq!(local("[2001:db8::7]:5683"), "[::]:0");
    }

    #[tokio::test]
    async fn a_bind_address_of_the_other_family_is_refused_with_both_addresses() {
        let server: SocketAddr = "[::1]:5683".parse().unwrap();
        let err = bind_local(Some("127.0.0.1:0".parse().unwrap()), &server)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reach [::1]:5683 from 127.0.0.1:0: other address family"
        );
        let bound = bind_local(None, &"127.0.0.1:9".parse().unwrap())
            .await
            .unwrap();
        assert!(bound.local_addr().unwrap().ip().is_loopback());
    }
}
