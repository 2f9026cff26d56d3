//! Two images in one package on the simulated device (issue 16, item 4): the application
//! (component 0) and a second image (component 1) stream through the package receiver into
//! their regions of the candidate slot, install, boot, confirm and revert together; a failure
//! in either leaves both old images running, and a power cut during install or revert never
//! leaves a new image beside an old one.

use device_port::device::DeviceFlash;
use device_port::image::ImageBuilder;
use device_port::{CutMode, FactoryImage, PowerCut, SimConfig, SimDevice};
use object5::author::{
    build_envelope_two, public_pem_from_private, public_sec1_from_pem, AuthorKey, Delivery,
    PackageSpec, SecondImage, SignAlg,
};
use object5::manifest::{Software, TrustAnchor};
use object5::package::{Outcome, PackageError, PackageReceiver, PayloadStarts, ResumeAt};
use object5::slots::{BootPath, Strategy};
use object5::{State, UpdateResult};

use tests::device_policy::{policy, CLASS, VENDOR};
const CAPACITY: u32 = 64 * 1024;
const APP_LEN: usize = 30_000;
const SECOND_LEN: usize = 12_000;

struct Keys {
    pem: String,
    sec1: Vec<u8>,
}

fn keys() -> Keys {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit/keys/K1_spec_p256_private.pem"
    );
    let pem = std::fs::read_to_string(path).unwrap();
    let sec1 = public_sec1_from_pem(&public_pem_from_private(&pem).unwrap()).unwrap();
    Keys { pem, sec1 }
}

/// The application and second image of version `version`.
fn images(version: &str, app_fails_self_test: bool) -> (Vec<u8>, Vec<u8>) {
    let app = ImageBuilder::new("sim-fw", version)
        .fails_self_test(app_fails_self_test)
        .total_len(APP_LEN)
        .build();
    let second = ImageBuilder::new("sim-radio", version)
        .total_len(SECOND_LEN)
        .build();
    (app, second)
}

fn package(k: &Keys, app: &[u8], second: &[u8], seq: u64, delivery: [Delivery; 2]) -> Vec<u8> {
    let [d0, d1] = delivery;
    let spec = PackageSpec {
        vendor_id: VENDOR,
        class_id: CLASS,
        sequence_number: seq,
        version: format!("{seq}.0.0"),
        name: "sim-fw".into(),
        image: app,
        delivery: d0,
        alg: SignAlg::Esp256,
    };
    let second = SecondImage {
        image: second,
        name: "sim-radio".into(),
        version: format!("{seq}.0.0"),
        delivery: d1,
    };
    build_envelope_two(&spec, &second, &AuthorKey::from_pem(&k.pem).unwrap()).unwrap()
}

fn integrated() -> [Delivery; 2] {
    [Delivery::Integrated, Delivery::Integrated]
}

/// Keys and the integrated two-image 2.0.0 package, with where its two images begin in it.
fn integrated_2_0_0() -> (Keys, Vec<u8>, usize, usize) {
    let k = keys();
    let (app, second) = images("2.0.0", false);
    let pkg = package(&k, &app, &second, 2, integrated());
    let app_at = pkg.windows(64).position(|w| w == &app[..64]).unwrap();
    let second_at = pkg.windows(64).position(|w| w == &second[..64]).unwrap();
    (k, pkg, app_at, second_at)
}

/// A device whose factory installed version 1.0.0 of both images.
fn device(k: &Keys, strategy: Strategy) -> SimDevice {
    let (app, second) = images("1.0.0", false);
    let factory = FactoryImage {
        envelope: package(
            k,
            &app,
            &second,
            1,
            [
                Delivery::Uri("coap://h/app".into()),
                Delivery::Uri("coap://h/radio".into()),
            ],
        ),
        image: app,
        second: Some(second),
    };
    let mut config = SimConfig::new(vec![k.sec1.clone()], factory);
    config.strategy = strategy;
    config.image_capacity = CAPACITY;
    let d = SimDevice::in_memory(config).unwrap();
    assert_eq!(running(&d), ("1.0.0".into(), Some("1.0.0".into())));
    d
}

