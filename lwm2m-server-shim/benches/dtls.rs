//! DTLS cost in the shim, each figure next to a peer measured in the same run:
//!
//! 1. Full PSK handshakes per second (cookie exchange included): our `DtlsSession` clients,
//!    each on a fresh UDP socket, against the shim's coaps listener and against libcoap's
//!    `coap-server-openssl` (same suite, same client code). Ratio shim / libcoap.
//! 2. A 1 MiB Block2 pull of the same package from the shim's package host by libcoap's
//!    `coap-client-openssl`, over coaps and over plain coap. Ratio coaps time / coap time.
//!
//! Both comparisons run in alternating rounds (a block of handshakes with each server, a coap
//! pull then a coaps pull) and report the median of the per-round ratios: on a shared machine
//! the load changes within seconds, and two long back-to-back blocks measured that drift.
//!
//! Run: `cargo bench -p lwm2m-server-shim --bench dtls`

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Psk};
use lwm2m_server_shim::app::{self, ShimConfig};
use lwm2m_server_shim::server::registration::store::InMemoryStore;
use lwm2m_server_shim::server::security::store::{
    InMemorySecurityStore, SecurityInfo, SecurityStore,
};

const SIZE: usize = 1024 * 1024;
const HANDSHAKES: usize = 300;
/// Rounds the handshakes are split into, alternating between the two servers.
const ROUNDS: usize = 10;
const PULL_RUNS: usize = 5;
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

fn fetch(args: &[&str], url: &str, out: &Path, expected: &[u8]) -> Option<Duration> {
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

/// Median coap and coaps pull times and the median of the per-pair ratios coaps / coap (each
/// pair back to back).
fn pull_pairs(coap: &str, coaps: &str, out: &Path, expected: &[u8]) -> (Duration, Duration, f64) {
    let mut pairs = Vec::new();
    for _ in 0..PULL_RUNS {
        let plain = fetch(&[], coap, out, expected).expect("plain pull");
        let secure = fetch(&["-u", IDENTITY, "-k", KEY], coaps, out, expected).expect("coaps pull");
        pairs.push((plain, secure));
    }
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coap-server-openssl is installed (apt libcoap3-bin)"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let libcoap_dtls: SocketAddr = ([127, 0, 0, 1], port + 1).into();

    let ctx = DtlsContext::psk_client(Psk {
        identity: IDENTITY.as_bytes().to_vec(),
        key: KEY.as_bytes().to_vec(),
    })
    .expect("client ctx");
    println!(
        "DTLS 1.2 PSK-AES128-CCM8 full handshakes (cookie exchange), {HANDSHAKES} sequential \
         clients per server in {ROUNDS} alternating rounds:"
    );
    let (shim_rate, peer) = handshake_rates(&ctx, coaps, libcoap_dtls);
    println!("  shim coaps listener     {shim_rate:8.1} handshakes/s");
    match peer {
        Some((peer_rate, ratio)) => {
            println!("  libcoap coap-server     {peer_rate:8.1} handshakes/s");
            println!("  ratio shim / libcoap    {ratio:8.2} (median of the rounds)");
        }
        None => println!("  libcoap coap-server     handshakes failed; no ratio"),
    }
    let sessions = running
        .shim
        .coaps()
        .and_then(|c| match c.transport() {
            lwm2m_server_shim::coap::transport::Transport::Dtls(d) => Some(d.stats()),
            lwm2m_server_shim::coap::transport::Transport::Plain(_) => None,
        })
        .unwrap_or_default();
    println!("  shim state after the run: {sessions:?}");

    let (plain, secure, ratio) = pull_pairs(
        &format!("coap://{coap}/fw/pkg.bin"),
        &format!("coaps://{coaps}/fw/pkg.bin"),
        &out,
        &image,
    );
    println!("1 MiB Block2 pull (1024-byte blocks) by coap-client-openssl from the shim, {PULL_RUNS} coap/coaps pairs:");
    println!("  coap   {:8.1} ms (median)", plain.as_secs_f64() * 1e3);
    println!(
        "  coaps  {:8.1} ms (median, handshake included)",
        secure.as_secs_f64() * 1e3
    );
    println!("  ratio coaps / coap  {ratio:.2} (median of the pairs)");
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}
