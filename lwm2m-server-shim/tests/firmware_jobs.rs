//! Firmware jobs end to end over real loopback UDP and HTTP: scripted Object 5 devices (a
//! small CoAP state machine following core TS 1.1 Appendix E.6.1: Block1 push, Package URI pull
//! through the shim's CoAP package host with Block2, Execute -> reboot -> re-register) are
//! updated through `POST /api/clients/{ep}/firmware` and by a campaign over several devices;
//! progress is checked on the SSE stream and the job resource. Malformed requests get the
//! documented status.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{bytes, wait_event, Harness, Worker};
use lwm2m_client::codec::BlockOpt;
use lwm2m_server_shim::firmware::campaign::{self, CampaignConfig, PhaseTimeouts, UpdatePlan};
use lwm2m_server_shim::firmware::jobs::{JobPhase, JobStatus, Method};
use object5::status::{State, UpdateResult};
use serde_json::json;

/// A package the scripted device accepts: `version=<v>\n` then the image; `selftest=fail`
/// anywhere in the header line makes the new image fail its self-test after the reboot.
fn package(version: &str, fail_self_test: bool, len: usize) -> Vec<u8> {
    let mut p = format!(
        "version={version}{}\n",
        if fail_self_test { ";selftest=fail" } else { "" }
    )
    .into_bytes();
    p.extend(bytes(len, 7));
    p
}

#[derive(Default)]
struct Fw {
    state: i64,
    result: i64,
    version: String,
    pkg_version: String,
    package: Vec<u8>,
    observers: Vec<(String, Vec<u8>, u32)>,
    reboot: bool,
    /// Once, when a poll reads State 2: first send a notification of the State 1 it had
    /// queued earlier (a device whose notifications lag, e.g. held back by pmin).
    lagging_notification: bool,
}

struct ScriptedDevice {
    _worker: Worker,
    fw: Arc<Mutex<Fw>>,
    reboots: Arc<AtomicUsize>,
    sleep: Arc<Sleep>,
}

/// A queue-mode device's sleep (LwM2M core TS 1.1 §6.5), driven by the test.
#[derive(Default)]
struct Sleep {
    /// The device sleeps: it answers nothing and counts what reaches it.
    asleep: AtomicBool,
    /// Set by the test: the device wakes up with an Update and answers again.
    wake: AtomicBool,
    /// Requests that reached the device while it slept (a server must send none).
    disturbed: AtomicUsize,
}

fn packet(t: MessageType, code: MessageClass, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(t);
    p.header.code = code;
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p
}

fn path_of(p: &Packet) -> String {
    p.get_option(CoapOption::UriPath)
        .map(|l| {
            l.iter()
                .map(|s| format!("/{}", String::from_utf8_lossy(s)))
                .collect()
        })
        .unwrap_or_default()
}

/// Registers `ep` from `sock` (CON, retried until acknowledged), in queue mode when `queue`;
/// returns the registration's location path.
fn register(
    sock: &UdpSocket,
    shim: SocketAddr,
    ep: &str,
    mid: u16,
    queue: bool,
) -> Option<Vec<Vec<u8>>> {
    let mut p = packet(
        MessageType::Confirmable,
        MessageClass::Request(RequestType::Post),
        mid,
        &mid.to_be_bytes(),
    );
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.add_option(CoapOption::UriQuery, format!("ep={ep}").into_bytes());
    p.add_option(CoapOption::UriQuery, b"lt=300".to_vec());
    p.add_option(CoapOption::UriQuery, b"lwm2m=1.1".to_vec());
    if queue {
        p.add_option(CoapOption::UriQuery, b"Q".to_vec());
    }
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    let bytes = p.to_bytes().expect("encode");
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        let _ = sock.send_to(&bytes, shim);
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if let Ok(r) = Packet::from_bytes(&buf[..n]) {
                    if r.header.message_id == mid
                        && r.header.code == MessageClass::Response(ResponseType::Created)
                    {
                        let location = r.get_option(CoapOption::LocationPath)?;
                        return Some(location.iter().cloned().collect());
                    }
                }
            }
        }
    }
    None
}

