//! The device's download path end to end on the simulated device: a signed SUIT package,
//! streamed in network-sized blocks, lands in the candidate slot only after authentication,
//! reboots into the new image, and every refusal leaves the running firmware alone.

use device_port::image::{self, ImageBuilder};
use device_port::{FactoryImage, SimConfig, SimDevice};
use object5::author::{
    build_envelope, public_pem_from_private, public_sec1_from_pem, signing_key_from_pem, Delivery,
    PackageSpec, SignAlg,
};
use object5::manifest::{Software, TrustAnchor};
use object5::package::{Outcome, PackageError, PackageReceiver, PayloadStarts, ResumeAt};
use object5::slots::Strategy;
use object5::{State, UpdateResult};

use tests::device_policy::{policy, CLASS, VENDOR};
const CAPACITY: u32 = 64 * 1024;

struct Keys {
    pem: String,
    sec1: Vec<u8>,
}

fn keys(name: &str) -> Keys {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit/keys/"
    );
    let pem = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
    let sec1 = public_sec1_from_pem(&public_pem_from_private(&pem).unwrap()).unwrap();
    Keys { pem, sec1 }
}

/// The package of `image` as the simulated device's vendor and class, signed with ES256.
fn spec<'a>(image: &'a [u8], seq: u64, version: &str, delivery: Delivery) -> PackageSpec<'a> {
    PackageSpec {
        vendor_id: VENDOR,
        class_id: CLASS,
        sequence_number: seq,
        version: version.into(),
        name: "sim-fw".into(),
        image,
        delivery,
        alg: SignAlg::Esp256,
    }
}

fn envelope(k: &Keys, image: &[u8], seq: u64, version: &str, delivery: Delivery) -> Vec<u8> {
    let spec = spec(image, seq, version, delivery);
    build_envelope(&spec, &signing_key_from_pem(&k.pem).unwrap()).unwrap()
}

fn device(k: &Keys, strategy: Strategy) -> SimDevice {
    let factory_image = ImageBuilder::new("sim-fw", "1.0.0")
        .total_len(20_000)
        .build();
    let factory = FactoryImage {
        envelope: envelope(
            k,
            &factory_image,
            1,
            "1.0.0",
            Delivery::Uri("coap://h/fw".into()),
        ),
        image: factory_image,
        second: None,
    };
    let mut config = SimConfig::new(vec![k.sec1.clone()], factory);
    config.strategy = strategy;
    config.image_capacity = CAPACITY;
    let mut d = SimDevice::in_memory(config).unwrap();
    assert_eq!(d.booted().unwrap().image.version, "1.0.0");
    d.slots().unwrap(); // journal readable
    d
}

/// Streams `pkg` in 512-byte blocks; returns the receiver's verdict.
fn download(d: &mut SimDevice, k: &Keys, pkg: &[u8]) -> Result<Outcome, PackageError> {
    receive(d, &[TrustAnchor::P256(&k.sec1)], &[], pkg)
}

