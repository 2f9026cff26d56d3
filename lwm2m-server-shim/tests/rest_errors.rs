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

/// An unknown endpoint is worded as Leshan's ClientServlet words it: "No registered client"
/// for a Read, Discover, Write or Write-Attributes, "no registered client" for the rest, so
/// scripts that match Leshan's text match ours.
#[test]
fn unknown_clients_are_worded_as_leshan_words_them() {
    let h = Harness::start("rest-unknown-client", |_| {});
    let upper = "No registered client with id 'ghost'";
    let lower = "no registered client with id 'ghost'";
    let (s, r) = h.get_json("/api/clients/ghost");
    assert_eq!((s, message(&r)), (400, lower));
    let (s, r) = h.get_json("/api/clients/ghost/3/0");
    assert_eq!((s, message(&r)), (400, upper));
    let (s, r) = h.get_json("/api/clients/ghost/3/0/discover");
    assert_eq!((s, message(&r)), (400, upper));
    let (s, r) = h.put(
        "/api/clients/ghost/3/0/1",
        "application/json",
        br#"{"id":1,"value":"x"}"#,
    );
    assert_eq!((s, message(&r)), (400, upper));
    let (s, r) = h.put("/api/clients/ghost/3/0/attributes?pmin=1", "", b"");
    assert_eq!((s, message(&r)), (400, upper));
    let (s, r) = h.post("/api/clients/ghost/3/0/4", b"");
    assert_eq!((s, message(&r)), (400, lower));
    let (s, r) = h.post("/api/clients/ghost/3/0/observe", b"");
    assert_eq!((s, message(&r)), (400, lower));
    let (s, b) = h.delete("/api/clients/ghost/1/0");
    assert_eq!((s, String::from_utf8_lossy(&b).as_ref()), (400, lower));
}
