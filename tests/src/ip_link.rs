//! An IP-level link emulator, the way mahimahi builds one: two private network namespaces (the
//! device's and the host's), each with a point-to-point TUN device, and a forwarding loop that
//! reads each IP packet from one TUN and writes it to the other after [`Faults`] (the UDP
//! relay's delay and seeded loss model, [`crate::faults`]).
//!
//! The UDP relay ([`crate::relay`]) sees datagrams, so it can drop them; a userspace TCP relay
//! sees a byte stream and can only delay it. Below TCP, on IP packets, loss hits segments and
//! acknowledgements as it would on a real link, and TCP's slow start and retransmission timers
//! run across the whole emulated path. The kernel here has no `netem` qdisc, hence TUN.
//!
//! The addresses ([`DEVICE_IP`], [`HOST_IP`]) exist only inside the two private namespaces,
//! which have no interface but `lo` and the TUN: nothing sent on the link reaches a real
//! network, and the machine's own namespace is not changed. Creating them needs
//! `CAP_SYS_ADMIN` (unshare) and `CAP_NET_ADMIN` (TUN, addresses), as root has; without them
//! [`IpLink::start`] returns an [`IpLinkError`] that says which step was refused.
//!
//! Network namespaces are per thread on Linux: a socket lives in the namespace of the thread
//! that created it, and threads and processes inherit their creator's. [`NetNs::run`] runs code
//! on a thread inside a namespace: a listener bound there, a tokio runtime built there (its
//! workers are that thread's children) and a process spawned there all belong to that side.
//! Only IPv4 is carried; other packets (IPv6 router and multicast chatter) are discarded
//! uncounted. Everything is bounded: the forwarding threads stop when the [`IpLink`] is dropped,
//! and the namespaces and TUN devices vanish with their last file descriptor.

use std::ffi::CStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::faults::{send_when_due, FaultGate, Faults, Pending};

/// The device's address on the link (its namespace's end of the TUN pair).
pub const DEVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The host's address on the link.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The TUN device's name in each namespace (each namespace has its own set of names).
const TUN_NAME: &CStr = c"lk0";

/// Why the link could not be set up.
#[derive(Debug)]
pub enum IpLinkError {
    /// A private network namespace could not be created (needs `CAP_SYS_ADMIN`).
    Namespace(io::Error),
    /// `/dev/net/tun` could not be opened or the TUN device not created (needs
    /// `CAP_NET_ADMIN`).
    Tun(io::Error),
    /// An interface could not be configured (which step).
    Configure(&'static str, io::Error),
    /// A thread of the emulator could not be started or failed.
    Thread(io::Error),
}

impl fmt::Display for IpLinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace(e) => write!(
                f,
                "cannot create a private network namespace (unshare(CLONE_NEWNET) needs \
                 CAP_SYS_ADMIN): {e}"
            ),
            Self::Tun(e) => write!(
                f,
                "cannot create a TUN device (/dev/net/tun, needs CAP_NET_ADMIN): {e}"
            ),
            Self::Configure(step, e) => write!(
                f,
                "cannot configure the link ({step}, needs CAP_NET_ADMIN): {e}"
            ),
            Self::Thread(e) => write!(f, "link emulator thread: {e}"),
        }
    }
}

impl std::error::Error for IpLinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Namespace(e) | Self::Tun(e) | Self::Configure(_, e) | Self::Thread(e) => Some(e),
        }
    }
}

/// A network namespace, kept alive by its open `/proc/thread-self/ns/net` descriptor.
pub struct NetNs {
    fd: File,
}