/// [`download`] with the given trust anchors and payload decryption keys.
fn receive(
    d: &mut SimDevice,
    anchors: &[TrustAnchor<'_>],
    keys: &[object5::manifest::DecryptionKey<'_>],
    pkg: &[u8],
) -> Result<Outcome, PackageError> {
    let floor = d.slots().unwrap().status().floor;
    let mut buf = [0u8; 2048];
    let mut rx =
        PackageReceiver::new(&mut buf, policy(anchors, floor), Software).with_decryption_keys(keys);
    let mut slots = d.slots().unwrap();
    let result = (|| {
        for block in pkg.chunks(512) {
            rx.feed(&mut slots, block)?;
        }
        rx.finish(&mut slots)
    })();
    if let Err(e) = result {
        // What the Object 5 path does on any refusal: Idle with the error's result.
        let _ = slots.abort_download(e.update_result());
    }
    result
}

#[test]
fn integrated_package_downloads_installs_and_confirms() {
    let k = keys("K1_spec_p256_private.pem");
    let mut d = device(&k, Strategy::Swap);
    let new = ImageBuilder::new("sim-fw", "2.0.0")
        .total_len(40_000)
        .build();
    let pkg = envelope(&k, &new, 2, "2.0.0", Delivery::Integrated);
    assert_eq!(download(&mut d, &k, &pkg).unwrap(), Outcome::Downloaded);
    {
        let mut slots = d.slots().unwrap();
        assert_eq!(slots.status().state, State::Downloaded);
        assert_eq!(slots.package_version(), b"2.0.0");
        assert_eq!(slots.package_name(), b"sim-fw");
        slots.request_install().unwrap();
    }
    let booted = d.reboot().unwrap();
    assert_eq!(booted.image.version, "2.0.0");
    d.confirm().unwrap();
    let s = d.slots().unwrap().status();
    assert_eq!(
        (s.state, s.result, s.floor),
        (State::Idle, UpdateResult::Success, 2)
    );
}

#[test]
fn refusals_map_to_update_results_and_keep_the_running_image() {
    let k = keys("K1_spec_p256_private.pem");
    let other = keys("K2_encdep_p256_private.pem");
    let new = ImageBuilder::new("sim-fw", "2.0.0")
        .total_len(30_000)
        .build();
    let cases: Vec<(&str, Vec<u8>, UpdateResult)> = vec![
        (
            "signed by an unknown key",
            envelope(&other, &new, 2, "2.0.0", Delivery::Integrated),
            UpdateResult::IntegrityFailure,
        ),
        (
            "rollback to the running sequence number",
            envelope(&k, &new, 1, "2.0.0", Delivery::Integrated),
            UpdateResult::UnsupportedPackage,
        ),
        (
            "larger than the slot",
            envelope(
                &k,
                &ImageBuilder::new("sim-fw", "9")
                    .total_len(CAPACITY as usize + 4096)
                    .build(),
                2,
                "9",
                Delivery::Integrated,
            ),
            UpdateResult::NotEnoughFlash,
        ),
        (
            "not a SUIT envelope",
            vec![0x42; 4000],
            UpdateResult::UnsupportedPackage,
        ),
        (
            "an integrated package followed by trailing bytes",
            [
                envelope(&k, &new, 2, "2.0.0", Delivery::Integrated),
                vec![0x00],
            ]
            .concat(),
            UpdateResult::IntegrityFailure,
        ),
        (
            "a URI package followed by trailing bytes",
            [
                envelope(&k, &new, 2, "2.0.0", Delivery::Uri("coap://h/fw".into())),
                vec![0xA0, 0x01],
            ]
            .concat(),
            UpdateResult::IntegrityFailure,
        ),
        (
            "a damaged SUIT envelope",
            [&[0xD8, 0x6B, 0xA3, 0x02][..], &[0xFF; 100]].concat(),
            UpdateResult::IntegrityFailure,
        ),
    ];
    for (what, pkg, expected) in cases {
        let mut d = device(&k, Strategy::AB);
        let e = download(&mut d, &k, &pkg).unwrap_err();
        assert_eq!(e.update_result(), expected, "{what}: {e}");
        let s = d.slots().unwrap().status();
        assert_eq!(s.state, State::Idle, "{what}");
        assert_eq!(d.reboot().unwrap().image.version, "1.0.0", "{what}");
    }

    // One flipped payload byte: the digest check refuses it (5) before it can be installed.
    let mut d = device(&k, Strategy::Swap);
    let mut pkg = envelope(&k, &new, 2, "2.0.0", Delivery::Integrated);
    let at = pkg.len() - 100;
    pkg[at] ^= 0x01;
    let e = download(&mut d, &k, &pkg).unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::IntegrityFailure, "{e}");
    assert!(d.slots().unwrap().request_install().is_err());
    assert_eq!(d.reboot().unwrap().image.version, "1.0.0");
}

#[test]
fn interrupted_download_resumes_after_a_reboot() {
    let k = keys("K1_spec_p256_private.pem");
    let mut d = device(&k, Strategy::Swap);
    let new = ImageBuilder::new("sim-fw", "3.0.0")
        .total_len(50_000)
        .build();
    let pkg = envelope(&k, &new, 3, "3.0.0", Delivery::Integrated);
    let anchors = [TrustAnchor::P256(&k.sec1)];
    let policy = policy(&anchors, 1);
    // First power-on: 30 000 envelope bytes arrive, then the device resets.
    let payload_start = {
        let mut buf = [0u8; 2048];
        let mut rx = PackageReceiver::new(&mut buf, policy, Software);
        let mut slots = d.slots().unwrap();
        for block in pkg[..30_000].chunks(1024) {
            rx.feed(&mut slots, block).unwrap();
        }
        rx.payload_starts().first.expect("payload started")
    };
    d.reboot().unwrap();
    let s = d.slots().unwrap().status();
    assert_eq!(s.state, State::Downloading);
    assert!(
        s.download_offset >= 4096,
        "progress persisted: {}",
        s.download_offset
    );

    // After the reboot: continue from the persisted sector boundary, not from 0.
    let mut buf = [0u8; 2048];
    let mut slots = d.slots().unwrap();
    let mut rx = PackageReceiver::new(&mut buf, policy, Software);
    let ResumeAt::Package(from) = rx
        .resume_from(
            &mut slots,
            PayloadStarts {
                first: Some(payload_start),
                second: None,
            },
        )
        .unwrap()
    else {
        panic!("an integrated image continues in the package")
    };
    assert_eq!(from, payload_start + u64::from(s.download_offset));
    assert!(from < 30_000);
    for block in pkg[from as usize..].chunks(1024) {
        rx.feed(&mut slots, block).unwrap();
    }
    assert_eq!(rx.finish(&mut slots).unwrap(), Outcome::Downloaded);
    slots.request_install().unwrap();
    assert_eq!(d.reboot().unwrap().image.version, "3.0.0");
}

#[test]
fn two_stage_pull_fetches_the_image_named_by_the_manifest() {
    let k = keys("K1_spec_p256_private.pem");
    let mut d = device(&k, Strategy::AB);
    let new = ImageBuilder::new("sim-fw", "4.0.0")
        .total_len(24_000)
        .build();
    let head = envelope(
        &k,
        &new,
        4,
        "4.0.0",
        Delivery::Uri("coap://[::1]/fw.bin".into()),
    );
    let anchors = [TrustAnchor::P256(&k.sec1)];
    let policy = policy(&anchors, 1);
    let mut buf = [0u8; 2048];
    let mut rx = PackageReceiver::new(&mut buf, policy, Software);
    let mut slots = d.slots().unwrap();
    rx.feed(&mut slots, &head).unwrap();
    assert_eq!(rx.finish(&mut slots).unwrap(), Outcome::FetchImage);
    assert_eq!(rx.fetch_uri().unwrap(), b"coap://[::1]/fw.bin");
    for block in new.chunks(700) {
        rx.feed_fetched(&mut slots, block).unwrap();
    }
    rx.finish_fetched(&mut slots).unwrap();
    assert_eq!(slots.status().state, State::Downloaded);
    slots.request_install().unwrap();
    let booted = d.reboot().unwrap();
    assert_eq!(booted.image.version, "4.0.0");
    assert_eq!(image::parse(&new).unwrap().version, "4.0.0");
}

/// A device whose key store holds an Ed25519 trust anchor (beside the factory's P-256 one)
/// downloads, installs and boots a package its Ed25519 key signed; a device without that
/// anchor refuses the same package with Update Result 5 and keeps running.
#[test]
fn an_ed25519_trust_anchor_authorises_download_and_boot() {
    use device_port::board::TrustAnchors;
    use object5::author::{build_envelope_with, AuthorKey, KeyAlg};
    let k = keys("K1_spec_p256_private.pem");
    let (private, _) = object5::author::generate_key_pem_for(KeyAlg::Ed25519).unwrap();
    let ed = AuthorKey::from_pem(&private).unwrap();
    let ed_public = object5::author::ed25519_public_from_pem(&ed.public_pem().unwrap()).unwrap();
    let new = ImageBuilder::new("sim-fw", "5.0.0")
        .total_len(30_000)
        .build();
    let spec = PackageSpec {
        alg: ed.default_alg(),
        ..spec(&new, 5, "5.0.0", Delivery::Integrated)
    };
    let pkg = build_envelope_with(&spec, &ed).unwrap();
    for provisioned in [true, false] {
        let factory = device(&k, Strategy::Swap).config().factory.clone();
        let mut config = SimConfig::new(vec![k.sec1.clone()], factory);
        if provisioned {
            config.ed25519_anchors.push(ed_public);
        }
        let mut d = SimDevice::in_memory(config).unwrap();
        let (p256, ed25519) = (d.p256_keys().to_vec(), d.ed25519_keys().to_vec());
        let anchors = device_port::auth::trust_anchors(&p256, &ed25519);
        let result = receive(&mut d, &anchors, &[], &pkg);
        if provisioned {
            assert_eq!(result.unwrap(), Outcome::Downloaded);
            d.slots().unwrap().request_install().unwrap();
            // The bootloader re-authenticates the stored head with the Ed25519 anchor.
            assert_eq!(d.reboot().unwrap().image.version, "5.0.0");
        } else {
            let e = result.unwrap_err();
            assert_eq!(e.update_result(), UpdateResult::IntegrityFailure, "{e}");
            assert_eq!(d.reboot().unwrap().image.version, "1.0.0");
        }
    }
}

/// Encrypted packages (draft-ietf-suit-firmware-encryption-24) stream through decryption
/// into the candidate slot with the key from the device's key store and boot; with a key
/// store that does not open the content key the download fails with Update Result 5 before
/// the slot is touched, and the running image stays.
#[test]
fn encrypted_packages_decrypt_into_the_slot_with_the_key_stores_key() {
    use device_port::auth::{decryption_keys, StoredDecryptionKey};
    use device_port::board::DecryptionKeys;
    use object5::author::{
        build_envelope_encrypted, AuthorKey, ContentEncryption, Encryption, Recipient,
    };
    let k = keys("K1_spec_p256_private.pem");
    let signer = AuthorKey::from_pem(&k.pem).unwrap();
    // The device's ECDH key pair is an ordinary P-256 key.
    let (device_pem, device_pub) = object5::author::generate_key_pem().unwrap();
    let device_private = object5::author::p256_private_from_pem(&device_pem).unwrap();
    let device_public = public_sec1_from_pem(&device_pub).unwrap();
    let kek = [0x5c; 16];
    let new = ImageBuilder::new("sim-fw", "6.0.0")
        .total_len(30_000)
        .build();
    let spec = spec(&new, 6, "6.0.0", Delivery::Integrated);
    let cases = [
        (
            Recipient::EcdhP256(device_public.clone()),
            ContentEncryption::A128Gcm,
            StoredDecryptionKey::EcdhP256(device_private),
            StoredDecryptionKey::EcdhP256([0x18; 32]),
        ),
        (
            Recipient::Aes128Kw(kek),
            ContentEncryption::A128Ctr,
            StoredDecryptionKey::Aes128Kw(kek),
            StoredDecryptionKey::Aes128Kw([0x5d; 16]),
        ),
    ];
    for (recipient, content, right, wrong) in cases {
        let enc = Encryption { recipient, content };
        let (pkg, ciphertext) = build_envelope_encrypted(&spec, &signer, &enc).unwrap();
        assert!(
            !pkg.windows(64).any(|w| w == &new[1000..1064]),
            "plaintext in the envelope"
        );
        assert!(ciphertext.len() >= new.len());
        for (stored, ok) in [(right.clone(), true), (wrong.clone(), false)] {
            let factory = device(&k, Strategy::Swap).config().factory.clone();
            let mut config = SimConfig::new(vec![k.sec1.clone()], factory);
            config.decryption_keys.push(stored);
            let mut d = SimDevice::in_memory(config).unwrap();
            let stored = d.decryption_keys().to_vec();
            let keys = decryption_keys(&stored);
            let result = receive(&mut d, &[TrustAnchor::P256(&k.sec1)], &keys, &pkg);
            if ok {
                assert_eq!(result.unwrap(), Outcome::Downloaded, "{content:?}");
                d.slots().unwrap().request_install().unwrap();
                // The bootloader re-hashes the decrypted image in the slot.
                assert_eq!(d.reboot().unwrap().image.version, "6.0.0", "{content:?}");
            } else {
                let e = result.unwrap_err();
                assert_eq!(e.update_result(), UpdateResult::IntegrityFailure, "{e}");
                let s = d.slots().unwrap().status();
                assert_eq!(
                    (s.state, s.result),
                    (State::Idle, UpdateResult::IntegrityFailure)
                );
                assert!(d.slots().unwrap().request_install().is_err());
                assert_eq!(d.reboot().unwrap().image.version, "1.0.0", "{content:?}");
            }
        }
    }
}

/// An encrypted download cut by a reset continues from the journaled sector: the content key
/// is opened again from the stored head and the device's key store, decryption seeks to the
/// resume point (A128CTR and A128GCM, whose tag is then passed over: the slot checks the
/// whole plaintext against the signed digest), and the new image boots; in the package, or
/// in the fetched ciphertext of a two-stage pull. Before, the resumed bytes went to the slot
/// as ciphertext and the download ended with Update Result 5 (a fetched image did not resume
/// at all). A ciphertext byte changed after the resume point still ends it with 5.
#[test]
fn an_interrupted_encrypted_download_resumes_and_decrypts_from_there() {
    use device_port::auth::{decryption_keys, StoredDecryptionKey};
    use device_port::board::DecryptionKeys;
    use object5::author::{
        build_envelope_encrypted, AuthorKey, ContentEncryption, Encryption, Recipient,
    };
    let k = keys("K1_spec_p256_private.pem");
    let signer = AuthorKey::from_pem(&k.pem).unwrap();
    let kek = [0x5c; 16];
    let new = ImageBuilder::new("sim-fw", "6.0.0")
        .total_len(50_000)
        .build();
    let anchors = [TrustAnchor::P256(&k.sec1)];
    let cases = [ContentEncryption::A128Ctr, ContentEncryption::A128Gcm]
        .into_iter()
        .flat_map(|c| [(c, false), (c, true)]);
    for (content, fetched) in cases {
        let delivery = if fetched {
            Delivery::Uri("coap://h/fw-6.enc".into())
        } else {
            Delivery::Integrated
        };
        let spec = spec(&new, 6, "6.0.0", delivery);
        let enc = Encryption {
            recipient: Recipient::Aes128Kw(kek),
            content,
        };
        let (pkg, ciphertext) = build_envelope_encrypted(&spec, &signer, &enc).unwrap();
        let what = format!("{content:?}, fetched {fetched}");
        for tamper in [false, true] {
            let factory = device(&k, Strategy::Swap).config().factory.clone();
            let mut config = SimConfig::new(vec![k.sec1.clone()], factory);
            config
                .decryption_keys
                .push(StoredDecryptionKey::Aes128Kw(kek));
            let mut d = SimDevice::in_memory(config).unwrap();
            let stored = d.decryption_keys().to_vec();
            let keys = decryption_keys(&stored);
            // 30 000 bytes of the ciphertext arrive, then the device resets.
            let start = {
                let mut buf = [0u8; 2048];
                let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, 1), Software)
                    .with_decryption_keys(&keys);
                let mut slots = d.slots().unwrap();
                if fetched {
                    for block in pkg.chunks(1024) {
                        rx.feed(&mut slots, block).unwrap();
                    }
                    assert_eq!(rx.finish(&mut slots).unwrap(), Outcome::FetchImage);
                    for block in ciphertext[..30_000].chunks(1024) {
                        rx.feed_fetched(&mut slots, block).unwrap();
                    }
                } else {
                    let at = pkg.windows(64).position(|w| w == &ciphertext[..64]);
                    for block in pkg[..at.unwrap() + 30_000].chunks(1024) {
                        rx.feed(&mut slots, block).unwrap();
                    }
                }
                rx.payload_starts()
            };
            d.reboot().unwrap();
            let journaled = u64::from(d.slots().unwrap().status().download_offset);
            assert!(journaled >= 4096, "{what}: {journaled}");
            let mut buf = [0u8; 2048];
            let mut slots = d.slots().unwrap();
            let mut rx = PackageReceiver::new(&mut buf, policy(&anchors, 1), Software)
                .with_decryption_keys(&keys);
            let at = rx.resume_from(&mut slots, start).unwrap();
            let mut rest = match (at, start.first) {
                (ResumeAt::Package(from), Some(start)) if !fetched => {
                    assert_eq!(from, start + journaled, "{what}");
                    pkg[from as usize..].to_vec()
                }
                (ResumeAt::Image(from), None) if fetched => {
                    assert_eq!(from, journaled, "{what}");
                    assert_eq!(rx.fetch_uri(), Some(&b"coap://h/fw-6.enc"[..]));
                    ciphertext[from as usize..].to_vec()
                }
                other => panic!("{what}: resumed at {other:?}"),
            };
            if tamper {
                rest[10_000] ^= 0x01;
            }
            let result = (|| {
                for block in rest.chunks(1024) {
                    if fetched {
                        rx.feed_fetched(&mut slots, block)?;
                    } else {
                        rx.feed(&mut slots, block)?;
                    }
                }
                if fetched {
                    rx.finish_fetched(&mut slots)
                } else {
                    rx.finish(&mut slots)
                }
            })();
            if tamper {
                let e = result.unwrap_err();
                assert_eq!(
                    e.update_result(),
                    UpdateResult::IntegrityFailure,
                    "{what}: {e}"
                );
                assert_eq!(slots.status().state, State::Idle);
                assert!(slots.request_install().is_err());
                assert_eq!(d.reboot().unwrap().image.version, "1.0.0");
            } else {
                assert_eq!(result.unwrap(), Outcome::Downloaded, "{what}");
                slots.request_install().unwrap();
                assert_eq!(d.reboot().unwrap().image.version, "6.0.0", "{what}");
            }
        }
    }
}
