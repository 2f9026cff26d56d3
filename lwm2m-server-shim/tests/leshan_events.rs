//! Event-stream records a Leshan user's script reads: the UPDATED event's `update` object in
//! Leshan 2.0's shape (registrations made by a real CoAP peer, libcoap's coap-client-openssl),
//! and queue mode (AWAKE / SLEEPING, calls to a sleeping client kept until it sends an Update,
//! then answered as REQUEST_RESPONSE events) with a device on a raw UDP socket.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{coap_client, wait_event, Harness};
use serde_json::{json, Value};

const EVENT: Duration = Duration::from_secs(10);

/// An `update` object without its `address` (the sender's ephemeral port), which must be an
/// `IP:port` text.
fn without_address(update: &Value) -> Value {
    let mut u = update.clone();
    let address = u
        .as_object_mut()
        .and_then(|m| m.remove("address"))
        .expect("update names the address");
    let address = address.as_str().expect("address text");
    assert!(address.parse::<std::net::SocketAddr>().is_ok(), "{address}");
    u
}

#[test]
fn updated_event_carries_the_whole_update() {
    let h = Harness::start("updated-event", |_| {});
    let events = h.events("");
    let rd = format!("coap://{}/rd?ep=upd-dev&lt=60&lwm2m=1.1&b=U", h.coap);
    assert!(coap_client(&["-m", "post", &rd, "-t", "40", "-e", "</3/0>"]).0);
    let reg = wait_event(&events, EVENT, |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "upd-dev"
    });
    let id = reg["registrationId"].as_str().expect("id").to_string();

    // Lifetime, new object links and an attribute the registration interface does not know.
    let upd = format!("coap://{}/rd/{id}?lt=90&site=lab", h.coap);
    assert!(coap_client(&["-m", "post", &upd, "-t", "40", "-e", "</3/0>,</5/0>"]).0);
    let u = wait_event(&events, EVENT, |n, _| n == "UPDATED");
    assert_eq!(
        without_address(&u["update"]),
        json!({
            "registrationId": id,
            "lifetime": 90,
            "lifeTimeInSec": 90,
            "objectLinks": [
                {"url": "/3/0", "attributes": {}},
                {"url": "/5/0", "attributes": {}},
            ],
            "secure": false,
            "additionalAttributes": {"site": "lab"},
        })
    );
    assert_eq!(u["registration"]["lifetime"], 90);
    assert_eq!(
        u["registration"]["additionalRegistrationAttributes"],
        json!({"site": "lab"})
    );
    assert_eq!(
        u["update"]["address"], u["registration"]["address"],
        "the update's address is where the device is now"
    );

    // An empty Update (a keep-alive) carries only what every update has.
    let upd = format!("coap://{}/rd/{id}", h.coap);
    assert!(coap_client(&["-m", "post", &upd]).0);
    let u = wait_event(&events, EVENT, |n, _| n == "UPDATED");
    assert_eq!(
        without_address(&u["update"]),
        json!({"registrationId": id, "secure": false, "additionalAttributes": {}})
    );
}

/// A queue-mode device on a raw UDP socket: it registers, sends Updates and answers the
/// requests it gets (GET /3/0/9 -> 80, with Observe if asked; any PUT -> 2.04), recording
/// them.
struct QueueDevice {
    sock: UdpSocket,
    shim: SocketAddr,
    location: String,
    mid: u16,
    seen: Vec<Packet>,
}

