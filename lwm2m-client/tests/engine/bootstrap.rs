//! Client-initiated bootstrap (OMA TS Core 1.1 section 6.1): bootstrap, then Register with the
//! provisioned server; back-off when the Bootstrap-Request fails.

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use lwm2m_client::objects::Server;
use lwm2m_client::{BootstrapCause, Engine, Event, RegState};

use crate::common::*;
use crate::support::*;

/// Security resource 0 (the server URI) in TLV, to which a test adds the other resources.
fn uri_tlv(uri: &[u8]) -> Vec<u8> {
    let mut tlv = vec![0xC8, 0x00, uri.len() as u8];
    tlv.extend_from_slice(uri);
    tlv
}

/// The bootstrap server's Bootstrap-Write of /1/0 (message id `mid`) in TLV: Short Server ID
/// 7 (read-only to management servers), lifetime 120 s, binding U.
fn server_instance_write(mid: u16) -> coap_lite::Packet {
    let tlv = [0xC1, 0x00, 0x07, 0xC1, 0x01, 0x78, 0xC1, 0x07, b'U'];
    request_with(RequestType::Put, mid, b"b", "/1/0", 11542, &tlv)
}

/// [`bootstrapping`] with its Bootstrap-Request accepted: the bootstrap server's turn.
fn bootstrap_accepted() -> lwm2m_client::Engine<u8> {
    let mut e = bootstrapping();
    let bs = one(&mut e);
    e.handle_datagram(10, SERVER, &bytes(&ack(&bs, ResponseType::Changed)));
    e
}

/// An engine with a bootstrap account only (no Server instance yet), bootstrapping.
fn bootstrapping() -> lwm2m_client::Engine<u8> {
    use lwm2m_client::objects::{Device, DiscardBackend, FirmwareUpdate, Security, Server};
    let mut server_obj = Server::new(300);
    server_obj.present = false;
    let objs: Vec<Box<dyn lwm2m_client::ObjectHandler>> = vec![
        Box::new(Security::bootstrap("coap://127.0.0.1:5783")),
        Box::new(server_obj),
        Box::new(Device::new(device_info())),
        Box::new(FirmwareUpdate::new(DiscardBackend::default())),
    ];
    let mut e = engine_with(objs);
    e.bootstrap(0);
    e
}

