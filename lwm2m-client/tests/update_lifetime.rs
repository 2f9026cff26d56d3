//! An Update carries `lt` exactly when the lifetime changed since the server last heard it
//! (OMA TS Core 1.1 section 6.2.2), so the server does not expire the client on a stale value.

mod common;

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use common::*;

fn queries(p: &coap_lite::Packet) -> Vec<String> {
    p.get_option(CoapOption::UriQuery)
        .map(|l| {
            l.iter()
                .map(|v| String::from_utf8(v.clone()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn update_announces_a_changed_lifetime_once() {
    let mut e = registered();
    let mut w = with_uint(
        request(RequestType::Put, 1, b"w", "/1/0/1"),
        CoapOption::ContentFormat,
        0,
    );
    w.payload = b"90".to_vec();
    e.handle_datagram(100, SERVER, &bytes(&w));
    let out = sent(&mut e);
    assert_eq!(
        code(&out[0].1),
        MessageClass::Response(ResponseType::Changed)
    );
    let upd = &out[1].1;
    assert_eq!(queries(upd), ["lt=90"]);
    e.handle_datagram(200, SERVER, &bytes(&ack(upd, ResponseType::Changed)));
    // The periodic Update (after half of 90 s) has nothing new to say.
    let due = e.poll_timeout().unwrap();
    assert_eq!(due, 200 + 45_000);
    e.handle_timeout(due);
    let upd = one(&mut e);
    assert_eq!(code(&upd), MessageClass::Request(RequestType::Post));
    assert!(queries(&upd).is_empty());
}
