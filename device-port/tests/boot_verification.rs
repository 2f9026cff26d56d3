//! The bootloader verifies the image it is about to run on every boot (issue 12 item 3, like
//! MCUboot's validate-primary-slot): bytes flipped in the running image make it fall back to
//! the other slot's image when that one verifies, else stay in recovery, which runs no image
//! and still takes an update. The fallback copy survives a power cut at any flash operation.

mod common;

use common::{download, Fixture, Package};
use device_port::device::SECTOR_SIZE;
use device_port::{CutMode, DeviceError, FlashDamage, PowerCut, SimDevice};
use embedded_storage::nor_flash::NorFlash;
use object5::slots::{BootPath, Phase, Strategy, VerifyError};
use object5::UpdateResult;

/// Downloads and installs `pkg`, test-boots it and confirms it.
fn install(device: &mut SimDevice, pkg: &Package) {
    download(device, pkg).unwrap();
    assert_eq!(device.reboot().unwrap().path, BootPath::Test);
    device.confirm().unwrap();
}

/// Flips the bits of the byte at `addr` (erase and rewrite its sector: NOR writes only clear).
fn flip(device: &mut SimDevice, addr: u32) {
    let sector = addr / SECTOR_SIZE as u32 * SECTOR_SIZE as u32;
    let mut bytes =
        device.flash().contents()[sector as usize..sector as usize + SECTOR_SIZE].to_vec();
    bytes[(addr - sector) as usize] ^= 0xFF;
    let flash = device.flash_mut();
    flash.erase(sector, sector + SECTOR_SIZE as u32).unwrap();
    flash.write(sector, &bytes).unwrap();
}

/// Address of byte `offset` of the image in `slot`.
fn image_byte(device: &mut SimDevice, slot: usize, offset: u32) -> u32 {
    device.slots().unwrap().image_address(slot).unwrap() + offset
}

#[test]
fn a_damaged_running_image_falls_back_to_the_other_slot_and_keeps_the_floor() {
    let fx = Fixture::new();
    // What runs after the fallback: the old image where the other slot keeps it (swap moved
    // it to slot 1, A/B never moved it), the new one where overwrite left its copy in slot 1.
    for (strategy, after) in [
        (Strategy::Swap, "1.0.0"),
        (Strategy::AB, "1.0.0"),
        (Strategy::Overwrite, "2.0.0"),
    ] {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        install(&mut device, &fx.good);
        let running = device.booted().unwrap().slot;
        let at = image_byte(&mut device, running, 30_000);
        flip(&mut device, at);
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Fallback(Some(VerifyError::Digest)), after),
            "{strategy:?}"
        );
        assert_eq!(
            device.damage().0,
            vec![FlashDamage::ImageFailed(Some(VerifyError::Digest))]
        );
        let s = device.slots().unwrap().status();
        assert_eq!(
            (s.phase, s.result, s.floor),
            (Some(Phase::Idle), UpdateResult::Success, 2),
            "{strategy:?}: journaled Idle, the last update's result and floor kept"
        );
        // The fallback is journaled: the next boot is an ordinary one.
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Normal, after),
            "{strategy:?}"
        );
        assert!(device.damage().is_empty());
    }
}

#[test]
fn a_damaged_manifest_in_the_running_slot_falls_back_too() {
    let fx = Fixture::new();
    let mut device = SimDevice::in_memory(fx.config(Strategy::AB)).unwrap();
    install(&mut device, &fx.good);
    let header = image_byte(&mut device, 1, 0) - SECTOR_SIZE as u32;
    // A byte of the stored envelope (inside its signature, near the end).
    let at = header + 64 + fx.good.envelope.len() as u32 - 10;
    flip(&mut device, at);
    let booted = device.reboot().unwrap().clone();
    assert!(
        matches!(booted.path, BootPath::Fallback(Some(_))),
        "{:?}",
        booted.path
    );
    assert_eq!((booted.slot, booted.image.version.as_str()), (0, "1.0.0"));
}

#[test]
fn with_no_image_that_verifies_the_device_stays_in_recovery_and_takes_an_update() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        let at = image_byte(&mut device, 0, 100);
        flip(&mut device, at);
        assert!(
            matches!(device.reboot(), Err(DeviceError::NoImage)),
            "{strategy:?}"
        );
        assert!(device.booted().is_none(), "nothing runs");
        assert_eq!(
            device.damage().0,
            vec![FlashDamage::NoImage([
                Some(VerifyError::Digest),
                Some(VerifyError::NoHeader)
            ])],
            "{strategy:?}"
        );
        // It stays so across resets, without writing the journal again.
        let wear = |d: &SimDevice| {
            let f = d.flash();
            f.erase_counts().iter().chain(f.write_counts()).sum::<u32>()
        };
        let before = wear(&device);
        assert!(matches!(device.reboot(), Err(DeviceError::NoImage)));
        assert_eq!(wear(&device), before);
        // The recovery state takes an update: download, install, test boot, confirm.
        assert_eq!(device.slots().unwrap().status().floor, 1);
        download(&mut device, &fx.good).unwrap();
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Test, "2.0.0"),
            "{strategy:?}"
        );
        device.confirm().unwrap();
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Normal, "2.0.0"),
            "{strategy:?}"
        );
        let s = device.slots().unwrap().status();
        assert_eq!((s.result, s.floor), (UpdateResult::Success, 2));
    }
}

#[test]
fn the_fallback_copy_survives_a_power_cut_at_every_flash_operation() {
    let fx = Fixture::new();
    for (strategy, after) in [(Strategy::Swap, "1.0.0"), (Strategy::Overwrite, "2.0.0")] {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        install(&mut device, &fx.good);
        let at = image_byte(&mut device, 0, 30_000);
        flip(&mut device, at);
        let sectors = device.flash().contents().len() / SECTOR_SIZE;
        let mut damaged = device_port::device::DeviceFlash::new(sectors);
        damaged.restore_from(device.flash()).unwrap();
        // Operations of an uninterrupted fallback boot.
        device.flash_mut().arm(None);
        device.reboot().unwrap();
        let total = device.flash().ops();
        assert!(total > 10, "{strategy:?}: the fallback copies sectors");
        for k in 0..total {
            for mode in [CutMode::Clean, CutMode::Partial] {
                let mut flash = device_port::device::DeviceFlash::new(sectors);
                flash.restore_from(&damaged).unwrap();
                let mut config = fx.config(strategy);
                config.power_cut = Some(PowerCut { after_ops: k, mode });
                let mut d = SimDevice::with_flash(
                    flash,
                    config,
                    device_port::sim_services::SimKv::Memory(Default::default()),
                );
                assert!(
                    matches!(d.boot(), Err(DeviceError::PowerLost)),
                    "{strategy:?} k={k} {mode:?}"
                );
                let booted = d.reboot().unwrap().clone();
                assert!(
                    matches!(booted.path, BootPath::Fallback(_)),
                    "{strategy:?} k={k} {mode:?}: {:?}",
                    booted.path
                );
                assert_eq!(booted.image.version, after, "{strategy:?} k={k} {mode:?}");
                let addr = d.slots().unwrap().image_address(0).unwrap() as usize;
                let want = if after == "2.0.0" {
                    &fx.good.image
                } else {
                    &fx.old.image
                };
                assert_eq!(
                    &d.flash().contents()[addr..addr + want.len()],
                    &want[..],
                    "{strategy:?} k={k} {mode:?}: the primary holds the image exactly"
                );
                assert_eq!(d.slots().unwrap().status().floor, 2);
            }
        }
    }
}
