//! Test harness: a shim running in-process on loopback ports chosen by the OS, a real HTTP client
//! (ureq), an SSE reader thread, and helpers to run libcoap's command-line peers. For the
//! shim's own tests, where no device of ours takes part (peers are libcoap, scripted devices
//! or raw sockets); tests with our device use the workspace harness (`tests::e2e`).

#![allow(dead_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use lwm2m_server_shim::app::{self, RunningShim, ShimConfig};
use lwm2m_server_shim::coap::timing::CoapTiming;
use lwm2m_server_shim::server::registration::store::Registration;
use serde_json::Value;

/// The shim binary of this package, as cargo built it for the integration tests.
pub const SHIM: &str = env!("CARGO_BIN_EXE_lwm2m-server-shim");

/// Runs the shim binary with `args` to its end.
pub fn shim(args: &[&str]) -> Output {
    Command::new(SHIM)
        .args(args)
        .output()
        .expect("the shim binary runs")
}

/// What a finished command wrote: its stdout, then its stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the `openssl` command-line tool in `dir` (an implementation independent of the one the
/// shim links, for certificates and for reading them back); fails the test when it fails.
/// Returns what it printed.
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A unique, empty temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("shim-it-{tag}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shim under test plus an HTTP client.
pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub running: Option<RunningShim>,
    pub base: String,
    pub coap: SocketAddr,
    pub dir: PathBuf,
    agent: ureq::Agent,
}

impl Harness {
    /// Starts a shim; `adjust` tweaks the loopback defaults (ports 0, short expiry tick).
    pub fn start(tag: &str, adjust: impl FnOnce(&mut ShimConfig)) -> Self {
        let dir = temp_dir(tag);
        let mut config = ShimConfig {
            coap_addr: Some("127.0.0.1:0".parse().expect("addr")),
            coaps_addr: None,
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            package_dir: dir.join("packages"),
            expiry_check: Duration::from_millis(200),
            timing: CoapTiming {
                ack_timeout: Duration::from_millis(300),
                ..CoapTiming::default()
            },
            ..ShimConfig::default()
        };
        adjust(&mut config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let running = rt.block_on(app::start(config)).expect("shim starts");
        let base = format!("http://{}", running.http_addr);
        // Tests that disable plain CoAP get the coaps address here.
        let coap = running
            .coap_addr
            .or(running.coaps_addr)
            .expect("a CoAP listener");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            rt,
            running: Some(running),
            base,
            coap,
            dir,
            agent,
        }
    }

    pub fn running(&self) -> &RunningShim {
        self.running.as_ref().expect("running")
    }

    fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Vec<u8>) {
        let mut resp = resp.expect("HTTP exchange");
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .expect("body");
        (status, body)
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        Self::finish(self.agent.get(format!("{}{path}", self.base)).call())
    }

    pub fn get_with(&self, path: &str, header: (&str, &str)) -> (u16, Vec<u8>, Option<String>) {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header(header.0, header.1)
            .call()
            .expect("HTTP exchange");
        let cr = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec().expect("body");
        (status, body, cr)
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (s, b) = self.get(path);
        (
            s,
            serde_json::from_slice(&b).unwrap_or(Value::String(String::from_utf8_lossy(&b).into())),
        )
    }

    pub fn put(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let (s, b) = Self::finish(
            self.agent
                .put(format!("{}{path}", self.base))
                .header("content-type", content_type)
                .send(body),
        );
        (
            s,
            serde_json::from_slice(&b).unwrap_or(Value::String(String::from_utf8_lossy(&b).into())),
        )
    }

    pub fn post(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let (s, b) = Self::finish(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .send(body),
        );
        (
            s,
            serde_json::from_slice(&b).unwrap_or(Value::String(String::from_utf8_lossy(&b).into())),
        )
    }

    pub fn delete(&self, path: &str) -> (u16, Vec<u8>) {
        Self::finish(self.agent.delete(format!("{}{path}", self.base)).call())
    }

    /// Opens `GET /api/event{query}` and returns its events as (name, data); waits until the
    /// stream is live.
    pub fn events(&self, query: &str) -> mpsc::Receiver<(String, Value)> {
        let (tx, rx) = mpsc::channel();
        let url = format!("{}/api/event{query}", self.base);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        std::thread::spawn(move || {
            let Ok(resp) = agent.get(&url).header("accept", "text/event-stream").call() else {
                return;
            };
            let reader = std::io::BufReader::new(resp.into_body().into_reader());
            let mut name = String::new();
            let mut data = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if !name.is_empty() {
                        let v = serde_json::from_str(&data).unwrap_or(Value::Null);
                        if tx.send((std::mem::take(&mut name), v)).is_err() {
                            return;
                        }
                    }
                    data.clear();
                } else if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                } else if line.starts_with(": connected") {
                    let _ = tx.send(("connected".into(), Value::Null));
                }
            }
        });
        let (first, _) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("event stream opens");
        assert_eq!(first, "connected");
        rx
    }

    /// Adds a registration for a peer that cannot register itself (e.g. coap-server-openssl).
    pub fn register_direct(&self, endpoint: &str, address: SocketAddr, links: &str) {
        let now = SystemTime::now();
        self.running().shim.store.add(Registration {
            id: format!("direct-{endpoint}"),
            endpoint: endpoint.into(),
            address,
            lifetime_s: 600,
            lwm2m_version: "1.1".into(),
            binding: "U".into(),
            sms_number: None,
            queue_mode: false,
            object_links: links.into(),
            additional_attributes: Default::default(),
            registration_date: now,
            last_update: now,
            secure: false,
        });
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.running.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for the first event satisfying `pred`, skipping others; panics after `within`.
pub fn wait_event(
    rx: &mpsc::Receiver<(String, Value)>,
    within: Duration,
    pred: impl Fn(&str, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, data)) if pred(&name, &data) => return data,
            Ok(_) => continue,
            Err(e) => panic!("no matching event within {within:?}: {e}"),
        }
    }
}

/// Runs libcoap's `coap-client-openssl` with a time limit; returns (success, stdout).
pub fn coap_client(args: &[&str]) -> (bool, Vec<u8>) {
    let out = Command::new("timeout")
        .arg("30")
        .arg("coap-client-openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("coap-client-openssl is installed (apt libcoap3-bin)");
    (out.status.success(), out.stdout)
}

/// The lines a child writes to its piped stderr, read on a thread to its end.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A free UDP port on loopback (bound then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// libcoap's `coap-server-openssl` with dynamic resources, stopped by pid on drop.
pub struct CoapServer {
    child: Child,
    pub addr: SocketAddr,
}

impl CoapServer {
    pub fn start() -> Self {
        let port = free_udp_port();
        let child = Command::new("coap-server-openssl")
            .args([
                "-A",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                "50",
                "-v",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coap-server-openssl is installed (apt libcoap3-bin)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        // Wait until it answers a GET of `/` (bounded).
        let url = format!("coap://{addr}/");
        for _ in 0..50 {
            if coap_client(&["-B", "1", &url]).0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, addr }
    }
}

impl Drop for CoapServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scripted peer's thread: `body` runs with a stop flag it polls, and dropping the worker
/// sets the flag and joins the thread.
pub struct Worker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Spawns `body` with the stop flag.
    pub fn spawn(
        body: impl FnOnce(std::sync::Arc<std::sync::atomic::AtomicBool>) + Send + 'static,
    ) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        Self {
            stop,
            thread: Some(std::thread::spawn(move || body(flag))),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
