//! A UDP relay on loopback that delays, drops, duplicates and reorders datagrams.
//!
//! The kernel here has no `netem` qdisc, so network faults are emulated in user space: a test
//! points its client at [`Relay::addr`] instead of the server, and the relay forwards each
//! datagram to the server (and the server's answers back to the last client address) after
//! applying its [`Faults`]. Decisions come from a seeded PRNG so a failing run can be repeated.
//! Everything is bounded: the relay thread stops when the [`Relay`] is dropped. The same
//! faults on IP packets, for TCP, are [`crate::ip_link`]'s.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::faults::Faults;
use crate::faults::{send_when_due, FaultGate, Pending};

/// Counters of what the relay did, for test assertions and logs.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams received from either side.
    pub received: AtomicU64,
    /// Datagrams the client sent (received from it, whether forwarded or dropped).
    pub from_client: AtomicU64,
    /// Of those, the ones that were not a byte-identical copy of a recent one: a CoAP
    /// retransmission repeats its message ID and bytes (RFC 7252 §4.2), a new request does not.
    pub distinct_from_client: AtomicU64,
    /// Datagrams the server sent.
    pub from_server: AtomicU64,
    /// Datagrams dropped on purpose (loss or a cut link).
    pub dropped: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Datagrams sent out of order.
    pub reordered: AtomicU64,
    /// Datagrams forwarded (including duplicates).
    pub forwarded: AtomicU64,
    /// When the first datagram was forwarded, in ns since the relay started (0: none yet).
    first_forward_ns: AtomicU64,
    /// When the last datagram was forwarded, in ns since the relay started.
    last_forward_ns: AtomicU64,
}

