//! Object 5 across resets and power loss, over real UDP with the shim as the server: a reset
//! in each State, a pull interrupted by a reset that resumes instead of restarting (also a
//! two-stage pull's image hosted by aiocoap's file server), a pull that lost its connection
//! continued when its Package URI is written again (by hand, and by a shim job's retry), a
//! package past 4 MiB (block numbers beyond 4096), and black-box runs where the device loses
//! power at a random flash operation of a networked update and still ends with a working image
//! and a truthful State / Update Result.

use std::time::{Duration, SystemTime};

use lwm2m_client::sim::device::CliError;
use lwm2m_client::sim::InThreadDevice;
use object5::author::Delivery;
use tests::e2e::{assert_resumed, slow_relay_to, Harness, PackageKind};
use tests::process::{aiocoap_fileserver, free_udp_port};

const IDLE: i64 = 0;
const DOWNLOADING: i64 = 1;
const DOWNLOADED: i64 = 2;
const T: Duration = Duration::from_secs(90);

/// CoAP MAX_RETRANSMIT of pulls in the tests that cut the package host's link around a reset:
/// 8 requests span at least 150 s at the tests' 300 ms ACK timeout, where the default 4 (9 to
/// 14 s) can run out while a reset takes its time on a loaded machine.
const PATIENT: u8 = 8;

/// The shim and a registered device `ep` with room for a 140 KiB package, pulling 512-byte
/// blocks so that a reset lands in the middle of the transfer; `retransmit` is its pulls'
/// MAX_RETRANSMIT.
fn with_room_for_a_big_package(ep: &str, retransmit: u8) -> (Harness, InThreadDevice) {
    let h = Harness::start(ep);
    let mut opts = h.device_options(ep);
    opts.slot_kib = 160;
    opts.pull_block_size = 512;
    opts.pull_max_retransmit = retransmit;
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    (h, dev)
}

#[test]
fn reset_in_idle_and_downloaded_keeps_state_and_result() {
    let h = Harness::start("reset-states");
    let ep = "reset-states";
    let _dev = InThreadDevice::start(h.device_options(ep));
    h.wait_until("registration", T, || h.registered(ep));
    // Idle with a result: the result survives the reset.
    h.write_uri(ep, &h.package_uri("missing.suit"));
    h.wait_state(ep, (IDLE, 7), T);
    h.reset(ep);
    h.wait_state(ep, (IDLE, 7), T);
    // A scheme the device does not support fails at once (9), and that is kept too.
    h.write_uri(ep, "ftp://127.0.0.1/fw.suit");
    h.wait_state(ep, (IDLE, 9), T);
    h.reset(ep);
    assert_eq!(h.state_result(ep), Some((IDLE, 9)));
    // Downloaded: still Downloaded after the reset, with its package name and version.
    let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 20_000));
    h.write_uri(ep, &uri);
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.reset(ep);
    h.wait_state(ep, (DOWNLOADED, 0), T);
    assert_eq!(h.read_string(ep, "/5/0/7").as_deref(), Some("2.0.0"));
    // And it still installs.
    h.execute(ep, "/5/0/2");
    h.wait_until("2.0.0 to run", T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some("2.0.0")
    });
    h.wait_state(ep, (IDLE, 1), T);
}

#[test]
fn reset_while_downloading_resumes_the_pull() {
    let ep = "resume";
    let (h, _dev) = with_room_for_a_big_package(ep, 4);
    let len = 140 * 1024;
    h.package("big.suit", &PackageKind::good("2.5.0", 2, len));
    h.pull_resumes_and_installs(ep, "big.suit", len.div_ceil(512) as u64, "2.5.0");
}

/// A 140 KiB package (280 blocks of 512 bytes) on the shim behind a slow relay, for a device
/// made by [`with_room_for_a_big_package`]; its pulls are cut once a third went through.
struct CutPull {
    relay: tests::relay::Relay,
    uri: String,
    blocks: u64,
}

impl CutPull {
    fn new(h: &Harness) -> Self {
        let len: usize = 140 * 1024;
        h.package("big.suit", &PackageKind::good("2.5.0", 2, len));
        let relay = h.slow_relay();
        let uri = format!("coap://{}/fw/big.suit", relay.addr());
        Self {
            relay,
            uri,
            blocks: len.div_ceil(512) as u64,
        }
    }

