//! The conformance runner against a scripted fake LwM2M device on real loopback UDP (issue 15):
//! a runner whose cases cannot fail is worthless, so a device that announces everything
//! (objects 1, 3, 5, 16, every content format, pull and push) but answers wrongly at each step
//! must get a FAIL in every case that can run; and a device that stops answering must get
//! INCONCLUSIVE naming the timeout, within a bounded time, never a hang.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{Harness, Worker};
use lwm2m_client::codec::{tlv, BlockOpt, Instance, Node, Resource, ResourceValue, Value};
use lwm2m_server_shim::coap::message::uri_path;
use lwm2m_server_shim::conformance::profile::{
    Expectations, NativePackages, PackageFile, PackageRole,
};
use lwm2m_server_shim::conformance::{
    self, report, ConformanceConfig, PackageSource, RunReport, Selection, Verdict,
};
use lwm2m_server_shim::packages::test_packages::Signer;

/// What the fake announces: Security (which it must not), Server, Device, Firmware Update,
/// Portfolio, and every content format.
const LINKS: &str =
    "</>;rt=\"oma.lwm2m\";ct=\"0 60 110 112 11542 11543\",</0/0>,</1/0>,</3/0>,</5/0>,</16>";

fn int(id: u16, v: i64) -> Resource {
    Resource {
        id,
        value: ResourceValue::Single(Value::Integer(v)),
    }
}

fn text(id: u16, v: &str) -> Resource {
    Resource {
        id,
        value: ResourceValue::Single(Value::String(v.into())),
    }
}

fn instance(resources: Vec<Resource>) -> Vec<u8> {
    tlv::encode(&Node::Instance(Instance { id: 0, resources })).expect("tlv")
}

/// The wrong answer to each request: plausible codes and formats, wrong content, no effect of
/// writes, no notifications, no Updates, no reboot.
fn wrong_answer(req: &Packet) -> Packet {
    let mut r = Packet::new();
    let MessageClass::Request(method) = req.header.code else {
        r.header.code = MessageClass::Response(ResponseType::BadRequest);
        return r;
    };
    let path = uri_path(req);
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let code = |c| MessageClass::Response(c);
    match method {
        RequestType::Get => {
            let discover = req
                .get_first_option(CoapOption::Accept)
                .is_some_and(|a| a == &vec![40]);
            if discover {
                // Lists neither </3/0/16> nor the attributes just written.
                r.payload = b"</3>,</3/0>,</1/0/3>".to_vec();
                r.add_option(CoapOption::ContentFormat, vec![40]);
            } else {
                let (cf, payload): (Vec<u8>, Vec<u8>) = match p.as_slice() {
                    // Lifetime 999 where it registered with 300; Binding "S".
                    ["1", "0", "1"] => (vec![], b"999".to_vec()),
                    ["1", "0", "7"] => (vec![], b"S".to_vec()),
                    ["1", "0", "0"] => (vec![], b"1".to_vec()),
                    ["1", "0", _] => (vec![], b"0".to_vec()),
                    ["1"] | ["1", "0"] => (
                        vec![0x2d, 0x16],
                        instance(vec![int(0, 1), int(1, 999), int(3, 0), text(7, "S")]),
                    ),
                    ["3", "0", "11", "0"] => {
                        r.header.code = code(ResponseType::NotFound);
                        return r;
                    }
                    ["3", "0", "16"] => (vec![0x2d, 0x16], instance(vec![text(16, "U")])),
                    ["3", "0", _] => (vec![], b"x".to_vec()),
                    ["3"] | ["3", "0"] => (
                        vec![0x2d, 0x16],
                        tlv::encode(&Node::Instance(Instance {
                            id: 0,
                            resources: vec![
                                Resource {
                                    id: 11,
                                    value: ResourceValue::Multiple(vec![(0, Value::Integer(0))]),
                                },
                                text(16, "U"),
                            ],
                        }))
                        .expect("tlv"),
                    ),
                    // Firmware: State 1 in the instance (751 wants 0), State 0 / Result 0 ever
                    // after whatever is written or pushed.
                    ["5", "0"] => (
                        vec![0x2d, 0x16],
                        tlv::encode(&Node::Instance(Instance {
                            id: 0,
                            resources: vec![
                                int(3, 1),
                                int(5, 0),
                                Resource {
                                    id: 8,
                                    value: ResourceValue::Multiple(vec![
                                        (0, Value::Integer(0)),
                                        (1, Value::Integer(2)),
                                    ]),
                                },
                                int(9, 2),
                            ],
                        }))
                        .expect("tlv"),
                    ),
                    ["5", "0", _] => (vec![], b"0".to_vec()),
                    // The Security object answers (it must not).
                    ["0", ..] => (vec![0x2d, 0x16], instance(vec![text(0, "coap://x")])),
                    _ => {
                        r.header.code = code(ResponseType::NotFound);
                        return r;
                    }
                };
                r.payload = payload;
                if !cf.is_empty() {
                    r.add_option(CoapOption::ContentFormat, cf);
                }
                if req.get_first_option(CoapOption::Observe) == Some(&vec![]) {
                    // Observations are accepted, and never notified.
                    r.add_option(CoapOption::Observe, vec![2]);
                }
            }
            r.header.code = code(ResponseType::Content);
        }
        RequestType::Put | RequestType::Post => {
            let block1 = req
                .get_first_option(CoapOption::Block1)
                .and_then(|v| BlockOpt::decode(v).ok());
            if let Some(b) = block1.filter(|b| b.more) {
                r.header.code = code(ResponseType::Continue);
                r.add_option(CoapOption::Block1, b.encode());
            } else if method == RequestType::Post && p.len() == 1 && !req.payload.is_empty() {
                // Create: accepted, and no Update follows.
                r.header.code = code(ResponseType::Created);
                r.add_option(CoapOption::LocationPath, p[0].as_bytes().to_vec());
                r.add_option(CoapOption::LocationPath, b"77".to_vec());
            } else {
                // Writes (even of the read-only /1/0/0 and the Security object), attributes
                // and executes (even Execute Update with nothing downloaded) "succeed".
                r.header.code = code(ResponseType::Changed);
            }
        }
        RequestType::Delete => r.header.code = code(ResponseType::Deleted),
        _ => r.header.code = code(ResponseType::MethodNotAllowed),
    }
    r
}

