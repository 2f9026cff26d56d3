//! Registration interface (OMA TS Core 1.1 section 6.2): Register with its query, links and
//! preferred format, retransmission and back-off, Update before the lifetime ends and on
//! triggers, Register again after 4.04, De-register.

use coap_lite::{CoapOption, MessageClass, MessageType, RequestType, ResponseType};
use lwm2m_client::codec::{self, ContentFormat};
use lwm2m_client::{Event, RegState};

use crate::common::*;
use crate::support::*;

#[test]
fn register_carries_query_and_links_then_retransmits_on_rfc7252_schedule() {
    let mut e = engine();
    e.start(0);
    let reg = one(&mut e);
    assert_eq!(reg.header.get_type(), MessageType::Confirmable);
    assert_eq!(code(&reg), MessageClass::Request(RequestType::Post));
    let path = option_values(&reg, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec()]);
    let q = queries(&reg);
    assert_eq!(q, ["ep=ep1", "lt=300", "lwm2m=1.1", "b=U"]);
    assert_eq!(uint(&reg, CoapOption::ContentFormat), Some(40));
    let links = codec::link::parse(std::str::from_utf8(&reg.payload).unwrap()).unwrap();
    let targets: Vec<_> = links.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/", "/1", "/1/0", "/3/0", "/5", "/5/0"],
        "Security is never announced; /5 carries ver=1.1"
    );
    assert_eq!(links[0].get("rt"), Some("oma.lwm2m"));
    assert_eq!(
        strict_ct(std::str::from_utf8(&reg.payload).unwrap()),
        Ok(112),
        "one preferred format, SenML CBOR by default"
    );

    // No answer: retransmissions at T, 3T, 7T, 15T with T in [2 s, 3 s], then give up at 31T.
    let t = e.poll_timeout().unwrap();
    assert!((2000..=3000).contains(&t), "initial timeout {t}");
    let mut at = 0;
    for n in 0..4 {
        let due = e.poll_timeout().unwrap();
        assert_eq!(
            due - at,
            t << n,
            "retransmission {n} waits twice as long as the previous"
        );
        e.handle_timeout(due - 1);
        assert!(sent(&mut e).is_empty(), "nothing before the deadline");
        assert_eq!(e.stalled(), n >= 2, "before retransmission {}", n + 1);
        e.handle_timeout(due);
        // From the second retransmission on, half MAX_RETRANSMIT (4) went unanswered: a host
        // over DTLS resumes its session before sending it.
        assert_eq!(e.stalled(), n >= 1, "retransmission {} queued", n + 1);
        let again = one(&mut e);
        assert_eq!(
            again.header.message_id, reg.header.message_id,
            "same message id on retransmission"
        );
        assert_eq!(again.payload, reg.payload);
        at = due;
    }
    let give_up = e.poll_timeout().unwrap();
    assert_eq!(give_up - at, t << 4);
    e.handle_timeout(give_up);
    let ev = events(&mut e);
    assert_eq!(
        ev,
        // The Server object's Communication Retry Timer, 60 s by default (LwM2M 1.1 Core E.2).
        vec![Event::RegistrationFailed {
            code: None,
            retry_in_ms: 60_000
        }]
    );
    // Back-off: the next Register goes out 60 s later, then 120 s after its failure.
    assert_eq!(e.poll_timeout(), Some(give_up + 60_000));
    e.handle_timeout(give_up + 60_000);
    let second = one(&mut e);
    assert_ne!(second.header.message_id, reg.header.message_id);
    let mut r = ack(&second, ResponseType::Forbidden);
    r.header.message_id = second.header.message_id;
    e.handle_datagram(give_up + 60_100, SERVER, &bytes(&r));
    assert_eq!(
        events(&mut e),
        vec![Event::RegistrationFailed {
            code: Some("4.03".into()),
            retry_in_ms: 120_000
        }]
    );
}

