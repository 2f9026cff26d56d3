//! DTLS cost in the shim, each figure next to a peer measured in the same run:
//!
//! 1. Full PSK handshakes per second (cookie exchange included): our `DtlsSession` clients,
//!    each on a fresh UDP socket, against the shim's coaps listener and against libcoap's
//!    `coap-server-openssl` (same suite, same client code). Ratio shim / libcoap.
//! 2. What DTLS costs on a 1 MiB Block2 pull (1024-byte blocks, handshake included): the
//!    ratio coaps time / coap time for four client/host pairs, each pulling the same file:
//!    (a) our device's pull (`lwm2m_client::host::coap_pull`) from the shim's package host,
//!    (a') the same asking with Q-Block2 (RFC 9177, `--pull-qblock`),
//!    (b) libcoap's `coap-client-openssl` from the shim's package host,
//!    (c) `coap-client-openssl` from libcoap's `coap-server-openssl` (the file PUT there
//!    first): the peers' own price of DTLS, which tells how much of (b) is the client's.
//!    Then the floor: what OpenSSL's records of that pull cost alone, in memory on one thread
//!    (no sockets, no scheduler), added to (a)'s coap time.
//!
//! Both phases run beside a spinning thread ([`Spinner`]): without it, this VM's idle vCPUs
//! woke so slowly that the order of the pulls decided their times.
//!
//! Both comparisons run in alternating rounds (a block of handshakes with each server; each
//! pair's coap and coaps pulls back to back, which one first alternating) and report the
//! median of the per-round ratios: on a shared machine the load changes within seconds, and
//! two long back-to-back blocks measured that drift.
//!
//! Run: `cargo bench -p lwm2m-server-shim --bench dtls`

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::{self, CoapPullConfig};
use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Plaintexts, Psk, PskLookup};
use lwm2m_client::pull::qblock::QBlockParams;
use lwm2m_client::pull::{PackageSink, SinkError};
use lwm2m_server_shim::app::{self, ShimConfig};
use lwm2m_server_shim::server::registration::store::InMemoryStore;
use lwm2m_server_shim::server::security::store::{
    InMemorySecurityStore, SecurityInfo, SecurityStore,
};

const SIZE: usize = 1024 * 1024;
const HANDSHAKES: usize = 300;
/// Rounds the handshakes are split into, alternating between the two servers.
const ROUNDS: usize = 10;
const PULL_RUNS: usize = 9;
const IDENTITY: &str = "bench-id";
const KEY: &str = "bench-key-000001";

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One full handshake from a fresh socket (a new peer address); `None` on failure.
fn handshake(ctx: &DtlsContext, server: SocketAddr) -> Option<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .ok()?;
    let mut s = DtlsSession::client(ctx, None).ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while !s.is_established() {
        if Instant::now() > deadline {
            return None;
        }
        while let Some(d) = s.poll_transmit() {
            socket.send_to(&d, server).ok()?;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                s.handle_datagram(buf.get(..n)?).ok()?;
            }
            Err(_) => {
                if s.timeout().is_some_and(|t| t.is_zero()) {
                    s.handle_timeout().ok()?;
                }
            }
        }
    }
    // Last flight out, then close so the server can drop the session.
    while let Some(d) = s.poll_transmit() {
        socket.send_to(&d, server).ok()?;
    }
    s.close();
    while let Some(d) = s.poll_transmit() {
        socket.send_to(&d, server).ok()?;
    }
    Some(())
}

/// Seconds for `n` handshakes, sequential on one client thread.
fn handshakes(ctx: &DtlsContext, server: SocketAddr, n: usize) -> Option<f64> {
    let start = Instant::now();
    for _ in 0..n {
        handshake(ctx, server)?;
    }
    Some(start.elapsed().as_secs_f64())
}

/// Hands every datagram `from` has to send to `to`, decrypting into `out`.
fn deliver(from: &mut DtlsSession, to: &mut DtlsSession, out: &mut Plaintexts) -> Option<()> {
    while let Some(d) = from.poll_transmit() {
        to.handle_datagram_into(&d, out).ok()?;
        from.recycle(d);
    }
    Some(())
}