/// Answers one request from the shim: the response, and notifications to send after it.
type Script = Box<dyn FnMut(&Packet, SocketAddr) -> (Packet, Vec<(Vec<u8>, SocketAddr)>) + Send>;

/// A fake device on its own socket and thread.
struct FakeDevice {
    _worker: Worker,
    /// Requests received (retransmissions not counted).
    answered: Arc<AtomicUsize>,
}

impl FakeDevice {
    /// Registers `ep` with `query` parameters and object `links`, then answers requests with
    /// `script` (a retransmission gets the same answer, RFC 7252 section 4.5) until it has
    /// received `answers` of them, after which it stays silent.
    fn start(
        shim: SocketAddr,
        ep: &str,
        query: &[&str],
        links: &str,
        answers: usize,
        mut script: Script,
    ) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut reg = Packet::new();
        reg.header.set_type(MessageType::Confirmable);
        reg.header.code = MessageClass::Request(RequestType::Post);
        reg.header.message_id = 1;
        reg.set_token(vec![9, 9]);
        reg.add_option(CoapOption::UriPath, b"rd".to_vec());
        for q in [format!("ep={ep}")]
            .into_iter()
            .chain(query.iter().map(|q| q.to_string()))
        {
            reg.add_option(CoapOption::UriQuery, q.into_bytes());
        }
        reg.add_option(CoapOption::ContentFormat, vec![40]);
        reg.payload = links.as_bytes().to_vec();
        sock.send_to(&reg.to_bytes().expect("encode"), shim)
            .expect("send");
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        let worker = Worker::spawn(move |flag| {
            let mut seen: Vec<(u16, Vec<u8>)> = Vec::new();
            let mut buf = vec![0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if !matches!(req.header.code, MessageClass::Request(_)) {
                    continue;
                }
                let mid = req.header.message_id;
                if let Some((_, bytes)) = seen.iter().find(|(m, _)| *m == mid) {
                    let _ = sock.send_to(bytes, from);
                    continue;
                }
                if count.fetch_add(1, Ordering::Relaxed) >= answers {
                    continue;
                }
                let (mut resp, notifications) = script(&req, from);
                resp.header.set_type(MessageType::Acknowledgement);
                resp.header.message_id = mid;
                resp.set_token(req.get_token().to_vec());
                if let Ok(bytes) = resp.to_bytes() {
                    let _ = sock.send_to(&bytes, from);
                    seen.push((mid, bytes));
                }
                for (bytes, peer) in notifications {
                    let _ = sock.send_to(&bytes, peer);
                }
            }
        });
        Self {
            _worker: worker,
            answered,
        }
    }

    /// The device of [`wrong_answer`], registered for `lifetime_s`, silent after `answers`
    /// requests. Its `b=UQ` (Queue Mode as LwM2M 1.0 says it, where 1.1 has `Q`) makes it a
    /// queue-mode client: one that stops answering is waited for until its lifetime ends.
    fn wrong(shim: SocketAddr, ep: &str, lifetime_s: u32, answers: usize) -> Self {
        Self::start(
            shim,
            ep,
            &["lwm2m=1.1", "b=UQ", &format!("lt={lifetime_s}")],
            LINKS,
            answers,
            Box::new(|req, _| (wrong_answer(req), Vec::new())),
        )
    }
}