/// Versions of the running application and second image.
fn running(d: &SimDevice) -> (String, Option<String>) {
    let b = d.booted().expect("an image runs");
    (
        b.image.version.clone(),
        b.second.as_ref().map(|s| s.version.clone()),
    )
}

/// A copy of the device's whole flash, to start runs from.
fn snapshot(d: &SimDevice) -> DeviceFlash {
    let sectors = d.flash().contents().len() / device_port::device::SECTOR_SIZE;
    let mut copy = DeviceFlash::new(sectors);
    copy.restore_from(d.flash()).unwrap();
    copy
}

/// Marks the Downloaded package for install, reboots, and returns what runs then.
fn install_and_boot(d: &mut SimDevice) -> (String, Option<String>) {
    d.slots().unwrap().request_install().unwrap();
    d.reboot().unwrap();
    running(d)
}

fn pair(v: &str) -> (String, Option<String>) {
    (v.into(), Some(v.into()))
}

/// Streams `pkg` in 512-byte blocks, serving fetches from `fetches` (URI, bytes); on a
/// refusal journals Idle with its result, as the Object 5 path does.
fn download(
    d: &mut SimDevice,
    k: &Keys,
    pkg: &[u8],
    fetches: &[(&str, &[u8])],
) -> Result<Outcome, PackageError> {
    let floor = d.slots().unwrap().status().floor;
    let anchors = [TrustAnchor::P256(&k.sec1)];
    let mut buf = [0u8; 2048];
    let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, floor), Software);
    let mut slots = d.slots().unwrap();
    let result = (|| -> Result<Outcome, PackageError> {
        for block in pkg.chunks(512) {
            rx.feed(&mut slots, block)?;
        }
        let outcome = rx.finish(&mut slots)?;
        fetch_images(&mut rx, &mut slots, outcome, fetches)
    })();
    if let Err(e) = result {
        let _ = slots.abort_download(e.update_result());
    }
    result
}

/// Serves the images the package names from `fetches` (URI, bytes) for as long as the
/// receiver asks, each from byte `from` of the first.
fn fetch_images(
    rx: &mut PackageReceiver<'_, '_, Software>,
    slots: &mut object5::slots::SlotManager<'_, &mut device_port::SimFlash>,
    mut outcome: Outcome,
    fetches: &[(&str, &[u8])],
) -> Result<Outcome, PackageError> {
    while outcome == Outcome::FetchImage {
        outcome = fetch_image(rx, slots, fetches, 0)?;
    }
    Ok(outcome)
}

/// Streams the image the receiver names, from byte `from`, in 700-byte blocks.
fn fetch_image(
    rx: &mut PackageReceiver<'_, '_, Software>,
    slots: &mut object5::slots::SlotManager<'_, &mut device_port::SimFlash>,
    fetches: &[(&str, &[u8])],
    from: usize,
) -> Result<Outcome, PackageError> {
    let uri = String::from_utf8(rx.fetch_uri().unwrap().to_vec()).unwrap();
    let (_, bytes) = fetches.iter().find(|(u, _)| *u == uri).unwrap();
    for block in bytes[from..].chunks(700) {
        rx.feed_fetched(slots, block)?;
    }
    rx.finish_fetched(slots)
}

fn status(d: &mut SimDevice) -> (State, UpdateResult) {
    let s = d.slots().unwrap().status();
    (s.state, s.result)
}

#[test]
fn both_images_install_boot_and_confirm_together_with_every_strategy() {
    let k = keys();
    for strategy in Strategy::ALL {
        let mut d = device(&k, strategy);
        let (app, second) = images("2.0.0", false);
        let pkg = package(&k, &app, &second, 2, integrated());
        assert_eq!(
            download(&mut d, &k, &pkg, &[]).unwrap(),
            Outcome::Downloaded
        );
        assert_eq!(status(&mut d), (State::Downloaded, UpdateResult::Initial));
        assert_eq!(install_and_boot(&mut d), pair("2.0.0"), "{strategy:?}");
        d.confirm().unwrap();
        assert_eq!(status(&mut d), (State::Idle, UpdateResult::Success));
        // The next boot verifies both again and runs them.
        d.reboot().unwrap();
        assert_eq!(running(&d), pair("2.0.0"), "{strategy:?}");
    }
}

