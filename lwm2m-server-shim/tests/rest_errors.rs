//! REST API refusals name the real problem: the resource, its type and the value of a bad
//! write, what a non-object body is, the 24 h cap of `timeout`, the length of a package name.

mod common;

use common::Harness;
use serde_json::{json, Value};

fn message(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn refusals_name_what_is_wrong() {
    let h = Harness::start("rest-errors", |_| {});
    // No device answers at this address: every refusal here comes before any request to it.
    h.register_direct("dev", "127.0.0.1:9".parse().expect("addr"), "</1/0>,</3/0>");

    let (s, r) = h.put(
        "/api/clients/dev/1/0/1",
        "application/json",
        br#"{"id":1,"kind":"singleResource","type":"integer","value":"abc"}"#,
    );
    assert_eq!(
        (s, message(&r)),
        (
            400,
            "invalid node: resource 1: \"abc\" is not a valid integer"
        )
    );
    let (s, r) = h.put("/api/clients/dev/1/0/1", "application/json", b"[]");
    assert_eq!(
        (s, message(&r)),
        (
            400,
            "invalid node: expected a JSON object (a Leshan node), got an array"
        )
    );
    let (s, r) = h.get_json("/api/clients/dev/3/0?timeout=86401");
    assert_eq!(
        (s, message(&r)),
        (
            400,
            "timeout must be 1 to 86400 seconds (24 h), not \"86401\""
        )
    );
    let long = "a".repeat(300);
    let (s, r) = h.put(
        &format!("/api/packages/{long}"),
        "application/octet-stream",
        b"x",
    );
    assert_eq!(
        (s, message(&r)),
        (400, "package name of 300 characters; names are at most 128")
    );
    let (s, r) = h.put("/api/packages/bad%20name", "application/octet-stream", b"x");
    assert_eq!(
        (s, message(&r)),
        (
            400,
            "package names use only A-Za-z0-9._- and do not start with '.'"
        )
    );
    assert_eq!(h.get_json("/api/packages"), (200, json!([])));
}
