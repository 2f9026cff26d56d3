//! A complete pull update of a 1 MiB image on loopback, split into download, verify, install
//! and reboot-to-confirmed, with the download printed next to libcoap's coap-client fetching
//! the same file from the same package host in the same run.
//!
//! Both transfers go through the same user-space relay (1024-byte blocks), which timestamps
//! the first and last datagram, so "download" is measured on the wire the same way for both.
//! Run: `cargo bench -p tests --bench pull_update`.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lwm2m_client::sim::InThreadDevice;
use object5::slots::Strategy;
use tests::e2e::{Harness, PackageKind};
use tests::relay::{Faults, Relay};

const RUNS: usize = 5;
const LEN: usize = 1024 * 1024;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Polls `cond` every 5 ms (the harness's own wait polls at 100 ms, too coarse to time).
fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let poll = Duration::from_millis(50);
    let mut ours = Vec::new();
    let mut verify = Vec::new();
    let mut install = Vec::new();
    let mut confirm = Vec::new();
    let mut peer = Vec::new();
    for run in 0..RUNS {
        let h = Harness::start(&format!("bench{run}"));
        let ep = format!("bench{run}");
        let mut opts = h.device_options(&ep);
        opts.strategy = Strategy::AB;
        opts.slot_kib = 1100;
        let _dev = InThreadDevice::start(opts);
        h.wait_until("registration", Duration::from_secs(60), || {
            h.registered(&ep)
        });
        let pkg_len = {
            h.package("fw.suit", &PackageKind::good("2.0.0", 2 + run as u64, LEN));
            std::fs::metadata(h.dir.join("packages/fw.suit"))
                .unwrap()
                .len()
        };
        let relay =
            Relay::start("127.0.0.1:0".parse().unwrap(), h.coap, Faults::default()).unwrap();
        let uri = format!("coap://{}/fw/fw.suit", relay.addr());

        // Ours: write the URI, wait for Downloaded; the wire time is the download, the rest
        // until Downloaded is the final verification (flash re-read and digest).
        let t0 = Instant::now();
        h.write_uri(&ep, &uri);
        // Leave the device alone while it downloads, as coap-client is left alone: each state
        // poll is a REST request and two CoAP reads the device answers between blocks. One
        // request and one response per block cross the relay, so polling starts with the last.
        let blocks = pkg_len.div_ceil(1024);
        wait("the last block", || {
            relay.stats().forwarded.load(Ordering::Relaxed) >= 2 * blocks
        });
        let mut downloaded = None;
        while downloaded.is_none() && t0.elapsed() < Duration::from_secs(120) {
            if h.state_result(&ep) == Some((2, 0)) {
                downloaded = Some(Instant::now());
            }
            std::thread::sleep(poll);
        }
        let downloaded = downloaded.expect("download finished");
        ours.push(relay.wire_time());
        verify.push(downloaded.saturating_duration_since(relay.last_forward()));

        // Install: Execute until the new image registered again; then until it confirmed.
        let reg_before = h.get(&format!("/api/clients/{ep}")).1["registrationId"].clone();
        let t1 = Instant::now();
        h.execute(&ep, "/5/0/2");
        wait("re-registration", || {
            let (s, v) = h.get(&format!("/api/clients/{ep}"));
            s == 200 && v["registrationId"] != reg_before
        });
        let t2 = Instant::now();
        install.push(t2 - t1);
        wait("confirmed", || h.state_result(&ep) == Some((0, 1)));
        confirm.push(t2.elapsed());

        // The peer: coap-client fetches the same package from the same host through the
        // same relay (a fresh one, so its clock starts clean).
        let relay =
            Relay::start("127.0.0.1:0".parse().unwrap(), h.coap, Faults::default()).unwrap();
        let out = h.dir.join("peer.bin");
        let status = Command::new("coap-client-openssl")
            .args(["-m", "get", "-b", "1024", "-o"])
            .arg(&out)
            .arg(format!("coap://{}/fw/fw.suit", relay.addr()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("coap-client-openssl (libcoap3-bin)");
        assert!(status.success());
        let t = relay.wire_time();
        assert_eq!(
            std::fs::metadata(&out).unwrap().len(),
            pkg_len,
            "coap-client got it all"
        );
        peer.push(t);
    }
    // Each run measures both back to back, so the per-run ratio cancels load from elsewhere.
    let mut ratios: Vec<f64> = ours
        .iter()
        .zip(&peer)
        .map(|(o, p)| o.as_secs_f64() / p.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let (d, p) = (median(ours), median(peer));
    println!(
        "pull update of a 1 MiB image over loopback CoAP (1024-byte blocks), median of {RUNS}:"
    );
    println!("  download             {:>8.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "  verify (flash re-read){:>7.1} ms",
        median(verify).as_secs_f64() * 1e3
    );
    println!(
        "  install + reboot     {:>8.1} ms",
        median(install).as_secs_f64() * 1e3
    );
    println!(
        "  reboot-to-confirmed  {:>8.1} ms",
        median(confirm).as_secs_f64() * 1e3
    );
    println!(
        "download: ours {:.1} ms, libcoap coap-client {:.1} ms, median per-run ratio {:.2}x \
         (runs {:?}; target 1.1x)",
        d.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| (r * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
}
