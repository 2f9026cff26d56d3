//! Two images in one package end to end over LwM2M (issue 16, item 4): the shim hosts a
//! signed package carrying the application (component 0) and a second image (component 1),
//! the simulated device pulls it through /5/0/1 over real UDP on loopback, streams both into
//! their regions of the candidate slot, installs and boots them together; State and Update
//! Result go as for one image (OMA LwM2M core TS 1.1 E.6). A failure in either image ends
//! with Update Result 5 and both old images still running, as the device's bootloader shows
//! when its flash is booted again after the device stopped.

use std::time::Duration;

use lwm2m_client::sim::device::{self as sim_device, DeviceOptions};
use lwm2m_client::sim::InThreadDevice;
use object5::author::Delivery;
use tests::e2e::{app_image, second_image, Harness, PackageKind, SecondKind};

const T: Duration = Duration::from_secs(60);

/// A device named `ep` whose factory installed version 1.0.0 of both images.
fn registered(h: &Harness, ep: &str) -> (InThreadDevice, DeviceOptions) {
    let mut opts = h.device_options(ep);
    opts.factory_second_version = Some("1.0.0".into());
    let dev = InThreadDevice::start(opts.clone());
    h.wait_until(&format!("{ep} to register"), T, || h.registered(ep));
    (dev, opts)
}

fn two_images(version: &str, seq: u64, second: Delivery) -> PackageKind {
    let mut kind = PackageKind::good(version, seq, 30_000);
    kind.second = Some(SecondKind {
        version: version.into(),
        len: 10_000,
        delivery: second,
    });
    kind
}

/// Stops the device and boots its flash again: the versions of the application and the
/// second image its bootloader runs.
fn images_after_stop(dev: InThreadDevice, opts: &DeviceOptions) -> (String, Option<String>) {
    dev.stop().unwrap();
    let d = sim_device::open(opts).expect("device flash boots");
    let b = d.booted().expect("an image runs");
    (
        b.image.version.clone(),
        b.second.as_ref().map(|s| s.version.clone()),
    )
}

fn pair(v: &str) -> (String, Option<String>) {
    (v.into(), Some(v.into()))
}

#[test]
fn a_two_image_package_is_pulled_installed_and_booted_as_one_update() {
    let h = Harness::start("two-img");
    let (dev, opts) = registered(&h, "two-img");
    let uri = h.package(
        "fw-2.0.0.suit",
        &two_images("2.0.0", 2, Delivery::Integrated),
    );
    h.pull_and_install("two-img", &uri, "2.0.0");
    assert_eq!(images_after_stop(dev, &opts), pair("2.0.0"));
}

#[test]
fn both_images_fetched_in_a_second_and_third_pull_are_installed() {
    let h = Harness::start("two-img-fetch");
    let (dev, opts) = registered(&h, "two-img-fetch");
    let mut kind = two_images("3.0.0", 3, Delivery::Uri(h.package_uri("radio-3.0.0.bin")));
    kind.delivery = Delivery::Uri(h.package_uri("app-3.0.0.bin"));
    let uri = h.package("manifest-3.0.0.suit", &kind);
    h.pull_and_install("two-img-fetch", &uri, "3.0.0");
    assert_eq!(images_after_stop(dev, &opts), pair("3.0.0"));
}

#[test]
fn a_failure_in_either_image_leaves_both_old_images_running() {
    let h = Harness::start("two-img-bad");
    let (dev, opts) = registered(&h, "two-img-bad");
    // The application changed on the package host (integrated: inside the envelope).
    let uri = h.package(
        "bad-app.suit",
        &two_images("2.0.0", 2, Delivery::Integrated),
    );
    let path = h.dir.join("packages").join("bad-app.suit");
    let mut envelope = std::fs::read(&path).unwrap();
    let app = app_image("2.0.0", 30_000, false);
    let app_start = envelope.windows(64).position(|w| w == &app[..64]).unwrap();
    envelope[app_start + 20_000] ^= 0x01;
    h.put_package("bad-app.suit", &envelope);
    h.pull_refused("two-img-bad", &uri);
    // The second image changed on the package host (fetched after the envelope).
    let kind = two_images("2.0.0", 2, Delivery::Uri(h.package_uri("radio.bin")));
    let uri = h.package("bad-radio.suit", &kind);
    let mut radio = second_image("2.0.0", 10_000);
    radio[9_000] ^= 0x01;
    h.put_package("radio.bin", &radio);
    h.pull_refused("two-img-bad", &uri);
    assert_eq!(images_after_stop(dev, &opts), pair("1.0.0"));
}