/// DTLS's own price on a 1 MiB Block2 pull, without sockets or a scheduler: a client and a
/// server session on this thread exchange what each block of the pull carries (the GET with
/// its Block2 option one way, the 1024-byte block in its response the other), every record
/// sealed and opened by OpenSSL as in the pull. The median of `runs`. The plain pull's time
/// plus this is the least the coaps pull can take.
fn record_floor(client: &DtlsContext, runs: usize) -> Option<Duration> {
    let lookup: PskLookup =
        Arc::new(|id: &[u8]| (id == IDENTITY.as_bytes()).then(|| KEY.as_bytes().to_vec()));
    let server = DtlsContext::psk_server(lookup).ok()?;
    let mut c = DtlsSession::client(client, None).ok()?;
    let mut s = DtlsSession::server(&server, ([127, 0, 0, 1], 5684).into()).ok()?;
    let mut out = Plaintexts::default();
    // ClientHello, HelloVerifyRequest, ClientHello with the cookie, and the rest.
    for _ in 0..8 {
        deliver(&mut c, &mut s, &mut out)?;
        deliver(&mut s, &mut c, &mut out)?;
    }
    if !(c.is_established() && s.is_established()) {
        return None;
    }
    // The sizes of our pull's messages: a CON GET of /fw/pkg.bin with a 4-byte token and
    // Block2, and a 2.05 with ETag, Block2 and 1024 bytes of payload.
    let (request, block) = (vec![0x44u8; 24], vec![0x55u8; 1024 + 22]);
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..SIZE / 1024 {
            c.send(&request).ok()?;
            deliver(&mut c, &mut s, &mut out)?;
            s.send(&block).ok()?;
            deliver(&mut s, &mut c, &mut out)?;
        }
        times.push(start.elapsed());
    }
    times.sort();
    times.get(runs / 2).copied()
}

/// A thread that spins until dropped. On this VM a vCPU that goes idle between datagrams
/// wakes up slowly, and whether it idles depends on what ran just before: a pull right after
/// libcoap's processes took 31-55 ms, the next one, back to back, 77-162 ms, whichever kind
/// each was, so per-round ratios measured the order, not DTLS. With a spinner the vCPUs stay
/// awake, as on a loaded server, and each measurement is its own work.
struct Spinner {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Handshake rates of the shim and of libcoap (`None` when libcoap failed) and the median of
/// the per-round ratios shim / libcoap; rounds alternate which server goes first.
fn handshake_rates(
    ctx: &DtlsContext,
    shim: SocketAddr,
    peer: SocketAddr,
) -> (f64, Option<(f64, f64)>) {
    handshake(ctx, shim).expect("warm-up handshake with the shim");
    let peer_ok = handshake(ctx, peer).is_some();
    let per_round = HANDSHAKES / ROUNDS;
    let (mut shim_s, mut peer_s, mut ratios) = (0.0, 0.0, Vec::new());
    for round in 0..ROUNDS {
        let time = |to: SocketAddr| handshakes(ctx, to, per_round);
        let (s, p) = if round % 2 == 0 || !peer_ok {
            let s = time(shim).expect("handshakes with the shim");
            (s, peer_ok.then(|| time(peer)).flatten())
        } else {
            let p = time(peer);
            (time(shim).expect("handshakes with the shim"), p)
        };
        shim_s += s;
        if let Some(p) = p {
            peer_s += p;
            ratios.push(p / s);
        }
    }
    let n = (per_round * ROUNDS) as f64;
    let peer = (peer_ok && ratios.len() == ROUNDS).then(|| (n / peer_s, median(ratios)));
    (n / shim_s, peer)
}

/// One pull by `coap-client-openssl` (`args` before the URL); its time when the file arrived
/// whole and right.
fn libcoap_pull(args: &[&str], url: &str, out: &Path, expected: &[u8]) -> Option<Duration> {
    let _ = std::fs::remove_file(out);
    let start = Instant::now();
    let ok = Command::new("timeout")
        .args(["120", "coap-client-openssl", "-b", "1024", "-B", "60"])
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    let t = start.elapsed();
    (ok && std::fs::read(out).ok()? == expected).then_some(t)
}

/// The pulled bytes, in memory.
#[derive(Default)]
struct VecSink(Vec<u8>);

impl PackageSink for VecSink {
    fn start(&mut self, from: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        self.0.truncate(usize::try_from(from).unwrap_or(usize::MAX));
        Ok(())
    }