#[test]
fn client_initiated_bootstrap_then_register_with_the_provisioned_server() {
    use lwm2m_client::objects::security::{Credentials, SecurityMode};
    let mut e = bootstrapping();
    assert_eq!(e.registration(), RegState::Bootstrapping);
    let bs = one(&mut e);
    assert_eq!(code(&bs), MessageClass::Request(RequestType::Post));
    let path = option_values(&bs, CoapOption::UriPath);
    assert_eq!(path, vec![b"bs".to_vec()]);
    assert_eq!(
        bs.get_first_option(CoapOption::UriQuery).unwrap(),
        b"ep=ep1"
    );
    e.handle_datagram(10, SERVER, &bytes(&ack(&bs, ResponseType::Changed)));
    // Bootstrap-Delete "/" keeps the bootstrap account.
    let r = call(&mut e, 20, &request(RequestType::Delete, 100, b"b", "/"));
    assert_eq!(code(&r), resp(ResponseType::Deleted));
    // Bootstrap-Write /0/1: a NoSec account for the management server, SSID 7, with the
    // SMS and account-timeout resources Leshan also writes (6, 9, 12).
    let uri = b"coap://127.0.0.1:5683";
    let mut payload = uri_tlv(uri);
    payload.extend_from_slice(&[0xC1, 0x01, 0x00, 0xC1, 0x02, 0x03, 0xC1, 0x0A, 0x07]);
    payload.extend_from_slice(&[0xC1, 0x06, 0x03, 0xC4, 0x09, b'+', b'1', b'2', b'3']);
    payload.extend_from_slice(&[0xC1, 0x0C, 0x05]);
    let w = request_with(RequestType::Put, 101, b"b", "/0/1", 11542, &payload);
    assert_eq!(code(&call(&mut e, 30, &w)), resp(ResponseType::Changed));
    // A Bootstrap-Write of /0/2 with a resource Security does not define is refused whole:
    // no /0/2 in the Discover below.
    let mut bad = uri_tlv(uri);
    bad.extend_from_slice(&[0xC1, 0x28, 0x01]);
    let w = request_with(RequestType::Put, 106, b"b", "/0/2", 11542, &bad);
    assert_eq!(code(&call(&mut e, 35, &w)), resp(ResponseType::BadRequest));
    // Bootstrap-Write /1/0: SSID 7 (read-only to management servers), lifetime 120 s.
    let w = server_instance_write(102);
    assert_eq!(code(&call(&mut e, 40, &w)), resp(ResponseType::Changed));
    let d = call(
        &mut e,
        45,
        &get_with(103, b"b", "/", CoapOption::Accept, 40),
    );
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        "</>;lwm2m=1.1,</0/0>,</0/1>,</1/0>,</3/0>,</5/0>"
    );
    // Bootstrap-Finish.
    let f = call(&mut e, 50, &request(RequestType::Post, 104, b"b", "/bs"));
    assert_eq!(code(&f), resp(ResponseType::Changed));
    assert_eq!(
        events(&mut e),
        vec![Event::Bootstrapped {
            server_uri: "coap://127.0.0.1:5683".into(),
            credentials: Credentials::new(SecurityMode::NoSec, Vec::new(), Vec::new(), Vec::new()),
        }]
    );
    // Register with the management server using the provisioned lifetime.
    e.set_server(2);
    e.start(60);
    let mut out = sent(&mut e);
    assert_eq!(out.len(), 1);
    let (peer, reg) = out.remove(0);
    assert_eq!(peer, 2);
    let q = queries(&reg);
    assert!(q.contains(&"lt=120".to_string()), "{q:?}");
    // The management server may not read Security.
    let mut e2 = e;
    let r = call(&mut e2, 70, &request(RequestType::Get, 105, b"x", "/0/1"));
    assert_eq!(code(&r), resp(ResponseType::Unauthorized));
}

