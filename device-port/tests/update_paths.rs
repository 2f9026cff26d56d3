//! The update paths one at a time on a SimDevice: confirm, revert, rejection of an
//! unauthentic or corrupted candidate, anti-rollback, busy states, resume, recovery from an
//! unreadable journal, overwrite-only without revert, and a file-backed device across
//! "processes".

mod common;

use common::{download, Fixture, Package, IMAGE_LEN};
use device_port::device::SECTOR_SIZE;
use device_port::{CutMode, DeviceError, PowerCut, SimDevice};
use embedded_storage::nor_flash::NorFlash;
use object5::slots::{BootPath, Phase, SlotError, Strategy, VerifyError};
use object5::{State, UpdateResult};

fn status(device: &mut SimDevice) -> object5::slots::Status {
    device.slots().expect("slots").status()
}

#[test]
fn good_update_test_boots_then_confirms_for_every_strategy() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        assert_eq!(device.booted().unwrap().image.version, "1.0.0");
        assert_eq!(status(&mut device).floor, 1);
        {
            let mut slots = device.slots().unwrap();
            let mut w = slots
                .begin_download(&fx.good.facts, &fx.good.envelope)
                .unwrap();
            w.write(&fx.good.image[..5000]).unwrap();
            assert_eq!(slots.status().state, State::Downloading);
        }
        {
            let mut slots = device.slots().unwrap();
            let mut w = slots.resume_download().unwrap();
            assert_eq!(
                w.offset(),
                SECTOR_SIZE as u32,
                "resume at the last whole sector"
            );
            let at = w.offset() as usize;
            w.write(&fx.good.image[at..]).unwrap();
            w.finish().unwrap();
            let s = slots.status();
            assert_eq!(
                (s.state, s.result),
                (State::Downloaded, UpdateResult::Initial)
            );
            slots.request_install().unwrap();
            assert_eq!(slots.status().state, State::Updating);
        }
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Test, "2.0.0"),
            "{strategy:?}"
        );
        // No new download while the image is unconfirmed.
        let refused = device
            .slots()
            .unwrap()
            .begin_download(&fx.good.facts, &fx.good.envelope)
            .err();
        assert_eq!(refused, Some(SlotError::Busy(Phase::Testing)));
        device.confirm().unwrap();
        let s = status(&mut device);
        assert_eq!(
            (s.state, s.result, s.floor),
            (State::Idle, UpdateResult::Success, 2)
        );
        let booted = device.reboot().unwrap();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Normal, "2.0.0")
        );
        // The old package is now below the floor.
        let old = device
            .slots()
            .unwrap()
            .begin_download(&fx.old.facts, &fx.old.envelope)
            .err();
        assert_eq!(
            old,
            Some(SlotError::Rollback {
                sequence: 1,
                floor: 2
            })
        );
    }
}

#[test]
fn unconfirmed_image_reverts_with_result_8() {
    let fx = Fixture::new();
    for strategy in [Strategy::Swap, Strategy::AB] {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        download(&mut device, &fx.bad).unwrap();
        let booted = device.reboot().unwrap().clone();
        assert_eq!(booted.path, BootPath::Test);
        assert!(booted.image.fails_self_test);
        assert!(matches!(device.confirm(), Err(DeviceError::SelfTestFailed)));
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Reverted, "1.0.0"),
            "{strategy:?}"
        );
        let s = status(&mut device);
        // OMA ETS 779: the package stays stored and installable (State 2, Result 8).
        assert_eq!(
            (s.state, s.result, s.floor),
            (State::Downloaded, UpdateResult::UpdateFailed, 1)
        );
        // The result keeps its value across further reboots.
        device.reboot().unwrap();
        assert_eq!(status(&mut device).result, UpdateResult::UpdateFailed);
    }
}