#[test]
fn register_announces_the_configured_preferred_format_as_one_unquoted_integer() {
    for (name, number) in [
        ("senml-cbor", 112),
        ("senml-json", 110),
        ("tlv", 11542),
        ("lwm2m-cbor", 11544),
    ] {
        let mut cfg = lwm2m_client::Config::new("ep1");
        cfg.preferred_format = ContentFormat::from_data_format_name(name).unwrap();
        let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
        e.start(0);
        let reg = one(&mut e);
        let payload = std::str::from_utf8(&reg.payload).unwrap();
        assert!(
            payload.starts_with(&format!(r#"</>;rt="oma.lwm2m";ct={number},"#)),
            "{payload}"
        );
        assert_eq!(strict_ct(payload), Ok(number), "{name}");
    }
    assert_eq!(ContentFormat::from_data_format_name("json"), None);
    // Announcing one format restricts nothing: a TLV write and a SenML JSON read still work.
    let mut cfg = lwm2m_client::Config::new("ep1");
    cfg.preferred_format = ContentFormat::SenmlCbor;
    let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
    let w = request_with(
        RequestType::Put,
        1,
        b"w",
        "/1/0/1",
        11542,
        &[0xC1, 0x01, 0x3C],
    );
    assert_eq!(code(&call(&mut e, 1, &w)), resp(ResponseType::Changed));
    let r = call(
        &mut e,
        2,
        &get_with(2, b"r", "/1/0/1", CoapOption::Accept, 110),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(110));
}

#[test]
fn updates_before_lifetime_and_registers_again_after_404() {
    let mut e = registered();
    assert_eq!(e.registration(), RegState::Registered);
    // lt = 300 s: Update at 300 - 93 = 207 s after registration.
    assert_eq!(e.poll_timeout(), Some(10 + 207_000));
    e.handle_timeout(10 + 207_000);
    let upd = one(&mut e);
    assert_eq!(code(&upd), MessageClass::Request(RequestType::Post));
    let path = option_values(&upd, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec(), b"abc".to_vec()]);
    assert!(
        upd.payload.is_empty(),
        "no payload when objects did not change"
    );
    e.handle_datagram(207_100, SERVER, &bytes(&ack(&upd, ResponseType::NotFound)));
    let reg = one(&mut e);
    let path = option_values(&reg, CoapOption::UriPath);
    assert_eq!(
        path,
        vec![b"rd".to_vec()],
        "4.04 on Update means Register again"
    );

    // Writing the lifetime triggers an Update carrying the new value's schedule.
    let mut e = registered();
    let w = request_with(RequestType::Put, 7, b"t", "/1/0/1", 0, b"60");
    e.handle_datagram(1000, SERVER, &bytes(&w));
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "the 2.04 and then the Update");
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    assert_eq!(code(&out[1].1), MessageClass::Request(RequestType::Post));
    e.handle_datagram(1100, SERVER, &bytes(&ack(&out[1].1, ResponseType::Changed)));
    assert!(events(&mut e).contains(&Event::Updated));
    assert_eq!(
        e.poll_timeout(),
        Some(1100 + 30_000),
        "lt 60 s: update after half"
    );
}

#[test]
fn deregister_sends_delete_to_location() {
    let mut e = registered();
    e.deregister(500);
    let d = one(&mut e);
    assert_eq!(code(&d), MessageClass::Request(RequestType::Delete));
    let path = option_values(&d, CoapOption::UriPath);
    assert_eq!(path, vec![b"rd".to_vec(), b"abc".to_vec()]);
    e.handle_datagram(600, SERVER, &bytes(&ack(&d, ResponseType::Deleted)));
    assert_eq!(events(&mut e), vec![Event::Deregistered]);
    assert_eq!(e.registration(), RegState::Stopped);
}

