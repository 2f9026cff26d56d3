//! Package host throughput: libcoap's coap-client fetches the same 1 MiB package with Block2
//! (1024-byte blocks) from the shim's package host and from aiocoap-fileserver, a peer CoAP file
//! server measured in the same run. Prints both throughputs and their ratio.
//!
//! Run: `cargo bench -p lwm2m-server-shim --bench package_host`

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lwm2m_server_shim::app::{self, ShimConfig};

const SIZE: usize = 1024 * 1024;
const RUNS: usize = 5;

fn fetch(url: &str, out: &Path) -> Option<Duration> {
    let _ = std::fs::remove_file(out);
    let start = Instant::now();
    let ok = Command::new("timeout")
        .args(["120", "coap-client-openssl", "-b", "1024", "-o"])
        .arg(out)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    let t = start.elapsed();
    (ok && std::fs::metadata(out).ok()?.len() == SIZE as u64).then_some(t)
}

fn median(url: &str, out: &Path, expected: &[u8]) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        times.push(fetch(url, out)?);
        if std::fs::read(out).ok()? != expected {
            return None;
        }
    }
    times.sort();
    times.get(RUNS / 2).copied()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mib_per_s(t: Duration) -> f64 {
    SIZE as f64 / (1024.0 * 1024.0) / t.as_secs_f64()
}

fn main() {
    let dir: PathBuf = std::env::temp_dir().join(format!("shim-bench-{}", std::process::id()));
    let pkgs = dir.join("packages");
    std::fs::create_dir_all(&pkgs).expect("temp dir");
    let image: Vec<u8> = (0..SIZE).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
    std::fs::write(pkgs.join("pkg.bin"), &image).expect("package");
    let out = dir.join("out.bin");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let running = rt
        .block_on(app::start(ShimConfig {
            coap_addr: Some("127.0.0.1:0".parse().expect("addr")),
            coaps_addr: None,
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            package_dir: pkgs.clone(),
            ..ShimConfig::default()
        }))
        .expect("shim starts");
    let shim_url = format!(
        "coap://{}/fw/pkg.bin",
        running.coap_addr.expect("plain CoAP enabled")
    );
    let ours = median(&shim_url, &out, &image);

    let port = free_port();
    let peer = Command::new("aiocoap-fileserver")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg(&pkgs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Peer);
    let peer_url = format!("coap://127.0.0.1:{port}/pkg.bin");
    let theirs = peer.as_ref().ok().and_then(|_| {
        // aiocoap starts in a second or so; retry the first fetch for up to 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && fetch(&peer_url, &out).is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
        median(&peer_url, &out, &image)
    });
    drop(peer);
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);

    println!("package host, 1 MiB over CoAP Block2 (1024-byte blocks), coap-client-openssl, median of {RUNS}");
    match ours {
        Some(t) => println!(
            "  shim package host     {:>8.1} ms  {:>6.2} MiB/s",
            t.as_secs_f64() * 1e3,
            mib_per_s(t)
        ),
        None => println!("  shim package host     FAILED"),
    }
    match theirs {
        Some(t) => println!(
            "  aiocoap-fileserver    {:>8.1} ms  {:>6.2} MiB/s",
            t.as_secs_f64() * 1e3,
            mib_per_s(t)
        ),
        None => println!("  aiocoap-fileserver    not measured (not installed or failed)"),
    }
    if let (Some(a), Some(b)) = (ours, theirs) {
        println!(
            "  ratio shim/aiocoap throughput: {:.2}x",
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    if ours.is_none() {
        std::process::exit(1);
    }
}
