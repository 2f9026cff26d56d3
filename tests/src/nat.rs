//! A UDP NAT on loopback whose mapping can change. The device sends to [`Nat::addr`]; the NAT
//! sends on to the server from its outside socket (the mapping's public port) and the server's
//! answers back to the device. [`Nat::rebind`] gives the mapping a new outside port, as a
//! carrier-grade NAT does once a quiet device's mapping expired (a device in Queue Mode sleeps
//! past the usual 30-120 s UDP timeouts): the server then hears the device from another
//! address, and what it sends to the old one is lost. Bounded: the thread stops when the
//! [`Nat`] is dropped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running NAT; dropping it stops the thread.
pub struct Nat {
    addr: SocketAddr,
    outside_port: Arc<AtomicU16>,
    rebind: Arc<AtomicBool>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Nat {
    /// A NAT on 127.0.0.1 in front of `server`.
    pub fn start(server: SocketAddr) -> io::Result<Self> {
        Self::start_rebinding_after(server, 0)
    }

    /// [`Nat::start`] that rebinds by itself right after it forwarded the device's `n`-th
    /// datagram (0: never), e.g. in the middle of a download too fast to time from outside.
    pub fn start_rebinding_after(server: SocketAddr, n: u64) -> io::Result<Self> {
        let inside = UdpSocket::bind("127.0.0.1:0")?;
        inside.set_read_timeout(Some(Duration::from_millis(1)))?;
        let outside = outside_socket()?;
        let addr = inside.local_addr()?;
        let outside_port = Arc::new(AtomicU16::new(outside.local_addr()?.port()));
        let rebind = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts {
            rebind_after: n,
            ..Counts::default()
        });
        let thread = {
            let (port, rebind, stop) = (outside_port.clone(), rebind.clone(), stop.clone());
            let counts = counts.clone();
            std::thread::spawn(move || run(inside, outside, server, &port, &rebind, &counts, &stop))
        };
        Ok(Self {
            addr,
            outside_port,
            rebind,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the device sends to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams forwarded from the device to the server so far.
    pub fn from_device(&self) -> u64 {
        self.counts.from_device.load(Ordering::SeqCst)
    }

    /// Times the mapping changed so far.
    pub fn rebinds(&self) -> u64 {
        self.counts.rebinds.load(Ordering::SeqCst)
    }

    /// The port the server sees the device's datagrams come from now.
    pub fn outside_port(&self) -> u16 {
        self.outside_port.load(Ordering::SeqCst)
    }

    /// Drops the mapping: from the device's next datagram on, the server sees a new port, and
    /// nothing sent to the old one reaches the device. Returns once the new port is in use.
    pub fn rebind(&self) -> u16 {
        let old = self.outside_port();
        self.rebind.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.outside_port() == old {
            assert!(
                std::time::Instant::now() < deadline,
                "the NAT did not rebind"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        self.outside_port()
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the NAT thread did.
#[derive(Default)]
struct Counts {
    from_device: AtomicU64,
    rebinds: AtomicU64,
    /// Rebind after forwarding this many datagrams of the device's (0: never).
    rebind_after: u64,
}

fn outside_socket() -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(1)))?;
    Ok(s)
}

fn run(
    inside: UdpSocket,
    mut outside: UdpSocket,
    server: SocketAddr,
    port: &AtomicU16,
    rebind: &AtomicBool,
    counts: &Counts,
    stop: &AtomicBool,
) {
    let mut device: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        if rebind.swap(false, Ordering::SeqCst) {
            // The old socket closes with the old mapping.
            match outside_socket().and_then(|s| Ok((s.local_addr()?.port(), s))) {
                Ok((p, s)) => {
                    outside = s;
                    port.store(p, Ordering::SeqCst);
                    counts.rebinds.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => return,
            }
        }
        if let Ok((n, from)) = inside.recv_from(&mut buf) {
            device = Some(from);
            let _ = outside.send_to(&buf[..n], server);
            let sent = counts.from_device.fetch_add(1, Ordering::SeqCst) + 1;
            if sent == counts.rebind_after {
                rebind.store(true, Ordering::SeqCst);
            }
        }
        if let Ok((n, from)) = outside.recv_from(&mut buf) {
            if let (true, Some(d)) = (from == server, device) {
                let _ = inside.send_to(&buf[..n], d);
            }
        }
    }
}