    fn write(&mut self, _: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// One Block2 pull by our device's CoAP pull (its own socket, on this thread); its time when
/// the file arrived whole and right.
fn our_pull(url: &str, config: &CoapPullConfig, expected: &[u8]) -> Option<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let mut sink = VecSink(Vec::with_capacity(expected.len()));
    let start = Instant::now();
    rt.block_on(coap_pull::fetch(url, None, config, &mut sink))
        .ok()?;
    let t = start.elapsed();
    (sink.0 == expected).then_some(t)
}

/// A client and host pair: how it pulls, and its coap and coaps URLs.
struct Pair<'a> {
    name: &'a str,
    coap: String,
    coaps: String,
    pull: &'a dyn Fn(&str, bool) -> Option<Duration>,
}

/// Per pair: median coap and coaps pull times and the median of the per-round ratios coaps /
/// coap. Each round pulls with every pair, coap and coaps back to back, coaps first in odd
/// rounds.
fn pull_rounds(pairs: &[Pair<'_>]) -> Vec<(Duration, Duration, f64)> {
    let mut runs: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); pairs.len()];
    for round in 0..PULL_RUNS {
        for (pair, times) in pairs.iter().zip(&mut runs) {
            let (p, s) = if round % 2 == 0 {
                let p = (pair.pull)(&pair.coap, false);
                (p, (pair.pull)(&pair.coaps, true))
            } else {
                let s = (pair.pull)(&pair.coaps, true);
                ((pair.pull)(&pair.coap, false), s)
            };
            let name = pair.name;
            times.push((
                p.unwrap_or_else(|| panic!("{name}: coap pull failed")),
                s.unwrap_or_else(|| panic!("{name}: coaps pull failed")),
            ));
        }
    }
    runs.into_iter()
        .map(|pairs| {
            let ratio = median(
                pairs
                    .iter()
                    .map(|(p, s)| s.as_secs_f64() / p.as_secs_f64())
                    .collect(),
            );
            let mut plain: Vec<Duration> = pairs.iter().map(|p| p.0).collect();
            let mut secure: Vec<Duration> = pairs.iter().map(|p| p.1).collect();
            plain.sort();
            secure.sort();
            (plain[PULL_RUNS / 2], secure[PULL_RUNS / 2], ratio)
        })
        .collect()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("shim-dtls-bench-{}", std::process::id()));
    let pkgs = dir.join("packages");
    std::fs::create_dir_all(&pkgs).expect("temp dir");
    let image: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(131) >> 5) as u8)
        .collect();
    std::fs::write(pkgs.join("pkg.bin"), &image).expect("package");
    let out = dir.join("out.bin");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let security = Arc::new(InMemorySecurityStore::new());
    let key_hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    security
        .put(SecurityInfo::parse_cli(&format!("bench-ep:{IDENTITY}:{key_hex}")).expect("psk"))
        .expect("stored");
    let running = rt
        .block_on(app::start_with_stores(
            ShimConfig {
                coap_addr: Some("127.0.0.1:0".parse().expect("addr")),
                coaps_addr: Some("127.0.0.1:0".parse().expect("addr")),
                http_addr: "127.0.0.1:0".parse().expect("addr"),
                package_dir: pkgs.clone(),
                ..ShimConfig::default()
            },
            Arc::new(InMemoryStore::new()),
            security,
        ))
        .expect("shim starts");
    let coaps = running.coaps_addr.expect("coaps");
    let coap = running.coap_addr.expect("coap");

    let port = free_port();
    let _libcoap = Peer(
        Command::new("coap-server-openssl")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-k", KEY])
            // Dynamic resources: the file to pull is PUT there below.
            .args(["-d", "4", "-v", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coap-server-openssl is installed (apt libcoap3-bin)"),
    );
    let libcoap_dtls: SocketAddr = ([127, 0, 0, 1], port + 1).into();

    let ctx = DtlsContext::psk_client(Psk {
        identity: IDENTITY.as_bytes().to_vec(),
        key: KEY.as_bytes().to_vec(),
    })
    .expect("client ctx");
    // A first handshake with each server is the readiness probe (libcoap's retransmitted
    // ClientHello is answered once it listens) and starts both rounds warm.
    for server in [coaps, libcoap_dtls] {
        let _ = handshake(&ctx, server);
    }
    println!(
        "DTLS 1.2 PSK-AES128-CCM8 full handshakes (cookie exchange), {HANDSHAKES} sequential \
         clients per server in {ROUNDS} alternating rounds:"
    );
    let spinner = Spinner::start();
    let (shim_rate, peer) = handshake_rates(&ctx, coaps, libcoap_dtls);
    drop(spinner);
    println!("  shim coaps listener     {shim_rate:8.1} handshakes/s");
    match peer {
        Some((peer_rate, ratio)) => {
            println!("  libcoap coap-server     {peer_rate:8.1} handshakes/s");
            println!("  ratio shim / libcoap    {ratio:8.2} (median of the rounds)");
        }
        None => println!("  libcoap coap-server     handshakes failed; no ratio"),
    }
    let stats = || {
        running
            .shim
            .coaps()
            .and_then(|c| match c.transport() {
                lwm2m_server_shim::coap::transport::Transport::Dtls(d) => Some(d.stats()),
                lwm2m_server_shim::coap::transport::Transport::Plain(_) => None,
            })
            .unwrap_or_default()
    };
    // Every client closed its session; the last close_notify may still be on its way.
    let until = Instant::now() + Duration::from_secs(1);
    let mut left = stats();
    while (left.sessions, left.handshakes) != (0, 0) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
        left = stats();
    }
    println!("  shim state after the run: {left:?}");

    // The same file on libcoap's server, uploaded with its own client (Block1 PUT).
    let file = dir.join("pkg.bin");
    std::fs::write(&file, &image).expect("file");
    let put = Command::new("timeout")
        .args([
            "120",
            "coap-client-openssl",
            "-m",
            "put",
            "-b",
            "1024",
            "-B",
            "60",
            "-f",
        ])
        .arg(&file)
        .arg(format!("coap://127.0.0.1:{port}/pkg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("coap-client-openssl runs");
    assert!(put.success(), "PUT to coap-server-openssl failed");

    let psk = ["-u", IDENTITY, "-k", KEY];
    let libcoap =
        |url: &str, secure: bool| libcoap_pull(if secure { &psk } else { &[] }, url, &out, &image);
    let config = CoapPullConfig {
        block_size: 1024,
        tx: TxParams::default(),
        max_size: 2 * SIZE as u64,
        dtls: Some(ctx.clone()),
        qblock: None,
    };
    let ours = |url: &str, _: bool| our_pull(url, &config, &image);
    // The same pull asking with Q-Block2 (RFC 9177, the device's `--pull-qblock`): bursts of
    // MAX_PAYLOADS blocks per request, so the host seals the next block while the device
    // opens the last one.
    let qblock_config = CoapPullConfig {
        qblock: Some(QBlockParams::default()),
        ..config.clone()
    };
    let ours_qblock = |url: &str, _: bool| our_pull(url, &qblock_config, &image);
    let pairs = [
        Pair {
            name: "(a) our device's pull  <- shim",
            coap: format!("coap://{coap}/fw/pkg.bin"),
            coaps: format!("coaps://{coaps}/fw/pkg.bin"),
            pull: &ours,
        },
        Pair {
            name: "(a') our device's Q-Block2 pull <- shim",
            coap: format!("coap://{coap}/fw/pkg.bin"),
            coaps: format!("coaps://{coaps}/fw/pkg.bin"),
            pull: &ours_qblock,
        },
        Pair {
            name: "(b) libcoap coap-client <- shim",
            coap: format!("coap://{coap}/fw/pkg.bin"),
            coaps: format!("coaps://{coaps}/fw/pkg.bin"),
            pull: &libcoap,
        },
        Pair {
            name: "(c) libcoap coap-client <- libcoap coap-server",
            coap: format!("coap://127.0.0.1:{port}/pkg"),
            coaps: format!("coaps://{libcoap_dtls}/pkg"),
            pull: &libcoap,
        },
    ];
    println!(
        "1 MiB Block2 pull (1024-byte blocks), coap and coaps (handshake included), \
         {PULL_RUNS} alternating rounds:"
    );
    let spinner = Spinner::start();
    let rounds = pull_rounds(&pairs);
    drop(spinner);
    for (pair, (plain, secure, ratio)) in pairs.iter().zip(&rounds) {
        println!(
            "  {:<48} coap {:7.1} ms  coaps {:7.1} ms  coaps/coap {ratio:.2}",
            pair.name,
            plain.as_secs_f64() * 1e3,
            secure.as_secs_f64() * 1e3,
        );
    }
    // What OpenSSL's records alone cost, against (a)'s plain pull: the ratio no host or
    // client code can go below with this suite and this OpenSSL.
    match (record_floor(&ctx, 9), rounds.first()) {
        (Some(floor), Some((plain, _, _))) => {
            let ms = floor.as_secs_f64() * 1e3;
            println!(
                "  DTLS records alone (in memory, {}): {ms:.1} ms per MiB; \
                 (a)'s coap {:.1} ms + that: coaps/coap at least {:.2}",
                openssl::version::version(),
                plain.as_secs_f64() * 1e3,
                1.0 + floor.as_secs_f64() / plain.as_secs_f64(),
            );
        }
        _ => println!("  DTLS records alone: the in-memory sessions failed; no floor"),
    }
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}