/// A running relay; dropping it stops the thread.
pub struct Relay {
    addr: SocketAddr,
    origin: Instant,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    stats: Arc<RelayStats>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on `bind` (use port 0) that forwards to `server`.
    pub fn start(bind: SocketAddr, server: SocketAddr, faults: Faults) -> io::Result<Self> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_millis(5)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RelayStats::default());
        let origin = Instant::now();
        let thread = {
            let (stop, cut, stats) = (stop.clone(), cut.clone(), stats.clone());
            std::thread::spawn(move || run(socket, server, faults, &stop, &cut, &stats, origin))
        };
        Ok(Relay {
            addr,
            origin,
            stop,
            cut,
            stats,
            thread: Some(thread),
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (true) or restores (false) the link: while cut, every datagram is dropped.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Requests the client made, each counted once however often it was retransmitted: on a
    /// loaded machine a 300-ms ACK timeout fires now and then, and a count of forwarded
    /// datagrams would then run ahead of the blocks the client actually asked for.
    pub fn requests(&self) -> u64 {
        self.stats.distinct_from_client.load(Ordering::Relaxed)
    }

    /// Datagrams the client sent so far, forwarded or dropped (a cut link counts them too).
    pub fn from_client(&self) -> u64 {
        self.stats.received.load(Ordering::Relaxed)
    }

    /// Time between the first and the last forwarded datagram: a transfer's time on the wire.
    pub fn wire_time(&self) -> Duration {
        let first = self.stats.first_forward_ns.load(Ordering::SeqCst);
        let last = self.stats.last_forward_ns.load(Ordering::SeqCst);
        Duration::from_nanos(last.saturating_sub(first))
    }

    /// When the last datagram was forwarded (the relay's start if none was).
    pub fn last_forward(&self) -> Instant {
        self.origin + Duration::from_nanos(self.stats.last_forward_ns.load(Ordering::SeqCst))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    socket: UdpSocket,
    server: SocketAddr,
    faults: Faults,
    stop: &AtomicBool,
    cut: &AtomicBool,
    stats: &Arc<RelayStats>,
    origin: Instant,
) {
    let (tx, rx) = mpsc::channel::<Pending<SocketAddr>>();
    let sender = match socket.try_clone() {
        Ok(out) => {
            let stats = stats.clone();
            std::thread::spawn(move || send_when_due(&rx, |p| forward(&out, &p, &stats, origin)))
        }
        Err(_) => return,
    };
    // Without a delay a datagram goes out at once from this thread, as it always did.
    let pass = |p: Pending<SocketAddr>| {
        if faults.delay.is_zero() {
            forward(&socket, &p, stats, origin);
        } else {
            let _ = tx.send(p);
        }
    };
    let mut gate = FaultGate::new(faults);
    let mut client: Option<SocketAddr> = None;
    let mut recent = RecentDatagrams::default();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            stats.received.fetch_add(1, Ordering::Relaxed);
            let to = if from == server {
                stats.from_server.fetch_add(1, Ordering::Relaxed);
                client
            } else {
                stats.from_client.fetch_add(1, Ordering::Relaxed);
                if recent.is_new(&buf[..n]) {
                    stats.distinct_from_client.fetch_add(1, Ordering::Relaxed);
                }
                client = Some(from);
                Some(server)
            };
            let Some(to) = to else {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let forwarded = stats.forwarded.load(Ordering::Relaxed);
            gate.admit(to, &buf[..n], cut.load(Ordering::SeqCst), forwarded, pass)
                .count(&stats.dropped, &stats.duplicated, &stats.reordered);
        }
        gate.release_overdue(pass);
    }
    drop(tx);
    let _ = sender.join();
}

/// Hashes of the client's last datagrams, to tell a retransmission from a new request.
#[derive(Default)]
struct RecentDatagrams {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

impl RecentDatagrams {
    /// Retransmissions follow their original within seconds (RFC 7252 §4.8: MAX_TRANSMIT_SPAN),
    /// far fewer datagrams than this apart.
    const WINDOW: usize = 1024;

    /// Whether `datagram` differs from the last [`Self::WINDOW`] ones; remembers it.
    fn is_new(&mut self, datagram: &[u8]) -> bool {
        let mut h = DefaultHasher::new();
        datagram.hash(&mut h);
        let h = h.finish();
        if !self.seen.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > Self::WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// Sends `p` now and counts it.
fn forward(socket: &UdpSocket, p: &Pending<SocketAddr>, stats: &RelayStats, origin: Instant) {
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    let ns = origin.elapsed().as_nanos() as u64;
    let _ =
        stats
            .first_forward_ns
            .compare_exchange(0, ns.max(1), Ordering::SeqCst, Ordering::SeqCst);
    stats.last_forward_ns.store(ns, Ordering::SeqCst);
    let _ = socket.send_to(&p.bytes, p.to);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let addr = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 1500];
            while !st.load(Ordering::SeqCst) {
                if let Ok((n, from)) = s.recv_from(&mut b) {
                    let _ = s.send_to(&b[..n], from);
                }
            }
        });
        (addr, stop, t)
    }

    fn exchange(relay: &Relay, count: u8) -> Vec<u8> {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        for i in 0..count {
            c.send_to(&[i], relay.addr()).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut got = Vec::new();
        let mut b = [0u8; 16];
        while let Ok(n) = c.recv(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        got
    }

    #[test]
    fn clean_relay_forwards_both_ways_in_order() {
        let (server, stop, t) = echo_server();
        let relay =
            Relay::start("127.0.0.1:0".parse().unwrap(), server, Faults::default()).unwrap();
        assert_eq!(exchange(&relay, 20), (0..20).collect::<Vec<u8>>());
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn a_repeated_datagram_is_one_request() {
        let (server, stop, t) = echo_server();
        let relay =
            Relay::start("127.0.0.1:0".parse().unwrap(), server, Faults::default()).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        for d in [&[1u8, 2][..], &[1, 2], &[3], &[1, 2]] {
            c.send_to(d, relay.addr()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay.stats().from_client.load(Ordering::Relaxed) < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(relay.stats().from_client.load(Ordering::Relaxed), 4);
        assert_eq!(relay.requests(), 2);
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn loss_drops_about_the_asked_share_and_cut_drops_everything() {
        let (server, stop, t) = echo_server();
        let faults = Faults::lossy(0.2, 7);
        let relay = Relay::start("127.0.0.1:0".parse().unwrap(), server, faults).unwrap();
        let got = exchange(&relay, 200).len();
        // Each echo crosses the relay twice: about 0.8 * 0.8 = 64% come back.
        assert!((90..=165).contains(&got), "{got} of 200 came back");
        relay.set_cut(true);
        assert!(exchange(&relay, 10).is_empty());
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn duplicates_and_reorders_are_applied() {
        let (server, stop, t) = echo_server();
        let faults = Faults {
            duplicate: 0.3,
            reorder: 0.3,
            seed: 11,
            ..Faults::default()
        };
        let relay = Relay::start("127.0.0.1:0".parse().unwrap(), server, faults).unwrap();
        let got = exchange(&relay, 50);
        assert!(got.len() > 50, "duplicates expected, got {}", got.len());
        assert!(got.windows(2).any(|w| w[1] < w[0]), "reordering expected");
        assert!(relay.stats().reordered.load(Ordering::Relaxed) > 0);
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn delay_is_kept_to_a_fraction_of_a_millisecond() {
        let (server, stop, t) = echo_server();
        let delay = Duration::from_millis(25);
        let faults = Faults {
            delay,
            ..Faults::default()
        };
        let relay = Relay::start("127.0.0.1:0".parse().unwrap(), server, faults).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut rtts: Vec<Duration> = (0..41)
            .map(|i| {
                let t0 = Instant::now();
                c.send_to(&[i as u8; 100], relay.addr()).unwrap();
                c.recv(&mut [0u8; 200]).unwrap();
                t0.elapsed()
            })
            .collect();
        rtts.sort();
        // Two hops of 25 ms. A relay that sends when its socket read times out adds up to a
        // kernel tick (4-8 ms) per hop to every datagram; load on a shared machine delays
        // some round trips, so the lower quartile is what is compared.
        let quartile = rtts[rtts.len() / 4];
        assert!(
            quartile >= 2 * delay && quartile < 2 * delay + Duration::from_millis(3),
            "lower quartile of the round trips {quartile:?}: {rtts:?}"
        );
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }
}
