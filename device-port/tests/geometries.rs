//! The slot manager on other flash geometries (sector and write sizes), with a compact
//! power-cut sweep driven through `SlotManager` directly: write units of 1 and 16 bytes change
//! the tail handling, the commit word and the progress words.

mod common;

use device_port::bootloader;
use device_port::image::ImageBuilder;
use device_port::{CutMode, PowerCut, SimFlash};
use object5::author::{build_envelope, signing_key_from_pem, Delivery, PackageSpec, SignAlg};
use object5::manifest::Software;
use object5::slots::{
    BootPath, Layout, ManifestFacts, Phase, SlotManager, Strategy, SuitAuthenticator,
};
use object5::UpdateResult;
use sha2::{Digest, Sha256};

struct Pkg {
    image: Vec<u8>,
    envelope: Vec<u8>,
    facts: ManifestFacts,
}

fn pkg(version: &str, seq: u64, len: usize) -> Pkg {
    let keys = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit/keys/"
    );
    let pem = std::fs::read_to_string(format!("{keys}K1_spec_p256_private.pem")).unwrap();
    let image = ImageBuilder::new("geo", version).total_len(len).build();
    let spec = PackageSpec {
        vendor_id: [1; 16],
        class_id: [2; 16],
        sequence_number: seq,
        version: version.into(),
        name: "geo".into(),
        image: &image,
        delivery: Delivery::Uri("coap://127.0.0.1/geo".into()),
        alg: SignAlg::Esp256,
    };
    let envelope = build_envelope(&spec, &signing_key_from_pem(&pem).unwrap()).unwrap();
    let facts = ManifestFacts {
        sequence: seq,
        size: len as u32,
        digest: Sha256::digest(&image).into(),
        second: None,
    };
    Pkg {
        image,
        envelope,
        facts,
    }
}

/// Factory-provisions, then runs one update with an optional cut, rebooting until settled.
/// Returns (running version, result) and checks every boot runs old or new exactly.
fn life<const E: usize, const W: usize>(
    strategy: Strategy,
    old: &Pkg,
    new: &Pkg,
    anchors: &[object5::manifest::TrustAnchor<'_>],
    cut: Option<PowerCut>,
) -> (String, UpdateResult, u64) {
    let layout = Layout::packed(strategy, E as u32, 16 * 1024);
    let mut flash = SimFlash::<E, W>::new(layout.end() as usize / E);
    let mut buf = vec![0u8; E.max(4096)];
    let mut auth = SuitAuthenticator::new(anchors, Software);
    SlotManager::open(&mut flash, layout, &mut buf)
        .unwrap()
        .provision(&old.facts, &old.envelope, &old.image)
        .unwrap();
    flash.arm(cut);
    for _ in 0..20 {
        if flash.is_powered_off() {
            flash.power_on();
        }
        let step = (|| -> Result<Option<(String, UpdateResult)>, object5::slots::SlotError> {
            let mut slots = SlotManager::open(&mut flash, layout, &mut buf)?;
            let booted = bootloader::boot(&mut slots, &mut auth).map_err(|e| match e {
                bootloader::BootError::Slots(e) => e,
                bootloader::BootError::Image(_) => object5::slots::SlotError::NoBootableImage,
            })?;
            let running = if booted.image.version == "1.0.0" {
                old
            } else {
                new
            };
            let addr = slots.image_address(booted.slot).unwrap() as usize;
            let flash = slots.flash_mut();
            assert_eq!(
                &flash.contents()[addr..addr + running.image.len()],
                &running.image[..],
                "mixed image"
            );
            let status = slots.status();
            match status.phase {
                Some(Phase::Testing) => {
                    slots.confirm()?;
                    Ok(Some((booted.image.version, UpdateResult::Success)))
                }
                Some(Phase::Idle) if status.result != UpdateResult::Initial => {
                    Ok(Some((booted.image.version, status.result)))
                }
                phase => {
                    assert_ne!(booted.path, BootPath::Recovered);
                    if phase != Some(Phase::Downloaded) {
                        let mut w = if phase == Some(Phase::Downloading) {
                            slots.resume_download()?
                        } else {
                            slots.begin_download(&new.facts, &new.envelope)?
                        };
                        // Odd block sizes exercise the tail buffer for every write size.
                        let start = w.offset() as usize;
                        for block in new.image[start..].chunks(333) {
                            w.write(block)?;
                        }
                        w.finish()?;
                    }
                    slots.request_install()?;
                    Ok(None)
                }
            }
        })();
        match step {
            Ok(Some((version, result))) => return (version, result, flash.ops()),
            Ok(None) => {}
            Err(e) => assert!(
                flash.is_powered_off(),
                "{strategy:?} E={E} W={W} {cut:?}: {e}"
            ),
        }
    }
    panic!("did not settle: {strategy:?} E={E} W={W} {cut:?}");
}

fn sweep<const E: usize, const W: usize>() {
    let old = pkg("1.0.0", 1, 16 * 1024);
    let new = pkg("2.0.0", 2, 16 * 1024 - 5);
    let keys = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit/keys/"
    );
    let public = std::fs::read_to_string(format!("{keys}K1_spec_p256_public.pem")).unwrap();
    let sec1 = object5::author::public_sec1_from_pem(&public).unwrap();
    let anchors = [object5::manifest::TrustAnchor::P256(&sec1)];
    for strategy in Strategy::ALL {
        let (version, result, ops) = life::<E, W>(strategy, &old, &new, &anchors, None);
        assert_eq!((version.as_str(), result), ("2.0.0", UpdateResult::Success));
        for k in 0..ops {
            for mode in [CutMode::Clean, CutMode::Partial] {
                let (version, result, _) = life::<E, W>(
                    strategy,
                    &old,
                    &new,
                    &anchors,
                    Some(PowerCut { after_ops: k, mode }),
                );
                let ok = matches!(
                    (version.as_str(), result),
                    ("2.0.0", UpdateResult::Success) | ("1.0.0", UpdateResult::UpdateFailed)
                );
                assert!(
                    ok,
                    "{strategy:?} E={E} W={W} k={k} {mode:?}: {version} {result:?}"
                );
            }
        }
    }
}

#[test]
fn byte_writable_flash_with_2k_sectors() {
    sweep::<2048, 1>();
}

#[test]
fn flash_with_16_byte_write_units_and_8k_sectors() {
    sweep::<8192, 16>();
}
