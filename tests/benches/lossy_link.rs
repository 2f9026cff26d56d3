//! A 256 KiB package pull over a slow, lossy link: 50 ms added each way (RTT 100 ms) and 0 %,
//! 5 % and 20 % loss each way (issue 19's benchmark). CoAP over UDP goes through the UDP relay
//! (`tests::relay`): stop-and-wait Block2 (ours and libcoap's coap-client) and Q-Block2 (ours,
//! RFC 9177). TCP goes through the IP link emulator (`tests::ip_link`: the same delay and the
//! same seeded loss model, applied to IP packets between two private network namespaces joined
//! by TUN devices), so loss hits TCP segments and acknowledgements: CoAP over TCP (RFC 8323,
//! ours with BERT blocks and 16 requests in flight, and libcoap's coap-client as a coap+tcp
//! client of our host) and HTTP (ours). Our Block2 also goes once through the IP link without
//! loss, beside the relay's, to show that both emulators model the same link. The old HTTP row
//! through the TCP relay (delay only, TCP terminated at the relay) is kept as a lower bound.
//! Each transfer prints its time and the packets sent (both directions, dropped ones included:
//! datagrams through the relay, IP packets through the IP link), both next to our Block2 at
//! the same loss; then coap+tcp's time over http's, per loss.
//!
//! One lossy TCP transfer varies by several times from seed to seed (which segment is lost
//! decides between a fast retransmit and a backed-off retransmission timeout), so each TCP row
//! runs 5 times with different loss seeds and prints the run of median time with the range;
//! the coap+tcp / http ratio is the median of the per-seed ratios.
//!
//! Timers: our device uses ACK_TIMEOUT 300 ms (3 RTT) with MAX_RETRANSMIT 8 for Block2, and
//! the Q-Block2 timers derived from it (NON_RECEIVE_TIMEOUT 600 ms, NON_MAX_RETRANSMIT 8);
//! with RFC 7252's MAX_RETRANSMIT 4 a 256-block Block2 pull at 20 % loss each way fails most
//! of the time. The host keeps RFC 9177's NON_TIMEOUT of 2 s (it does not know the device's
//! link). libcoap's coap-client has ACK_TIMEOUT 2 s and MAX_RETRANSMIT 4 built in.
//!
//! libcoap 4.3.1's coap-client drops a Block2 body it has been receiving for MAX_TRANSMIT_WAIT
//! (93 s) and then waits for its `-B` limit: a transfer that needs longer (5 % loss here) fails,
//! after the 120 s the bench allows it.
//!
//! libcoap 4.3.4 (Debian 13, with Q-Block; `scripts/fetch-libcoap-qblock`) pulls with
//! Q-Block2 (`-L 5 -N`) beside our device: 2.75 s and 284 datagrams without loss (ours 2.72 s,
//! 284), 37.26 s at 5 % (ours 7.43 s; its NON timers are RFC 9177's fixed 2 s and 4 s), and at
//! 20 % none of its probe's 3 transmissions got an answer through and it gave up (120 s).
//!
//! plgd's go-coap 3.8.1 (`tests/gocoap`, built by scripts/test) pulls with Q-Block2 and NON
//! requests too (2026-12-07): 2.77 s and 284 datagrams without loss (ours 2.73 s, 284); at 5 %
//! it gave up after 80 s ("Q-Block body is incomplete", 295 datagrams), and the same at 5 %
//! from go-coap's own host (85 s), so its recovery, not our host, ends it; at 20 % it gave up
//! after 96 s.
//!
//! Measured (2026-12-06, machine shared with other builds): the relay's Block2 and the IP
//! link's agree without loss (25.73 s both, 512 packets each). coap+tcp / http, median of 7
//! seeds: 1.30x at 0 % (0.85 s vs 0.65 s), 1.07x at 5 %, 1.13x at 20 % (per-seed ratios
//! 0.69-3.25); libcoap's coap-client over coap+tcp 1.56x, 1.62x, 1.83x. With 4 requests in
//! flight (the device's earlier default) ours was 1.48x, 1.44x and 2.19x (1.61x in a second run).

