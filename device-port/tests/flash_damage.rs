//! A provisioned device whose flash.bin is damaged never provisions itself again (issue 12
//! item 2): an empty, all-0xFF, all-0x00 or garbled flash leaves it in recovery, a garbled
//! journal boots the newest image that verifies, and in every case the anti-rollback floor is
//! kept (its second copy in the key-value store) and the damage is reported.

mod common;

use common::{download, Fixture};
use device_port::device::{PROVISIONED_KEY, SECTOR_SIZE};
use device_port::{DeviceError, FlashDamage, SimDevice};
use object5::slots::{BootPath, SlotError, Strategy, VerifyError};
use std::path::{Path, PathBuf};

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "device-port-damage-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A state directory whose device was provisioned (1.0.0, floor 1), then updated to 2.0.0
/// and confirmed (floor 2). Returns the journal sectors as they were before the confirm.
fn updated_device(fx: &Fixture, dir: &Path) -> Vec<u8> {
    let mut device = SimDevice::open(dir, fx.config(Strategy::Swap)).unwrap();
    assert_eq!(device.booted().unwrap().image.version, "1.0.0");
    download(&mut device, &fx.good).unwrap();
    assert_eq!(device.reboot().unwrap().path, BootPath::Test);
    let journal = fx.config(Strategy::Swap).layout().journal as usize;
    let before_confirm = device.flash().contents()[journal..journal + 2 * SECTOR_SIZE].to_vec();
    device.confirm().unwrap();
    assert_eq!(device.slots().unwrap().status().floor, 2);
    before_confirm
}

fn xorshift(seed: &mut u64) -> u8 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed as u8
}

/// The device no longer runs the factory image it would have re-provisioned, its floor is
/// still 2, and a package at the floor is refused.
fn assert_not_reprovisioned(fx: &Fixture, device: &mut SimDevice, what: &str) {
    let slot0 = device.slots().unwrap().image_address(0).unwrap() as usize;
    let factory = &fx.old.image;
    assert_ne!(
        &device.flash().contents()[slot0..slot0 + factory.len()],
        &factory[..],
        "{what}: the factory image was written again"
    );
    let mut slots = device.slots().unwrap();
    assert_eq!(slots.status().floor, 2, "{what}: floor kept");
    assert_eq!(
        slots
            .begin_download(&fx.good.facts, &fx.good.envelope)
            .err(),
        Some(SlotError::Rollback {
            sequence: 2,
            floor: 2
        }),
        "{what}: sequence 2 stays refused"
    );
}

#[test]
fn erased_zeroed_emptied_or_garbled_flash_is_not_reprovisioned_and_keeps_the_floor() {
    let fx = Fixture::new();
    let len = {
        let dir = state_dir("len");
        updated_device(&fx, &dir);
        let l = std::fs::metadata(dir.join("flash.bin")).unwrap().len() as usize;
        let _ = std::fs::remove_dir_all(&dir);
        l
    };
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let garbage: Vec<u8> = (0..len).map(|_| xorshift(&mut seed)).collect();
    let kinds: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("all 0xFF", vec![0xFF; len]),
        ("all 0x00", vec![0x00; len]),
        ("random", garbage),
    ];
    for (what, bytes) in kinds {
        let dir = state_dir(&what.replace(' ', "-"));
        updated_device(&fx, &dir);
        std::fs::write(dir.join("flash.bin"), &bytes).unwrap();
        let mut device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
        assert!(
            device.booted().is_none(),
            "{what}: nothing verifies, nothing runs"
        );
        assert_eq!(
            device.damage().0,
            vec![
                FlashDamage::JournalLost,
                FlashDamage::NoImage([Some(VerifyError::NoHeader); 2]),
                FlashDamage::FloorRestored {
                    journal: 0,
                    kept: 2
                }
            ],
            "{what}"
        );
        assert!(
            device.damage().to_string().starts_with("flash damaged: "),
            "one line: {}",
            device.damage()
        );
        assert_not_reprovisioned(&fx, &mut device, what);
        // Still so after a reset and in a new process: recovery, floor 2.
        assert!(
            matches!(device.reboot(), Err(DeviceError::NoImage)),
            "{what}"
        );
        drop(device);
        let mut device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
        assert!(device.booted().is_none());
        assert_eq!(
            device.damage().0,
            vec![FlashDamage::NoImage([Some(VerifyError::NoHeader); 2])],
            "{what}"
        );
        assert_not_reprovisioned(&fx, &mut device, what);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_garbled_journal_boots_the_newest_image_that_verifies() {
    let fx = Fixture::new();
    let dir = state_dir("journal");
    updated_device(&fx, &dir);
    let journal = fx.config(Strategy::Swap).layout().journal as usize;
    let mut flash = std::fs::read(dir.join("flash.bin")).unwrap();
    let mut seed = 0x0123_4567_89AB_CDEFu64;
    for b in &mut flash[journal..journal + 2 * SECTOR_SIZE] {
        *b = xorshift(&mut seed);
    }
    std::fs::write(dir.join("flash.bin"), &flash).unwrap();
    let mut device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
    let booted = device.booted().unwrap().clone();
    assert_eq!(
        (booted.path, booted.image.version.as_str()),
        (BootPath::Recovered, "2.0.0")
    );
    assert_eq!(device.damage().0, vec![FlashDamage::JournalLost]);
    assert_not_reprovisioned(&fx, &mut device, "garbled journal");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_journal_that_lost_its_newest_records_cannot_lower_the_floor() {
    let fx = Fixture::new();
    let dir = state_dir("torn");
    let before_confirm = updated_device(&fx, &dir);
    // The journal as it was before the confirm (floor 1): as if its newest records were lost.
    let journal = fx.config(Strategy::Swap).layout().journal as usize;
    let mut flash = std::fs::read(dir.join("flash.bin")).unwrap();
    flash[journal..journal + 2 * SECTOR_SIZE].copy_from_slice(&before_confirm);
    std::fs::write(dir.join("flash.bin"), &flash).unwrap();
    let mut device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
    assert_eq!(
        device.damage().0,
        vec![FlashDamage::FloorRestored {
            journal: 1,
            kept: 2
        }]
    );
    assert_eq!(device.slots().unwrap().status().floor, 2);
    drop(device);
    // Restored in the journal itself: the next boot finds nothing to restore.
    let device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
    assert!(!device
        .damage()
        .0
        .iter()
        .any(|d| matches!(d, FlashDamage::FloorRestored { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn provisioning_happens_once_per_state_directory() {
    let fx = Fixture::new();
    let dir = state_dir("once");
    {
        let device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
        assert_eq!(device.booted().unwrap().image.version, "1.0.0");
        assert!(device.is_provisioned().unwrap());
    }
    // A state directory written before the marker existed: its journal proves the factory
    // step ran, so the installed image stays.
    updated_device(&fx, &dir);
    std::fs::remove_file(dir.join("kv").join(PROVISIONED_KEY)).unwrap();
    let device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
    assert_eq!(device.booted().unwrap().image.version, "2.0.0");
    assert!(
        device.is_provisioned().unwrap(),
        "the marker is written back"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