    /// Cuts the link once a third of the blocks were asked for.
    fn cut_after_a_third(&self, h: &Harness) {
        h.wait_until("a third of the blocks", T, || {
            self.relay.requests() > self.blocks / 3
        });
        self.relay.set_cut(true);
    }

    /// Restores the link; the requests so far.
    fn restore(&self) -> u64 {
        let before = self.relay.requests();
        self.relay.set_cut(false);
        before
    }

    /// The transfer after `before` requests asked for the rest only.
    fn assert_resumed(&self, before: u64) {
        assert_resumed(before, self.relay.requests() - before, self.blocks);
    }
}

/// A pull that lost its connection (the package host's link cut until the device gave up:
/// State Idle, Update Result 4) continues where it stood when the server writes the same
/// Package URI again, as Leshan users retry (Leshan issue 367) and the shim's jobs do: the
/// second transfer asks for the rest only, and the package installs. Before, it started over.
#[test]
fn the_same_uri_written_after_a_lost_connection_resumes_the_pull() {
    let ep = "retry-resume";
    let (h, _dev) = with_room_for_a_big_package(ep, 2);
    let pull = CutPull::new(&h);
    h.write_uri(ep, &pull.uri);
    pull.cut_after_a_third(&h);
    h.wait_state(ep, (IDLE, 4), T);
    let before = pull.restore();
    h.write_uri(ep, &pull.uri);
    h.wait_state(ep, (DOWNLOADED, 0), T);
    pull.assert_resumed(before);
    h.install(ep, "2.5.0");
}

/// The shim's firmware job retries a pull that lost its connection by writing the Package URI
/// again (as commercial servers do): the device continues the download instead of starting
/// over, and the job succeeds.
#[test]
fn a_shim_job_retries_a_lost_pull_and_the_device_continues_it() {
    let ep = "job-retry-resume";
    let (h, _dev) = with_room_for_a_big_package(ep, 2);
    let pull = CutPull::new(&h);
    let events = h.events(ep);
    let body = serde_json::json!({"package": "big.suit", "method": "pull", "uri": pull.uri});
    let (status, job) = h.post(
        &format!("/api/clients/{ep}/firmware"),
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].clone();
    pull.cut_after_a_third(&h);
    // The job saw Update Result 4 and writes the URI again: the link is back for that.
    events.wait_for(&["FIRMWARE"], T, |d| d["id"] == id && d["result"] == 4);
    let before = pull.restore();
    let last = events.wait_for(&["FIRMWARE"], T, |d| {
        d["id"] == id && (d["phase"] == "SUCCEEDED" || d["phase"] == "FAILED")
    });
    assert_eq!(last["phase"], "SUCCEEDED", "{last}");
    assert_eq!(last["firmwareVersion"], "2.5.0", "{last}");
    pull.assert_resumed(before);
}

#[test]
fn pull_of_a_package_past_4_mib_uses_block_numbers_beyond_4096() {
    let h = Harness::start("big");
    let ep = "big";
    let mut opts = h.device_options(ep);
    // Two bootable slots: the swap strategy's one-sector progress area bounds its slots.
    opts.strategy = object5::slots::Strategy::AB;
    opts.slot_kib = 4 * 1024 + 256;
    let dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep) || dev.finished());
    assert!(!dev.finished(), "device stopped: {:?}", dev.join());
    let len = 4 * 1024 * 1024 + 100 * 1024; // 4200 blocks of 1 KiB
    let uri = h.package("huge.suit", &PackageKind::good("5.0.0", 2, len));
    h.write_uri(ep, &uri);
    h.wait_state(ep, (DOWNLOADED, 0), Duration::from_secs(240));
    assert_eq!(h.read_string(ep, "/5/0/7").as_deref(), Some("5.0.0"));
}