//! The IP link needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN, for the namespaces and TUN
//! devices); without them the bench prints one line saying why and runs the UDP rows only.
//!
//! Run: `cargo bench -p tests --bench lossy_link` (about 7 minutes). `LOSSY_LINK=quick` runs
//! Q-Block2 at each loss, our Block2 without loss and each TCP row once per loss (about 2
//! minutes), `LOSSY_LINK=tcp` the TCP rows, the cross-check and our Block2 at 0 and 5 %,
//! `LOSSY_LINK=qblock` Q-Block2 only; `LOSSY_LINK=all` adds both Block2 transfers at 20 % loss
//! (several minutes more). `LOSSY_LINK_SEED=N` changes which packets are dropped,
//! `LOSSY_LINK_RUNS=N` how many seeds each TCP row runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::{self, CoapPullConfig};
use lwm2m_client::host::http_pull::{self, HttpLimits};
use lwm2m_client::host::tcp_pull::{self, TcpPullConfig};
use lwm2m_client::pull::qblock::QBlockParams;
use lwm2m_client::pull::{MemSink, PullError};
use lwm2m_server_shim::app::{self, RunningShim, ShimConfig};
use tests::ip_link::{IpLink, IpLinkError, HOST_IP};
use tests::process::{gocoap_peer_path, libcoap_qblock_path};
use tests::relay::{Faults, Relay};
use tests::tcp_relay::TcpRelay;

const LEN: usize = 256 * 1024;
const ONE_WAY: Duration = Duration::from_millis(50);
const ACK_TIMEOUT_MS: u64 = 300;
const LIMIT: Duration = Duration::from_secs(600);

/// One measured transfer.
struct Outcome {
    time: Duration,
    /// Packets both ways, dropped ones included (datagrams through the relay, IP packets
    /// through the IP link); `None` through the TCP relay.
    packets: Option<u64>,
    /// Why it failed, if it did.
    error: Option<String>,
}

/// The shim, its package and the work directory.
struct Setup {
    /// The loopback shim's runtime (the pulls run on runtimes of their own threads).
    _rt: tokio::runtime::Runtime,
    shim: RunningShim,
    body: Vec<u8>,
    dir: PathBuf,
    /// Seed of the relay's loss decisions (`LOSSY_LINK_SEED`).
    seed: u64,
}

/// The shim's listeners: plain CoAP and HTTP always, coap+tcp when asked.
fn shim_config(ip: Ipv4Addr, package_dir: PathBuf, coap_tcp: bool) -> ShimConfig {
    let any = SocketAddr::from((ip, 0));
    ShimConfig {
        coap_addr: Some(any),
        coaps_addr: None,
        http_addr: any,
        coap_tcp_addr: coap_tcp.then_some(any),
        package_dir,
        ..ShimConfig::default()
    }
}

impl Setup {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lossy-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tests::runtime();
        let shim = rt
            .block_on(app::start(shim_config(
                Ipv4Addr::LOCALHOST,
                dir.join("packages"),
                false,
            )))
            .expect("shim starts");
        let body: Vec<u8> = (0..LEN as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        shim.shim.packages.store("fw.bin", &body).expect("package");
        let seed = std::env::var("LOSSY_LINK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x10_55_11);
        Self {
            _rt: rt,
            shim,
            body,
            dir,
            seed,
        }
    }

    fn coap(&self) -> SocketAddr {
        self.shim.coap_addr.expect("coap")
    }

    /// The link both emulators model: `ONE_WAY` each way, `loss` each way, seeded by loss and
    /// by which of several runs it is (run 0: the relay's seed).
    fn faults(&self, loss: f64, run: u64) -> Faults {
        Faults {
            loss,
            delay: ONE_WAY,
            seed: self.seed + (loss * 100.0) as u64 + 1000 * run,
            ..Faults::default()
        }
    }

    fn relay(&self, loss: f64) -> Relay {
        Relay::start(
            "127.0.0.1:0".parse().expect("addr"),
            self.coap(),
            self.faults(loss, 0),
        )
        .expect("relay")
    }

    fn check(&self, result: Result<Vec<u8>, String>) -> Option<String> {
        match result {
            Ok(data) if data == self.body => None,
            Ok(_) => Some("bytes differ".into()),
            Err(e) => Some(e),
        }
    }
}

/// A shim in the host namespace of an IP link, serving the same package at [`HOST_IP`].
struct LinkedShim {
    shim: RunningShim,
    /// The shim's runtime, built in the host namespace (its workers live there).
    _rt: tokio::runtime::Runtime,
    link: IpLink,
}

impl LinkedShim {
    /// A fresh link with `loss` (run 0: the same seed as the relay's at that loss) and a shim
    /// behind it.
    fn start(s: &Setup, loss: f64, run: u64) -> Result<Self, IpLinkError> {
        let link = IpLink::start(s.faults(loss, run))?;
        let package_dir = s.dir.join("linked");
        let _ = std::fs::remove_dir_all(&package_dir);
        let (rt, shim) = link
            .host()
            .run(|| {
                let rt = tests::runtime();
                let shim = rt
                    .block_on(app::start(shim_config(HOST_IP, package_dir, true)))
                    .expect("shim starts in the host namespace");
                (rt, shim)
            })
            .map_err(IpLinkError::Thread)?;
        shim.shim
            .packages
            .store("fw.bin", &s.body)
            .expect("package");
        Ok(Self {
            shim,
            _rt: rt,
            link,
        })
    }