impl QueueDevice {
    fn register(h: &Harness, ep: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut d = Self {
            sock,
            shim: h.coap,
            location: String::new(),
            mid: 0x100,
            seen: Vec::new(),
        };
        let query = [
            format!("ep={ep}"),
            "lt=300".into(),
            "lwm2m=1.1".into(),
            "b=U".into(),
            "Q".into(),
        ];
        let ack = d.exchange(&["rd"], &query, b"</3/0>", Duration::from_secs(5));
        assert_eq!(
            ack.header.code,
            MessageClass::Response(ResponseType::Created)
        );
        let loc: Vec<String> = ack
            .get_option(CoapOption::LocationPath)
            .map(|l| {
                l.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        d.location = loc.join("/");
        d
    }

    /// Sends a CON POST and serves requests until its answer arrives within `limit`.
    fn exchange(
        &mut self,
        path: &[&str],
        query: &[String],
        payload: &[u8],
        limit: Duration,
    ) -> Packet {
        self.mid += 1;
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = self.mid;
        p.set_token(self.mid.to_be_bytes().to_vec());
        for s in path {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        if !payload.is_empty() {
            p.add_option(CoapOption::ContentFormat, vec![40]);
            p.payload = payload.to_vec();
        }
        self.sock
            .send_to(&p.to_bytes().expect("encode"), self.shim)
            .expect("send");
        let deadline = Instant::now() + limit;
        loop {
            assert!(Instant::now() < deadline, "no answer to {path:?}");
            if let Some(ack) = self.serve_one().filter(|a| a.header.message_id == self.mid) {
                return ack;
            }
        }
    }

    /// Sends an Update (an empty POST to the registration's location).
    fn update(&mut self) -> Packet {
        let location = self.location.clone();
        let path: Vec<&str> = location.split('/').collect();
        self.exchange(&path, &[], b"", Duration::from_secs(5))
    }

    /// Reads one datagram: a request is answered and recorded (None is returned), a response
    /// is returned.
    fn serve_one(&mut self) -> Option<Packet> {
        let mut buf = [0u8; 2048];
        let (n, from) = self.sock.recv_from(&mut buf).ok()?;
        let p = Packet::from_bytes(&buf[..n]).expect("CoAP from the shim");
        let MessageClass::Request(method) = p.header.code else {
            return Some(p);
        };
        let mut r = Packet::new();
        r.header.set_type(MessageType::Acknowledgement);
        r.header.message_id = p.header.message_id;
        r.set_token(p.get_token().to_vec());
        r.header.code = MessageClass::Response(match method {
            RequestType::Get => {
                if p.get_first_option(CoapOption::Observe) == Some(&Vec::new()) {
                    r.add_option(CoapOption::Observe, vec![1]);
                }
                r.add_option(CoapOption::ContentFormat, vec![0]);
                r.payload = b"80".to_vec();
                ResponseType::Content
            }
            _ => ResponseType::Changed,
        });
        self.sock
            .send_to(&r.to_bytes().expect("encode"), from)
            .expect("send");
        self.seen.push(p);
        None
    }

    /// Notifies the observation of `token` with `value` (a NON 2.05, Observe 2).
    fn notify(&mut self, token: &[u8], value: &[u8]) {
        self.mid += 1;
        let mut n = Packet::new();
        n.header.set_type(MessageType::NonConfirmable);
        n.header.code = MessageClass::Response(ResponseType::Content);
        n.header.message_id = self.mid;
        n.set_token(token.to_vec());
        n.add_option(CoapOption::Observe, vec![2]);
        n.add_option(CoapOption::ContentFormat, vec![0]);
        n.payload = value.to_vec();
        self.sock
            .send_to(&n.to_bytes().expect("encode"), self.shim)
            .expect("send");
    }

    /// Runs `call` (a REST call to the shim) on another thread while this device serves the
    /// requests it causes; its result.
    fn while_serving<T: Send>(&mut self, call: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|sc| {
            let call = sc.spawn(call);
            while !call.is_finished() {
                self.serve_for(Duration::from_millis(50));
            }
            call.join().expect("REST call")
        })
    }

    /// Serves requests for `d`.
    fn serve_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let _ = self.serve_one();
        }
    }
}

/// The names of the events up to (and with) the first one that satisfies `last`.
fn names_until(
    rx: &Receiver<(String, Value)>,
    within: Duration,
    last: impl Fn(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, d) = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("events so far {out:?}: {e}"));
        let done = last(&n, &d);
        out.push((n, d));
        if done {
            return out;
        }
    }
}