#[test]
fn overwrite_only_cannot_revert_and_keeps_the_new_image_under_test() {
    let fx = Fixture::new();
    let mut device = SimDevice::in_memory(fx.config(Strategy::Overwrite)).unwrap();
    download(&mut device, &fx.bad).unwrap();
    for _ in 0..3 {
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Test, "2.0.1-broken")
        );
        assert_eq!(status(&mut device).state, State::Updating);
    }
    assert_eq!(
        status(&mut device).floor,
        2,
        "the old image is gone, so the floor rose at install"
    );
}

#[test]
fn candidate_signed_by_an_untrusted_key_is_rejected_at_boot() {
    let fx = Fixture::new();
    let keys = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit/keys/"
    );
    let k2 = std::fs::read_to_string(format!("{keys}K2_encdep_p256_private.pem")).unwrap();
    let spec = object5::author::PackageSpec {
        vendor_id: [0x11; 16],
        class_id: [0x22; 16],
        sequence_number: 2,
        version: "2.0.0".into(),
        name: "sim-fw".into(),
        image: &fx.good.image,
        delivery: object5::author::Delivery::Uri("coap://127.0.0.1/fw".into()),
        alg: object5::author::SignAlg::Esp256,
    };
    let key = object5::author::signing_key_from_pem(&k2).unwrap();
    let forged = Package {
        image: fx.good.image.clone(),
        envelope: object5::author::build_envelope(&spec, &key).unwrap(),
        facts: fx.good.facts,
    };
    for strategy in Strategy::ALL {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        download(&mut device, &forged).unwrap();
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            booted.path,
            BootPath::Rejected(VerifyError::Authentication),
            "{strategy:?}"
        );
        assert_eq!(booted.image.version, "1.0.0");
        let s = status(&mut device);
        assert_eq!(
            (s.state, s.result, s.floor),
            (State::Idle, UpdateResult::IntegrityFailure, 1)
        );
    }
}

#[test]
fn candidate_corrupted_in_flash_is_rejected_at_boot_and_at_download() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        download(&mut device, &fx.good).unwrap();
        // Clear bits of one image byte in the candidate slot (a flash fault after download).
        let addr = device.slots().unwrap().image_address(1).unwrap() + 40_000;
        let mut byte = [0u8; 4];
        device.flash().contents()[addr as usize..addr as usize + 4]
            .iter()
            .zip(byte.iter_mut())
            .for_each(|(s, d)| *d = s & 0x7F);
        device.flash_mut().write(addr, &byte).unwrap();
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            booted.path,
            BootPath::Rejected(VerifyError::Digest),
            "{strategy:?}"
        );
        assert_eq!(booted.image.version, "1.0.0");
        assert_eq!(status(&mut device).result, UpdateResult::IntegrityFailure);
    }
    // A download whose bytes differ from the manifest never reaches Downloaded.
    let mut device = SimDevice::in_memory(fx.config(Strategy::Swap)).unwrap();
    let mut slots = device.slots().unwrap();
    let mut w = slots
        .begin_download(&fx.good.facts, &fx.good.envelope)
        .unwrap();
    w.write(&fx.bad.image).unwrap();
    assert_eq!(w.finish(), Err(SlotError::Verify(VerifyError::Digest)));
    let s = slots.status();
    assert_eq!(
        (s.state, s.result),
        (State::Idle, UpdateResult::IntegrityFailure)
    );
    assert_eq!(slots.request_install(), Err(SlotError::Busy(Phase::Idle)));
    let mut w = slots
        .begin_download(&fx.good.facts, &fx.good.envelope)
        .unwrap();
    assert_eq!(
        w.write(&vec![0; IMAGE_LEN + 1]),
        Err(SlotError::SizeMismatch)
    );
}

#[test]
fn unreadable_journal_recovers_the_newest_verifying_image() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        download(&mut device, &fx.good).unwrap();
        device.reboot().unwrap();
        device.confirm().unwrap();
        // Both journal sectors gone (e.g. a foreign tool erased them).
        device.flash_mut().erase(0, 2 * SECTOR_SIZE as u32).unwrap();
        let booted = device.reboot().unwrap().clone();
        assert_eq!(
            (booted.path, booted.image.version.as_str()),
            (BootPath::Recovered, "2.0.0"),
            "{strategy:?}"
        );
        let s = status(&mut device);
        assert_eq!((s.phase, s.floor), (Some(Phase::Idle), 2));
    }
}