/// Short timeouts: the fake never makes progress, so every wait runs to its end.
fn config(h: &Harness, request: Duration) -> ConformanceConfig {
    let mut cfg = ConformanceConfig::new(PackageSource::Suit(Signer::generate().expect("key")))
        .with_timeouts(request, Duration::from_secs(3), Duration::from_secs(3));
    cfg.campaign.retries = 0;
    cfg.notify_within = Duration::from_secs(3);
    cfg.quiet = Duration::from_secs(1);
    cfg.short_lifetime = Duration::from_secs(2);
    cfg.http_host = Some(h.running().http_addr);
    cfg.register_within = Duration::from_secs(10);
    cfg
}

#[test]
fn a_device_wrong_at_each_step_fails_every_case_that_can_run() {
    let h = Harness::start("conf-fake", |_| {});
    let _device = FakeDevice::wrong(h.coap, "fake-1", 300, usize::MAX);
    let cfg = config(&h, Duration::from_secs(2));
    let started = Instant::now();
    let run: RunReport =
        h.rt.block_on(h.running().conformance("fake-1", &cfg, &Selection::all()))
            .expect("run");
    let table = report::table(&run);
    println!("{table}\n(run took {:?})", started.elapsed());
    // 771 once per protocol the fake lists: coap and http.
    let provokable = conformance::CASES.iter().filter(|c| c.provokable).count();
    assert_eq!(run.cases.len(), provokable + 1, "{table}");
    // Every provokable case can fail, formats 204 and 211 included: no N/A anywhere.
    for c in &run.cases {
        match &c.verdict {
            Verdict::Fail => assert!(!c.evidence.is_empty(), "{}", c.name()),
            other => panic!("{} is {other}, not FAIL\n{table}", c.name()),
        }
    }
    assert!(run.failed());
}

#[test]
fn a_silent_device_is_inconclusive_with_the_timeout_named_and_never_hangs() {
    let h = Harness::start("conf-silent", |_| {});
    // Registers, then answers nothing: the runner waits for it to wake up until its lifetime
    // (4 s) ends, since it registered in Queue Mode.
    let silent = FakeDevice::wrong(h.coap, "silent-1", 4, 0);
    let cfg = config(&h, Duration::from_secs(1));
    let started = Instant::now();
    let run =
        h.rt.block_on(h.running().conformance("silent-1", &cfg, &Selection::all()))
            .expect("run");
    let took = started.elapsed();
    let table = report::table(&run);
    assert!(took < Duration::from_secs(20), "took {took:?}\n{table}");
    assert!(!run.cases.is_empty());
    for c in &run.cases {
        match &c.verdict {
            Verdict::Inconclusive(why) => assert!(
                why.contains("no answer to Read /3/0 within the request timeout (1 s)"),
                "{}: {why}",
                c.name()
            ),
            other => panic!("{} is {other}\n{table}", c.name()),
        }
    }
    assert!(!run.failed(), "INCONCLUSIVE is no failure");
    assert!(
        silent.answered.load(Ordering::Relaxed) > 0,
        "requests reached it"
    );

    // One that answers a few requests and then falls silent: the case in progress and every
    // later one are INCONCLUSIVE, and the run still ends.
    let fading = FakeDevice::wrong(h.coap, "fading-1", 30, 12);
    let started = Instant::now();
    let run =
        h.rt.block_on(h.running().conformance(
            "fading-1",
            &cfg,
            &Selection::parse(&["core".to_string()]).expect("selection"),
        ))
        .expect("run");
    let took = started.elapsed();
    let table = report::table(&run);
    assert!(took < Duration::from_secs(60), "took {took:?}\n{table}");
    let first_silent = run
        .cases
        .iter()
        .position(|c| matches!(c.verdict, Verdict::Inconclusive(_)))
        .unwrap_or_else(|| panic!("no INCONCLUSIVE case\n{table}"));
    assert!(first_silent > 0, "{table}");
    // The case it fell silent in names the unanswered request and the wait for the queue-mode
    // device to wake up; the later ones the registration that ran out meanwhile.
    assert!(
        matches!(&run.cases[first_silent].verdict, Verdict::Inconclusive(why)
            if why.contains("within the request timeout (1 s); then the queue-mode device slept through its lifetime (30 s)")),
        "{table}"
    );
    for c in &run.cases[first_silent + 1..] {
        assert!(
            matches!(&c.verdict, Verdict::Inconclusive(why) if why.contains("fading-1 is no longer registered")),
            "{} after the device fell silent: {}\n{table}",
            c.name(),
            c.verdict
        );
    }
    drop(fading);
}