/// Pulls a two-image package (application 60 KiB, second image 80 KiB, both integrated or
/// both fetched from their URIs) through a slow relay and resets the device once the second
/// image is 34 KiB in; returns the package blocks of 512 bytes, the application's, and the
/// requests after the reset, once the device reports Downloaded. It then installs both.
fn reset_inside_the_second_image(tag: &str, fetched: bool) -> (u64, u64, u64) {
    let h = Harness::start(tag);
    let ep = tag;
    let mut opts = h.device_options(ep);
    opts.factory_second_version = Some("1.0.0".into());
    opts.slot_kib = 160;
    opts.pull_block_size = 512;
    let dev = InThreadDevice::start(opts.clone());
    h.wait_until(&format!("{ep} to register"), T, || h.registered(ep));
    let relay = h.slow_relay();
    let via_relay = |name: &str| Delivery::Uri(format!("coap://{}/fw/{name}", relay.addr()));
    let (app_len, second_len) = (60 * 1024, 80 * 1024);
    let mut kind = PackageKind::good("2.0.0", 2, app_len);
    if fetched {
        kind.delivery = via_relay("app-2.0.0.bin");
    }
    kind.second = Some(SecondKind {
        version: "2.0.0".into(),
        len: second_len,
        delivery: if fetched {
            via_relay("radio-2.0.0.bin")
        } else {
            Delivery::Integrated
        },
    });
    h.package("big-two.suit", &kind);
    let blocks = (app_len + second_len).div_ceil(512) as u64;
    let app_blocks = app_len.div_ceil(512) as u64;
    let uri = format!("coap://{}/fw/big-two.suit", relay.addr());
    // 30 KiB of the second image, plus the 4 KiB the simulated device holds in RAM before it
    // writes (`WRITE_BEHIND`): then at least 7 of the image's 4 KiB sectors are in the slot
    // wherever the image begins in the package. Without those 8 blocks a reset that came
    // quickly found 6 sectors (one CI run: 114 requests after it, not 106).
    let (before, after) = h.pull_with_reset(ep, &uri, &relay, app_blocks + 68);
    assert!(before < blocks - 10, "the pull ended before the reset");
    h.install(ep, "2.0.0");
    assert_eq!(images_after_stop(dev, &opts), pair("2.0.0"));
    (blocks, app_blocks, after)
}

/// A reset while the second image of an integrated two-image package streams in: the pull
/// resumes inside the second image at its journaled sector (the device persisted where that
/// image's payload begins in the package), not from the package's start nor from the
/// application's last sector, and both new images boot.
#[test]
fn a_reset_inside_the_second_image_resumes_the_pull() {
    let (blocks, app_blocks, after) = reset_inside_the_second_image("two-img-resume", false);
    // As for a fetched image: at least 7 of the second image's 4 KiB sectors are journaled;
    // the package's blocks hold a few bytes of CBOR more.
    let second_blocks = blocks - app_blocks;
    assert!(
        after <= second_blocks - 56 + 3,
        "{after} requests after the reset, {blocks} blocks: not resumed in the second image"
    );
}

/// The same reset in a two-stage pull, inside the second fetched image: the device resumes
/// that image's fetch at its journaled sector (the manifest and the application are not
/// asked for again), and both new images boot.
#[test]
fn a_reset_inside_a_fetched_second_image_resumes_its_fetch() {
    let (blocks, app_blocks, after) = reset_inside_the_second_image("two-img-fetch-resume", true);
    // At least 7 of the second image's 4 KiB sectors are journaled, so at most 160 - 56
    // blocks and the block in flight are asked for again.
    let second_blocks = blocks - app_blocks;
    assert!(
        after <= second_blocks - 56 + 2,
        "{after} requests after the reset, {blocks} blocks: not resumed in the image"
    );
}