/// One networked update with a power cut after `cut` flash operations of the first power-on;
/// the device is then powered again (no cut) and the server carries on as an operator would.
fn update_with_power_cut(h: &Harness, ep: &str, cut: u64, partial: bool, uri: &str) {
    let mut opts = h.device_options(ep);
    opts.power_cut_after = Some(cut);
    opts.power_cut_partial = partial;
    let dev = InThreadDevice::start(opts.clone());
    h.wait_until("registration", T, || h.registered(ep) || dev.finished());
    if !dev.finished() {
        h.write_uri(ep, uri);
        h.wait_until("the download or the cut", T, || {
            dev.finished()
                || h.state_result(ep)
                    .is_some_and(|(s, _)| s == DOWNLOADED || s == IDLE)
        });
        if !dev.finished() && h.state_result(ep) == Some((DOWNLOADED, 0)) {
            h.execute(ep, "/5/0/2");
        }
        h.wait_until("the cut", T, || {
            dev.finished() || h.read_string(ep, "/3/0/3").as_deref() == Some("2.0.0")
        });
    }
    let cut_happened = dev.finished();
    if cut_happened {
        assert!(
            matches!(
                dev.join(),
                Err(CliError::Device(device_port::DeviceError::PowerLost))
            ),
            "the device stops only because of the power cut"
        );
    } else {
        drop(dev);
    }
    // Power back, no more cuts: the device boots an image that verifies and says truthfully
    // where the update stands; the server finishes the job from there.
    opts.power_cut_after = None;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration after the cut", T, || {
        h.registered(ep) && h.state_result(ep).is_some()
    });
    let version = h.read_string(ep, "/3/0/3").unwrap();
    assert!(version == "1.0.0" || version == "2.0.0", "booted {version}");
    let (state, result) = h.state_result(ep).unwrap();
    match (version.as_str(), state, result) {
        ("2.0.0", IDLE, 1) => return,
        ("1.0.0", IDLE, 0 | 4 | 5) | ("1.0.0", DOWNLOADING, 0) | ("1.0.0", DOWNLOADED, 0) => {}
        other => panic!("cut after {cut} ops: untruthful state {other:?}"),
    }
    if state == IDLE {
        h.write_uri(ep, uri);
    }
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.execute(ep, "/5/0/2");
    h.wait_until("2.0.0 to run", T, || {
        h.read_string(ep, "/3/0/3").as_deref() == Some("2.0.0")
    });
    h.wait_state(ep, (IDLE, 1), T);
}

#[test]
fn power_cut_at_random_flash_operations_during_a_networked_update() {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    // A clean update of a 30 KB image costs a few hundred flash operations (download,
    // install swap, first boot, confirm); cut uniformly inside that range.
    let mut x = seed | 1;
    for run in 0..3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cut = 1 + x % 300;
        let partial = run % 2 == 1;
        eprintln!("power-cut run {run}: seed {seed}, cut after {cut} ops, partial {partial}");
        let h = Harness::start(&format!("cut{run}"));
        let uri = h.package("fw.suit", &PackageKind::good("2.0.0", 2, 30_000));
        update_with_power_cut(&h, &format!("cut{run}"), cut, partial, &uri);
    }
}

/// A two-stage pull whose image aiocoap's file server hosts (PyPI aiocoap: its own Block2
/// and ETags), cut by a reset while the image streams in: the device resumes that image's
/// fetch from aiocoap at its journaled sector, under aiocoap's ETag, and installs it.
#[test]
fn a_reset_in_a_two_stage_pull_resumes_the_image_from_aiocoaps_file_server() {
    let ep = "resume-aiocoap";
    let (h, _dev) = with_room_for_a_big_package(ep, 4);
    // aiocoap serves the shim's package directory, where the image is written below.
    let port = free_udp_port();
    let _aiocoap = aiocoap_fileserver(&h.dir.join("packages"), port);
    let relay = slow_relay_to(([127, 0, 0, 1], port).into());
    let len = 140 * 1024;
    let mut kind = PackageKind::good("2.5.0", 2, len);
    kind.delivery = Delivery::Uri(format!("coap://{}/image-2.5.0.bin", relay.addr()));
    let uri = h.package("manifest-2.5.0.suit", &kind);
    let blocks = len.div_ceil(512) as u64;
    let (before, after) = h.pull_with_reset(ep, &uri, &relay, blocks / 3);
    assert_resumed(before, after, blocks);
    h.install(ep, "2.5.0");
}