/// Sends a registration Update (an empty CON POST to the registration's location): what wakes
/// a queue-mode device up in the server's eyes. Its ACK is not waited for.
fn update(sock: &UdpSocket, shim: SocketAddr, location: &[Vec<u8>], mid: u16) {
    let mut p = packet(
        MessageType::Confirmable,
        MessageClass::Request(RequestType::Post),
        mid,
        &mid.to_be_bytes(),
    );
    for seg in location {
        p.add_option(CoapOption::UriPath, seg.clone());
    }
    if let Ok(b) = p.to_bytes() {
        let _ = sock.send_to(&b, shim);
    }
}

/// Downloads `uri` (`coap://ip:port/fw/name`) block by block; `None` if unreachable or absent.
fn pull(uri: &str) -> Option<Vec<u8>> {
    let rest = uri.strip_prefix("coap://")?;
    let (host, path) = rest.split_once('/')?;
    let addr: SocketAddr = host.parse().ok()?;
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let mut body = Vec::new();
    let mut buf = [0u8; 2048];
    for num in 0..100_000u32 {
        let mid = (num & 0xffff) as u16;
        let mut p = packet(
            MessageType::Confirmable,
            MessageClass::Request(RequestType::Get),
            mid,
            &[9],
        );
        for seg in path.split('/') {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        p.add_option(
            CoapOption::Block2,
            BlockOpt::new(num, false, 6).ok()?.encode(),
        );
        let bytes = p.to_bytes().ok()?;
        let mut answer = None;
        for _ in 0..5 {
            sock.send_to(&bytes, addr).ok()?;
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if let Ok(r) = Packet::from_bytes(&buf[..n]) {
                    if r.header.message_id == mid {
                        answer = Some(r);
                        break;
                    }
                }
            }
        }
        let r = answer?;
        if r.header.code != MessageClass::Response(ResponseType::Content) {
            return None;
        }
        body.extend_from_slice(&r.payload);
        let more = r
            .get_first_option(CoapOption::Block2)
            .and_then(|v| BlockOpt::decode(v).ok())
            .is_some_and(|b| b.more);
        if !more {
            return Some(body);
        }
    }
    None
}

impl Fw {
    /// Checks a complete package: Downloaded, or Idle with Update Result 6.
    fn downloaded(&mut self, pkg: Vec<u8>) {
        let header = pkg.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let header = String::from_utf8_lossy(header).into_owned();
        match header
            .strip_prefix("version=")
            .and_then(|v| v.split(';').next())
        {
            Some(v) => {
                self.pkg_version = v.to_string();
                self.package = pkg;
                self.state = 2;
            }
            None => {
                self.state = 0;
                self.result = 6;
            }
        }
    }

    fn value(&self, path: &str) -> Option<String> {
        Some(match path {
            "/5/0/3" => self.state.to_string(),
            "/5/0/5" => self.result.to_string(),
            "/5/0/7" => self.pkg_version.clone(),
            "/3/0/3" => self.version.clone(),
            _ => return None,
        })
    }

    fn handle(&mut self, req: &Packet, pending_push: &mut Vec<u8>) -> Packet {
        let path = path_of(req);
        let code = |c| MessageClass::Response(c);
        let mut resp = packet(
            MessageType::Acknowledgement,
            code(ResponseType::Changed),
            req.header.message_id,
            req.get_token(),
        );
        match (req.header.code, path.as_str()) {
            (MessageClass::Request(RequestType::Get), p) => match self.value(p) {
                Some(v) => {
                    resp.header.code = code(ResponseType::Content);
                    resp.add_option(CoapOption::ContentFormat, Vec::new());
                    if req.get_first_option(CoapOption::Observe) == Some(&Vec::new()) {
                        self.observers.retain(|(o, _, _)| o != p);
                        self.observers
                            .push((p.to_string(), req.get_token().to_vec(), 1));
                        resp.add_option(CoapOption::Observe, vec![1]);
                    }
                    resp.payload = v.into_bytes();
                }
                None => resp.header.code = code(ResponseType::NotFound),
            },
            (MessageClass::Request(RequestType::Put), "/5/0/1") => {
                let uri = String::from_utf8_lossy(&req.payload).into_owned();
                if self.state == 3 {
                    resp.header.code = code(ResponseType::MethodNotAllowed);
                } else if uri.is_empty() {
                    (self.state, self.result) = (0, 0);
                    self.package.clear();
                } else {
                    (self.state, self.result) = (1, 0);
                    // Pulled after the answer went out (see the serve loop).
                }
            }
            (MessageClass::Request(RequestType::Put), "/5/0/0") => {
                let block = req
                    .get_first_option(CoapOption::Block1)
                    .and_then(|v| BlockOpt::decode(v).ok());
                let (num, more) = block.map(|b| (b.num, b.more)).unwrap_or((0, false));
                if num == 0 {
                    pending_push.clear();
                    (self.state, self.result) = (1, 0);
                }
                pending_push.extend_from_slice(&req.payload);
                if let Some(b) = block {
                    resp.add_option(CoapOption::Block1, b.encode());
                }
                if more {
                    resp.header.code = code(ResponseType::Continue);
                } else {
                    let pkg = std::mem::take(pending_push);
                    self.downloaded(pkg);
                }
            }
            (MessageClass::Request(RequestType::Post), "/5/0/2") => {
                if self.state == 2 {
                    (self.state, self.result) = (3, 0);
                    self.reboot = true;
                } else {
                    resp.header.code = code(ResponseType::MethodNotAllowed);
                }
            }
            _ => resp.header.code = code(ResponseType::MethodNotAllowed),
        }
        resp
    }