/// Disable (/1/0/4, LwM2M 1.1 Core E.2): the 2.04 first, then the De-register; for the
/// Disable Timeout (/1/0/5) the client sends nothing and takes nothing from the server (an
/// observation ends with the registration), then it registers again.
#[test]
fn disable_deregisters_and_registers_again_after_the_disable_timeout() {
    let mut e = registered();
    let w = request_with(RequestType::Put, 7, b"w", "/1/0/5", 0, b"30");
    assert_eq!(code(&call(&mut e, 50, &w)), resp(ResponseType::Changed));
    let obs = get_with(8, b"o", "/3/0/13", CoapOption::Observe, 0);
    assert_eq!(code(&call(&mut e, 60, &obs)), resp(ResponseType::Content));
    let x = request(RequestType::Post, 9, b"d", "/1/0/4");
    e.handle_datagram(100, SERVER, &bytes(&x));
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "the 2.04, then the De-register: {out:?}");
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    let delete = &out[1].1;
    assert_eq!(code(delete), MessageClass::Request(RequestType::Delete));
    assert_eq!(
        option_values(delete, CoapOption::UriPath),
        vec![b"rd".to_vec(), b"abc".to_vec()]
    );
    e.handle_datagram(150, SERVER, &bytes(&ack(delete, ResponseType::Deleted)));
    assert!(events(&mut e).contains(&Event::Disabled { for_ms: 30_000 }));
    assert_eq!(e.registration(), RegState::Unregistered);
    // Away: requests of the server go unanswered, notifications stop.
    let read = request(RequestType::Get, 10, b"r", "/3/0/0");
    e.handle_datagram(1_000, SERVER, &bytes(&read));
    e.handle_timeout(20_000);
    assert!(sent(&mut e).is_empty());
    // A host that reconnects early does not make it register early.
    e.start(25_000);
    assert!(sent(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(30_150));
    e.handle_timeout(30_150);
    let reg = one(&mut e);
    assert_eq!(code(&reg), MessageClass::Request(RequestType::Post));
    assert_eq!(
        option_values(&reg, CoapOption::UriPath),
        vec![b"rd".to_vec()]
    );
    // Back: the server is answered again.
    let read = request(RequestType::Get, 11, b"r", "/3/0/0");
    assert_eq!(
        code(&call(&mut e, 30_200, &read)),
        resp(ResponseType::Content)
    );
}

/// A De-register the server does not answer still disables the client; the Disable Timeout
/// is a day when the server never set one.
#[test]
fn disable_holds_when_the_deregister_is_not_answered() {
    let mut e = registered();
    let x = request(RequestType::Post, 9, b"d", "/1/0/4");
    e.handle_datagram(100, SERVER, &bytes(&x));
    let _ = sent(&mut e);
    // RFC 7252 gives up on the DELETE after MAX_TRANSMIT_WAIT (93 s at most).
    let mut now = 100;
    while !events(&mut e).contains(&Event::Disabled { for_ms: 86_400_000 }) {
        now = e.poll_timeout().expect("a retransmission is due");
        assert!(now < 100 + 100_000, "still not given up at {now}");
        e.handle_timeout(now);
        let _ = sent(&mut e);
    }
    // Other timers may fire meanwhile (the dedup window); the Register waits the day.
    let disabled_at = now;
    loop {
        now = e.poll_timeout().expect("the Register is due");
        e.handle_timeout(now);
        if let Some((_, p)) = sent(&mut e).into_iter().next() {
            assert_eq!(code(&p), MessageClass::Request(RequestType::Post));
            break;
        }
    }
    assert_eq!(now, disabled_at + 86_400_000);
}

#[test]
fn update_trigger_and_object_changes_send_update() {
    let mut e = registered();
    let x = request(RequestType::Post, 9, b"u", "/1/0/8");
    e.handle_datagram(100, SERVER, &bytes(&x));
    let out = sent(&mut e);
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    let upd = &out[1].1;
    assert_eq!(code(upd), MessageClass::Request(RequestType::Post));
    assert!(upd.payload.is_empty());
    e.handle_datagram(150, SERVER, &bytes(&ack(upd, ResponseType::Changed)));
    events(&mut e);
    // Objects changed: the Update carries the link-format payload.
    e.objects_changed(200);
    let upd = one(&mut e);
    assert_eq!(uint(&upd, CoapOption::ContentFormat), Some(40));
    assert!(std::str::from_utf8(&upd.payload)
        .unwrap()
        .contains("</5/0>"));
}