/// Bootstrap-Read (LwM2M 1.1 Core §6.1.7.1): the bootstrap server reads back the Server
/// object it wrote, in the format it asks for; other objects than Server and Access Control,
/// single resources and the Security object's keys are not for it. It was 4.05.
#[test]
fn the_bootstrap_server_reads_the_server_object() {
    let mut e = bootstrap_accepted();
    let w = server_instance_write(100);
    assert_eq!(code(&call(&mut e, 20, &w)), resp(ResponseType::Changed));
    let r = call(
        &mut e,
        30,
        &get_with(101, b"r", "/1", CoapOption::Accept, 11542),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(11542));
    let tlv = &r.payload;
    // Object instance 0 holding SSID 7, lifetime 120 and binding U among its resources.
    assert_eq!(tlv[0] & 0xC0, 0x00, "an object instance: {tlv:02x?}");
    for (id, v) in [(0u8, &[7u8][..]), (1, &[0x78]), (7, b"U")] {
        let mut want = vec![0xC0 | v.len() as u8, id];
        want.extend_from_slice(v);
        assert!(
            tlv.windows(want.len()).any(|w| w == want),
            "resource {id} in {tlv:02x?}"
        );
    }
    let r = call(
        &mut e,
        31,
        &get_with(102, b"r", "/1/0", CoapOption::Accept, 110),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    let senml = std::str::from_utf8(&r.payload).unwrap();
    assert!(senml.contains(r#""n":"7","vs":"U""#), "{senml}");
    for (mid, path, want) in [
        (103, "/0", ResponseType::BadRequest),
        (104, "/0/0", ResponseType::BadRequest),
        (105, "/1/0/1", ResponseType::BadRequest),
        (106, "/3/0", ResponseType::BadRequest),
        (107, "/", ResponseType::BadRequest),
        (108, "/2", ResponseType::NotFound),
    ] {
        let r = call(
            &mut e,
            40,
            &get_with(mid, b"r", path, CoapOption::Accept, 11542),
        );
        assert_eq!(code(&r), resp(want), "{path}");
        assert!(r.payload.is_empty() || r.payload.is_ascii(), "{path}");
    }
}

#[test]
fn bootstrap_request_failure_backs_off() {
    let mut e = engine();
    e.bootstrap(0);
    let bs = one(&mut e);
    e.handle_datagram(5, SERVER, &bytes(&ack(&bs, ResponseType::BadRequest)));
    assert_eq!(
        events(&mut e),
        vec![Event::BootstrapFailed {
            code: Some("4.00".into()),
            retry_in_ms: 2000
        }]
    );
    assert_eq!(e.poll_timeout(), Some(2005));
    e.handle_timeout(2005);
    let again = one(&mut e);
    assert_eq!(
        again.get_first_option(CoapOption::UriQuery).unwrap(),
        b"ep=ep1"
    );
    e.handle_datagram(2010, SERVER, &bytes(&ack(&again, ResponseType::Changed)));
    // No Bootstrap-Finish within EXCHANGE_LIFETIME: request again after back-off.
    assert_eq!(e.poll_timeout(), Some(2010 + 247_000));
    e.handle_timeout(2010 + 247_000);
    assert_eq!(
        events(&mut e),
        vec![Event::BootstrapFailed {
            code: None,
            retry_in_ms: 4000
        }]
    );
}

#[test]
fn an_account_that_cannot_reach_its_server_is_not_acceptable_at_finish() {
    use lwm2m_client::objects::security::{Inconsistency, SecurityMode};
    let mut e = bootstrap_accepted();
    // A coaps:// account in NoSec mode (resource 2 = 3).
    let uri = b"coaps://127.0.0.1:5684";
    let mut payload = uri_tlv(uri);
    payload.extend_from_slice(&[0xC1, 0x01, 0x00, 0xC1, 0x02, 0x03, 0xC1, 0x0A, 0x07]);
    let w = request_with(RequestType::Put, 101, b"b", "/0/1", 11542, &payload);
    assert_eq!(code(&call(&mut e, 30, &w)), resp(ResponseType::Changed));
    let f = call(&mut e, 50, &request(RequestType::Post, 104, b"b", "/bs"));
    assert_eq!(code(&f), resp(ResponseType::NotAcceptable));
    assert_eq!(
        events(&mut e),
        vec![Event::BootstrapRefused {
            reason: Inconsistency::SchemeAndMode(SecurityMode::NoSec)
        }]
    );
    assert_eq!(e.registration(), RegState::Bootstrapping);
    // PSK mode with the identity and key it needs: accepted.
    let mut payload = uri_tlv(uri);
    payload.extend_from_slice(&[0xC1, 0x02, 0x00, 0xC2, 0x03, b'i', b'd', 0xC1, 0x05, 0x6B]);
    let w = request_with(RequestType::Put, 105, b"b", "/0/1", 11542, &payload);
    assert_eq!(code(&call(&mut e, 60, &w)), resp(ResponseType::Changed));
    let f = call(&mut e, 70, &request(RequestType::Post, 106, b"b", "/bs"));
    assert_eq!(code(&f), resp(ResponseType::Changed));
}

/// DTLS/TLS Ciphersuite (/0/x/16, LwM2M 1.1 Core E.1) written as the spec has it, a multiple
/// resource of IANA code points: the transport gets them in the server's order.
#[test]
fn the_cipher_suites_a_bootstrap_server_writes_reach_the_transport_in_order() {
    let mut e = bootstrap_accepted();
    let mut payload = uri_tlv(b"coaps://127.0.0.1:5684");
    payload.extend_from_slice(&[0xC1, 0x01, 0x00, 0xC1, 0x02, 0x00, 0xC1, 0x0A, 0x07]);
    payload.extend_from_slice(&[0xC2, 0x03, b'i', b'd', 0xC1, 0x05, 0x6B]);
    // Resource 16, instances 0 and 1: 0xC0A4 (PSK_WITH_AES_128_CCM), 0xC0A8 (CCM_8).
    payload.extend_from_slice(&[
        0x88, 0x10, 0x08, 0x42, 0x00, 0xC0, 0xA4, 0x42, 0x01, 0xC0, 0xA8,
    ]);
    let w = request_with(RequestType::Put, 101, b"b", "/0/1", 11542, &payload);
    assert_eq!(code(&call(&mut e, 30, &w)), resp(ResponseType::Changed));
    let w = server_instance_write(102);
    assert_eq!(code(&call(&mut e, 40, &w)), resp(ResponseType::Changed));
    let f = call(&mut e, 50, &request(RequestType::Post, 104, b"b", "/bs"));
    assert_eq!(code(&f), resp(ResponseType::Changed));
    match events(&mut e).as_slice() {
        [Event::Bootstrapped { credentials, .. }] => {
            assert_eq!(credentials.cipher_suites, vec![0xC0A4, 0xC0A8])
        }
        other => panic!("{other:?}"),
    }
}

/// A Bootstrap-Write too long for one datagram comes block-wise (RFC 7959 §2.5), as Leshan
/// sends a Security instance holding certificates: it is gathered and written whole.
#[test]
fn a_blockwise_bootstrap_write_is_written_once_whole() {
    use lwm2m_client::codec::BlockOpt;
    let mut e = bootstrap_accepted();
    // /0/1: the URI and a 600-byte identity (resource 3), 640 bytes of TLV in all.
    let uri = b"coaps://127.0.0.1:5684";
    let mut tlv = uri_tlv(uri);
    tlv.extend_from_slice(&[0xD0 | 0x10, 0x03, 0x02, 0x58]);
    tlv.extend_from_slice(&[0x33; 600]);
    tlv.extend_from_slice(&[0xC1, 0x02, 0x02]);
    let block = |mid: u16, num: u32, more: bool, data: &[u8]| {
        let mut p = request_with(RequestType::Put, mid, b"w", "/0/1", 11542, data);
        p.add_option(
            CoapOption::Block1,
            BlockOpt::new(num, more, 4).unwrap().encode(),
        );
        p
    };
    // A block that does not start at 0 continues nothing: 4.08.
    let r = call(&mut e, 20, &block(200, 1, true, &tlv[256..512]));
    assert_eq!(code(&r), resp(ResponseType::RequestEntityIncomplete));
    for (i, chunk) in tlv.chunks(256).enumerate() {
        let more = (i + 1) * 256 < tlv.len();
        let r = call(
            &mut e,
            30 + i as u64,
            &block(201 + i as u16, i as u32, more, chunk),
        );
        let want = if more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(code(&r), resp(want), "block {i}");
        let echo = BlockOpt::decode(r.get_first_option(CoapOption::Block1).unwrap()).unwrap();
        assert_eq!((echo.num, echo.more), (i as u32, more));
    }
    let d = call(
        &mut e,
        45,
        &get_with(210, b"d", "/0", CoapOption::Accept, 40),
    );
    assert_eq!(
        std::str::from_utf8(&d.payload).unwrap(),
        "</>;lwm2m=1.1,</0/0>,</0/1>"
    );
    // A body over Config::bootstrap_body_limit (8 KiB) is refused with 4.13 at its ninth KiB.
    let kib = |n: u32| {
        let mut p = request_with(
            RequestType::Put,
            220 + n as u16,
            b"w",
            "/0/2",
            11542,
            &[0; 1024],
        );
        p.add_option(
            CoapOption::Block1,
            BlockOpt::new(n, true, 6).unwrap().encode(),
        );
        p
    };
    for n in 0..8 {
        let r = call(&mut e, 50 + u64::from(n), &kib(n));
        assert_eq!(code(&r), resp(ResponseType::Continue), "KiB {n}");
    }
    let r = call(&mut e, 60, &kib(8));
    assert_eq!(code(&r), resp(ResponseType::RequestEntityTooLarge));
}

/// The Bootstrap-Request Trigger (/1/0/9, LwM2M 1.1 Core E.2): executed by the management
/// server, it hands the bootstrap account on; bootstrapping then starts from scratch and an
/// answer of the old server is ignored. Without a bootstrap account it is 4.05.
#[test]
fn the_bootstrap_request_trigger_hands_on_the_bootstrap_account() {
    use lwm2m_client::objects::security::{Credentials, SecurityMode};
    let mut e = registered();
    let r = call(&mut e, 20, &request(RequestType::Post, 300, b"t", "/1/0/9"));
    assert_eq!(code(&r), resp(ResponseType::MethodNotAllowed));

    let mut e = with_bootstrap_account(Server::new(300));
    e.start(0);
    let reg = one(&mut e);
    let mut created = ack(&reg, ResponseType::Created);
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    e.handle_datagram(10, SERVER, &bytes(&created));
    events(&mut e);
    // An Update in flight when the trigger comes (the Registration Update Trigger sends one).
    let trigger_update = request(RequestType::Post, 301, b"u", "/1/0/8");
    e.handle_datagram(20, SERVER, &bytes(&trigger_update));
    let out = sent(&mut e);
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    let upd = out[1].1.clone();
    assert_eq!(code(&upd), MessageClass::Request(RequestType::Post));
    let r = call(&mut e, 30, &request(RequestType::Post, 302, b"t", "/1/0/9"));
    assert_eq!(code(&r), resp(ResponseType::Changed));
    let evs = events(&mut e);
    assert!(
        evs.contains(&Event::BootstrapTriggered {
            server_uri: "coap://127.0.0.1:5783".into(),
            credentials: Credentials::new(SecurityMode::NoSec, Vec::new(), Vec::new(), Vec::new()),
            cause: BootstrapCause::Trigger,
        }),
        "{evs:?}"
    );
    // The host points the engine at the bootstrap server (peer 2) and bootstraps.
    e.set_server(2);
    e.bootstrap(40);
    let (peer, bs_req) = sent(&mut e).remove(0);
    assert_eq!(peer, 2);
    assert_eq!(
        option_values(&bs_req, CoapOption::UriPath),
        vec![b"bs".to_vec()]
    );
    // The old server's late answer to the Update changes nothing.
    e.handle_datagram(50, SERVER, &bytes(&ack(&upd, ResponseType::Changed)));
    assert_eq!(e.registration(), RegState::Bootstrapping);
    assert!(events(&mut e).is_empty());
}

/// An engine (not started) with a NoSec management server account, `server`'s settings and
/// a bootstrap account for `coap://127.0.0.1:5783`.
fn with_bootstrap_account(server: Server) -> Engine<u8> {
    use lwm2m_client::objects::{Device, Security};
    let mut security = Security::no_sec("coap://127.0.0.1:5683");
    let mut bs = Security::bootstrap("coap://127.0.0.1:5783")
        .accounts
        .remove(0);
    bs.id = 1;
    security.accounts.push(bs);
    engine_with(vec![
        Box::new(security),
        Box::new(server),
        Box::new(Device::new(device_info())),
    ])
}

/// Has `n` Registers refused with 4.03 (each retry sent when its back-off ends), starting at
/// `now`; the events and the time after the last refusal.
fn refuse_registers(e: &mut Engine<u8>, n: u32, mut now: u64) -> (Vec<Event>, u64) {
    let mut all = Vec::new();
    for _ in 0..n {
        let reg = one(e);
        assert_eq!(
            option_values(&reg, CoapOption::UriPath),
            vec![b"rd".to_vec()]
        );
        e.handle_datagram(now, SERVER, &bytes(&ack(&reg, ResponseType::Forbidden)));
        let evs = events(e);
        let retry = *retry_delays(&evs).first().expect("a RegistrationFailed");
        all.extend(evs);
        now += retry;
        e.handle_timeout(now);
    }
    (all, now)
}

/// The retry delays of the RegistrationFailed events in `evs`, in order.
fn retry_delays(evs: &[Event]) -> Vec<u64> {
    evs.iter()
        .filter_map(|ev| match ev {
            Event::RegistrationFailed { retry_in_ms, .. } => Some(*retry_in_ms),
            _ => None,
        })
        .collect()
}

fn fallback(evs: &[Event]) -> Option<BootstrapCause> {
    evs.iter().find_map(|ev| match ev {
        Event::BootstrapTriggered {
            server_uri, cause, ..
        } => {
            assert_eq!(server_uri, "coap://127.0.0.1:5783");
            Some(*cause)
        }
        _ => None,
    })
}

/// Bootstrap on Registration Failure (LwM2M 1.1 Core §6.2.1.1; Server /1/0/16, /1/0/17):
/// once the retry sequence of Communication Retry Count Registers failed the bootstrap
/// account is handed on (the host then bootstraps), not one failure earlier; a success starts
/// the count again.
#[test]
fn registers_that_keep_failing_hand_on_the_bootstrap_account() {
    let mut e = with_bootstrap_account(Server::new(300));
    e.start(0);
    let (evs, now) = refuse_registers(&mut e, 4, 0);
    assert_eq!(fallback(&evs), None, "{evs:?}");
    let (evs, now) = refuse_registers(&mut e, 1, now);
    assert_eq!(
        fallback(&evs),
        Some(BootstrapCause::RegistrationFailed { attempts: 5 })
    );
    // The host did not bootstrap: the engine keeps trying its server, a sequence a day, and
    // says so again when the next sequence failed.
    let (evs, now) = refuse_registers(&mut e, 5, now);
    assert_eq!(
        fallback(&evs),
        Some(BootstrapCause::RegistrationFailed { attempts: 10 })
    );
    let reg = one(&mut e);
    let mut created = ack(&reg, ResponseType::Created);
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    created.add_option(CoapOption::LocationPath, b"x".to_vec());
    e.handle_datagram(now, SERVER, &bytes(&created));
    assert_eq!(e.registration(), RegState::Registered);
    // Registered once: the count starts again (a server forgetting us, then refusing).
    let trigger = request(RequestType::Post, 400, b"u", "/1/0/8");
    e.handle_datagram(now + 1, SERVER, &bytes(&trigger));
    let out = sent(&mut e);
    assert_eq!(code(&out[0].1), resp(ResponseType::Changed));
    let update = out[1].1.clone();
    e.handle_datagram(
        now + 2,
        SERVER,
        &bytes(&ack(&update, ResponseType::NotFound)),
    );
    e.handle_timeout(now + 2);
    let (evs, _) = refuse_registers(&mut e, 4, now + 3);
    assert_eq!(fallback(&evs), None, "{evs:?}");
}

/// The Server object decides: Communication Retry Count 2 hands on after two failures (and
/// a bootstrap server may write it), Bootstrap on Registration Failure false never does, nor
/// does a device without a bootstrap account.
#[test]
fn the_server_object_sets_when_a_failing_registration_bootstraps() {
    let mut server = Server::new(300);
    server.retry.count = 2;
    let mut e = with_bootstrap_account(server);
    e.start(0);
    let (evs, _) = refuse_registers(&mut e, 2, 0);
    assert_eq!(
        fallback(&evs),
        Some(BootstrapCause::RegistrationFailed { attempts: 2 })
    );

    let mut server = Server::new(300);
    server.bootstrap_on_failure = false;
    let mut e = with_bootstrap_account(server);
    e.start(0);
    let (evs, _) = refuse_registers(&mut e, 8, 0);
    assert_eq!(fallback(&evs), None, "{evs:?}");

    let mut e = engine();
    e.start(0);
    let (evs, _) = refuse_registers(&mut e, 8, 0);
    assert_eq!(fallback(&evs), None, "{evs:?}");
}

/// A handshake the host could not complete counts as a Register the server did not answer:
/// the retry procedure's delays, then the bootstrap account after five; while bootstrapping
/// it is a failed Bootstrap-Request instead.
#[test]
fn failed_handshakes_count_as_failed_registers() {
    let mut e = with_bootstrap_account(Server::new(300));
    let mut now = 0;
    let mut delays = Vec::new();
    for _ in 0..5 {
        let retry = e.transport_failed(now);
        delays.push(retry);
        now += retry;
    }
    assert_eq!(delays, [60_000, 120_000, 240_000, 480_000, 86_400_000]);
    let evs = events(&mut e);
    let failures = evs
        .iter()
        .filter(|ev| matches!(ev, Event::RegistrationFailed { code: None, .. }))
        .count();
    assert_eq!(failures, 5, "{evs:?}");
    assert_eq!(
        fallback(&evs),
        Some(BootstrapCause::RegistrationFailed { attempts: 5 })
    );
    e.bootstrap(now);
    assert_eq!(e.registration(), RegState::Bootstrapping);
    let _ = sent(&mut e);
    let retry = e.transport_failed(now);
    assert_eq!(retry, 2_000);
    let evs = events(&mut e);
    assert!(
        matches!(evs[..], [Event::BootstrapFailed { code: None, .. }]),
        "{evs:?}"
    );
    assert_eq!(e.registration(), RegState::Bootstrapping);
}

/// The registration retry procedure (LwM2M 1.1 Core §6.2.1.1) as Server /1/0/17-20 set it,
/// here written by the management server itself: within a sequence the n-th failed Register
/// is retried after Communication Retry Timer·2^(n-1); a failed sequence is followed by the
/// next after the Sequence Delay Timer; the registration has failed (and the client
/// bootstraps) after Sequence Retry Count sequences.
#[test]
fn registers_are_retried_as_the_server_object_says() {
    let mut e = with_bootstrap_account(Server::new(300));
    e.start(0);
    // Registered, the server writes the four resources in one TLV instance (17 = 3,
    // 18 = 10 s, 19 = 100 s, 20 = 2), then forgets the device.
    accept_register(&mut e, 1);
    let tlv = [
        0xC1, 0x11, 3, 0xC1, 0x12, 10, 0xC1, 0x13, 100, 0xC1, 0x14, 2,
    ];
    let w = request_with(RequestType::Post, 401, b"w", "/1/0", 11542, &tlv);
    assert_eq!(code(&call(&mut e, 2, &w)), resp(ResponseType::Changed));
    for (r, v) in [(17, 3), (18, 10), (19, 100), (20, 2)] {
        let read = request(RequestType::Get, 402 + r, b"r", &format!("/1/0/{r}"));
        let got = call(&mut e, 3, &read);
        assert_eq!(got.payload, v.to_string().into_bytes(), "/1/0/{r}");
    }
    let _ = sent(&mut e);
    let trigger = request(RequestType::Post, 450, b"u", "/1/0/8");
    e.handle_datagram(4, SERVER, &bytes(&trigger));
    let update = sent(&mut e).remove(1).1;
    e.handle_datagram(5, SERVER, &bytes(&ack(&update, ResponseType::NotFound)));
    e.handle_timeout(5);
    let (evs, now) = refuse_registers(&mut e, 6, 5);
    let delays = retry_delays(&evs);
    assert_eq!(
        delays,
        [10_000, 20_000, 100_000, 10_000, 20_000, 100_000],
        "{evs:?}"
    );
    // Handed on after the sixth failure only: the end of the second sequence.
    let last = evs
        .iter()
        .rposition(|ev| matches!(ev, Event::RegistrationFailed { .. }))
        .unwrap();
    assert_eq!(
        fallback(&evs[last..]),
        Some(BootstrapCause::RegistrationFailed { attempts: 6 })
    );
    assert_eq!(fallback(&evs[..last]), None, "{evs:?}");
    // Timers of 0 are taken as 1 s: a refusing server is not asked in a tight loop.
    // The seventh Register, the first of a new sequence, is out; then 18 = 0 is written.
    let seventh = one(&mut e);
    let w = request_with(
        RequestType::Put,
        460,
        b"z",
        "/1/0/18",
        11542,
        &[0xC1, 0x12, 0],
    );
    assert_eq!(code(&call(&mut e, now, &w)), resp(ResponseType::Changed));
    e.handle_datagram(now, SERVER, &bytes(&ack(&seventh, ResponseType::Forbidden)));
    assert!(events(&mut e).contains(&Event::RegistrationFailed {
        code: Some("4.03".into()),
        retry_in_ms: 1_000
    }),);
}

/// The largest timers a server can write (2^32 - 1 s) do not overflow the schedule: the
/// delays stop at that.
#[test]
fn the_longest_retry_timers_are_taken_without_overflow() {
    let mut server = Server::new(300);
    server.retry.count = 40;
    server.retry.timer_s = u32::MAX;
    server.retry.sequence_delay_s = u32::MAX;
    let mut e = with_bootstrap_account(server);
    e.start(0);
    let longest = u64::from(u32::MAX) * 1000;
    let (evs, _) = refuse_registers(&mut e, 41, 0);
    let delays = retry_delays(&evs);
    assert_eq!(delays, [longest; 41]);
}

/// The bootstrap account's Client Hold Off Time (/0/x/11, LwM2M 1.1 Core E.1): the
/// Bootstrap-Request waits that long after the client decides to bootstrap, here after the
/// Bootstrap-Request Trigger.
#[test]
fn the_bootstrap_request_waits_the_client_hold_off_time() {
    use lwm2m_client::objects::security::Account;
    use lwm2m_client::objects::{Device, Security};
    let mut security = Security::no_sec("coap://127.0.0.1:5683");
    let mut bs: Account = Security::bootstrap("coap://127.0.0.1:5783")
        .accounts
        .remove(0);
    bs.id = 1;
    bs.hold_off_s = 3;
    security.accounts.push(bs);
    let mut e = engine_with(vec![
        Box::new(security),
        Box::new(Server::new(300)),
        Box::new(Device::new(device_info())),
    ]);
    e.bootstrap(1_000);
    assert!(sent(&mut e).is_empty(), "sent during the hold-off");
    assert_eq!(e.poll_timeout(), Some(4_000));
    e.handle_timeout(3_999);
    assert!(sent(&mut e).is_empty(), "sent during the hold-off");
    e.handle_timeout(4_000);
    let req = one(&mut e);
    assert_eq!(
        option_values(&req, CoapOption::UriPath),
        vec![b"bs".to_vec()]
    );
}

/// The Bootstrap-Server Account Timeout (/0/x/12, LwM2M 1.1 Core E.1): the client purges the
/// bootstrap account that many seconds after the bootstrap, and a Bootstrap-Request Trigger is
/// then 4.05 (no bootstrap account left).
#[test]
fn the_bootstrap_account_is_purged_when_its_timeout_passes() {
    let mut e = bootstrap_accepted();
    // The bootstrap server sets its own account's timeout to 5 s (instance 0 is its account).
    let w = request_with(RequestType::Put, 200, b"b", "/0/0/12", 0, b"5");
    assert_eq!(code(&call(&mut e, 20, &w)), resp(ResponseType::Changed));
    let mut server = uri_tlv(b"coap://127.0.0.1:5683");
    server.extend_from_slice(&[0xC1, 0x01, 0x00, 0xC1, 0x02, 0x03, 0xC1, 0x0A, 0x07]);
    let w = request_with(RequestType::Put, 201, b"b", "/0/1", 11542, &server);
    assert_eq!(code(&call(&mut e, 30, &w)), resp(ResponseType::Changed));
    let w = server_instance_write(202);
    assert_eq!(code(&call(&mut e, 40, &w)), resp(ResponseType::Changed));
    let finish = request(RequestType::Post, 203, b"b", "/bs");
    assert_eq!(
        code(&call(&mut e, 50, &finish)),
        resp(ResponseType::Changed)
    );
    let _ = events(&mut e);
    e.set_server(2);
    e.start(60);
    let reg = one(&mut e);
    let mut created = ack(&reg, ResponseType::Created);
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    e.handle_datagram(70, 2, &bytes(&created));
    let _ = events(&mut e);
    e.handle_timeout(5_049);
    assert!(events(&mut e).is_empty(), "purged early");
    assert!(e.poll_timeout().is_some_and(|t| t <= 5_050));
    e.handle_timeout(5_050);
    assert_eq!(events(&mut e), vec![Event::BootstrapAccountPurged]);
    let trigger = request(RequestType::Post, 300, b"t", "/1/0/9");
    e.handle_datagram(5_100, 2, &bytes(&trigger));
    let (_, r) = sent(&mut e).remove(0);
    assert_eq!(code(&r), resp(ResponseType::MethodNotAllowed));
}
