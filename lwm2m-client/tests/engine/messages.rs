//! The CoAP message layer under every operation (RFC 7252 sections 4 and 5.2.2): duplicate
//! detection, malformed datagrams, Ping, and separate responses for slow operations.

use coap_lite::{CoapOption, MessageClass, MessageType, RequestType, ResponseType};
use lwm2m_client::codec::{ContentFormat, Path, ResourceType};
use lwm2m_client::{Event, Ops, ResourceDef};

use crate::common::*;
use crate::support::*;

#[test]
fn duplicate_request_gets_cached_answer_without_executing_twice() {
    let mut e = registered();
    let x = request(RequestType::Post, 42, b"x1", "/3/0/4");
    let first = call(&mut e, 100, &x);
    assert_eq!(code(&first), resp(ResponseType::Changed));
    assert_eq!(first.header.message_id, 42);
    assert_eq!(first.get_token(), b"x1");
    assert_eq!(
        events(&mut e),
        vec![Event::Executed {
            path: Path::resource(3, 0, 4)
        }]
    );
    let dup = call(&mut e, 2100, &x);
    assert_eq!(bytes(&dup), bytes(&first));
    assert!(
        events(&mut e).is_empty(),
        "a duplicate is not executed again"
    );
    // After EXCHANGE_LIFETIME the id may be reused for a new request.
    e.handle_timeout(100 + 247_001);
    sent(&mut e);
    call(&mut e, 100 + 247_002, &x);
    assert_eq!(events(&mut e).len(), 1);
}

/// A slow executable resource /33001/0/1.
const SLOW: Deferring = Deferring {
    id: 33001,
    model: &[ResourceDef::new(1, Ops::E, false, ResourceType::None)],
};

#[test]
fn slow_operation_gets_empty_ack_then_separate_confirmable_response() {
    let mut objs = objects();
    objs.push(Box::new(SLOW));
    let mut e = engine_with(objs);
    let x = request(RequestType::Post, 77, b"slow", "/33001/0/1");
    let a = call(&mut e, 1, &x);
    assert_eq!(
        (a.header.get_type(), code(&a), a.header.message_id),
        (MessageType::Acknowledgement, MessageClass::Empty, 77)
    );
    let id = deferred_id(&mut e);
    // A retransmitted request while still working gets the empty ACK again.
    let again = call(&mut e, 2000, &x);
    assert_eq!(code(&again), MessageClass::Empty);
    e.complete_deferred(5000, id, Ok(()));
    let s = one(&mut e);
    assert_eq!(s.header.get_type(), MessageType::Confirmable);
    assert_eq!(code(&s), resp(ResponseType::Changed));
    assert_eq!(s.get_token(), b"slow");
    assert_ne!(s.header.message_id, 77);
    // Retransmitted until acknowledged.
    let due = e.poll_timeout().unwrap();
    e.handle_timeout(due);
    assert_eq!(one(&mut e).header.message_id, s.header.message_id);
    let a = empty(&s, MessageType::Acknowledgement);
    e.handle_datagram(due + 1, SERVER, &bytes(&a));
    e.handle_timeout(due + 100_000);
    assert!(sent(&mut e)
        .iter()
        .all(|(_, p)| p.header.message_id != s.header.message_id));
}

#[test]
fn malformed_datagrams_are_dropped_and_ping_gets_reset() {
    let mut e = registered();
    for junk in [
        &b""[..],
        &[0x40],
        &[0x4f, 1, 0, 0],
        &[0xff; 40],
        &[0x44, 0x01, 0, 1, 1, 2, 3, 4, 0xdd],
    ] {
        e.handle_datagram(1, SERVER, junk);
    }
    let ping = [0x40, 0x00, 0x12, 0x34];
    e.handle_datagram(1, SERVER, &ping);
    let r = one(&mut e);
    assert_eq!(
        (r.header.get_type(), r.header.message_id),
        (MessageType::Reset, 0x1234)
    );
    let _ = ContentFormat::Tlv;
}

#[test]
fn payload_marker_without_payload_is_a_format_error_not_a_request() {
    let mut e = registered();
    let get = request(RequestType::Get, 0x2001, b"g", "/3/0/0");
    let mut marked = bytes(&get);
    marked.push(0xff);
    // Confirmable: rejected with a matching RST (RFC 7252 sections 3 and 4.2), not answered.
    e.handle_datagram(20, SERVER, &marked);
    let r = one(&mut e);
    assert_eq!(
        (r.header.get_type(), code(&r), r.header.message_id),
        (MessageType::Reset, MessageClass::Empty, 0x2001)
    );
    // The same message id arriving well-formed later is new: the bad one was not processed.
    let r = call(&mut e, 21, &get);
    assert_eq!(code(&r), resp(ResponseType::Content));
    // Non-confirmable: ignored (nothing sent, no Update triggered by the Execute).
    let mut non = request(RequestType::Post, 0x2002, b"n", "/1/0/8");
    non.header.set_type(MessageType::NonConfirmable);
    let mut marked = bytes(&non);
    marked.push(0xff);
    e.handle_datagram(22, SERVER, &marked);
    assert!(sent(&mut e).is_empty());
    assert!(events(&mut e).is_empty());
    // An option value ending in 0xFF (Size2 = 255) is no marker: the read is answered.
    let get = with_uint(
        request(RequestType::Get, 0x2003, b"s", "/3/0/0"),
        CoapOption::Size2,
        255,
    );
    let raw = bytes(&get);
    assert_eq!(raw.last(), Some(&0xff));
    e.handle_datagram(23, SERVER, &raw);
    assert_eq!(code(&one(&mut e)), resp(ResponseType::Content));
}