    /// Runs `pull` in the device namespace and times it; the packets are counted up to when it
    /// returns.
    fn timed(&self, s: &Setup, pull: impl FnOnce() -> Result<Vec<u8>, String> + Send) -> Outcome {
        let t0 = Instant::now();
        let result = self
            .link
            .device()
            .run(pull)
            .unwrap_or_else(|e| Err(format!("device namespace: {e}")));
        let time = t0.elapsed();
        Outcome {
            time,
            packets: Some(self.link.stats().packets()),
            error: s.check(result),
        }
    }
}

/// Runs `f` on a current-thread runtime of the calling thread (so its sockets are made there),
/// bounded by [`LIMIT`].
fn block_on_here<F: std::future::Future<Output = Result<(), PullError>>>(
    f: F,
) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async {
            tokio::time::timeout(LIMIT, f)
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())
        })
}

/// Our device's CoAP pull settings, with Q-Block2 or Block2 only.
fn coap_config(qblock: bool) -> CoapPullConfig {
    CoapPullConfig {
        block_size: 1024,
        tx: TxParams {
            ack_timeout_ms: ACK_TIMEOUT_MS,
            max_retransmit: 8,
            ..TxParams::default()
        },
        max_size: 1 << 20,
        dtls: None,
        qblock: qblock.then(|| QBlockParams {
            non_max_retransmit: 8,
            ..QBlockParams::scaled(ACK_TIMEOUT_MS)
        }),
    }
}

/// Our CoAP pull of `uri` into memory.
fn coap_pull(uri: &str, qblock: bool) -> Result<Vec<u8>, String> {
    let mut sink = MemSink::default();
    block_on_here(async {
        coap_pull::fetch(uri, None, &coap_config(qblock), &mut sink)
            .await
            .map(drop)
    })?;
    Ok(sink.data)
}

/// Our CoAP pull through the relay, with Q-Block2 or Block2 only.
fn ours(s: &Setup, loss: f64, qblock: bool) -> Outcome {
    let relay = s.relay(loss);
    let uri = format!("coap://{}/fw/fw.bin", relay.addr());
    let t0 = Instant::now();
    let result = coap_pull(&uri, qblock);
    Outcome {
        time: t0.elapsed(),
        packets: Some(datagrams(&relay)),
        error: s.check(result),
    }
}

/// Debian 12's libcoap client (4.3.1, built without Q-Block).
const LIBCOAP_431: &str = "coap-client-openssl";

/// libcoap 4.3.4's client with Q-Block, if `scripts/fetch-libcoap-qblock` unpacked it.
fn find_libcoap_434() -> Option<PathBuf> {
    let bin = libcoap_qblock_path("coap-client");
    bin.is_file().then_some(bin)
}

fn datagrams(relay: &Relay) -> u64 {
    relay.stats().from_client.load(Ordering::Relaxed)
        + relay.stats().from_server.load(Ordering::Relaxed)
}

