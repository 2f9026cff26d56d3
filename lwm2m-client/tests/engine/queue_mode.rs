//! Queue Mode (OMA TS Core 1.1 §6.2.1, the Register's `Q`; Transport 1.1, Queue Mode
//! operation): the device sleeps once its awake window after the last exchange is over, takes
//! nothing the server sends meanwhile, and wakes with a Registration Update before anything it
//! sends on its own.

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use lwm2m_client::{Config, Engine, Event, QueueMode};

use crate::common::*;
use crate::support::*;

const AWAKE_MS: u64 = 5_000;

/// A queue-mode engine registered at time 10 (its Register went out at 0).
fn sleepy(version: &'static str) -> (Engine<u8>, Vec<String>) {
    let mut config = Config::new("ep1");
    config.lwm2m_version = version;
    config.queue_mode = QueueMode {
        always: true,
        awake_ms: AWAKE_MS,
    };
    let mut e = Engine::new(config, SERVER, objects());
    e.start(0);
    let register = one(&mut e);
    let query = queries(&register);
    created(&mut e, 10, &register);
    events(&mut e);
    (e, query)
}

/// The server's 2.01 to `register` at `now`, location `rd/abc`.
fn created(e: &mut Engine<u8>, now: u64, register: &coap_lite::Packet) {
    let mut created = ack(register, ResponseType::Created);
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    created.add_option(CoapOption::LocationPath, b"abc".to_vec());
    e.handle_datagram(now, SERVER, &bytes(&created));
}

fn is_update(p: &coap_lite::Packet) -> bool {
    p.header.code == MessageClass::Request(RequestType::Post)
        && option_values(p, CoapOption::UriPath) == [b"rd".to_vec(), b"abc".to_vec()]
}

#[test]
fn the_register_says_queue_mode_as_the_version_has_it() {
    let (_, query) = sleepy("1.1");
    assert!(query.contains(&"Q".to_owned()), "{query:?}");
    assert!(query.contains(&"b=U".to_owned()), "{query:?}");
    let (_, query) = sleepy("1.0");
    assert!(query.contains(&"b=UQ".to_owned()), "{query:?}");
    assert!(!query.contains(&"Q".to_owned()), "{query:?}");
    // Without queue mode: neither.
    let mut e = engine();
    e.start(0);
    let query = queries(&one(&mut e));
    assert!(query.contains(&"b=U".to_owned()) && !query.contains(&"Q".to_owned()));
}

#[test]
fn a_queue_mode_device_sleeps_after_its_awake_window_and_wakes_with_an_update() {
    let (mut e, _) = sleepy("1.1");
    // Within the window a request is answered, and the window starts again.
    let read = |mid| request(RequestType::Get, mid, b"r", "/3/0/0");
    let r = call(&mut e, 4_000, &read(2));
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(e.poll_timeout(), Some(4_000 + AWAKE_MS), "asleep then");
    e.handle_timeout(4_000 + AWAKE_MS - 1);
    assert!(events(&mut e).is_empty());
    e.handle_timeout(4_000 + AWAKE_MS);
    assert_eq!(events(&mut e), vec![Event::Sleeping]);
    // Asleep: nothing the server sends is taken, not even answered.
    e.handle_datagram(10_000, SERVER, &bytes(&read(3)));
    assert!(sent(&mut e).is_empty());
    assert!(events(&mut e).is_empty());
    // Before the lifetime (300 s) runs out it wakes with an Update.
    let update_at = e.poll_timeout().expect("an Update is due");
    assert_eq!(
        update_at,
        10 + 300_000 - 93_000,
        "MAX_TRANSMIT_WAIT before the lifetime ends"
    );
    e.handle_timeout(update_at);
    let update = one(&mut e);
    assert!(is_update(&update), "{update:?}");
    assert_eq!(events(&mut e), vec![Event::Awake]);
    e.handle_datagram(
        update_at + 20,
        SERVER,
        &bytes(&ack(&update, ResponseType::Changed)),
    );
    assert!(events(&mut e).contains(&Event::Updated));
    // Awake again: the server's request (its retransmission) is answered now.
    let r = call(&mut e, update_at + 30, &read(3));
    assert_eq!(code(&r), resp(ResponseType::Content));
}