    /// After the reboot: the new image runs and confirms, or fails its self-test and reverts.
    fn boot(&mut self) {
        self.observers.clear();
        if self.state != 3 {
            return;
        }
        let header = self.package.split(|b| *b == b'\n').next().unwrap_or(&[]);
        if String::from_utf8_lossy(header).contains("selftest=fail") {
            (self.state, self.result) = (2, 8);
        } else {
            self.version = self.pkg_version.clone();
            (self.state, self.result) = (0, 1);
        }
    }
}

/// Sends NON notifications of changed observed values.
fn notify(sock: &UdpSocket, shim: SocketAddr, fw: &mut Fw, last: &mut (i64, i64), mid: &mut u16) {
    if (fw.state, fw.result) == *last {
        return;
    }
    *last = (fw.state, fw.result);
    let values: Vec<(String, String)> = fw
        .observers
        .iter()
        .filter_map(|(p, _, _)| fw.value(p).map(|v| (p.clone(), v)))
        .collect();
    for (path, v) in values {
        notify_one(sock, shim, fw, &path, &v, mid);
    }
}

/// Sends one NON notification of `value` to the observer of `path`, if there is one.
fn notify_one(
    sock: &UdpSocket,
    shim: SocketAddr,
    fw: &mut Fw,
    path: &str,
    value: &str,
    mid: &mut u16,
) {
    let Some((_, token, seq)) = fw.observers.iter_mut().find(|(p, _, _)| p == path) else {
        return;
    };
    *seq += 1;
    *mid = mid.wrapping_add(1);
    let mut p = packet(
        MessageType::NonConfirmable,
        MessageClass::Response(ResponseType::Content),
        *mid,
        token,
    );
    p.add_option(CoapOption::Observe, seq.to_be_bytes()[1..].to_vec());
    p.add_option(CoapOption::ContentFormat, Vec::new());
    p.payload = value.as_bytes().to_vec();
    if let Ok(b) = p.to_bytes() {
        let _ = sock.send_to(&b, shim);
    }
}

impl ScriptedDevice {
    /// Registers `ep` running firmware 1.0.0 and serves until dropped.
    fn start(shim: SocketAddr, ep: &str) -> Self {
        Self::start_with(shim, ep, false)
    }