impl NetNs {
    /// Moves the calling thread into this namespace: sockets it creates from now on, and threads
    /// and processes it starts, live there.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns takes a descriptor this struct owns and changes only the calling
        // thread's network namespace.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside this namespace and returns what it returns (a panic in
    /// `f` is passed on).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            let t = std::thread::Builder::new()
                .name("in-netns".into())
                .spawn_scoped(s, || -> io::Result<T> {
                    self.enter()?;
                    Ok(f())
                })?;
            t.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Counters of what crossed the link, both directions.
#[derive(Debug, Default)]
pub struct IpLinkStats {
    /// IPv4 packets the device side sent (dropped ones included).
    pub from_device: AtomicU64,
    /// IPv4 packets the host side sent (dropped ones included).
    pub from_host: AtomicU64,
    /// Packets dropped on purpose.
    pub dropped: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Packets sent out of order.
    pub reordered: AtomicU64,
    /// Packets delivered (including duplicates).
    pub forwarded: AtomicU64,
}

impl IpLinkStats {
    /// Packets sent both ways, dropped ones included: the counterpart of the relay's
    /// datagrams.
    pub fn packets(&self) -> u64 {
        self.from_device.load(Ordering::Relaxed) + self.from_host.load(Ordering::Relaxed)
    }
}

/// A running link between a device namespace and a host namespace; dropping it stops the
/// forwarding and, with the last user of each namespace, removes them.
pub struct IpLink {
    device: NetNs,
    host: NetNs,
    stop: Arc<AtomicBool>,
    stats: Arc<IpLinkStats>,
    thread: Option<JoinHandle<()>>,
}

/// Which end a packet goes to.
#[derive(Clone, Copy, Debug)]
enum Side {
    Device = 0,
    Host = 1,
}

impl IpLink {
    /// Creates both namespaces and their TUN devices and starts forwarding with `faults`.
    pub fn start(faults: Faults) -> Result<Self, IpLinkError> {
        let (device, device_tun) = private_end(DEVICE_IP, HOST_IP)?;
        let (host, host_tun) = private_end(HOST_IP, DEVICE_IP)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(IpLinkStats::default());
        let tuns = [Arc::new(device_tun), Arc::new(host_tun)];
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("ip-link".into())
                .spawn(move || forward_loop(tuns, faults, &stop, &stats))
                .map_err(IpLinkError::Thread)?
        };
        Ok(Self {
            device,
            host,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The device's namespace (address [`DEVICE_IP`]).
    pub fn device(&self) -> &NetNs {
        &self.device
    }

    /// The host's namespace (address [`HOST_IP`]).
    pub fn host(&self) -> &NetNs {
        &self.host
    }

    /// What crossed the link so far.
    pub fn stats(&self) -> &IpLinkStats {
        &self.stats
    }
}

impl Drop for IpLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads packets from both TUN devices as they arrive and passes them through one
/// [`FaultGate`] to a sender thread that writes each to the other TUN when it is due.
fn forward_loop(tuns: [Arc<File>; 2], faults: Faults, stop: &AtomicBool, stats: &Arc<IpLinkStats>) {
    let (tx, rx) = mpsc::channel::<Pending<Side>>();
    let sender = {
        let (tuns, stats) = (tuns.clone(), stats.clone());
        std::thread::spawn(move || {
            send_when_due(&rx, |p| {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                // A TUN write injects one whole packet; it fails only if the device is gone.
                let _ = (&*tuns[p.to as usize]).write(&p.bytes);
            })
        })
    };
    let pass = |p: Pending<Side>| {
        let _ = tx.send(p);
    };
    let mut gate = FaultGate::new(faults);
    let mut fds = tuns.each_ref().map(|t| libc::pollfd {
        fd: t.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: `fds` is a live array of two pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5) };
        for (i, pfd) in fds.iter().enumerate() {
            if ready <= 0 || pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            let Ok(n) = (&*tuns[i]).read(&mut buf) else {
                continue;
            };
            if n == 0 || buf[0] >> 4 != 4 {
                continue;
            }
            let (sent, to) = match i {
                0 => (&stats.from_device, Side::Host),
                _ => (&stats.from_host, Side::Device),
            };
            sent.fetch_add(1, Ordering::Relaxed);
            let forwarded = stats.forwarded.load(Ordering::Relaxed);
            gate.admit(to, &buf[..n], false, forwarded, pass).count(
                &stats.dropped,
                &stats.duplicated,
                &stats.reordered,
            );
        }
        gate.release_overdue(pass);
    }
    drop(tx);
    let _ = sender.join();
}

/// Creates a private network namespace on a thread of its own, with `lo` up and a TUN device
/// `local` <-> `peer` (a /32 point-to-point link, so the kernel routes `peer` through it);
/// returns the namespace and the TUN's packet descriptor.
fn private_end(local: Ipv4Addr, peer: Ipv4Addr) -> Result<(NetNs, File), IpLinkError> {
    std::thread::Builder::new()
        .name("ip-link-netns".into())
        .spawn(move || {
            // SAFETY: unshare(CLONE_NEWNET) changes only this thread's network namespace; the
            // thread ends here, the namespace lives on through the descriptors returned.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(IpLinkError::Namespace(io::Error::last_os_error()));
            }
            let ns = File::open("/proc/thread-self/ns/net").map_err(IpLinkError::Namespace)?;
            let ctl = control_socket()?;
            set_up(&ctl, c"lo")?;
            let tun = open_tun(TUN_NAME)?;
            set_addr(&ctl, libc::SIOCSIFADDR, "address", local)?;
            set_addr(&ctl, libc::SIOCSIFDSTADDR, "peer address", peer)?;
            set_addr(
                &ctl,
                libc::SIOCSIFNETMASK,
                "netmask",
                Ipv4Addr::new(255, 255, 255, 255),
            )?;
            set_up(&ctl, TUN_NAME)?;
            Ok((NetNs { fd: ns }, tun))
        })
        .map_err(IpLinkError::Thread)?
        .join()
        .unwrap_or_else(|_| {
            Err(IpLinkError::Thread(io::Error::other(
                "namespace thread panicked",
            )))
        })
}

/// An `ifreq` naming `name` (at most 15 bytes), the rest zero.
fn ifreq(name: &CStr) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name and a union of integers and sockaddrs), for
    // which all zero bytes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req
        .ifr_name
        .iter_mut()
        .zip(name.to_bytes().iter().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

/// `ioctl(fd, request, req)`, with the error it set.
fn ioctl(fd: &impl AsRawFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request used here reads or writes one ifreq, which `req` points to. The
    // request's integer type differs between C libraries, hence the inferred cast.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A datagram socket in the calling thread's namespace, for the interface ioctls.
fn control_socket() -> Result<OwnedFd, IpLinkError> {
    // SAFETY: plain socket(2); the descriptor is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(IpLinkError::Configure(
            "control socket",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings interface `name` up.
fn set_up(ctl: &OwnedFd, name: &CStr) -> Result<(), IpLinkError> {
    let mut req = ifreq(name);
    ioctl(ctl, libc::SIOCGIFFLAGS, &mut req)
        .map_err(|e| IpLinkError::Configure("read flags", e))?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(ctl, libc::SIOCSIFFLAGS, &mut req).map_err(|e| IpLinkError::Configure("bring up", e))
}

/// Sets an IPv4 address of the TUN device (`request`: address, peer address or netmask).
fn set_addr(
    ctl: &OwnedFd,
    request: libc::c_ulong,
    what: &'static str,
    ip: Ipv4Addr,
) -> Result<(), IpLinkError> {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut req = ifreq(TUN_NAME);
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes (checked by transmute at compile
    // time); the kernel reads the address member as the sockaddr_in its family names.
    req.ifr_ifru.ifru_addr =
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) };
    ioctl(ctl, request, &mut req).map_err(|e| IpLinkError::Configure(what, e))
}

/// Opens `/dev/net/tun` and creates TUN device `name` (IP packets, no packet-info header) in
/// the calling thread's namespace; the device lives as long as the returned file.
fn open_tun(name: &CStr) -> Result<File, IpLinkError> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(IpLinkError::Tun)?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    #[allow(clippy::useless_conversion)]
    ioctl(&tun, libc::TUNSETIFF as libc::c_ulong, &mut req).map_err(IpLinkError::Tun)?;
    Ok(tun)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::time::{Duration, Instant};

    /// These tests need root (CAP_SYS_ADMIN for the namespaces, CAP_NET_ADMIN and /dev/net/tun
    /// for the link): they are `#[ignore]`d in the workspace run and scripts/test runs them
    /// with `--ignored` where those exist (saying NOT RUN where they do not). Once run, a
    /// missing TUN or namespace support fails the test.
    fn link(faults: Faults) -> IpLink {
        IpLink::start(faults).unwrap_or_else(|e| panic!("IP link emulator unavailable: {e}"))
    }

    #[test]
    #[ignore = "needs root: scripts/test runs it with --ignored"]
    fn udp_round_trips_take_twice_the_delay_and_are_counted() {
        let delay = Duration::from_millis(20);
        let link = link(Faults {
            delay,
            ..Faults::default()
        });
        let server = link
            .host()
            .run(|| UdpSocket::bind((HOST_IP, 0)))
            .unwrap()
            .unwrap();
        let target = server.local_addr().unwrap();
        assert_eq!(target.ip(), HOST_IP);
        let echo = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            for _ in 0..10 {
                let (n, from) = server.recv_from(&mut b).unwrap();
                server.send_to(&b[..n], from).unwrap();
            }
        });
        let rtts = link
            .device()
            .run(|| {
                let c = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut rtts: Vec<Duration> = (0..10u8)
                    .map(|i| {
                        let t0 = Instant::now();
                        c.send_to(&[i; 32], target).unwrap();
                        let (n, from) = c.recv_from(&mut [0u8; 64]).unwrap();
                        assert_eq!((n, from), (32, target));
                        t0.elapsed()
                    })
                    .collect();
                rtts.sort();
                rtts
            })
            .unwrap();
        echo.join().unwrap();
        let quartile = rtts[rtts.len() / 4];
        assert!(
            quartile >= 2 * delay && quartile < 2 * delay + Duration::from_millis(15),
            "{rtts:?}"
        );
        assert_eq!(link.stats().from_device.load(Ordering::Relaxed), 10);
        assert_eq!(link.stats().from_host.load(Ordering::Relaxed), 10);
        assert_eq!(link.stats().packets(), 20);
    }

    #[test]
    #[ignore = "needs root: scripts/test runs it with --ignored"]
    fn tcp_survives_loss_and_the_drops_are_counted() {
        let link = link(Faults {
            loss: 0.1,
            delay: Duration::from_millis(5),
            seed: 3,
            ..Faults::default()
        });
        let listener = link
            .host()
            .run(|| TcpListener::bind((HOST_IP, 0)))
            .unwrap()
            .unwrap();
        let target: SocketAddr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&sent).unwrap();
        });
        let got = link
            .device()
            .run(|| {
                let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(20)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                got
            })
            .unwrap();
        server.join().unwrap();
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
        let stats = link.stats();
        let (packets, dropped) = (stats.packets(), stats.dropped.load(Ordering::Relaxed));
        // 200 kB is at least 137 full-size segments; about a tenth of all packets is dropped.
        assert!(packets > 137, "{packets} packets");
        assert!(
            dropped > packets / 30 && dropped < packets / 4,
            "{dropped} of {packets}"
        );
    }
}