#[test]
fn a_notification_due_while_asleep_follows_an_update() {
    let (mut e, _) = sleepy("1.1");
    call(&mut e, 20, &write_attributes(2, "/5/0/3", &["pmax=60"]));
    let r = call(
        &mut e,
        30,
        &get_with(3, b"ob", "/5/0/3", CoapOption::Observe, 0),
    );
    assert_eq!(uint(&r, CoapOption::Observe), Some(0));
    events(&mut e);
    e.handle_timeout(30 + AWAKE_MS);
    assert_eq!(events(&mut e), vec![Event::Sleeping]);
    // pmax: the notification is due while asleep; the Update goes first.
    e.handle_timeout(30 + 60_000);
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(is_update(&out[0].1), "an Update first: {out:?}");
    assert_eq!(
        out[1].1.get_token(),
        b"ob",
        "then the notification: {out:?}"
    );
    assert_eq!(uint(&out[1].1, CoapOption::Observe), Some(1));
    assert_eq!(events(&mut e), vec![Event::Awake]);
}

#[test]
fn a_device_not_in_queue_mode_never_sleeps() {
    let mut e = registered();
    events(&mut e);
    e.handle_timeout(100_000);
    assert!(!events(&mut e).contains(&Event::Sleeping));
    let r = call(
        &mut e,
        100_010,
        &request(RequestType::Get, 9, b"r", "/3/0/0"),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
}

/// A window over while the device cannot sleep (its Update unanswered, retransmitted) is no
/// timer: the engine's next deadline is its retransmission, not the past end of the window,
/// which a runtime would call back at once, again and again.
#[test]
fn an_exchange_in_flight_past_the_window_sets_no_past_deadline() {
    let (mut e, _) = sleepy("1.1");
    e.trigger_update(1_000);
    let update = one(&mut e);
    assert!(is_update(&update));
    // The window (from the Update at 1 000) ends at 6 000; the Update is still unanswered.
    e.handle_timeout(6_000);
    assert!(!events(&mut e).contains(&Event::Sleeping));
    let next = e.poll_timeout().expect("the retransmission is due");
    assert!(next > 6_000, "next deadline {next} is not after now");
    // Answered later: the window starts again from the answer, and then it sleeps.
    e.handle_datagram(7_000, SERVER, &bytes(&ack(&update, ResponseType::Changed)));
    assert_eq!(e.poll_timeout(), Some(7_000 + AWAKE_MS));
    e.handle_timeout(7_000 + AWAKE_MS);
    assert!(events(&mut e).contains(&Event::Sleeping));
}

/// A server writes Binding "UQ" (LwM2M 1.0 E.2, UDP with Queue Mode) to a 1.1 device that is
/// not in Queue Mode: a 1.1 Update has no `Q`, so the device registers again with it, then
/// sleeps after its awake window; "U" registers it again without, and it stays reachable.
#[test]
fn a_written_uq_binding_registers_a_1_1_device_again_in_queue_mode() {
    let mut e = registered();
    events(&mut e);
    let w = request_with(RequestType::Put, 7, b"b", "/1/0/7", 0, b"UQ");
    e.handle_datagram(1_000, SERVER, &bytes(&w));
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "the 2.04, then a Register: {out:?}");
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    let register = &out[1].1;
    assert_eq!(
        option_values(register, CoapOption::UriPath),
        [b"rd".to_vec()]
    );
    let query = queries(register);
    assert!(query.contains(&"Q".to_owned()), "{query:?}");
    assert!(query.contains(&"b=U".to_owned()), "{query:?}");
    created(&mut e, 1_010, register);
    events(&mut e);
    e.handle_timeout(1_010 + 93_000);
    assert_eq!(events(&mut e), vec![Event::Sleeping]);

    // Awake again (the server's next request would be lost, so the device's own Update
    // wakes it) and told "U": a Register without `Q`, and no more sleep.
    e.trigger_update(100_000);
    let update = one(&mut e);
    assert!(is_update(&update), "{update:?}");
    e.handle_datagram(
        100_010,
        SERVER,
        &bytes(&ack(&update, ResponseType::Changed)),
    );
    let w = request_with(RequestType::Put, 8, b"u", "/1/0/7", 0, b"U");
    e.handle_datagram(100_020, SERVER, &bytes(&w));
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "{out:?}");
    let query = queries(&out[1].1);
    assert!(!query.contains(&"Q".to_owned()), "{query:?}");
    created(&mut e, 100_030, &out[1].1);
    e.handle_timeout(100_030 + 200_000);
    assert!(!events(&mut e).contains(&Event::Sleeping));
}