#[test]
fn an_unconfirmed_pair_reverts_as_a_pair() {
    let k = keys();
    for strategy in [Strategy::Swap, Strategy::AB] {
        let mut d = device(&k, strategy);
        let (app, second) = images("2.0.0", true);
        let pkg = package(&k, &app, &second, 2, integrated());
        download(&mut d, &k, &pkg, &[]).unwrap();
        assert_eq!(install_and_boot(&mut d), pair("2.0.0"));
        assert!(d.confirm().is_err(), "the test image fails its self-test");
        let booted = d.reboot().unwrap();
        assert_eq!(booted.path, BootPath::Reverted);
        assert_eq!(running(&d), pair("1.0.0"), "{strategy:?}");
        assert_eq!(status(&mut d).1, UpdateResult::UpdateFailed);
    }
}

#[test]
fn a_failure_in_either_image_leaves_both_old_images_running() {
    let (k, pkg, app_at, second_at) = integrated_2_0_0();
    for (what, at) in [
        ("application", app_at + 20_000),
        ("second image", second_at + 5_000),
    ] {
        let mut d = device(&k, Strategy::Swap);
        let mut bad = pkg.clone();
        bad[at] ^= 0x40;
        let e = download(&mut d, &k, &bad, &[]).unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::IntegrityFailure, "{what}");
        assert_eq!(
            status(&mut d),
            (State::Idle, UpdateResult::IntegrityFailure)
        );
        // Nothing to install, and the next boot runs the old pair.
        assert!(d.slots().unwrap().request_install().is_err(), "{what}");
        d.reboot().unwrap();
        assert_eq!(running(&d), pair("1.0.0"), "{what}");
    }
}

#[test]
fn the_bootloader_refuses_a_candidate_whose_second_image_changed_in_flash() {
    use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
    let k = keys();
    let mut d = device(&k, Strategy::Swap);
    let (app, second) = images("2.0.0", false);
    download(
        &mut d,
        &k,
        &package(&k, &app, &second, 2, integrated()),
        &[],
    )
    .unwrap();
    {
        let mut slots = d.slots().unwrap();
        let slot = slots.candidate_slot().unwrap();
        let facts = slots.stored_facts(slot).unwrap().unwrap();
        let region = slots.image_address(slot).unwrap()
            + facts.second_offset(slots.layout().sector_size).unwrap();
        // Clear one bit of the second image (NOR writes only clear bits).
        let at = region + 4000;
        let mut word = [0u8; 4];
        slots.flash_mut().read(at, &mut word).unwrap();
        let bit = word.iter().position(|b| *b != 0).unwrap();
        word[bit] &= word[bit] - 1;
        slots.flash_mut().write(at, &word).unwrap();
        slots.request_install().unwrap();
    }
    let booted = d.reboot().unwrap();
    assert!(
        matches!(booted.path, BootPath::Rejected(_)),
        "{:?}",
        booted.path
    );
    assert_eq!(running(&d), pair("1.0.0"));
    assert_eq!(
        status(&mut d),
        (State::Idle, UpdateResult::IntegrityFailure)
    );
}

#[test]
fn fetched_images_of_a_two_stage_package_land_in_their_regions() {
    let k = keys();
    let mut d = device(&k, Strategy::AB);
    let (app, second) = images("3.0.0", false);
    let (u0, u1) = ("coap://h/app-3", "coap://h/radio-3");
    let pkg = package(
        &k,
        &app,
        &second,
        3,
        [Delivery::Uri(u0.into()), Delivery::Uri(u1.into())],
    );
    let wrong: Vec<u8> = second.iter().map(|b| b ^ 1).collect();
    let e = download(&mut d, &k, &pkg, &[(u0, &app), (u1, &wrong)]).unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::IntegrityFailure);
    assert_eq!(
        download(&mut d, &k, &pkg, &[(u0, &app), (u1, &second)]).unwrap(),
        Outcome::Downloaded
    );
    assert_eq!(install_and_boot(&mut d), pair("3.0.0"));
}