#[test]
fn file_backed_device_survives_processes_and_a_power_cut_from_the_setting() {
    let fx = Fixture::new();
    let dir = std::env::temp_dir().join(format!("device-port-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
        assert_eq!(device.booted().unwrap().image.version, "1.0.0");
    }
    {
        let mut device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
        download(&mut device, &fx.good).unwrap();
    }
    // Next "process": power lost after 20 flash operations of the swap.
    let mut config = fx.config(Strategy::Swap);
    config.power_cut = Some(PowerCut {
        after_ops: 20,
        mode: CutMode::Partial,
    });
    assert!(matches!(
        SimDevice::open(&dir, config),
        Err(DeviceError::PowerLost)
    ));
    let mut device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
    assert_eq!(device.booted().unwrap().path, BootPath::Test);
    assert_eq!(device.booted().unwrap().image.version, "2.0.0");
    device.confirm().unwrap();
    drop(device);
    let device = SimDevice::open(&dir, fx.config(Strategy::Swap)).unwrap();
    assert_eq!(
        (
            device.booted().unwrap().path,
            device.booted().unwrap().image.version.as_str()
        ),
        (BootPath::Normal, "2.0.0")
    );
    assert!(device.flash().erase_counts().iter().sum::<u32>() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn package_uri_name_and_version_persist_across_reboots() {
    let fx = Fixture::new();
    let mut device = SimDevice::in_memory(fx.config(Strategy::AB)).unwrap();
    {
        let mut slots = device.slots().unwrap();
        slots.set_package_info(b"sim-fw", b"2.0.0").unwrap();
        slots
            .request_download(b"coap://127.0.0.1:5683/fw/2.0.0")
            .unwrap();
    }
    // The request survives the reboot: the device still owes the server that pull.
    device.reboot().unwrap();
    assert_eq!(device.booted().unwrap().path, BootPath::Normal);
    let mut slots = device.slots().unwrap();
    let s = slots.status();
    assert_eq!(
        (s.phase, s.state, s.result),
        (
            Some(Phase::Requested),
            State::Downloading,
            UpdateResult::Initial
        )
    );
    assert_eq!(slots.package_uri(), b"coap://127.0.0.1:5683/fw/2.0.0");
    assert_eq!(
        (slots.package_name(), slots.package_version()),
        (&b"sim-fw"[..], &b"2.0.0"[..])
    );
    // A URI too long to keep is journaled empty: the request stands, its URI does not.
    assert_eq!(
        slots.request_download(&[b'x'; 256]),
        Err(SlotError::FieldTooLong)
    );
    assert_eq!(slots.status().phase, Some(Phase::Requested));
    assert_eq!(slots.package_uri(), b"");
}

/// A pull that lost its connection keeps its journaled offset, across a reboot too: the same
/// URI written again continues it (`retry_download` is true, the writer resumes at that
/// sector and the image completes and installs), while another URI, a push, or another
/// ending starts from 0.
#[test]
fn the_same_uri_after_a_lost_connection_resumes_where_the_journal_stood() {
    const URI: &[u8] = b"coap://127.0.0.1:5683/fw/2.0.0";
    let fx = Fixture::new();
    let mut device = SimDevice::in_memory(fx.config(Strategy::AB)).unwrap();
    let half = IMAGE_LEN / 2;
    let lose_half = |slots: &mut object5::slots::SlotManager<'_, _>, ending| {
        {
            let mut w = slots
                .begin_download(&fx.good.facts, &fx.good.envelope)
                .unwrap();
            for block in fx.good.image[..half].chunks(1000) {
                w.write(block).unwrap();
            }
        }
        slots.abort_download(ending).unwrap();
    };
    let mut slots = device.slots().unwrap();
    assert!(!slots.retry_download(URI).unwrap(), "nothing to resume yet");
    for (ending, uri) in [
        (
            UpdateResult::ConnectionLost,
            &b"coap://127.0.0.1:5683/fw/other"[..],
        ),
        (UpdateResult::ConnectionLost, b""),
        (UpdateResult::IntegrityFailure, URI),
    ] {
        slots.request_download(URI).unwrap();
        lose_half(&mut slots, ending);
        assert!(
            !slots.retry_download(uri).unwrap(),
            "{ending:?} then {uri:?}"
        );
        let s = slots.status();
        assert_eq!((s.phase, s.download_offset), (Some(Phase::Requested), 0));
    }
    lose_half(&mut slots, UpdateResult::ConnectionLost);
    let s = slots.status();
    assert_eq!(
        (s.phase, s.result),
        (Some(Phase::Idle), UpdateResult::ConnectionLost)
    );
    let stood = s.download_offset;
    assert!(stood > 0, "the download journaled progress");
    device.reboot().unwrap();

    let mut slots = device.slots().unwrap();
    assert!(slots.retry_download(URI).unwrap(), "the same URI resumes");
    assert_eq!(slots.status().phase, Some(Phase::Downloading));
    let mut w = slots.resume_download().unwrap();
    assert_eq!(w.offset(), stood);
    let start = w.offset() as usize;
    for block in fx.good.image[start..].chunks(1000) {
        w.write(block).unwrap();
    }
    w.finish().unwrap();
    slots.request_install().unwrap();
    device.reboot().unwrap();
    assert_eq!(device.booted().unwrap().image.version, "2.0.0");
}

#[test]
fn garbage_in_journal_and_headers_never_panics() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let base = fx.factory_flash(strategy);
        let layout = fx.config(strategy).layout();
        let mut x = 0x9E37_79B9u32;
        for round in 0..20 {
            let mut flash =
                device_port::device::DeviceFlash::new(base.contents().len() / SECTOR_SIZE);
            flash.restore_from(&base).unwrap();
            // Clear random bits (all a write can do) in the journal and the slot-1 header.
            for region in [
                layout.journal,
                layout.journal + SECTOR_SIZE as u32,
                layout.slots[1],
            ] {
                let mut noise = vec![0u8; SECTOR_SIZE];
                for b in noise.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = if round % 2 == 0 {
                        x as u8
                    } else {
                        (x as u8) | 0x0F
                    };
                }
                let current =
                    flash.contents()[region as usize..region as usize + SECTOR_SIZE].to_vec();
                let cleared: Vec<u8> = current.iter().zip(&noise).map(|(c, n)| c & n).collect();
                flash.write(region, &cleared).unwrap();
            }
            let mut device = SimDevice::with_flash(
                flash,
                fx.config(strategy),
                device_port::sim_services::SimKv::Memory(Default::default()),
            );
            let booted = device.boot().unwrap().clone();
            // Slot 0 still holds the verified factory image: that is what runs.
            assert_eq!(
                (booted.slot, booted.image.version.as_str()),
                (0, "1.0.0"),
                "{strategy:?} round {round}"
            );
        }
    }
}