#[test]
fn a_device_that_never_registers_is_inconclusive_naming_the_wait() {
    let h = Harness::start("conf-absent", |_| {});
    let mut cfg = config(&h, Duration::from_secs(1));
    cfg.register_within = Duration::from_secs(1);
    let started = Instant::now();
    let run =
        h.rt.block_on(h.running().conformance(
            "nobody",
            &cfg,
            &Selection::parse(&["751".to_string(), "core-101".to_string()]).expect("selection"),
        ))
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(run.cases.len(), 2);
    for c in &run.cases {
        assert!(
            matches!(&c.verdict, Verdict::Inconclusive(why) if why.contains("nobody did not register within 1 s")),
            "{c:?}"
        );
    }
}

/// A push-only device with its own package format (not SUIT): `GOOD <version>` installs,
/// `FAIL <version>` downloads but fails to install (Result 8), `CORRUPT` fails its integrity
/// check (Result 5), anything else is the wrong type (Result 6), and more than
/// [`PUSH_LIMIT`] bytes is refused with 4.13. It lists coap in /5/0/8 but 1 (push only) in
/// /5/0/9, installs without rebooting, and notifies State and Update Result changes.
struct PushOnly {
    state: i64,
    result: i64,
    version: String,
    pending: Option<(bool, String)>,
    body: Vec<u8>,
    /// Observers: (path, token, peer).
    observers: Vec<(String, Vec<u8>, SocketAddr)>,
    observe_seq: u32,
}

/// Largest package the push-only device takes.
const PUSH_LIMIT: u32 = 4096;

impl PushOnly {
    fn reading(&self) -> Vec<u8> {
        tlv::encode(&Node::Instance(Instance {
            id: 0,
            resources: vec![
                int(3, self.state),
                int(5, self.result),
                Resource {
                    id: 8,
                    value: ResourceValue::Multiple(vec![(0, Value::Integer(0))]),
                },
                int(9, 1),
            ],
        }))
        .expect("tlv")
    }

    fn value(&self, path: &[&str]) -> Option<String> {
        Some(match path {
            ["5", "0", "3"] => self.state.to_string(),
            ["5", "0", "5"] => self.result.to_string(),
            ["3", "0", "3"] => self.version.clone(),
            ["3", "0", "16"] => "U".into(),
            _ => return None,
        })
    }

    /// Applies a whole pushed package.
    fn take(&mut self, body: &[u8]) {
        let text = String::from_utf8_lossy(body).into_owned();
        (self.state, self.result, self.pending) = if body == [0] {
            (0, 0, None)
        } else if let Some(v) = text.strip_prefix("GOOD ") {
            (2, 0, Some((true, v.to_string())))
        } else if let Some(v) = text.strip_prefix("FAIL ") {
            (2, 0, Some((false, v.to_string())))
        } else if text.starts_with("CORRUPT") {
            (0, 5, None)
        } else {
            (0, 6, None)
        };
    }