/// Feeds `pkg[..cut]` to a new download, resets the device and returns where the payloads
/// started (what a client persists for the resume).
fn interrupted_at(d: &mut SimDevice, k: &Keys, pkg: &[u8], cut: usize) -> PayloadStarts {
    let floor = d.slots().unwrap().status().floor;
    let anchors = [TrustAnchor::P256(&k.sec1)];
    let mut buf = [0u8; 2048];
    let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, floor), Software);
    let start = {
        let mut slots = d.slots().unwrap();
        for block in pkg[..cut].chunks(512) {
            rx.feed(&mut slots, block).unwrap();
        }
        rx.payload_starts()
    };
    d.reboot().unwrap();
    assert_eq!(status(d).0, State::Downloading);
    start
}

/// After the reset: continues the download from where the receiver says (the package from
/// an offset, or a fetched image from one), to the end.
fn resume(
    d: &mut SimDevice,
    k: &Keys,
    pkg: &[u8],
    start: PayloadStarts,
    fetches: &[(&str, &[u8])],
) -> Result<(ResumeAt, Outcome), PackageError> {
    let floor = d.slots().unwrap().status().floor;
    let anchors = [TrustAnchor::P256(&k.sec1)];
    let mut buf = [0u8; 2048];
    let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, floor), Software);
    let mut slots = d.slots().unwrap();
    let at = rx.resume_from(&mut slots, start)?;
    let outcome = match at {
        ResumeAt::Package(from) => {
            for block in pkg[from as usize..].chunks(512) {
                rx.feed(&mut slots, block)?;
            }
            rx.finish(&mut slots)?
        }
        ResumeAt::Image(from) => fetch_image(&mut rx, &mut slots, fetches, from as usize)?,
    };
    Ok((at, fetch_images(&mut rx, &mut slots, outcome, fetches)?))
}

/// [`resume`] of an integrated package: where in the package it continued.
fn resume_package(
    d: &mut SimDevice,
    k: &Keys,
    pkg: &[u8],
    start: PayloadStarts,
) -> Result<(u64, Outcome), PackageError> {
    match resume(d, k, pkg, start, &[])? {
        (ResumeAt::Package(from), outcome) => Ok((from, outcome)),
        (at, _) => panic!("an integrated package continued at {at:?}"),
    }
}

/// A download cut by a reset continues where the slot journal stood: inside either image
/// from its last journaled sector (the second image's payload start was persisted once it
/// arrived); between the images, before that start was known, from the application's last
/// sector, where the receiver finds the second image's member again. Either way both images
/// land, verify and boot.
#[test]
fn an_interrupted_two_image_download_resumes() {
    let (k, pkg, app_at, second_at) = integrated_2_0_0();
    let sector = 4096;
    let second_region = APP_LEN.div_ceil(sector) * sector;
    for (what, cut, in_second) in [
        ("inside the application", app_at + 20_000, false),
        ("at the application's last byte", app_at + APP_LEN, false),
        ("between the images", second_at - 2, false),
        ("inside the second image", second_at + 9_000, true),
    ] {
        let mut d = device(&k, Strategy::Swap);
        let start = interrupted_at(&mut d, &k, &pkg, cut);
        assert_eq!(start.first, Some(app_at as u64), "{what}");
        assert_eq!(
            start.second,
            in_second.then_some(second_at as u64),
            "{what}"
        );
        let journaled = d.slots().unwrap().status().download_offset as usize;
        let (from, outcome) = resume_package(&mut d, &k, &pkg, start).unwrap();
        assert_eq!(outcome, Outcome::Downloaded, "{what}");
        let expected = if in_second {
            assert!(journaled > second_region, "{what}: {journaled}");
            second_at + journaled - second_region
        } else if journaled < APP_LEN {
            app_at + journaled
        } else {
            app_at + (APP_LEN - 1) / sector * sector
        };
        assert_eq!(from as usize, expected, "{what}");
        assert!(
            (from as usize) < cut && (from as usize) > app_at,
            "{what}: from {from}"
        );
        assert_eq!(install_and_boot(&mut d), pair("2.0.0"), "{what}");
    }
}