#[test]
fn replacing_a_downloaded_candidate_never_reports_downloaded_for_a_broken_one() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let mut device = SimDevice::in_memory(fx.config(strategy)).unwrap();
        {
            let mut slots = device.slots().unwrap();
            let mut w = slots
                .begin_download(&fx.bad.facts, &fx.bad.envelope)
                .unwrap();
            w.write(&fx.bad.image).unwrap();
            w.finish().unwrap();
        }
        let base = device.flash().contents().to_vec();
        let sectors = base.len() / SECTOR_SIZE;
        let mut snapshot = device_port::device::DeviceFlash::new(sectors);
        snapshot.restore_from(device.flash()).unwrap();
        // Cut at every operation of the replacement download, clean and partial.
        for k in 0..40 {
            for mode in [CutMode::Clean, CutMode::Partial] {
                let mut flash = device_port::device::DeviceFlash::new(sectors);
                flash.restore_from(&snapshot).unwrap();
                let mut d = SimDevice::with_flash(
                    flash,
                    fx.config(strategy),
                    device_port::sim_services::SimKv::Memory(Default::default()),
                );
                d.boot().unwrap();
                d.flash_mut().arm(Some(PowerCut { after_ops: k, mode }));
                let attempt = {
                    let mut slots = d.slots().unwrap();
                    slots
                        .begin_download(&fx.good.facts, &fx.good.envelope)
                        .and_then(|mut w| {
                            w.write(&fx.good.image)?;
                            w.finish()
                        })
                };
                if attempt.is_ok() {
                    continue;
                }
                d.reboot().unwrap();
                let mut slots = d.slots().unwrap();
                if slots.status().state == State::Downloaded {
                    let candidate = slots.candidate_slot().unwrap();
                    let holds_bad = common::slot_holds(&mut slots, candidate, &fx.bad);
                    let holds_good = common::slot_holds(&mut slots, candidate, &fx.good);
                    assert!(
                        holds_bad || holds_good,
                        "{strategy:?} k={k} {mode:?}: Downloaded without a valid package"
                    );
                }
            }
        }
    }
}

