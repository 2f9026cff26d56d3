//! A networked device whose flash was damaged while it was off (issue 12 items 2 and 3), with
//! the shim as its server: bytes flipped in the running image make the bootloader fall back
//! to the other slot's image, which registers and reports its own version; with no image
//! that verifies the device registers in recovery and a normal pull update brings it back.
//! The factory image is never installed again.

use std::path::Path;
use std::time::Duration;

use device_port::device::SECTOR_SIZE;
use lwm2m_client::sim::InThreadDevice;
use object5::slots::{Layout, Strategy};
use tests::e2e::{Harness, PackageKind};

const IDLE: i64 = 0;
const DOWNLOADED: i64 = 2;
const T: Duration = Duration::from_secs(90);

/// Flips a byte inside the image in slot 0 of the device's flash.bin (it runs swap).
fn damage_slot0_image(state: &Path, slot_kib: u32) {
    let layout = Layout::packed(Strategy::Swap, SECTOR_SIZE as u32, slot_kib * 1024);
    let at = (layout.slots[0] + SECTOR_SIZE as u32 + 1000) as usize;
    let path = state.join("flash.bin");
    let mut flash = std::fs::read(&path).expect("flash.bin");
    flash[at] ^= 0xFF;
    std::fs::write(&path, flash).expect("write flash.bin");
}

fn version(h: &Harness, ep: &str) -> Option<String> {
    h.read_string(ep, "/3/0/3")
}

fn update(h: &Harness, ep: &str, uri: &str, to: &str) {
    h.write_uri(ep, uri);
    h.wait_state(ep, (DOWNLOADED, 0), T);
    h.execute(ep, "/5/0/2");
    h.wait_until(&format!("{to} to run"), T, || {
        version(h, ep).as_deref() == Some(to)
    });
    h.wait_state(ep, (IDLE, 1), T);
}

#[test]
fn a_damaged_image_falls_back_and_no_verified_image_means_recovery_that_takes_an_update() {
    let h = Harness::start("boot-recovery");
    let ep = "boot-recovery";
    let opts = h.device_options(ep);
    let state = opts.state_dir.clone();

    // Factory image, then 2.0.0 installed: swap keeps 1.0.0 in slot 1.
    let dev = InThreadDevice::start(opts.clone());
    h.wait_until("registration", T, || h.registered(ep));
    assert_eq!(version(&h, ep).as_deref(), Some("1.0.0"));
    let v2 = h.package("v2.suit", &PackageKind::good("2.0.0", 2, 20_000));
    update(&h, ep, &v2, "2.0.0");
    dev.stop().expect("device stops");

    // 2.0.0 damaged while the device was off: 1.0.0 runs, the last result stands.
    damage_slot0_image(&state, opts.slot_kib);
    let dev = InThreadDevice::start(opts.clone());
    h.wait_until("1.0.0 to register", T, || {
        version(&h, ep).as_deref() == Some("1.0.0")
    });
    assert_eq!(h.state_result(ep), Some((IDLE, 1)));
    dev.stop().expect("device stops");

    // Now 1.0.0 damaged too (slot 1 holds the damaged 2.0.0): nothing verifies. The device
    // registers in recovery, is not re-provisioned, and takes an update above the floor.
    damage_slot0_image(&state, opts.slot_kib);
    let _dev = InThreadDevice::start(opts);
    h.wait_until("registration in recovery", T, || {
        h.read_string(ep, "/3/0/1").as_deref() == Some("recovery")
    });
    assert_eq!(version(&h, ep).as_deref(), Some(""), "no image runs");
    // The floor stayed at 2: a package with sequence 2 is refused (Update Result 6)...
    h.write_uri(ep, &v2);
    h.wait_state(ep, (IDLE, 6), T);
    // ...and 2.1.0 installs.
    let v21 = h.package("v21.suit", &PackageKind::good("2.1.0", 3, 20_000));
    update(&h, ep, &v21, "2.1.0");
    assert_eq!(h.read_string(ep, "/3/0/1").as_deref(), Some("sim-fw"));
}