#[test]
fn queue_mode_clients_sleep_and_calls_wait_for_them() {
    let h = Harness::start("queue-mode", |c| c.awake_time = Duration::from_secs(1));
    let events = h.events("?ep=sleepy");
    let mut dev = QueueDevice::register(&h, "sleepy");
    let order: Vec<String> = names_until(&events, EVENT, |n, _| n == "REGISTRATION")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        order,
        ["AWAKE", "REGISTRATION"],
        "Leshan announces AWAKE first"
    );
    let (_, reg) = h.get_json("/api/clients/sleepy");
    assert_eq!(
        (reg["queuemode"].as_bool(), reg["sleeping"].as_bool()),
        (Some(true), Some(false))
    );

    // Awake: a call goes straight to the device.
    let (s, r) = dev.while_serving(|| h.get_json("/api/clients/sleepy/3/0/9?format=TEXT"));
    assert_eq!(
        (s, r["status"].as_str()),
        (200, Some("CONTENT(205)")),
        "{r}"
    );

    let d = wait_event(&events, EVENT, |n, _| n == "SLEEPING");
    assert_eq!(d, json!({"ep": "sleepy"}));
    let (_, reg) = h.get_json("/api/clients/sleepy");
    assert_eq!(reg["sleeping"], true, "{reg}");

    // Asleep: calls are kept, answered "delayed" at once, and nothing is sent.
    let sent_before = dev.seen.len();
    let (s, read) = h.get_json("/api/clients/sleepy/3/0/9?format=TEXT");
    assert_eq!(s, 200, "{read}");
    assert_eq!(
        (read["ep"].as_str(), read["path"].as_str()),
        (Some("sleepy"), Some("/3/0/9"))
    );
    assert_eq!(read["delayed"], true);
    assert!(read.get("response").is_none(), "{read}");
    let (s, write) = h.put(
        "/api/clients/sleepy/3/0/15",
        "application/json",
        br#"{"id":15,"kind":"singleResource","type":"string","value":"Europe/Paris"}"#,
    );
    assert_eq!(
        (s, write["delayed"].as_bool()),
        (200, Some(true)),
        "{write}"
    );
    assert_ne!(read["requestId"], write["requestId"]);
    dev.serve_for(Duration::from_millis(500));
    assert_eq!(
        dev.seen.len(),
        sent_before,
        "nothing sent to a sleeping client"
    );

    // The device sends an Update: it is awake, and the kept calls go out in order.
    let ack = dev.update();
    assert_eq!(
        ack.header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    dev.serve_for(Duration::from_millis(500));
    let got = names_until(&events, EVENT, |n, d| {
        n == "REQUEST_RESPONSE" && d["requestId"] == write["requestId"]
    });
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["AWAKE", "UPDATED", "REQUEST_RESPONSE", "REQUEST_RESPONSE"]
    );
    let (read_answer, write_answer) = (&got[2].1, &got[3].1);
    assert_eq!(read_answer["requestId"], read["requestId"]);
    assert_eq!(read_answer["path"], "/3/0/9");
    assert_eq!(read_answer["delayed"], true);
    assert_eq!(
        read_answer["response"]["status"], "CONTENT(205)",
        "{read_answer}"
    );
    assert_eq!(
        read_answer["response"]["content"]["value"], "80",
        "{read_answer}"
    );
    assert_eq!(
        write_answer["response"]["status"], "CHANGED(204)",
        "{write_answer}"
    );
    let requests: Vec<(Option<RequestType>, String)> = dev.seen[sent_before..]
        .iter()
        .map(|p| {
            let m = match p.header.code {
                MessageClass::Request(m) => Some(m),
                _ => None,
            };
            let path: Vec<String> = p
                .get_option(CoapOption::UriPath)
                .map(|l| {
                    l.iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            (m, format!("/{}", path.join("/")))
        })
        .collect();
    assert_eq!(
        requests,
        [
            (Some(RequestType::Get), "/3/0/9".to_string()),
            (Some(RequestType::Put), "/3/0/15".to_string())
        ]
    );
    wait_event(&events, EVENT, |n, _| n == "SLEEPING");
}

/// LwM2M core TS 1.1 §6.5: any message from a queue-mode client means it is awake. A
/// notification from a sleeping client is announced AWAKE first, as an Update is, and calls
/// go straight to it again.
#[test]
fn a_notification_from_a_sleeping_client_wakes_it() {
    let h = Harness::start("queue-notify", |c| c.awake_time = Duration::from_secs(1));
    let events = h.events("?ep=napper");
    let mut dev = QueueDevice::register(&h, "napper");
    names_until(&events, EVENT, |n, _| n == "REGISTRATION");
    let (s, r) = dev.while_serving(|| h.post("/api/clients/napper/3/0/9/observe?format=TEXT", b""));
    assert_eq!(
        (s, r["status"].as_str()),
        (200, Some("CONTENT(205)")),
        "{r}"
    );
    let token = dev.seen.last().expect("the Observe").get_token().to_vec();
    wait_event(&events, EVENT, |n, _| n == "SLEEPING");
    assert_eq!(h.get_json("/api/clients/napper").1["sleeping"], true);

    dev.notify(&token, b"79");
    let got = names_until(&events, EVENT, |n, _| n == "NOTIFICATION");
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["AWAKE", "NOTIFICATION"]);
    assert_eq!(got[1].1["val"]["value"], "79", "{}", got[1].1);
    assert_eq!(h.get_json("/api/clients/napper").1["sleeping"], false);
    let (s, r) = dev.while_serving(|| h.get_json("/api/clients/napper/3/0/9?format=TEXT"));
    assert_eq!((s, r.get("delayed")), (200, None), "{r}");
}