/// libcoap's coap-client `bin` (Debian 12's 4.3.1 `coap-client-openssl`, or 4.3.4 with
/// Q-Block from [`find_libcoap_434`]) fetching `uri` into `out` with `args`; returns the file it
/// wrote.
fn coap_client(
    bin: &Path,
    args: &[&str],
    out: &Path,
    uri: &str,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("-o").arg(out).arg(uri);
    fetch_to_file(cmd, out, body)
}

/// Runs `cmd`, a peer's client that writes what it fetched to `out`; returns that file.
fn fetch_to_file(mut cmd: Command, out: &Path, body: &[u8]) -> Result<Vec<u8>, String> {
    let _ = std::fs::remove_file(out);
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    match status {
        Err(e) => Err(format!("{}: {e}", cmd.get_program().to_string_lossy())),
        Ok(st) if !st.success() => Err(format!("the client gave up ({st})")),
        Ok(_) => match std::fs::read(out) {
            Ok(got) if got.len() < body.len() && body.starts_with(&got) => Err(format!(
                "gave up with {} of {} bytes",
                got.len(),
                body.len()
            )),
            Ok(got) => Ok(got),
            Err(e) => Err(format!("no output file: {e}")),
        },
    }
}

/// libcoap's coap-client `bin` fetching the package over the relay with `args` (`-L 5 -N`:
/// Q-Block2 with NON requests).
fn libcoap(s: &Setup, loss: f64, bin: &Path, args: &[&str]) -> Outcome {
    let relay = s.relay(loss);
    let t0 = Instant::now();
    let mut all = vec!["-m", "get", "-b", "1024", "-B", "120"];
    all.extend_from_slice(args);
    let result = coap_client(
        bin,
        &all,
        &s.dir.join("libcoap.bin"),
        &format!("coap://{}/fw/fw.bin", relay.addr()),
        &s.body,
    );
    Outcome {
        time: t0.elapsed(),
        packets: Some(datagrams(&relay)),
        error: s.check(result),
    }
}

/// plgd's go-coap client (`tests/gocoap`, built by scripts/test) fetching the package over the
/// relay with Q-Block2 and NON requests; its RFC 9177 timers are the RFC's defaults.
fn gocoap(s: &Setup, loss: f64, bin: &Path) -> Outcome {
    let relay = s.relay(loss);
    let out = s.dir.join("gocoap.bin");
    let mut cmd = Command::new(bin);
    cmd.args(["get", "-qblock", "-timeout", "120s", "-uri"])
        .arg(format!("coap://{}/fw/fw.bin", relay.addr()))
        .arg("-out")
        .arg(&out);
    let t0 = Instant::now();
    let result = fetch_to_file(cmd, &out, &s.body);
    Outcome {
        time: t0.elapsed(),
        packets: Some(datagrams(&relay)),
        error: s.check(result),
    }
}

fn http_limits() -> HttpLimits {
    HttpLimits {
        stall: Duration::from_secs(30),
        max_size: 1 << 20,
    }
}

/// Our HTTP pull of `url` into memory.
fn http_get(url: &str) -> Result<Vec<u8>, String> {
    let mut sink = MemSink::default();
    http_pull::pull(url, None, &http_limits(), &mut sink).map_err(|e| e.to_string())?;
    Ok(sink.data)
}

/// Our HTTP pull of the same package through a TCP relay with the same delay (no loss).
fn http_relay(s: &Setup) -> Outcome {
    let relay = TcpRelay::start(
        "127.0.0.1:0".parse().expect("addr"),
        s.shim.http_addr,
        ONE_WAY,
    )
    .expect("tcp relay");
    let t0 = Instant::now();
    let result = http_get(&format!("http://{}/fw/fw.bin", relay.addr()));
    Outcome {
        time: t0.elapsed(),
        packets: None,
        error: s.check(result),
    }
}