/// A reset after the Package URI was written but before the package's manifest arrived (the
/// host did not answer yet): the device still owes the server that download. It comes back
/// Downloading, pulls the package from its start once the host answers, and installs it.
#[test]
fn a_reset_before_the_first_block_arrives_restarts_the_pull() {
    let h = Harness::start("reset-early");
    let ep = "reset-early";
    let mut opts = h.device_options(ep);
    opts.pull_max_retransmit = PATIENT;
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    h.package("early.suit", &PackageKind::good("2.1.0", 2, 20_000));
    let relay = h.slow_relay();
    relay.set_cut(true);
    let uri = format!("coap://{}/fw/early.suit", relay.addr());
    h.write_uri(ep, &uri);
    h.wait_until("the first block request", T, || relay.from_client() > 0);
    assert_eq!(h.state_result(ep), Some((DOWNLOADING, 0)));
    h.reset(ep);
    let after_reset = h.state_result(ep);
    relay.set_cut(false);
    assert_eq!(after_reset, Some((DOWNLOADING, 0)), "after the reset");
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.install(ep, "2.1.0");
}

/// A reset in the middle of a push (Block1 to /5/0/0), on a device that pulled an earlier
/// package: a push cannot continue (the server sends the package), so the device reports
/// Idle with Update Result 4 and does not turn the push into a pull of the old Package URI.
#[test]
fn a_reset_in_a_push_after_a_pull_ends_with_connection_lost() {
    let h = Harness::start("push-reset");
    let ep = "push-reset";
    let mut opts = h.device_options(ep);
    opts.slot_kib = 160;
    // Registered through a slow relay, so that the push lasts long enough to be cut.
    let relay = h.slow_relay();
    opts.server = format!("coap://{}", relay.addr());
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration", T, || h.registered(ep));
    let uri = h.package("old.suit", &PackageKind::good("2.0.0", 2, 20_000));
    h.write_uri(ep, &uri);
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.install(ep, "2.0.0");
    h.package("new.suit", &PackageKind::good("3.0.0", 3, 140 * 1024));
    let pkg = std::fs::read(h.dir.join("packages/new.suit")).expect("package");
    std::thread::scope(|s| {
        s.spawn(|| h.push_within(ep, &pkg, 5));
        h.wait_until("the push to begin", T, || {
            h.state_result(ep) == Some((DOWNLOADING, 0))
        });
        h.reset(ep);
    });
    h.wait_until("the device to settle", T, || {
        h.state_result(ep).is_some_and(|(s, _)| s != DOWNLOADING)
    });
    assert_eq!(h.state_result(ep), Some((IDLE, 4)));
    assert_eq!(h.read_string(ep, "/3/0/3").as_deref(), Some("2.0.0"));
}

/// A two-stage pull cut by a reset while its image streams in, after which the operator
/// replaced the package (a new manifest and a new image under the same names): the image's
/// entity tag no longer matches the stored part, so the device starts the package again from
/// the Package URI, gets the new manifest and image, and installs the new version.
#[test]
fn an_image_replaced_under_a_resume_restarts_the_package() {
    let ep = "resume-replaced";
    let (h, _dev) = with_room_for_a_big_package(ep, PATIENT);
    let relay = h.slow_relay();
    let len = 140 * 1024;
    let two_stage = |version: &str, seq: u64| {
        let mut kind = PackageKind::good(version, seq, len);
        kind.delivery = Delivery::Uri(format!("coap://{}/fw/image.bin", relay.addr()));
        h.package("manifest.suit", &kind)
    };
    // The replacement is built first and kept, so that swapping it in takes two file writes
    // while the link is cut (a pull waits out about 9 s of CoAP retransmissions).
    two_stage("2.6.0", 3);
    let read = |name: &str| std::fs::read(h.dir.join("packages").join(name)).expect("package");
    let next = [read("manifest.suit"), read("image.bin")];
    let uri = two_stage("2.5.0", 2);
    h.write_uri(ep, &uri);
    let requests = || relay.requests();
    let blocks = len.div_ceil(512) as u64;
    h.wait_until("a third of the image", T, || requests() > blocks / 3);
    relay.set_cut(true);
    h.put_package("manifest.suit", &next[0]);
    h.put_package("image.bin", &next[1]);
    h.reset(ep);
    relay.set_cut(false);
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.install(ep, "2.6.0");
}
