//! Event-stream records a Leshan user's script reads, with registrations made by a real CoAP peer
//! (libcoap's coap-client-openssl): the UPDATED event's `update` object in Leshan 2.0's shape.

mod common;

use std::time::Duration;

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