/// The transfers measured through the IP link.
#[derive(Clone, Copy)]
enum OverIp {
    /// Our stop-and-wait Block2 (the cross-check against the relay).
    Block2,
    /// Our coap+tcp pull (BERT, the device's default of 16 requests in flight).
    CoapTcp,
    /// libcoap's coap-client as a coap+tcp client.
    LibcoapTcp,
    /// Our HTTP pull.
    Http,
}

impl OverIp {
    fn name(self) -> &'static str {
        match self {
            Self::Block2 => "Block2 (ours, IP link)",
            Self::CoapTcp => "coap+tcp (ours, IP link)",
            Self::LibcoapTcp => "coap+tcp (libcoap, IP link)",
            Self::Http => "http (ours, IP link)",
        }
    }
}

/// One transfer through a fresh IP link with `loss` each way, seeded for `run`.
fn over_ip(s: &Setup, loss: f64, what: OverIp, run: u64) -> Result<Outcome, IpLinkError> {
    let linked = LinkedShim::start(s, loss, run)?;
    let running = &linked.shim;
    let coap = format!(
        "coap://{}/fw/fw.bin",
        running.coap_addr.expect("coap address")
    );
    let tcp = running.coap_tcp.as_ref().expect("coap+tcp").url("fw.bin");
    let http = format!("http://{}/fw/fw.bin", running.http_addr);
    let out = s.dir.join("libcoap-tcp.bin");
    Ok(match what {
        OverIp::Block2 => linked.timed(s, || coap_pull(&coap, false)),
        OverIp::CoapTcp => linked.timed(s, || {
            let mut sink = MemSink::default();
            block_on_here(async {
                tcp_pull::fetch(&tcp, None, &TcpPullConfig::default(), &mut sink)
                    .await
                    .map(drop)
            })?;
            Ok(sink.data)
        }),
        OverIp::LibcoapTcp => linked.timed(s, || {
            coap_client(
                Path::new(LIBCOAP_431),
                &["-m", "get", "-B", "120"],
                &out,
                &tcp,
                &s.body,
            )
        }),
        OverIp::Http => linked.timed(s, || http_get(&http)),
    })
}