/// A persisted second payload start that cannot be right (inside the application's payload,
/// as a damaged key-value store might give) is not used: the download continues in the
/// application's last sector, where the second image's member is read again, and the pair
/// still boots.
#[test]
fn an_impossible_second_payload_start_falls_back_to_the_applications_last_sector() {
    let (k, pkg, app_at, second_at) = integrated_2_0_0();
    let mut d = device(&k, Strategy::Swap);
    let mut start = interrupted_at(&mut d, &k, &pkg, second_at + 9_000);
    assert_eq!(start.second, Some(second_at as u64));
    start.second = Some(app_at as u64 + 100);
    let (from, outcome) = resume_package(&mut d, &k, &pkg, start).unwrap();
    assert_eq!(outcome, Outcome::Downloaded);
    assert_eq!(from as usize, app_at + (APP_LEN - 1) / 4096 * 4096);
    assert_eq!(install_and_boot(&mut d), pair("2.0.0"));
}

/// In a two-stage pull the fetched image itself continues at its journaled sector: the
/// receiver names its URI and the offset in it (the manifest is not fetched again), for the
/// application as for the second image.
#[test]
fn an_interrupted_fetched_image_continues_at_its_journaled_sector() {
    let k = keys();
    let (app, second) = images("2.0.0", false);
    let (u0, u1) = ("coap://h/app-2", "coap://h/radio-2");
    let pkg = package(
        &k,
        &app,
        &second,
        2,
        [Delivery::Uri(u0.into()), Delivery::Uri(u1.into())],
    );
    let fetches: [(&str, &[u8]); 2] = [(u0, &app), (u1, &second)];
    let sector = 4096u64;
    let second_at = (APP_LEN as u64).div_ceil(sector) * sector;
    for (cut_in, cut, uri, image_at) in [(0, 20_000, u0, 0), (1, 9_000, u1, second_at)] {
        let mut d = device(&k, Strategy::Swap);
        let floor = d.slots().unwrap().status().floor;
        let anchors = [TrustAnchor::P256(&k.sec1)];
        {
            let mut buf = [0u8; 2048];
            let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, floor), Software);
            let mut slots = d.slots().unwrap();
            for block in pkg.chunks(512) {
                rx.feed(&mut slots, block).unwrap();
            }
            let mut outcome = rx.finish(&mut slots).unwrap();
            for i in 0..cut_in {
                assert_eq!(outcome, Outcome::FetchImage, "image {i}");
                outcome = fetch_image(&mut rx, &mut slots, &fetches, 0).unwrap();
            }
            assert_eq!(outcome, Outcome::FetchImage);
            assert_eq!(rx.fetch_uri(), Some(uri.as_bytes()));
            for block in fetches[cut_in].1[..cut].chunks(700) {
                rx.feed_fetched(&mut slots, block).unwrap();
            }
        }
        d.reboot().unwrap();
        let journaled = u64::from(d.slots().unwrap().status().download_offset);
        let (at, outcome) = resume(&mut d, &k, &pkg, PayloadStarts::default(), &fetches).unwrap();
        assert_eq!(at, ResumeAt::Image(journaled - image_at), "image {cut_in}");
        assert!(journaled - image_at >= 4096, "image {cut_in}: {journaled}");
        assert_eq!(outcome, Outcome::Downloaded, "image {cut_in}");
        assert_eq!(
            install_and_boot(&mut d),
            pair("2.0.0"),
            "image {cut_in} at {uri}"
        );
    }
}

