//! The Queue Mode case (`core-reg-queue-mode`, core TS 1.1 §6.5) must be able to fail: two
//! scripted queue-mode clients on real loopback UDP, each wrong in one way the case names. One
//! announces a shortened lifetime but never sends the periodic Update it owes (its
//! registration runs out); the other sends that Update and is offline at once, leaving the
//! request a server kept for it unanswered. Clients that pass it: Leshan's in Queue Mode and
//! our own device (tests/tests/conformance_leshan.rs, conformance_own_client.rs). And a third
//! that never answers: the runner's wait for its wake-up is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{Harness, Worker};
use lwm2m_server_shim::coap::message::{option_values, uri_path};
use lwm2m_server_shim::conformance::{ConformanceConfig, PackageSource, Selection, Verdict};
use lwm2m_server_shim::packages::test_packages::Signer;

/// How the scripted client departs from Queue Mode.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// No periodic Update after the one announcing a new lifetime.
    NeverUpdates,
    /// The periodic Update comes halfway through the lifetime, then nothing is answered.
    OfflineAfterUpdate,
    /// Registers (lifetime 300 s) and never answers or sends anything again.
    Silent,
}

/// A LwM2M 1.1 client registered with `Q`: it answers reads with 2.05 "0", takes a Write of
/// /1/0/1 (2.04) and announces the lifetime with an Update at once, as every client does.
struct QueueClient {
    _worker: Worker,
}

fn request(mid: u16, path: &[&str], query: &[String]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for seg in path {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p
}

fn answer(req: &Packet, code: ResponseType, payload: &[u8]) -> Vec<u8> {
    let mut r = Packet::new();
    r.header.set_type(MessageType::Acknowledgement);
    r.header.message_id = req.header.message_id;
    r.header.code = MessageClass::Response(code);
    r.set_token(req.get_token().to_vec());
    r.payload = payload.to_vec();
    r.to_bytes().expect("encode")
}

impl QueueClient {
    fn start(shim: SocketAddr, ep: &str, fault: Fault) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut reg = request(
            1,
            &["rd"],
            &[
                format!("ep={ep}"),
                "lt=300".into(),
                "lwm2m=1.1".into(),
                "Q".into(),
            ],
        );
        reg.add_option(CoapOption::ContentFormat, vec![40]);
        reg.payload = b"</1/0>,</3/0>".to_vec();
        sock.send_to(&reg.to_bytes().expect("encode"), shim)
            .expect("send");
        let worker = Worker::spawn(move |flag| {
            let mut buf = vec![0u8; 2048];
            let mut location: Vec<String> = Vec::new();
            let mut mid = 1u16;
            let mut periodic_at: Option<Instant> = None;
            let mut offline = false;
            while !flag.load(Ordering::Relaxed) {
                if periodic_at.is_some_and(|t| Instant::now() >= t) {
                    periodic_at = None;
                    mid = mid.wrapping_add(1);
                    let path: Vec<&str> = location.iter().map(String::as_str).collect();
                    let update = request(mid, &path, &[]);
                    let _ = sock.send_to(&update.to_bytes().expect("encode"), shim);
                    offline = true;
                }
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                match p.header.code {
                    // The Register's 2.01 names the registration (Location-Path rd/<id>).
                    MessageClass::Response(ResponseType::Created) => {
                        location = option_values(&p, CoapOption::LocationPath)
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect();
                    }
                    MessageClass::Request(_) if offline || fault == Fault::Silent => {}
                    MessageClass::Request(RequestType::Put) if uri_path(&p) == ["1", "0", "1"] => {
                        let lt: u64 = String::from_utf8_lossy(&p.payload).parse().unwrap_or(0);
                        let _ = sock.send_to(&answer(&p, ResponseType::Changed, b""), from);
                        mid = mid.wrapping_add(1);
                        let path: Vec<&str> = location.iter().map(String::as_str).collect();
                        let update = request(mid, &path, &[format!("lt={lt}")]);
                        let _ = sock.send_to(&update.to_bytes().expect("encode"), shim);
                        if fault == Fault::OfflineAfterUpdate && lt < 300 {
                            periodic_at = Some(Instant::now() + Duration::from_secs(lt) / 2);
                        }
                    }
                    MessageClass::Request(_) => {
                        let _ = sock.send_to(&answer(&p, ResponseType::Content, b"0"), from);
                    }
                    _ => {}
                }
            }
        });
        Self { _worker: worker }
    }
}