/// Whether libcoap's coap-client `bin`, asked to try Q-Block (`-L 5`), used it with our host: a
/// 20-block pull without loss takes 20 requests over Block2 and 2 or 3 over Q-Block2.
fn libcoap_negotiates_qblock(s: &Setup, dir: &Path, bin: &Path) -> (bool, u64) {
    let small = &s.body[..20 * 1024];
    s.shim
        .shim
        .packages
        .store("probe.bin", small)
        .expect("probe");
    let relay = s.relay(0.0);
    let out = dir.join("probe.bin");
    let _ = Command::new(bin)
        .args(["-m", "get", "-b", "1024", "-L", "5", "-N", "-o"])
        .arg(&out)
        .arg(format!("coap://{}/fw/probe.bin", relay.addr()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let requests = relay.stats().from_client.load(Ordering::Relaxed);
    (requests < 10, requests)
}

fn print_row(loss: f64, name: &str, o: &Outcome, base: Option<&Outcome>) {
    print_row_with(loss, name, o, base, "");
}

/// A row with `note` after it.
fn print_row_with(loss: f64, name: &str, o: &Outcome, base: Option<&Outcome>, note: &str) {
    let packets = o.packets.map_or("-".into(), |d| d.to_string());
    let (speed, share) = match base.filter(|b| b.error.is_none() && o.error.is_none()) {
        Some(b) => (
            format!("{:.1}x", b.time.as_secs_f64() / o.time.as_secs_f64()),
            match (o.packets, b.packets) {
                (Some(d), Some(bd)) => format!("{:.2}x", d as f64 / bd as f64),
                _ => "-".into(),
            },
        ),
        None => ("-".into(), "-".into()),
    };
    let status = o
        .error
        .as_deref()
        .map_or(String::new(), |e| format!("  FAILED: {e}"));
    println!(
        "{:>4.0} %  {:<34} {:>8.2} s {:>10} {:>12} {:>14}{note}{status}",
        loss * 100.0,
        name,
        o.time.as_secs_f64(),
        packets,
        speed,
        share
    );
}

/// Runs `what` through the IP link `runs` times (each with its own loss seed) and prints the
/// run of median time with the range; a link that cannot be set up is a failed run. TCP's
/// retransmission timers make one lossy transfer vary by several times from seed to seed.
fn ip_rows(s: &Setup, loss: f64, what: OverIp, base: Option<&Outcome>, runs: u64) -> Vec<Outcome> {
    let outcomes: Vec<Outcome> = (0..runs)
        .map(|run| {
            over_ip(s, loss, what, run).unwrap_or_else(|e| Outcome {
                time: Duration::ZERO,
                packets: None,
                error: Some(e.to_string()),
            })
        })
        .collect();
    if let Some(failed) = outcomes.iter().find(|o| o.error.is_some()) {
        print_row(loss, what.name(), failed, base);
        return outcomes;
    }
    let mut by_time: Vec<&Outcome> = outcomes.iter().collect();
    by_time.sort_by_key(|o| o.time);
    let note = match runs {
        1 => String::new(),
        _ => format!(
            "  median of {runs}, {:.2}-{:.2} s",
            by_time[0].time.as_secs_f64(),
            by_time[by_time.len() - 1].time.as_secs_f64()
        ),
    };
    print_row_with(loss, what.name(), by_time[by_time.len() / 2], base, &note);
    outcomes
}

/// The median and range of `a`'s time over `b`'s, run by run (same seeds), when all
/// completed.
fn time_ratio(a: &[Outcome], b: &[Outcome]) -> String {
    let mut ratios = Vec::new();
    for (a, b) in a.iter().zip(b) {
        if a.error.is_some() || b.error.is_some() {
            return "- (failed)".into();
        }
        ratios.push(a.time.as_secs_f64() / b.time.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => "-".into(),
        1 => format!("{:.2}x", ratios[0]),
        n => format!(
            "{:.2}x (runs {:.2}-{:.2})",
            ratios[n / 2],
            ratios[0],
            ratios[n - 1]
        ),
    }
}

fn main() {
    let mode = std::env::var("LOSSY_LINK").unwrap_or_default();
    let quick = mode == "quick";
    let libcoap_434 = find_libcoap_434();
    let gocoap_bin = Some(gocoap_peer_path()).filter(|p| p.is_file());
    let all = mode == "all";
    let only_qblock = mode == "qblock";
    let only_tcp = mode == "tcp";
    // Runs of each TCP row (seeds), one in quick mode unless asked.
    let runs: u64 = std::env::var("LOSSY_LINK_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(if quick { 1 } else { 5 });
    let s = Setup::new();
    println!(
        "256 KiB pull, {} ms each way (RTT {} ms); loss each way as listed. CoAP over UDP \
         through the UDP relay; coap+tcp, http and the cross-check through the IP link \
         (the same delay and seeded loss on IP packets, TUN devices between two network \
         namespaces).",
        ONE_WAY.as_millis(),
        2 * ONE_WAY.as_millis()
    );
    println!("Machine shared with other work: times vary from run to run.");
    let mut tcp_rows = !only_qblock;
    if tcp_rows {
        if let Err(e) = IpLink::start(Faults::default()) {
            println!("coap+tcp and http rows not run: the IP link emulator is unavailable: {e}");
            tcp_rows = false;
        }
    }
    if !quick && !only_qblock && !only_tcp {
        println!(
            "The TCP relay delays bytes but terminates TCP: its http row is a lower bound (no \
             slow start across the 100 ms path, no loss)."
        );
    }
    println!(
        "{:>6}  {:<34} {:>10} {:>10} {:>12} {:>14}",
        "loss", "transfer", "time", "packets", "vs Block2", "packets vs"
    );
    println!("{:>76} {:>14}", "(speed-up)", "Block2");
    let mut qblock_packets = Vec::new();
    let mut tcp_ratios = Vec::new();
    for loss in [0.0, 0.05, 0.2] {
        // Stop-and-wait at 20 % loss takes minutes: only with LOSSY_LINK=all.
        let base = (!only_qblock && (loss == 0.0 || (!quick && loss < 0.1) || all))
            .then(|| ours(&s, loss, false));
        if let Some(b) = &base {
            print_row(loss, "Block2, stop-and-wait (ours)", b, None);
        }
        if !quick && !only_qblock && !only_tcp && (loss < 0.1 || all) {
            let o = libcoap(&s, loss, Path::new(LIBCOAP_431), &["-L", "1"]);
            print_row(loss, "Block2 (libcoap coap-client)", &o, base.as_ref());
        }
        if !only_tcp {
            let q = ours(&s, loss, true);
            print_row(loss, "Q-Block2 (ours)", &q, base.as_ref());
            qblock_packets.push((loss, q));
        }
        if !quick && !only_tcp {
            match &libcoap_434 {
                Some(bin) => {
                    let o = libcoap(&s, loss, bin, &["-L", "5", "-N"]);
                    print_row(loss, "Q-Block2 (libcoap 4.3.4)", &o, base.as_ref());
                }
                None => println!(
                    "{:>5.0}%  Q-Block2 (libcoap 4.3.4): not run, run scripts/fetch-libcoap-qblock",
                    loss * 100.0
                ),
            }
        }
        if !quick && !only_tcp {
            match &gocoap_bin {
                Some(bin) => {
                    let o = gocoap(&s, loss, bin);
                    print_row(loss, "Q-Block2 (go-coap 3.8.1)", &o, base.as_ref());
                }
                None => println!(
                    "{:>5.0}%  Q-Block2 (go-coap): not run, run scripts/test (builds it)",
                    loss * 100.0
                ),
            }
        }
        if loss == 0.0 && !quick && !only_qblock && !only_tcp {
            print_row(
                loss,
                "http (ours, TCP relay, no loss)",
                &http_relay(&s),
                base.as_ref(),
            );
        }
        if tcp_rows {
            // The same transfer as the relay's Block2 row: both emulators model the same link.
            if loss == 0.0 && base.is_some() && !quick {
                ip_rows(&s, loss, OverIp::Block2, base.as_ref(), 1);
            }
            let ours_tcp = ip_rows(&s, loss, OverIp::CoapTcp, base.as_ref(), runs);
            let libcoap_tcp = ip_rows(&s, loss, OverIp::LibcoapTcp, base.as_ref(), runs);
            let http = ip_rows(&s, loss, OverIp::Http, base.as_ref(), runs);
            tcp_ratios.push((
                loss,
                time_ratio(&ours_tcp, &http),
                time_ratio(&libcoap_tcp, &http),
            ));
        }
    }
    for (loss, ours_tcp, libcoap_tcp) in &tcp_ratios {
        println!(
            "coap+tcp / http at {:.0} % loss: ours {ours_tcp}, libcoap coap-client \
             {libcoap_tcp} (target: within 2x{})",
            loss * 100.0,
            if runs > 1 {
                "; median per-seed ratio"
            } else {
                ""
            }
        );
    }
    if !quick && !only_qblock && !only_tcp {
        let bins = [Some(PathBuf::from(LIBCOAP_431)), libcoap_434.clone()];
        for (name, bin) in ["4.3.1 (Debian 12)", "4.3.4 (Debian 13)"].iter().zip(bins) {
            let Some(bin) = bin else { continue };
            let (uses, requests) = libcoap_negotiates_qblock(&s, &s.dir, &bin);
            println!(
                "libcoap {name} coap-client -L 5 -N (try Q-Block) against our host: {} \
                 ({requests} requests for a 20-block package)",
                if uses {
                    "negotiates Q-Block2"
                } else {
                    "does not use Q-Block2, Block2 only"
                }
            );
        }
    }
    if let Some((_, clean)) = qblock_packets.first() {
        println!(
            "Q-Block2 without loss: {:.2} s (target: within 3 s)",
            clean.time.as_secs_f64()
        );
        for (loss, q) in &qblock_packets[1..] {
            if let (Some(d), Some(c), None) = (q.packets, clean.packets, &q.error) {
                println!(
                    "Q-Block2 at {:.0} % loss: {:.2}x the datagrams of the loss-free run \
                     (target at 20 %: at most 1.5x)",
                    loss * 100.0,
                    d as f64 / c as f64
                );
            }
        }
    }
    drop(s.shim);
    let _ = std::fs::remove_dir_all(&s.dir);
}