/// What arrives after a resume is checked as before: a changed byte of the second image ends
/// the download with Update Result 5 and the old pair keeps running; a stored head that no
/// longer authenticates (the trust anchors changed) refuses to continue, so the package is
/// downloaded again from its start.
#[test]
fn a_resumed_two_image_download_is_checked_like_a_new_one() {
    let (k, pkg, app_at, second_at) = integrated_2_0_0();

    let mut d = device(&k, Strategy::Swap);
    let start = interrupted_at(&mut d, &k, &pkg, app_at + 20_000);
    let mut bad = pkg.clone();
    bad[second_at + 5_000] ^= 0x40;
    let e = resume_package(&mut d, &k, &bad, start).unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::IntegrityFailure, "{e}");
    d.slots()
        .unwrap()
        .abort_download(e.update_result())
        .unwrap();
    assert!(d.slots().unwrap().request_install().is_err());
    d.reboot().unwrap();
    assert_eq!(running(&d), pair("1.0.0"));

    let mut d = device(&k, Strategy::Swap);
    let start = interrupted_at(&mut d, &k, &pkg, app_at + 20_000);
    let other = object5::author::generate_key_pem().unwrap().1;
    let other = public_sec1_from_pem(&other).unwrap();
    let anchors = [TrustAnchor::P256(&other)];
    let mut buf = [0u8; 2048];
    let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, 1), Software);
    let mut slots = d.slots().unwrap();
    assert_eq!(
        rx.resume_from(&mut slots, start),
        Err(PackageError::NotResumable)
    );
    assert_eq!(
        PackageError::NotResumable.update_result(),
        UpdateResult::ConnectionLost
    );
}

/// Cuts the power at every flash operation of a two-image download (both images integrated,
/// or both fetched in a two-stage pull), as a clean cut and as a torn write or interrupted
/// erase; after the reset the download resumes (or starts again when nothing was journaled
/// yet) and the new pair boots.
fn power_cut_sweep(fetched: bool) {
    let k = keys();
    let (app, second) = images("2.0.0", false);
    let (u0, u1) = ("coap://h/app-2", "coap://h/radio-2");
    let (pkg, fetches, start) = if fetched {
        let fetched = [Delivery::Uri(u0.into()), Delivery::Uri(u1.into())];
        let fetches: Vec<(&str, &[u8])> = vec![(u0, &app), (u1, &second)];
        (package(&k, &app, &second, 2, fetched), fetches, None)
    } else {
        let pkg = package(&k, &app, &second, 2, integrated());
        let at = |image: &[u8]| pkg.windows(64).position(|w| w == &image[..64]);
        let start = at(&app).map(|at| at as u64);
        (pkg.clone(), Vec::new(), start.zip(at(&second)))
    };
    // Both payload starts persisted, or (a cut came before the second one was) only the
    // first: then a cut inside the second image continues in the application's last sector.
    let (both, first_only) = match start {
        Some((first, second)) => (
            PayloadStarts {
                first: Some(first),
                second: Some(second as u64),
            },
            PayloadStarts {
                first: Some(first),
                second: None,
            },
        ),
        None => Default::default(),
    };
    let fetches = &fetches[..];
    let mut d = device(&k, Strategy::AB);
    let factory = snapshot(&d);
    d.flash_mut().power_on();
    let before = d.flash().ops();
    download(&mut d, &k, &pkg, fetches).unwrap();
    let total = d.flash().ops() - before;
    let mut resumed = 0;
    for ops in 0..total {
        for mode in [CutMode::Clean, CutMode::Partial] {
            d.flash_mut().restore_from(&factory).unwrap();
            d.flash_mut().power_on();
            d.boot().unwrap();
            d.flash_mut().arm(Some(PowerCut {
                after_ops: ops,
                mode,
            }));
            let cut = download(&mut d, &k, &pkg, fetches).is_err();
            assert!(cut, "no cut after {ops} ops");
            d.flash_mut().power_on();
            d.reboot().unwrap();
            let start = if ops % 2 == 0 { both } else { first_only };
            let outcome = match status(&mut d).0 {
                State::Downloading => {
                    resumed += 1;
                    resume(&mut d, &k, &pkg, start, fetches).map(|(_, o)| o)
                }
                _ => download(&mut d, &k, &pkg, fetches),
            };
            assert_eq!(
                outcome,
                Ok(Outcome::Downloaded),
                "cut after {ops} ops ({mode:?})"
            );
            assert_eq!(
                install_and_boot(&mut d),
                pair("2.0.0"),
                "cut after {ops} ops ({mode:?})"
            );
        }
    }
    assert!(resumed > 50, "only {resumed} resumed of {total} ops");

    // A download cut inside the second image, before its payload start was persisted,
    // resumes in the application's last sector (the journal moves back first) or, fetched,
    // inside the second image: cut that resume at every flash operation too, then resume
    // again.
    let start = first_only;
    let late = total * 9 / 10;
    let cut_late = |d: &mut SimDevice| {
        d.flash_mut().restore_from(&factory).unwrap();
        d.flash_mut().power_on();
        d.boot().unwrap();
        d.flash_mut().arm(Some(PowerCut {
            after_ops: late,
            mode: CutMode::Clean,
        }));
        assert!(download(d, &k, &pkg, fetches).is_err());
        d.flash_mut().power_on();
        d.reboot().unwrap();
        let s = d.slots().unwrap().status();
        assert_eq!(s.state, State::Downloading);
        assert!(
            s.download_offset as usize > APP_LEN,
            "{}",
            s.download_offset
        );
    };
    cut_late(&mut d);
    let before = d.flash().ops();
    resume(&mut d, &k, &pkg, start, fetches).unwrap();
    let resume_ops = d.flash().ops() - before;
    for ops in 0..resume_ops {
        for mode in [CutMode::Clean, CutMode::Partial] {
            cut_late(&mut d);
            d.flash_mut().arm(Some(PowerCut {
                after_ops: ops,
                mode,
            }));
            assert!(
                resume(&mut d, &k, &pkg, start, fetches).is_err(),
                "no cut after {ops}"
            );
            d.flash_mut().power_on();
            d.reboot().unwrap();
            let outcome = match status(&mut d).0 {
                State::Downloading => resume(&mut d, &k, &pkg, start, fetches).map(|(_, o)| o),
                other => panic!("{other:?} after a cut of the resume at {ops} ({mode:?})"),
            };
            assert_eq!(
                outcome,
                Ok(Outcome::Downloaded),
                "resume cut at {ops} ({mode:?})"
            );
            assert_eq!(
                install_and_boot(&mut d),
                pair("2.0.0"),
                "resume cut at {ops} ({mode:?})"
            );
        }
    }
    assert!(
        resume_ops > 10,
        "only {resume_ops} flash operations in the resume"
    );
}

