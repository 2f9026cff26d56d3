//! Queue Mode end to end: the shim's firmware job for our device registered in Queue Mode
//! (LwM2M 1.1 `Q`), which really sleeps. Until now the shim's jobs for sleeping devices had
//! met only a scripted device; Leshan's demo server judges the device itself, asleep during a
//! download too (`leshan_server.rs`). Here the job sends nothing while the device sleeps and
//! runs to the end once the device wakes with its lifetime Update.

use std::time::Duration;

use lwm2m_client::sim::device::DeviceOptions;
use lwm2m_client::sim::InThreadDevice;
use serde_json::{json, Value};
use tests::e2e::{Harness, PackageKind};
use tests::nat::Nat;
use tests::rest::Events;

const T: Duration = Duration::from_secs(90);

/// Our device in Queue Mode, asleep 2 s after each exchange, lifetime 20 s (`adjust` changes
/// more), started and registered.
fn start_sleepy(h: &Harness, ep: &str, adjust: impl FnOnce(&mut DeviceOptions)) -> InThreadDevice {
    let mut opts = h.device_options(ep);
    opts.queue_mode = true;
    opts.awake_time = 2;
    opts.lifetime = 20;
    adjust(&mut opts);
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    dev
}

/// Starts a pull job for `fw2.suit` through the REST API; its id.
fn start_pull(h: &Harness, ep: &str) -> Value {
    let body = json!({"package": "fw2.suit", "method": "pull"}).to_string();
    let (status, job) = h.post(&format!("/api/clients/{ep}/firmware"), body.as_bytes());
    assert_eq!(status, 202, "{job}");
    job["id"].clone()
}

/// The FIRMWARE event that ends job `id` (SUCCEEDED or FAILED).
fn job_end(events: &Events, id: &Value) -> Value {
    events.wait_for(&["FIRMWARE"], T, |d| {
        d["id"] == *id && (d["phase"] == "SUCCEEDED" || d["phase"] == "FAILED")
    })
}

#[test]
fn a_firmware_job_updates_a_device_that_sleeps_in_queue_mode() {
    let h = Harness::start_configured("queue-job", |c| c.awake_time = Duration::from_secs(2));
    let ep = "queue-dev";
    h.package("fw2.suit", &PackageKind::good("2.0.0", 2, 40_000));
    let _dev = start_sleepy(&h, ep, |opts| opts.pull_block_size = 64);
    let (_, reg) = h.get(&format!("/api/clients/{ep}"));
    assert_eq!(reg["queuemode"], true, "{reg}");
    h.wait_until("the device asleep", T, || {
        h.get(&format!("/api/clients/{ep}")).1["sleeping"] == true
    });

    let events = h.events(ep);
    let id = start_pull(&h, ep);
    // Asleep: once the package is read, the job holds its first request for the wake-up. The
    // job starts on its own task, so this is awaited as an event, not read right after the POST.
    let waiting = events.wait_for(&["FIRMWARE"], T, |d| {
        d["id"] == id && (d["waitingForWakeUp"] == true || d["phase"] == "FAILED")
    });
    assert_eq!(waiting["waitingForWakeUp"], true, "{waiting}");
    let last = job_end(&events, &id);
    assert_eq!(last["phase"], "SUCCEEDED", "{last}");
    assert_eq!(last["firmwareVersion"], "2.0.0", "{last}");
    assert_eq!(h.state_result(ep), Some((0, 1)));
}

/// The same over DTLS behind a NAT that gave the device another port while it slept: the
/// device resumes its session from the new port on waking (judged by Leshan in
/// `leshan_server.rs`), and the shim takes the resumed session's Update as the wake-up, moves
/// the registration to the new address and sends the job's held requests there.
#[test]
fn a_firmware_job_reaches_a_sleeping_device_whose_nat_port_changed() {
    let h = Harness::start_secure_configured("queue-nat-job", |c| {
        c.awake_time = Duration::from_secs(2)
    });
    let ep = "queue-nat-dev";
    let (identity, key) = ("queue-nat-id", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf");
    assert_eq!(h.add_psk(ep, identity, key), 200);
    h.package("fw2.suit", &PackageKind::good("2.0.0", 2, 40_000));
    let nat = Nat::start(h.coap).expect("NAT");
    let mut opts = h.psk_device_options(ep, identity, key);
    opts.server = format!("coaps://{}", nat.addr());
    opts.queue_mode = true;
    opts.awake_time = 2;
    opts.lifetime = 20;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    h.wait_until("the device asleep", T, || {
        h.get(&format!("/api/clients/{ep}")).1["sleeping"] == true
    });
    let new_port = nat.rebind();

    let events = h.events(ep);
    let id = start_pull(&h, ep);
    let last = job_end(&events, &id);
    assert_eq!(last["phase"], "SUCCEEDED", "{last}");
    assert_eq!(h.state_result(ep), Some((0, 1)));
    let (_, reg) = h.get(&format!("/api/clients/{ep}"));
    assert_eq!(reg["address"], format!("127.0.0.1:{new_port}"), "{reg}");
}

/// A device that sleeps sooner than the shim expects: it stays awake 2 s after its last
/// message, the shim assumes the default 93 s (MAX_TRANSMIT_WAIT). The job's first request goes
/// out while the shim still thinks the device awake and gets no answer; as Leshan's server
/// does (its `QueueModeLwM2mRequestSender`), the shim then takes the device for asleep, and the
/// job's retry waits for the wake-up instead of failing on a second timeout.
#[test]
fn a_firmware_job_waits_for_a_device_that_fell_asleep_before_the_shim_expected() {
    let h = Harness::start("queue-early-sleep");
    let ep = "queue-early-dev";
    h.package("fw2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    let _dev = start_sleepy(&h, ep, |_| {});
    let (_, reg) = h.get(&format!("/api/clients/{ep}"));
    assert_eq!(reg["sleeping"], false, "{reg}");
    let events = h.events(ep);
    // The device's own awake time passes; the shim's does not.
    std::thread::sleep(Duration::from_secs(4));

    let id = start_pull(&h, ep);
    let asleep = events.wait_for(&["SLEEPING", "FIRMWARE"], T, |d| {
        d == &json!({"ep": ep}) || (d["id"] == id && d["phase"] == "FAILED")
    });
    assert_eq!(
        asleep,
        json!({"ep": ep}),
        "no SLEEPING after the unanswered request"
    );
    let last = job_end(&events, &id);
    assert_eq!(last["phase"], "SUCCEEDED", "{last}");
    assert_eq!(h.state_result(ep), Some((0, 1)));
}