/// Runs the Queue Mode case alone against a client with `fault`; its verdict and evidence.
fn judge(fault: Fault, ep: &str) -> (Verdict, String) {
    judge_with(fault, ep, |_| {})
}

fn judge_with(
    fault: Fault,
    ep: &str,
    adjust: impl FnOnce(&mut ConformanceConfig),
) -> (Verdict, String) {
    let h = Harness::start(ep, |_| {});
    let _client = QueueClient::start(h.coap, ep, fault);
    let mut cfg = ConformanceConfig::new(PackageSource::Suit(Signer::generate().expect("key")))
        .with_timeouts(
            Duration::from_secs(2),
            Duration::from_secs(3),
            Duration::from_secs(3),
        );
    cfg.notify_within = Duration::from_secs(3);
    cfg.short_lifetime = Duration::from_secs(4);
    cfg.register_within = Duration::from_secs(10);
    adjust(&mut cfg);
    let selection = Selection::parse(&["core-reg-queue-mode".to_string()]).expect("selection");
    let run =
        h.rt.block_on(h.running().conformance(ep, &cfg, &selection))
            .expect("run");
    assert!(
        run.registration.as_ref().is_some_and(|r| r.queue_mode),
        "{run:?}"
    );
    assert_eq!(run.cases.len(), 1, "{run:?}");
    let case = run.cases.into_iter().next().expect("one case");
    (case.verdict, case.evidence)
}

#[test]
fn a_client_that_owes_its_update_fails_the_queue_mode_case() {
    let (verdict, evidence) = judge(Fault::NeverUpdates, "queue-never-updates");
    assert_eq!(verdict, Verdict::Fail, "{evidence}");
    // The shim expires the registration when the lifetime is over, before the case's
    // tolerance has passed.
    assert!(
        evidence.contains(
            "write /1/0/1 = 4 -> 2.04; then the registration ended (expired or de-registered)"
        ) && evidence.contains("without an Update (lifetime 4 s)"),
        "{evidence}"
    );
}

#[test]
fn a_client_offline_right_after_its_update_fails_the_queue_mode_case() {
    let (verdict, evidence) = judge(Fault::OfflineAfterUpdate, "queue-offline-at-once");
    assert_eq!(verdict, Verdict::Fail, "{evidence}");
    assert!(evidence.contains("an Update after"), "{evidence}");
    assert!(
        evidence.contains("the Read /3/0 sent on it got no answer within 2s"),
        "{evidence}"
    );
}

/// A queue-mode client with a day-long lifetime is not waited for a day: the runner gives up on
/// the wake-up after `wake_within` (`conformance --timeout-wake`) and says so.
#[test]
fn a_client_asleep_longer_than_the_wake_up_wait_is_inconclusive_naming_it() {
    let started = Instant::now();
    let (verdict, _) = judge_with(Fault::Silent, "queue-silent", |cfg| {
        cfg.wake_within = Duration::from_secs(2)
    });
    assert!(started.elapsed() < Duration::from_secs(20));
    let Verdict::Inconclusive(why) = &verdict else {
        panic!("{verdict}");
    };
    assert!(
        why.contains("no answer to Read /3/0 within the request timeout (2 s); then the queue-mode device did not wake up within 2 s (the wake-up wait; its lifetime is 300 s)"),
        "{why}"
    );
}