    fn answer(&mut self, req: &Packet, peer: SocketAddr) -> Packet {
        let mut r = Packet::new();
        let path = uri_path(req);
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let code = |c| MessageClass::Response(c);
        r.header.code = code(ResponseType::Changed);
        match (req.header.code, p.as_slice()) {
            (MessageClass::Request(RequestType::Get), ["5", "0"]) => {
                r.header.code = code(ResponseType::Content);
                r.add_option(CoapOption::ContentFormat, vec![0x2d, 0x16]);
                r.payload = self.reading();
            }
            (MessageClass::Request(RequestType::Get), ["3", "0"]) => {
                r.header.code = code(ResponseType::Content);
                r.add_option(CoapOption::ContentFormat, vec![0x2d, 0x16]);
                r.payload = instance(vec![text(3, &self.version), text(16, "U")]);
            }
            (MessageClass::Request(RequestType::Get), _) => match self.value(&p) {
                Some(v) => {
                    r.header.code = code(ResponseType::Content);
                    r.payload = v.into_bytes();
                    if req.get_first_option(CoapOption::Observe) == Some(&vec![]) {
                        self.observers
                            .push((path.join("/"), req.get_token().to_vec(), peer));
                        r.add_option(CoapOption::Observe, vec![1]);
                    }
                }
                None => r.header.code = code(ResponseType::NotFound),
            },
            (MessageClass::Request(RequestType::Put), ["5", "0", "1"]) => {
                if req.payload.is_empty() {
                    (self.state, self.result, self.pending) = (0, 0, None);
                } else {
                    // Push only: no Package URI.
                    r.header.code = code(ResponseType::MethodNotAllowed);
                }
            }
            (MessageClass::Request(RequestType::Put), ["5", "0", "0"]) => {
                let block = req
                    .get_first_option(CoapOption::Block1)
                    .and_then(|v| BlockOpt::decode(v).ok());
                let size1 = req
                    .get_first_option(CoapOption::Size1)
                    .and_then(|v| lwm2m_client::codec::block::decode_uint_option(v).ok());
                if size1.is_some_and(|s| s > PUSH_LIMIT)
                    || self.body.len() + req.payload.len() > PUSH_LIMIT as usize
                {
                    self.body.clear();
                    r.header.code = code(ResponseType::RequestEntityTooLarge);
                    return r;
                }
                if block.is_none_or(|b| b.num == 0) {
                    self.body.clear();
                }
                self.body.extend_from_slice(&req.payload);
                match block {
                    Some(b) if b.more => {
                        r.header.code = code(ResponseType::Continue);
                        r.add_option(CoapOption::Block1, b.encode());
                    }
                    _ => {
                        let body = std::mem::take(&mut self.body);
                        self.take(&body);
                        if let Some(b) = block {
                            r.add_option(CoapOption::Block1, b.encode());
                        }
                    }
                }
            }
            (MessageClass::Request(RequestType::Post), ["5", "0", "2"]) => {
                match self.pending.take().filter(|_| self.state == 2) {
                    Some((true, v)) => (self.state, self.result, self.version) = (0, 1, v),
                    Some((false, _)) => (self.state, self.result) = (2, 8),
                    None => r.header.code = code(ResponseType::MethodNotAllowed),
                }
            }
            // Write-Attributes.
            (MessageClass::Request(RequestType::Put), _) if req.payload.is_empty() => {}
            _ => r.header.code = code(ResponseType::MethodNotAllowed),
        }
        r
    }

    /// Notifications for the observed paths whose value differs from `before`.
    fn notifications(&mut self, before: (i64, i64)) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut out = Vec::new();
        for (path, token, peer) in &self.observers {
            let changed = match path.as_str() {
                "5/0/3" => before.0 != self.state,
                "5/0/5" => before.1 != self.result,
                _ => false,
            };
            if !changed {
                continue;
            }
            self.observe_seq += 1;
            let mut n = Packet::new();
            n.header.set_type(MessageType::NonConfirmable);
            n.header.code = MessageClass::Response(ResponseType::Content);
            n.header.message_id = 0x4000 + self.observe_seq as u16;
            n.set_token(token.clone());
            n.add_option(
                CoapOption::Observe,
                lwm2m_client::codec::block::uint_option(self.observe_seq + 1),
            );
            let p: Vec<&str> = path.split('/').collect();
            n.payload = self.value(&p).unwrap_or_default().into_bytes();
            if let Ok(b) = n.to_bytes() {
                out.push((b, *peer));
            }
        }
        out
    }
}

/// Registers the push-only device and serves it until dropped.
fn start_push_only(shim: SocketAddr, ep: &str) -> FakeDevice {
    let mut dev = PushOnly {
        state: 0,
        result: 0,
        version: "1.0".into(),
        pending: None,
        body: Vec::new(),
        observers: Vec::new(),
        observe_seq: 1,
    };
    FakeDevice::start(
        shim,
        ep,
        &["lwm2m=1.0", "lt=300"],
        "</3/0>,</5/0>",
        usize::MAX,
        Box::new(move |req, from| {
            let before = (dev.state, dev.result);
            let resp = dev.answer(req, from);
            (resp, dev.notifications(before))
        }),
    )
}

