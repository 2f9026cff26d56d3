//! A 256 KiB firmware push over a slow, lossy link: the shim pushes to our simulated device,
//! which reaches it through the relay with 50 ms added each way (RTT 100 ms) and 0 % or 20 %
//! loss each way, with Block1 (RFC 7959, one block per round trip; the shim with Q-Block1
//! pushes off) and with Q-Block1 (RFC 9177, sets of 10 blocks per round trip). Each push
//! prints its time (the REST Write of /5/0/0 until the device's answer to the last block)
//! and the datagrams sent in both directions (dropped ones included), next to Block1 at the
//! same loss as a ratio.
//!
//! Timers: the shim's ACK_TIMEOUT is 500 ms (as in the end-to-end tests), so Block1
//! retransmits a lost block after 0.5-0.75 s, and Q-Block1's NON_TIMEOUT follows it (the
//! shim asks where the body stands after 0.5-0.75 s without an answer); MAX_RETRANSMIT and
//! NON_MAX_RETRANSMIT are 8 (see [`RETRIES`]). The device keeps RFC 9177's
//! NON_RECEIVE_TIMEOUT of 4 s.
//!
//! Run: `cargo bench -p tests --bench push_qblock` (about 3 minutes). `PUSH_QBLOCK=qblock`
//! pushes with Q-Block1 only, `PUSH_QBLOCK_LOSS=P` at P % loss only, `PUSH_QBLOCK_SEED=N`
//! changes which datagrams the relay drops.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lwm2m_client::sim::InThreadDevice;
use lwm2m_server_shim::packages::qblock::QBlockSenderParams;
use tests::e2e::{Harness, PackageKind};
use tests::relay::{Faults, Relay};
use tests::rest::Rest;

const LEN: usize = 256 * 1024;
const ONE_WAY: Duration = Duration::from_millis(50);
/// MAX_RETRANSMIT (Block1) and NON_MAX_RETRANSMIT (Q-Block1) of the shim: with RFC 7252's 4,
/// a 256-block push at 20 % loss each way fails most of the time either way.
const RETRIES: u8 = 8;

/// One measured push.
struct Outcome {
    time: Duration,
    /// Datagrams both ways during the push, dropped ones included.
    datagrams: u64,
    /// The push's LwM2M status, e.g. `CHANGED(204)`.
    status: String,
}

fn datagrams(relay: &Relay) -> u64 {
    let s = relay.stats();
    s.from_client.load(Ordering::Relaxed) + s.from_server.load(Ordering::Relaxed)
}

/// Pushes the package to a fresh device behind a relay with `loss`.
fn push(qblock: bool, loss: f64, seed: u64) -> Outcome {
    let tag = format!("bench-push-{}-{}", qblock, (loss * 100.0) as u32);
    let h = Harness::start_configured(&tag, |c| {
        c.timing.max_retransmit = u32::from(RETRIES);
        c.push_qblock = qblock.then(|| QBlockSenderParams {
            max_unasked_sets: u32::from(RETRIES),
            ..QBlockSenderParams::default()
        });
    });
    let relay = Relay::start(
        "127.0.0.1:0".parse().expect("addr"),
        h.coap,
        Faults {
            loss,
            delay: ONE_WAY,
            seed,
            ..Faults::default()
        },
    )
    .expect("relay");
    let mut opts = h.device_options(&tag);
    opts.server = format!("coap://{}", relay.addr());
    opts.slot_kib = 320;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", Duration::from_secs(120), || {
        h.registered(&tag)
    });
    h.package("fw.suit", &PackageKind::good("4.0.0", 9, LEN));
    let pkg = std::fs::read(h.dir.join("packages/fw.suit")).expect("package");
    let before = datagrams(&relay);
    let start = Instant::now();
    // As Harness::push, with room for a slow Block1 push (the harness allows 120 s).
    let rest = Rest::new(h.base.clone(), Duration::from_secs(1200));
    let hex: String = pkg.iter().map(|b| format!("{b:02x}")).collect();
    let (_, v) = rest.put(
        &format!("/api/clients/{tag}/5/0/0?format=OPAQUE&timeout=120"),
        &serde_json::json!({"id": 0, "kind": "singleResource", "type": "opaque", "value": hex}),
    );
    let time = start.elapsed();
    Outcome {
        time,
        datagrams: datagrams(&relay) - before,
        status: v["status"]
            .as_str()
            .map_or_else(|| v.to_string(), str::to_owned),
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing to filter.
    let seed = std::env::var("PUSH_QBLOCK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9177_0001);
    println!(
        "256 KiB push, RTT {} ms, 1 KiB blocks",
        2 * ONE_WAY.as_millis()
    );
    println!(
        "{:>5}  {:<9} {:>9} {:>10} {:>10} {:>12}  status",
        "loss", "method", "time", "datagrams", "time/B1", "datagrams/B1"
    );
    let only_qblock = std::env::var("PUSH_QBLOCK").as_deref() == Ok("qblock");
    let losses: Vec<f64> = match std::env::var("PUSH_QBLOCK_LOSS") {
        Ok(l) => vec![l.parse::<f64>().expect("PUSH_QBLOCK_LOSS: a percentage") / 100.0],
        Err(_) => vec![0.0, 0.2],
    };
    for loss in losses {
        let qblock1 = push(true, loss, seed);
        let block1 = if only_qblock {
            None
        } else {
            Some(push(false, loss, seed))
        };
        let rows = [("Block1", block1.as_ref()), ("Q-Block1", Some(&qblock1))];
        for (name, o) in rows.iter().filter_map(|(n, o)| o.map(|o| (n, o))) {
            let base = block1.as_ref().unwrap_or(o);
            println!(
                "{:>4}%  {:<9} {:>8.2}s {:>10} {:>9.2}x {:>11.2}x  {}",
                (loss * 100.0) as u32,
                name,
                o.time.as_secs_f64(),
                o.datagrams,
                o.time.as_secs_f64() / base.time.as_secs_f64(),
                o.datagrams as f64 / base.datagrams as f64,
                o.status
            );
        }
    }
}
