//! Information reporting (OMA TS Core 1.1 section 6.4, RFC 7641): Observe with pmin/pmax,
//! cancellation, the server's default pmax, a notification larger than one block.

use coap_lite::{CoapOption, MessageType, RequestType, ResponseType};
use lwm2m_client::codec::{BlockOpt, Path};
use lwm2m_client::Event;

use crate::common::*;
use crate::support::*;

#[test]
fn observe_honours_pmin_and_pmax_and_cancels_on_rst() {
    let mut e = registered();
    call(
        &mut e,
        0,
        &write_attributes(1, "/5/0/3", &["pmin=2", "pmax=10"]),
    );
    let t0 = 1_000;
    let obs = get_with(2, b"ob", "/5/0/3", CoapOption::Observe, 0);
    let r = call(&mut e, t0, &obs);
    assert_eq!(uint(&r, CoapOption::Observe), Some(0));
    assert_eq!(r.payload, b"0");
    events(&mut e);
    // A package write changes State to Downloaded at t0 + 500 ms: the notification waits for pmin.
    let w = request_with(RequestType::Put, 3, b"w", "/5/0/0", 42, b"small image");
    let r = call(&mut e, t0 + 500, &w);
    assert_eq!(code(&r), resp(ResponseType::Changed));
    assert_eq!(e.poll_timeout(), Some(t0 + 2_000), "due at pmin");
    e.handle_timeout(t0 + 1_999);
    assert!(sent(&mut e).is_empty());
    e.handle_timeout(t0 + 2_000);
    let n = one(&mut e);
    assert_eq!(n.header.get_type(), MessageType::Confirmable);
    assert_eq!(n.get_token(), b"ob");
    assert_eq!(uint(&n, CoapOption::Observe), Some(1));
    assert_eq!(n.payload, b"2", "State = Downloaded");
    let a = empty(&n, MessageType::Acknowledgement);
    e.handle_datagram(t0 + 2_010, SERVER, &bytes(&a));
    // Unchanged value: the next notification comes at pmax.
    assert_eq!(e.poll_timeout(), Some(t0 + 12_000));
    e.handle_timeout(t0 + 12_000);
    let n2 = one(&mut e);
    assert_eq!(uint(&n2, CoapOption::Observe), Some(2));
    events(&mut e);
    // RST to the notification cancels the observation.
    let rst = empty(&n2, MessageType::Reset);
    e.handle_datagram(t0 + 12_050, SERVER, &bytes(&rst));
    assert_eq!(
        events(&mut e),
        vec![Event::ObserveCancelled {
            path: Path::resource(5, 0, 3)
        }]
    );
    e.handle_timeout(t0 + 30_000);
    assert!(sent(&mut e).iter().all(|(_, p)| p.get_token() != b"ob"));
}

#[test]
fn observe_cancel_with_observe_1() {
    let mut e = registered();
    call(
        &mut e,
        0,
        &get_with(2, b"ob", "/3/0/13", CoapOption::Observe, 0),
    );
    let r = call(
        &mut e,
        5,
        &get_with(3, b"ob", "/3/0/13", CoapOption::Observe, 1),
    );
    assert_eq!(code(&r), resp(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::Observe), None);
    let ev = events(&mut e);
    assert!(ev.contains(&Event::ObserveCancelled {
        path: Path::resource(3, 0, 13)
    }));
}

#[test]
fn server_default_pmax_applies_without_attributes() {
    let mut e = registered();
    let w = request_with(RequestType::Put, 1, b"w", "/1/0/3", 0, b"5");
    assert_eq!(code(&call(&mut e, 100, &w)), resp(ResponseType::Changed));
    let r = call(
        &mut e,
        1_000,
        &get_with(2, b"ob", "/5/0/3", CoapOption::Observe, 0),
    );
    assert_eq!(uint(&r, CoapOption::Observe), Some(0));
    assert_eq!(
        e.poll_timeout(),
        Some(6_000),
        "default pmax (/1/0/3 = 5 s) arms the timer"
    );
    e.handle_timeout(6_000);
    let n = one(&mut e);
    assert_eq!(
        (n.get_token(), uint(&n, CoapOption::Observe)),
        (&b"ob"[..], Some(1))
    );
}

#[test]
fn large_notification_carries_first_block2_block() {
    let mut cfg = lwm2m_client::Config::new("ep1");
    cfg.max_block_szx = 0; // 16-byte blocks
    let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
    let obs = with_uint(
        get_with(1, b"o", "/3/0", CoapOption::Accept, 110),
        CoapOption::Observe,
        0,
    );
    let first = call(&mut e, 0, &obs);
    assert_eq!(first.payload.len(), 16, "initial response is block 0");
    e.notify_changed(1_000, &Path::resource(3, 0, 13));
    let n = one(&mut e);
    let b = BlockOpt::decode(n.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.szx, n.payload.len()), (0, true, 0, 16));
    assert!(uint(&n, CoapOption::Size2).unwrap() > 16);
}
