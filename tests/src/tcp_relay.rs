//! A TCP relay on loopback that delays the bytes of each connection by a fixed time in each
//! direction, the TCP counterpart of [`crate::relay`] for pulls over HTTP.
//!
//! The relay terminates TCP on both sides and forwards what it reads after the delay, so
//! latency is emulated but not loss (TCP repairs loss below the relay) and not the slow start
//! of a connection across a long path: transfers through it are a lower bound for TCP on a
//! real link of that round-trip time. Each connection runs on its own threads, which end when
//! either side closes; the accepting thread stops when the [`TcpRelay`] is dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What went through the relay.
#[derive(Debug, Default)]
pub struct TcpRelayStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Bytes from clients to the server.
    pub to_server: AtomicU64,
    /// Bytes from the server to clients.
    pub to_client: AtomicU64,
}

/// A running TCP relay; dropping it stops accepting.
pub struct TcpRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<TcpRelayStats>,
    thread: Option<JoinHandle<()>>,
}

impl TcpRelay {
    /// Starts a relay on `bind` (use port 0) to `server`, delaying each direction by `delay`.
    pub fn start(bind: SocketAddr, server: SocketAddr, delay: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(TcpRelayStats::default());
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    if let Ok(upstream) = TcpStream::connect(server) {
                        relay_connection(client, upstream, delay, &stats);
                    }
                }
            })
        };
        Ok(Self {
            addr,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What went through so far.
    pub fn stats(&self) -> &TcpRelayStats {
        &self.stats
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay_connection(
    client: TcpStream,
    upstream: TcpStream,
    delay: Duration,
    stats: &Arc<TcpRelayStats>,
) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = stats.clone();
    let down = stats.clone();
    pump(client, upstream2, delay, move |n| {
        up.to_server.fetch_add(n, Ordering::Relaxed);
    });
    pump(upstream, client2, delay, move |n| {
        down.to_client.fetch_add(n, Ordering::Relaxed);
    });
}

/// Copies `from` to `to`, each chunk `delay` after it was read; closes `to`'s write side
/// (after the delay) when `from` ends.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    count: impl Fn(u64) + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now() + delay, None));
                    return;
                }
                Ok(n) => {
                    count(n as u64);
                    if tx
                        .send((Instant::now() + delay, Some(buf[..n].to_vec())))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((due, chunk)) = rx.recv() {
            // Waiting for the chunk's due time is the delay being emulated.
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            match chunk {
                Some(bytes) if to.write_all(&bytes).is_ok() => {}
                _ => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_intact_and_a_round_trip_takes_twice_the_delay() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = vec![0u8; 300_000];
            let mut got = 0;
            while got < buf.len() {
                got += s.read(&mut buf[got..]).unwrap();
            }
            s.write_all(&buf).unwrap();
        });
        let relay = TcpRelay::start(
            "127.0.0.1:0".parse().unwrap(),
            target,
            Duration::from_millis(40),
        )
        .unwrap();
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let t0 = Instant::now();
        c.write_all(&data).unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).unwrap();
        let rtt = t0.elapsed();
        assert!(back == data);
        assert!(rtt >= Duration::from_millis(80), "{rtt:?}");
        assert_eq!(relay.stats().to_server.load(Ordering::Relaxed), 300_000);
        echo.join().unwrap();
    }
}