/// In LwM2M 1.0 the binding carries Queue Mode: a written "UQ" goes to the server in the
/// Update (`b=UQ`), and the device sleeps after its awake window.
#[test]
fn a_written_uq_binding_is_a_1_0_update_with_b_uq() {
    let mut config = Config::new("ep1");
    config.lwm2m_version = "1.0";
    let mut e = Engine::new(config, SERVER, objects());
    e.start(0);
    let register = one(&mut e);
    assert!(queries(&register).contains(&"b=U".to_owned()));
    created(&mut e, 10, &register);
    events(&mut e);
    let w = request_with(RequestType::Put, 7, b"b", "/1/0/7", 0, b"UQ");
    e.handle_datagram(1_000, SERVER, &bytes(&w));
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(is_update(&out[1].1), "{out:?}");
    assert_eq!(queries(&out[1].1), ["b=UQ"]);
    e.handle_datagram(
        1_010,
        SERVER,
        &bytes(&ack(&out[1].1, ResponseType::Changed)),
    );
    e.handle_timeout(1_010 + 93_000);
    assert!(events(&mut e).contains(&Event::Sleeping));
}

/// Bindings the device has no transport for (SMS, TCP, or Queue Mode over them) are refused,
/// and the binding stays as it was.
#[test]
fn a_binding_without_udp_is_refused() {
    let mut e = registered();
    for (mid, b) in [
        (20, &b"S"[..]),
        (21, b"SQ"),
        (22, b"UQS"),
        (23, b"T"),
        (24, b"Q"),
        (25, b""),
    ] {
        let w = request_with(RequestType::Put, mid, b"b", "/1/0/7", 0, b);
        let r = call(&mut e, 1_000, &w);
        assert_eq!(code(&r), resp(ResponseType::BadRequest), "{b:?}");
    }
    let r = call(
        &mut e,
        1_000,
        &request(RequestType::Get, 30, b"g", "/1/0/7"),
    );
    assert_eq!(r.payload, b"U");
}

/// Waking to a server that lost the session (the host's handshake on waking was a full one,
/// not a resumption): a new security context, so the device registers again (LwM2M 1.1.1
/// Transport §6.4.3) instead of sending the Update it woke with, which is never sent nor
/// retransmitted.
#[test]
fn a_new_session_on_waking_registers_again_instead_of_updating() {
    let (mut e, _) = sleepy("1.1");
    e.handle_timeout(10 + AWAKE_MS);
    assert_eq!(events(&mut e), vec![Event::Sleeping]);
    let update_at = e.poll_timeout().expect("an Update is due");
    e.handle_timeout(update_at);
    assert!(e.has_transmit(), "the Update waits for the link");
    e.new_session(update_at + 50);
    let out = sent(&mut e);
    assert_eq!(out.len(), 1, "{out:?}");
    let register = &out[0].1;
    assert_eq!(
        option_values(register, CoapOption::UriPath),
        [b"rd".to_vec()]
    );
    assert!(queries(register).contains(&"ep=ep1".to_owned()));
    created(&mut e, update_at + 80, register);
    assert!(events(&mut e)
        .iter()
        .any(|ev| matches!(ev, Event::Registered { .. })));
    // The dropped Update has no retransmission left.
    e.handle_timeout(update_at + 10_000);
    assert!(sent(&mut e).is_empty());
}
