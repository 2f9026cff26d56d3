//! Read-Composite (FETCH /) and Write-Composite (iPATCH /) with SenML, OMA TS Core 1.1
//! sections 6.3.8-6.3.9.

mod common;

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use common::*;
use lwm2m_client::codec::{senml, Path, Value};

#[test]
fn read_composite_answers_full_names_across_objects() {
    let mut e = registered();
    let mut f = with_uint(
        request(RequestType::Fetch, 1, b"f", "/"),
        CoapOption::ContentFormat,
        110,
    );
    f.payload = br#"[{"n":"/3/0/3"},{"n":"/5/0/3"},{"n":"/5/0/5"},{"n":"/3/0/99"}]"#.to_vec();
    let r = call(&mut e, 1, &f);
    assert_eq!(code(&r), MessageClass::Response(ResponseType::Content));
    assert_eq!(uint(&r, CoapOption::ContentFormat), Some(110));
    assert_eq!(
        std::str::from_utf8(&r.payload).unwrap(),
        r#"[{"bn":"/","n":"3/0/3","vs":"1.0.0"},{"n":"5/0/3","v":0},{"n":"5/0/5","v":0}]"#
    );
    // The same in SenML CBOR, asked for with Accept.
    let mut f = with_uint(
        with_uint(
            request(RequestType::Fetch, 2, b"f", "/"),
            CoapOption::ContentFormat,
            110,
        ),
        CoapOption::Accept,
        112,
    );
    f.payload = br#"[{"bn":"/5/0/","n":"3"}]"#.to_vec();
    let r = call(&mut e, 2, &f);
    let leaves = senml::decode_cbor_leaves(&r.payload).unwrap();
    assert_eq!(leaves, vec![(Path::resource(5, 0, 3), Value::Integer(0))]);
    // Security stays out of reach.
    let mut f = with_uint(
        request(RequestType::Fetch, 3, b"f", "/"),
        CoapOption::ContentFormat,
        110,
    );
    f.payload = br#"[{"n":"/0/0/0"}]"#.to_vec();
    assert_eq!(
        code(&call(&mut e, 3, &f)),
        MessageClass::Response(ResponseType::BadRequest)
    );
}

#[test]
fn write_composite_is_all_or_nothing() {
    let mut e = registered();
    let mut p = with_uint(
        request(RequestType::IPatch, 1, b"p", "/"),
        CoapOption::ContentFormat,
        110,
    );
    p.payload = br#"[{"n":"/1/0/2","v":3},{"n":"/5/0/1","vs":"coap://h/fw"}]"#.to_vec();
    assert_eq!(
        code(&call(&mut e, 1, &p)),
        MessageClass::Response(ResponseType::Changed)
    );
    assert_eq!(
        call(&mut e, 2, &request(RequestType::Get, 2, b"r", "/1/0/2")).payload,
        b"3"
    );
    assert_eq!(
        call(&mut e, 3, &request(RequestType::Get, 3, b"r", "/5/0/1")).payload,
        b"coap://h/fw"
    );
    // One read-only target rejects the whole request: /1/0/2 keeps its value.
    let mut p = with_uint(
        request(RequestType::IPatch, 4, b"p", "/"),
        CoapOption::ContentFormat,
        110,
    );
    p.payload = br#"[{"n":"/1/0/2","v":9},{"n":"/3/0/0","vs":"x"}]"#.to_vec();
    assert_eq!(
        code(&call(&mut e, 4, &p)),
        MessageClass::Response(ResponseType::MethodNotAllowed)
    );
    assert_eq!(
        call(&mut e, 5, &request(RequestType::Get, 5, b"r", "/1/0/2")).payload,
        b"3"
    );
}