    /// [`Self::start`], registering in queue mode when `queue` (see [`Sleep`]).
    fn start_with(shim: SocketAddr, ep: &str, queue: bool) -> Self {
        let sleep = Arc::new(Sleep::default());
        let sleeping = sleep.clone();
        let fw = Arc::new(Mutex::new(Fw {
            version: "1.0.0".into(),
            ..Fw::default()
        }));
        let reboots = Arc::new(AtomicUsize::new(0));
        let (state, count, ep) = (fw.clone(), reboots.clone(), ep.to_string());
        let worker = Worker::spawn(move |flag| {
            let mut mid: u16 = 0x4000;
            let mut buf = vec![0u8; 4096];
            let mut push = Vec::new();
            'boot: while !flag.load(Ordering::Relaxed) {
                let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                mid = mid.wrapping_add(1);
                let Some(location) = register(&sock, shim, &ep, mid, queue) else {
                    return;
                };
                let mut last = {
                    let f = state.lock().expect("fw");
                    (f.state, f.result)
                };
                let mut answered: Vec<(u16, Vec<u8>)> = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    if sleeping.wake.swap(false, Ordering::Relaxed) {
                        mid = mid.wrapping_add(1);
                        update(&sock, shim, &location, mid);
                        sleeping.asleep.store(false, Ordering::Relaxed);
                    }
                    let got = sock.recv_from(&mut buf);
                    let mut f = state.lock().expect("fw");
                    if let Ok((n, from)) = got {
                        let Some(req) = buf.get(..n).and_then(|b| Packet::from_bytes(b).ok())
                        else {
                            continue;
                        };
                        if !matches!(req.header.code, MessageClass::Request(_)) {
                            continue;
                        }
                        if sleeping.asleep.load(Ordering::Relaxed) {
                            sleeping.disturbed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let id = req.header.message_id;
                        if let Some((_, b)) = answered.iter().find(|(m, _)| *m == id) {
                            let _ = sock.send_to(b, from);
                            continue;
                        }
                        let resp = f.handle(&req, &mut push);
                        let poll = req.get_first_option(CoapOption::Observe).is_none();
                        if f.lagging_notification
                            && poll
                            && path_of(&req) == "/5/0/3"
                            && f.state == 2
                        {
                            f.lagging_notification = false;
                            notify_one(&sock, shim, &mut f, "/5/0/3", "1", &mut mid);
                        }
                        let b = resp.to_bytes().expect("encode");
                        let _ = sock.send_to(&b, from);
                        answered.push((id, b));
                        if answered.len() > 64 {
                            answered.remove(0);
                        }
                        if path_of(&req) == "/5/0/1" && f.state == 1 {
                            let uri = String::from_utf8_lossy(&req.payload).into_owned();
                            match pull(&uri) {
                                Some(pkg) => f.downloaded(pkg),
                                None => (f.state, f.result) = (0, 7),
                            }
                        }
                    }
                    notify(&sock, shim, &mut f, &mut last, &mut mid);
                    if f.reboot {
                        f.reboot = false;
                        drop(f);
                        // The Execute answer is out; "reboot" and come back on a new port.
                        std::thread::sleep(Duration::from_millis(300));
                        state.lock().expect("fw").boot();
                        count.fetch_add(1, Ordering::Relaxed);
                        continue 'boot;
                    }
                }
            }
        });
        Self {
            _worker: worker,
            fw,
            reboots,
            sleep,
        }
    }
}

fn quick_config() -> CampaignConfig {
    CampaignConfig {
        timeouts: PhaseTimeouts {
            request: Duration::from_secs(2),
            download: Duration::from_secs(30),
            update: Duration::from_secs(30),
            verify: Duration::from_secs(30),
        },
        poll_interval: Duration::from_millis(200),
        retries: 1,
        ..CampaignConfig::default()
    }
}

/// Puts a small good package for `version` into the shim's package host as `name`.
fn host_package(h: &Harness, name: &str, version: &str) {
    h.running()
        .shim
        .packages
        .store(name, &package(version, false, 3000))
        .expect("store");
}