/// A device registered as LwM2M 1.0 is not judged on the data formats LwM2M 1.1 added (CBOR,
/// SenML JSON, SenML CBOR): those cases are N/A naming both versions, whatever it would have
/// answered, as Telefonica's lwm2m-node-lib client (a 1.0 client) showed they must be; TLV,
/// which 1.0 lists, is still asked for.
#[test]
fn formats_newer_than_the_registered_version_are_not_applicable() {
    let h = Harness::start("conf-1-0-formats", |_| {});
    let _device = start_push_only(h.coap, "lwm2m-1-0");
    let cfg = config(&h, Duration::from_secs(2));
    let cases = ["203", "211", "231", "232"].map(String::from);
    let run =
        h.rt.block_on(h.running().conformance(
            "lwm2m-1-0",
            &cfg,
            &Selection::parse(&cases).expect("selection"),
        ))
        .expect("run");
    let table = report::table(&run);
    let verdict = |id: &str| {
        run.cases
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.verdict.clone())
            .unwrap_or_else(|| panic!("{id} did not run\n{table}"))
    };
    for (id, format) in [
        ("1.1-int-211", "60 (CBOR)"),
        ("1.1-int-231", "110 (SenML JSON)"),
        ("1.1-int-232", "112 (SenML CBOR)"),
    ] {
        assert_eq!(
            verdict(id),
            Verdict::NotApplicable(format!(
                "content format {format} is LwM2M 1.1; the device registered as 1.0"
            )),
            "{table}"
        );
    }
    assert!(
        !matches!(verdict("1.1-int-203"), Verdict::NotApplicable(_)),
        "TLV is an LwM2M 1.0 format\n{table}"
    );
}

/// A third-party-style device with its own package format, given its packages as files:
/// every firmware case its /5/0/8 and /5/0/9 allow passes, and the N/A list is exactly the
/// pull cases, each naming /5/0/9.
#[test]
fn a_push_only_device_with_its_own_packages_passes_what_it_supports() {
    let h = Harness::start("conf-push-only", |_| {});
    let dir = common::temp_dir("push-only-packages");
    let mut packages = NativePackages::default();
    for (role, name, bytes, version) in [
        (
            PackageRole::Good,
            "good.bin",
            b"GOOD 2.0".to_vec(),
            Some("2.0"),
        ),
        (PackageRole::Corrupt, "bad.bin", b"CORRUPT".to_vec(), None),
        (
            PackageRole::WrongType,
            "other.img",
            b"ELF\x7f".to_vec(),
            None,
        ),
        (PackageRole::TooLarge, "huge.bin", vec![b'G'; 9000], None),
        (
            PackageRole::Failing,
            "nofit.bin",
            b"FAIL 3.0".to_vec(),
            None,
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        packages.set(
            role,
            vec![PackageFile {
                path,
                version: version.map(str::to_owned),
            }],
        );
    }
    let _device = start_push_only(h.coap, "push-only");
    let mut cfg = config(&h, Duration::from_secs(2));
    cfg.packages = PackageSource::Native(packages);
    cfg.expect = Expectations {
        reboots_on_update: Some(false),
        ..Expectations::default()
    };
    let run =
        h.rt.block_on(h.running().conformance(
            "push-only",
            &cfg,
            &Selection::parse(&["fw".to_string()]).expect("selection"),
        ))
        .expect("run");
    let table = report::table(&run);
    println!("{table}");
    let na: Vec<String> = run
        .cases
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::NotApplicable(_)))
        .map(|c| c.name())
        .collect();
    assert_eq!(
        na,
        [
            "1.0-int-756",
            "1.0-int-775",
            "1.0-int-778",
            "1.0-int-780",
            "1.0-int-771[coap]"
        ],
        "{table}"
    );
    for c in &run.cases {
        match &c.verdict {
            Verdict::NotApplicable(why) => {
                assert!(why.contains("/5/0/9"), "{}: {why}\n{table}", c.name())
            }
            v => assert_eq!(*v, Verdict::Pass, "{}\n{table}", c.name()),
        }
    }
    assert!(
        run.cases
            .iter()
            .any(|c| c.id == "1.0-int-773" && c.evidence.contains("4.13")),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