#[test]
fn a_power_cut_anywhere_in_a_two_image_download_resumes_to_the_new_pair() {
    power_cut_sweep(false);
}

#[test]
fn a_power_cut_anywhere_in_a_two_stage_two_image_download_resumes_to_the_new_pair() {
    power_cut_sweep(true);
}

/// Cuts the power at every flash operation of the boot that installs a two-image package
/// (swap), and of the boot that reverts it: whatever boots afterwards is the new pair or the
/// old pair, never one new image beside an old one.
#[test]
fn a_power_cut_anywhere_in_install_or_revert_never_mixes_the_images() {
    let k = keys();
    let mut d = device(&k, Strategy::Swap);
    let (app, second) = images("2.0.0", true);
    let pkg = package(&k, &app, &second, 2, integrated());
    download(&mut d, &k, &pkg, &[]).unwrap();
    d.slots().unwrap().request_install().unwrap();
    let pending = snapshot(&d);
    d.reboot().unwrap();
    assert_eq!(running(&d), pair("2.0.0"));
    let testing = snapshot(&d);
    let mut cuts = 0;
    for (snapshot, after) in [(&pending, "2.0.0"), (&testing, "1.0.0")] {
        d.flash_mut().restore_from(snapshot).unwrap();
        d.flash_mut().power_on();
        d.boot().unwrap();
        let total = d.flash().ops();
        for ops in 0..total {
            for mode in [CutMode::Clean, CutMode::Partial] {
                d.flash_mut().restore_from(snapshot).unwrap();
                d.flash_mut().power_on();
                d.flash_mut().arm(Some(PowerCut {
                    after_ops: ops,
                    mode,
                }));
                if d.boot().is_ok() {
                    let (a, s) = running(&d);
                    assert_eq!(Some(a), s, "cut after {ops} ops ({mode:?})");
                }
                d.reboot().unwrap();
                assert_eq!(running(&d), pair(after), "cut after {ops} ops ({mode:?})");
                cuts += 1;
            }
        }
    }
    assert!(cuts > 100, "only {cuts} cuts");
}