fn wait_registered(h: &Harness, ep: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while h.running().shim.store.get_by_endpoint(ep).is_none() {
        assert!(Instant::now() < until, "{ep} did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rest_firmware_job_push_and_pull_with_events() {
    let h = Harness::start("fw-rest", |_| {});
    let dev = ScriptedDevice::start(h.coap, "fw-1");
    wait_registered(&h, "fw-1");
    let (s, _) = h.put(
        "/api/packages/good.bin",
        "application/octet-stream",
        &package("2.0.0", false, 5000),
    );
    assert_eq!(s, 201);
    let events = h.events("?ep=fw-1");

    for (method, version) in [("push", "2.0.0"), ("pull", "2.0.0")] {
        let body = json!({"package": "good.bin", "method": method}).to_string();
        let (s, job) = h.post("/api/clients/fw-1/firmware", body.as_bytes());
        assert_eq!(s, 202, "{job}");
        assert_eq!(job["ep"], "fw-1");
        assert_eq!(job["phase"], "QUEUED");
        let id = job["id"].as_u64().expect("job id");
        // A second update of the same device while this one runs is refused.
        let (s, running) = h.post("/api/clients/fw-1/firmware", body.as_bytes());
        assert_eq!((s, &running["id"]), (409, &job["id"]), "{running}");
        let last = wait_event(&events, Duration::from_secs(60), |n, d| {
            n == "FIRMWARE"
                && d["id"] == id
                && (d["phase"] == "SUCCEEDED" || d["phase"] == "FAILED")
        });
        assert_eq!(last["phase"], "SUCCEEDED", "{method}: {last}");
        assert_eq!(
            (last["state"].as_i64(), last["result"].as_i64()),
            (Some(0), Some(1))
        );
        assert_eq!(last["firmwareVersion"], version);
        assert_eq!(last["pkgVersion"], "2.0.0");
        let (s, j) = h.get_json(&format!("/api/jobs/{id}"));
        assert_eq!((s, &j), (200, &last));
    }
    assert_eq!(dev.reboots.load(Ordering::Relaxed), 2);
    let (s, all) = h.get_json("/api/jobs");
    assert_eq!((s, all.as_array().map(Vec::len)), (200, Some(2)), "{all}");
}

/// Queue mode (LwM2M core TS 1.1 §6.5): a job for a sleeping device sends it nothing, not
/// even an Observe, and waits; once the device wakes up with an Update the job runs to the
/// end.
#[test]
fn a_job_for_a_sleeping_queue_mode_device_waits_until_it_wakes_up() {
    let h = Harness::start("fw-queue", |c| c.awake_time = Duration::from_secs(2));
    let dev = ScriptedDevice::start_with(h.coap, "fw-q", true);
    wait_registered(&h, "fw-q");
    host_package(&h, "q.bin", "5.0.0");
    let shim = h.running().shim.clone();
    let until = Instant::now() + Duration::from_secs(10);
    while !shim.presence.is_sleeping("fw-q") {
        assert!(Instant::now() < until, "fw-q never fell asleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    dev.sleep.asleep.store(true, Ordering::Relaxed);
    let events = h.events("?ep=fw-q");
    let body = json!({"package": "q.bin", "method": "pull"}).to_string();
    let (s, job) = h.post("/api/clients/fw-q/firmware", body.as_bytes());
    assert_eq!(s, 202, "{job}");
    let id = job["id"].clone();
    // Three poll intervals (rest_config: 1 s). A job that does not wait sends its Observe at
    // once, and a poll after each interval.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(dev.sleep.disturbed.load(Ordering::Relaxed), 0);
    let (s, waiting) = h.get_json(&format!("/api/jobs/{id}"));
    assert_eq!(
        (s, waiting["phase"].as_str()),
        (200, Some("STARTING")),
        "{waiting}"
    );
    assert_eq!(waiting["waitingForWakeUp"], true, "{waiting}");

    dev.sleep.wake.store(true, Ordering::Relaxed);
    let last = wait_event(&events, Duration::from_secs(60), |n, d| {
        n == "FIRMWARE" && d["id"] == id && (d["phase"] == "SUCCEEDED" || d["phase"] == "FAILED")
    });
    assert_eq!(last["phase"], "SUCCEEDED", "{last}");
    assert_eq!(last["firmwareVersion"], "5.0.0");
    assert_eq!(last["waitingForWakeUp"], false, "{last}");
    assert_eq!(dev.reboots.load(Ordering::Relaxed), 1);
    assert_eq!(dev.sleep.disturbed.load(Ordering::Relaxed), 0);
}

/// Starts a REST pull job of `package` on `ep` (registered, package hosted) and returns the
/// job and its FIRMWARE events, in order, up to its end.
fn pull_job_events(
    h: &Harness,
    ep: &str,
    package: &str,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let events = h.events(&format!("?ep={ep}"));
    let body = json!({"package": package, "method": "pull"}).to_string();
    let (s, job) = h.post(&format!("/api/clients/{ep}/firmware"), body.as_bytes());
    assert_eq!(s, 202, "{job}");
    let mut firmware = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = wait_event(
            &events,
            deadline.saturating_duration_since(Instant::now()),
            |n, _| n == "FIRMWARE",
        );
        let end = d["phase"]
            .as_str()
            .is_some_and(|p| p == "SUCCEEDED" || p == "FAILED");
        firmware.push(d);
        if end {
            return (job, firmware);
        }
    }
}

#[test]
fn progress_events_walk_through_the_phases() {
    let h = Harness::start("fw-phases", |_| {});
    let _dev = ScriptedDevice::start(h.coap, "fw-p");
    wait_registered(&h, "fw-p");
    host_package(&h, "p.bin", "3.1.0");
    let (_, events) = pull_job_events(&h, "fw-p", "p.bin");
    let mut seen: Vec<String> = Vec::new();
    for d in events {
        let p = d["phase"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&p) {
            seen.push(p);
        }
    }
    assert_eq!(
        seen,
        [
            "STARTING",
            "DOWNLOADING",
            "DOWNLOADED",
            "UPDATING",
            "REBOOTING",
            "VERIFYING",
            "SUCCEEDED"
        ],
        "{seen:?}"
    );
}

/// A notification the device sent before a poll's answer, processed after it (the job was
/// busy polling), is older than that answer: State never goes back from 2 to 1.
#[test]
fn a_notification_older_than_a_poll_never_moves_the_job_back() {
    let h = Harness::start("fw-lag", |_| {});
    let dev = ScriptedDevice::start(h.coap, "fw-lag");
    dev.fw.lock().expect("fw").lagging_notification = true;
    wait_registered(&h, "fw-lag");
    host_package(&h, "lag.bin", "4.0.0");
    let (job, events) = pull_job_events(&h, "fw-lag", "lag.bin");
    let end = events.last().expect("the end");
    assert_eq!(end["phase"], "SUCCEEDED", "{end}");
    assert!(
        !dev.fw.lock().expect("fw").lagging_notification,
        "the lagging notification went out"
    );
    let seen: Vec<(String, Option<i64>)> = events
        .iter()
        .map(|d| {
            (
                d["phase"].as_str().unwrap_or("").to_string(),
                d["state"].as_i64(),
            )
        })
        .collect();
    let downloaded = seen
        .iter()
        .position(|(_, s)| *s == Some(2))
        .expect("State 2 seen");
    assert!(
        seen.iter().skip(downloaded).all(|(_, s)| *s != Some(1)),
        "State went back from 2 to 1: {seen:?}"
    );
    let id = job["id"].as_u64().expect("id");
    let (_, j) = h.get_json(&format!("/api/jobs/{id}"));
    assert_eq!(
        (j["state"].clone(), j["result"].clone()),
        (json!(0), json!(1)),
        "{j}"
    );
}

/// With one job slot, a second REST job waits in QUEUED and starts only when the first ends.
#[test]
fn rest_jobs_beyond_max_active_wait_queued() {
    let h = Harness::start("fw-slots", |c| c.max_active_jobs = 1);
    let _a = ScriptedDevice::start(h.coap, "fw-s1");
    let _b = ScriptedDevice::start(h.coap, "fw-s2");
    wait_registered(&h, "fw-s1");
    wait_registered(&h, "fw-s2");
    host_package(&h, "s.bin", "4.0.0");
    let events = h.events("");
    let body = br#"{"package":"s.bin","method":"pull"}"#;
    let mut ids = Vec::new();
    for ep in ["fw-s1", "fw-s2"] {
        let (s, job) = h.post(&format!("/api/clients/{ep}/firmware"), body);
        assert_eq!((s, job["phase"].as_str()), (202, Some("QUEUED")), "{job}");
        ids.push(job["id"].clone());
    }
    // Phases of both jobs in the order the event stream reports them.
    let order = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let log = order.clone();
    let last = ids[1].clone();
    wait_event(&events, Duration::from_secs(60), move |n, d| {
        if n != "FIRMWARE" {
            return false;
        }
        let phase = d["phase"].as_str().unwrap_or("").to_string();
        let done = d["id"] == last && (phase == "SUCCEEDED" || phase == "FAILED");
        log.lock()
            .expect("log")
            .push((d["id"].as_u64().unwrap_or(0), phase));
        done
    });
    let order = order.lock().expect("log").clone();
    let first_ended = order
        .iter()
        .position(|(id, p)| Some(*id) == ids[0].as_u64() && p == "SUCCEEDED");
    let second_started = order
        .iter()
        .position(|(id, p)| Some(*id) == ids[1].as_u64() && p == "STARTING");
    assert!(
        matches!((first_ended, second_started), (Some(a), Some(b)) if a < b),
        "{order:?}"
    );
    assert_eq!(order.last().map(|(_, p)| p.as_str()), Some("SUCCEEDED"));
}

#[test]
fn campaign_over_several_devices_with_a_concurrency_limit() {
    let h = Harness::start("fw-campaign", |_| {});
    let eps: Vec<String> = (0..5).map(|i| format!("fleet-{i}")).collect();
    let devices: Vec<ScriptedDevice> = eps
        .iter()
        .map(|ep| ScriptedDevice::start(h.coap, ep))
        .collect();
    for ep in &eps {
        wait_registered(&h, ep);
    }
    // One device cannot take the image: it fails its self-test after the reboot.
    let shim = h.running().shim.clone();
    shim.packages
        .store("fleet.bin", &package("2.5.0", false, 20_000))
        .expect("store");
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let running: Arc<Mutex<std::collections::HashSet<u64>>> = Arc::default();
    let (a, p, r) = (active.clone(), peak.clone(), running.clone());
    let hook = Arc::new(move |j: &JobStatus| {
        let mut set = r.lock().expect("set");
        let busy = !matches!(j.phase, JobPhase::Queued) && !j.phase.is_final();
        if busy {
            set.insert(j.id);
        } else {
            set.remove(&j.id);
        }
        a.store(set.len(), Ordering::Relaxed);
        p.fetch_max(set.len(), Ordering::Relaxed);
    });
    let plan = UpdatePlan {
        package: "fleet.bin".into(),
        method: Method::Push,
        uri: None,
    };
    let mut targets = eps.clone();
    targets.push("not-registered".into());
    let out = h.rt.block_on(campaign::run_campaign(
        &shim,
        &h.running().jobs,
        &targets,
        &plan,
        quick_config(),
        2,
        hook,
    ));
    assert_eq!(out.len(), 6);
    for (j, ep) in out.iter().zip(&eps) {
        assert_eq!(&j.ep, ep);
        assert_eq!(j.phase, JobPhase::Succeeded, "{j:?}");
        assert_eq!(
            (j.state, j.result),
            (Some(State::Idle), Some(UpdateResult::Success)),
            "{j:?}"
        );
        assert_eq!(j.firmware_version.as_deref(), Some("2.5.0"));
    }
    let missing = out.last().expect("job");
    assert_eq!(missing.phase, JobPhase::Failed);
    assert_eq!(missing.error.as_deref(), Some("device is not registered"));
    assert!(
        peak.load(Ordering::Relaxed) <= 2,
        "peak {}",
        peak.load(Ordering::Relaxed)
    );
    assert!(peak.load(Ordering::Relaxed) >= 1);
    assert_eq!(active.load(Ordering::Relaxed), 0);
    for d in &devices {
        assert_eq!(d.fw.lock().expect("fw").version, "2.5.0");
    }
}

#[test]
fn failures_report_the_update_result() {
    let h = Harness::start("fw-fail", |_| {});
    let _dev = ScriptedDevice::start(h.coap, "fw-f");
    wait_registered(&h, "fw-f");
    let shim = h.running().shim.clone();
    shim.packages
        .store("selftest.bin", &package("9.9.9", true, 1000))
        .expect("store");
    shim.packages
        .store("garbage.bin", &bytes(3000, 3))
        .expect("store");
    let cases = [
        ("selftest.bin", Method::Push, None, (2, 8)),
        ("garbage.bin", Method::Pull, None, (0, 6)),
        (
            "x",
            Method::Pull,
            Some(format!("coap://{}/fw/does-not-exist", h.coap)),
            (0, 7),
        ),
    ];
    for (package, method, uri, (state, result)) in cases {
        let plan = UpdatePlan {
            package: package.into(),
            method,
            uri,
        };
        let jobs = &h.running().jobs;
        let job = jobs.create("fw-f", package, method);
        let end = h.rt.block_on(campaign::run_update(
            &shim,
            jobs,
            job,
            &plan,
            quick_config(),
            &|_| {},
        ));
        assert_eq!(end.phase, JobPhase::Failed, "{package}: {end:?}");
        assert_eq!(
            (
                end.state.map(State::code),
                end.result.map(UpdateResult::code)
            ),
            (Some(state), Some(result)),
            "{end:?}"
        );
        assert!(
            end.error
                .as_deref()
                .is_some_and(|e| e.contains(&format!("Update Result {result}"))),
            "{end:?}"
        );
    }
}

#[test]
fn malformed_firmware_requests_get_documented_statuses() {
    let h = Harness::start("fw-bad", |_| {});
    let _dev = ScriptedDevice::start(h.coap, "fw-b");
    wait_registered(&h, "fw-b");
    h.running()
        .shim
        .packages
        .store("ok.bin", &package("2.0.0", false, 100))
        .expect("store");
    let (s, _) = h.post("/api/clients/nobody/firmware", br#"{"package":"ok.bin"}"#);
    assert_eq!(s, 400);
    for body in [
        &b""[..],
        b"not json",
        b"[1,2]",
        b"{\"method\":\"push\"}",
        b"{\"package\":42}",
        b"{\"package\":\"ok.bin\",\"method\":\"carrier-pigeon\"}",
        b"{\"package\":\"ok.bin\",\"method\":\"push\",\"uri\":\"coap://x\"}",
        &[0xff, 0xfe, 0x00][..],
    ] {
        let (s, r) = h.post("/api/clients/fw-b/firmware", body);
        assert_eq!(s, 400, "{}: {r}", String::from_utf8_lossy(body));
    }
    for name in ["missing.bin", "../etc/passwd", ".hidden"] {
        let body = json!({"package": name}).to_string();
        let (s, r) = h.post("/api/clients/fw-b/firmware", body.as_bytes());
        assert_eq!(s, 404, "{name}: {r}");
    }
    assert_eq!(h.get("/api/jobs/12345").0, 404);
    assert_eq!(h.get("/api/jobs/not-a-number").0, 404);
    let (s, jobs) = h.get_json("/api/jobs");
    assert_eq!((s, jobs), (200, json!([])));
    // Still serving.
    let (s, r) = h.get_json("/api/clients/fw-b");
    assert_eq!((s, &r["endpoint"]), (200, &json!("fw-b")));
}

#[test]
fn unknown_fields_and_oversized_small_json_bodies_are_refused() {
    let h = Harness::start("fw-strict", |_| {});
    let _dev = ScriptedDevice::start(h.coap, "fw-s");
    wait_registered(&h, "fw-s");
    host_package(&h, "ok.bin", "2.0.0");
    let (s, r) = h.post(
        "/api/clients/fw-s/firmware",
        br#"{"package":"ok.bin","methd":"push"}"#,
    );
    assert_eq!(s, 400, "{r}");
    assert_eq!(
        r,
        json!("unknown field \"methd\" (fields: package, method, uri)")
    );
    let (s, r) = h.post(
        "/api/clients/fw-s/firmware",
        br#"{"package":"x","uri":"file:///etc/passwd"}"#,
    );
    assert_eq!(s, 400, "{r}");
    assert!(r.as_str().is_some_and(|m| m.contains("\"uri\"")), "{r}");
    // Small JSON endpoints take 64 KiB; a padded, otherwise valid body is refused whole.
    let pad = "a".repeat(64 * 1024);
    let job = json!({"package": "ok.bin", "pad": pad}).to_string();
    let (s, r) = h.post("/api/clients/fw-s/firmware", job.as_bytes());
    assert_eq!(s, 413, "{r}");
    assert_eq!(r, json!("request body larger than 65536 bytes"));
    let info = json!({"endpoint": "dev-x", "psk": {"identity": "id-x", "key": "00"}, "pad": pad});
    let (s, r) = h.put(
        "/api/security/clients",
        "application/json",
        info.to_string().as_bytes(),
    );
    assert_eq!(s, 413, "{r}");
    let (_, all) = h.get_json("/api/security/clients");
    assert_eq!(all, json!([]));
    let (s, jobs) = h.get_json("/api/jobs");
    assert_eq!((s, jobs), (200, json!([])));
}
