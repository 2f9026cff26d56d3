//! Memory of `GET /api/clients` at scale: the `serve` process gets 20 000 registrations over
//! CoAP, then 80 clients list them at once. Prints the shim's resident memory before (the
//! baseline) and its peak during the listings (sampled from /proc every 5 ms), against the
//! budget of baseline + 64 MiB; exits non-zero over budget.
//!
//! Run: `cargo bench -p lwm2m-server-shim --bench list_memory`
//! (`LIST_CLIENTS` and `LIST_CALLS` change the 20 000 and 80; `LIST_SHIM` runs another shim
//! binary, e.g. an older build for comparison).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

const SHIM: &str = env!("CARGO_BIN_EXE_lwm2m-server-shim");
const BUDGET: u64 = 64 * 1024 * 1024;
/// What our simulated device registers with (core TS 6.2.1: the root and its object instances).
const LINKS: &str =
    "</>;rt=\"oma.lwm2m\";ct=\"60 110 112 11542 11543\",</0/0>,</1/0>,</3/0>,</4/0>,</5/0>";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// VmRSS of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn register_all(coap: SocketAddr, n: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let request = |i: usize| {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = i as u16;
        p.set_token((i as u32).to_be_bytes().to_vec());
        p.add_option(CoapOption::UriPath, b"rd".to_vec());
        for q in [
            format!("ep=bench-device-{i:06}"),
            "lt=86400".into(),
            "lwm2m=1.1".into(),
            "b=U".into(),
        ] {
            p.add_option(CoapOption::UriQuery, q.into_bytes());
        }
        p.add_option(CoapOption::ContentFormat, vec![40]);
        p.payload = LINKS.as_bytes().to_vec();
        p.to_bytes().expect("encode")
    };
    let mut done = vec![false; n];
    let mut left = n;
    let mut next = 0;
    let window = 64;
    let mut in_flight = std::collections::VecDeque::new();
    let mut buf = [0u8; 1500];
    while left > 0 {
        while in_flight.len() < window && next < n {
            sock.send_to(&request(next), coap).expect("send");
            in_flight.push_back(next);
            next += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => {
                let p = Packet::from_bytes(&buf[..len]).expect("response");
                assert_eq!(p.header.code, MessageClass::Response(ResponseType::Created));
                let i = u32::from_be_bytes(p.get_token().try_into().expect("token")) as usize;
                if !done[i] {
                    done[i] = true;
                    left -= 1;
                }
                in_flight.retain(|x| *x != i);
            }
            Err(_) => {
                // Lost on a full socket buffer: send the outstanding ones again.
                for &i in &in_flight {
                    sock.send_to(&request(i), coap).expect("send");
                }
            }
        }
    }
}

/// One listing read to its end; returns the body bytes (chunk framing included).
fn list(http: SocketAddr) -> u64 {
    let s = TcpStream::connect(http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(900)))
        .expect("timeout");
    (&s).write_all(b"GET /api/clients HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("request");
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).expect("status");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).expect("body");
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

fn main() {
    let clients = env_usize("LIST_CLIENTS", 20_000);
    let calls = env_usize("LIST_CALLS", 80);
    let dir = std::env::temp_dir().join(format!("shim-list-bench-{}", std::process::id()));
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let coap: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let shim = std::env::var("LIST_SHIM").unwrap_or_else(|_| SHIM.into());
    let child = Command::new(shim)
        .args(["serve", "--no-coaps", "--coap", &coap.to_string()])
        .args(["--http", &http.to_string(), "--packages"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shim starts");
    let pid = child.id();
    let _serve = Serve(child);
    let up = Instant::now();
    while TcpStream::connect(http).is_err() {
        assert!(up.elapsed() < Duration::from_secs(20), "shim did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    register_all(coap, clients);
    println!(
        "{clients} registrations over CoAP in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let size = list(http);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = rss(pid);

    let peak = Arc::new(AtomicU64::new(baseline));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, running) = (peak.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Arc::new(Barrier::new(calls));
    let t = Instant::now();
    let readers: Vec<_> = (0..calls)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                list(http)
            })
        })
        .collect();
    let bytes: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    let took = t.elapsed();
    running.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(pid);
    let peak = peak.load(Ordering::Relaxed);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "one listing: {:.1} MiB; {calls} concurrent listings ({:.0} MiB) in {:.1} s",
        mib(size),
        mib(bytes),
        took.as_secs_f64()
    );
    println!(
        "shim RSS: baseline {:.1} MiB, peak {:.1} MiB (+{:.1} MiB, budget +{:.0} MiB), after {:.1} MiB",
        mib(baseline),
        mib(peak),
        mib(peak.saturating_sub(baseline)),
        mib(BUDGET),
        mib(after)
    );
    let _ = std::fs::remove_dir_all(&dir);
    if peak > baseline + BUDGET {
        eprintln!("over budget");
        std::process::exit(1);
    }
}