#[test]
fn a_detached_download_continues_block_by_block_and_results_persist() {
    let fx = Fixture::new();
    let mut device = SimDevice::in_memory(fx.config(Strategy::Swap)).unwrap();
    let mut dl = device
        .slots()
        .unwrap()
        .begin_download(&fx.good.facts, &fx.good.envelope)
        .unwrap()
        .detach();
    // One block per "event", the manager reopened each time as a client would.
    for block in fx.good.image.chunks(1024) {
        let mut slots = device.slots().unwrap();
        let mut w = slots.writer(dl).unwrap();
        w.write(block).unwrap();
        dl = w.detach();
    }
    let mut slots = device.slots().unwrap();
    slots.writer(dl).unwrap().finish().unwrap();
    assert_eq!(slots.status().state, State::Downloaded);
    // A stale cursor is refused once the download is no longer journaled.
    assert_eq!(
        slots.writer(dl).err(),
        Some(SlotError::Busy(Phase::Downloaded))
    );
    slots.set_result(UpdateResult::Deferred).unwrap();
    device.reboot().unwrap();
    let s = status(&mut device);
    assert_eq!(
        (s.state, s.result),
        (State::Downloaded, UpdateResult::Deferred)
    );
}

#[test]
fn bootloader_with_an_identity_rejects_a_package_for_another_class() {
    let fx = Fixture::new();
    // The fixture's packages are vendor 0x11.., class 0x22...
    let mut config = fx.config(Strategy::AB);
    config.identity = Some(([0x11; 16], [0x33; 16]));
    // The factory image is for class 0x22 too: provisioning such a device is refused...
    assert!(matches!(
        SimDevice::in_memory(config.clone()),
        Err(DeviceError::Factory(VerifyError::Manifest))
    ));
    // ...so start from a flash provisioned elsewhere.
    let flash = fx.factory_flash(Strategy::AB);
    let kv = device_port::sim_services::SimKv::Memory(Default::default());
    let mut device = SimDevice::with_flash(flash, config, kv);
    device.boot().unwrap();
    download(&mut device, &fx.good).unwrap();
    let booted = device.reboot().unwrap().clone();
    assert_eq!(booted.path, BootPath::Rejected(VerifyError::Manifest));
    let mut config = fx.config(Strategy::AB);
    config.identity = Some(([0x11; 16], [0x22; 16]));
    let mut device = SimDevice::in_memory(config).unwrap();
    download(&mut device, &fx.good).unwrap();
    assert_eq!(device.reboot().unwrap().path, BootPath::Test);
}
