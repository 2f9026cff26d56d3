//! The author's check (`package verify` without device options) on every official vector:
//! authentic ones pass with their key and list what needs the device; every digest the
//! envelope carries is checked, and a wrong one is refused.

#[path = "suit/common.rs"]
mod common;

use common::{index, key, read};
use object5::author::{check_package, CheckOptions, CheckReport};
use object5::manifest::{SuitError, TrustAnchor};

fn anchor_for<'k>(name: &str, bytes: &'k [u8]) -> TrustAnchor<'k> {
    if name == "K3" {
        TrustAnchor::Hmac256(bytes)
    } else {
        TrustAnchor::P256(bytes)
    }
}

fn check(file: &str, keys: &[&str]) -> Result<CheckReport, SuitError> {
    let bytes: Vec<Vec<u8>> = keys.iter().map(|k| key(k)).collect();
    let anchors: Vec<TrustAnchor> = keys
        .iter()
        .zip(&bytes)
        .map(|(n, b)| anchor_for(n, b))
        .collect();
    check_package(&read(file), &anchors, &CheckOptions::default())
}

#[test]
fn every_valid_vector_passes_with_its_key_and_lists_what_needs_the_device() {
    for row in index().iter().filter(|r| r.valid) {
        let report = check(&row.file, &[&row.key]).unwrap_or_else(|e| panic!("{}: {e}", row.file));
        println!("{}: {report:#?}", row.file);
        assert_eq!(report.sequence_number, row.seq, "{}", row.file);
        assert!(!report.needs_device.is_empty(), "{}", row.file);
    }
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l.contains(want))
}

#[test]
fn unsigned_vectors_and_wrong_keys_are_refused() {
    for row in index().iter().filter(|r| !r.valid) {
        assert_eq!(
            check(&row.file, &["K1"]).unwrap_err(),
            SuitError::Unauthenticated
        );
    }
    assert_eq!(
        check("ms37_ex1_signed.cbor", &["K2"]).unwrap_err(),
        SuitError::BadSignature
    );
}

#[test]
fn severed_members_are_checked_when_delivered_and_listed_when_not() {
    let r = check("ms37_ex2_signed.cbor", &["K1"]).unwrap();
    assert!(
        has(&r.checked, "severed install: matches its signed digest"),
        "{r:#?}"
    );
    assert!(
        has(&r.checked, "severed text: matches its signed digest"),
        "{r:#?}"
    );
    assert!(has(
        &r.needs_device,
        "vendor-id fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe: not checked, give --vendor-id"
    ));
    let r = check("ms37_ex2_severed_signed.cbor", &["K1"]).unwrap();
    assert!(
        has(&r.needs_device, "install: severed and not in this envelope"),
        "{r:#?}"
    );
    // A changed byte in the delivered text is refused: it no longer matches its digest.
    let mut env = read("ms37_ex2_signed.cbor");
    let at = env
        .windows(7)
        .position(|w| w == b"Example")
        .expect("text in the envelope");
    env[at] ^= 0x20;
    let k1 = key("K1");
    let e = check_package(&env, &[TrustAnchor::P256(&k1)], &CheckOptions::default()).unwrap_err();
    assert_eq!(
        (e, e.update_result().code()),
        (SuitError::SeverableDigestMismatch, 5)
    );
}

#[test]
fn integrated_dependencies_are_checked_against_their_digest_and_authenticated_with_given_keys() {
    let r = check("td11_example2_integrated.cbor", &["K1"]).unwrap();
    assert!(
        has(
            &r.checked,
            "image-match (dependency 1): integrated payload's manifest, 190 bytes"
        ),
        "{r:#?}"
    );
    assert!(has(&r.checked, "dependency 1: authentic, key #0"), "{r:#?}");
    // Outer signed with K2, the dependency with K1: with K2 alone the dependency is listed.
    let r = check("enc24_es_ecdh_dependency.cbor", &["K2"]).unwrap();
    assert!(
        has(&r.needs_device, "dependency 1: signed by a key not given"),
        "{r:#?}"
    );
    let r = check("enc24_es_ecdh_dependency.cbor", &["K2", "K1"]).unwrap();
    assert_eq!(r.anchor, 0);
    assert!(has(&r.checked, "dependency 1: authentic, key #1"), "{r:#?}");
    // A changed byte in the dependency's manifest breaks the digest the outer manifest signs.
    let mut env = read("td11_example2_integrated.cbor");
    let at = env
        .windows(5)
        .position(|w| w == b"hello")
        .expect("dependency content");
    env[at] ^= 0x20;
    let k1 = key("K1");
    let e = check_package(&env, &[TrustAnchor::P256(&k1)], &CheckOptions::default()).unwrap_err();
    assert_eq!(
        (e, e.update_result().code()),
        (SuitError::ImageDigestMismatch, 5)
    );
}

#[test]
fn integrated_payloads_and_given_images_are_checked_against_image_digest() {
    use object5::author::{build_envelope, Delivery, PackageSpec, SignAlg};
    let sk = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let pk = sk.verifying_key().to_sec1_point(false).as_bytes().to_vec();
    let anchors = [TrustAnchor::P256(&pk)];
    let image: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let spec = |delivery| PackageSpec {
        vendor_id: [1; 16],
        class_id: [2; 16],
        sequence_number: 3,
        version: "1".into(),
        name: "fw".into(),
        image: &image,
        delivery,
        alg: SignAlg::Esp256,
    };
    let env = build_envelope(&spec(Delivery::Integrated), &sk).unwrap();
    let r = check_package(&env, &anchors, &CheckOptions::default()).unwrap();
    assert!(has(&r.checked, "image-match (component 0): integrated payload, 5000 bytes, matches image-digest and image-size"), "{r:#?}");
    // The payload is not covered by the signature directly, only by image-digest.
    let mut bad = env.clone();
    *bad.last_mut().unwrap() ^= 1;
    let e = check_package(&bad, &anchors, &CheckOptions::default()).unwrap_err();
    assert_eq!(e, SuitError::ImageDigestMismatch);

    let env = build_envelope(&spec(Delivery::Uri("coap://h/fw".into())), &sk).unwrap();
    let r = check_package(&env, &anchors, &CheckOptions::default()).unwrap();
    assert!(has(&r.needs_device, "image-match (component 0): needs the image the device fetches from coap://h/fw, give --image"), "{r:#?}");
    let opts = CheckOptions {
        image: Some(&image),
        ..CheckOptions::default()
    };
    let r = check_package(&env, &anchors, &opts).unwrap();
    assert!(has(&r.checked, "image verified against --image"), "{r:#?}");
    let mut other = image.clone();
    other[77] ^= 1;
    let opts = CheckOptions {
        image: Some(&other),
        ..CheckOptions::default()
    };
    assert_eq!(
        check_package(&env, &anchors, &opts).unwrap_err(),
        SuitError::ImageDigestMismatch
    );
    let opts = CheckOptions {
        image: Some(&image[1..]),
        ..CheckOptions::default()
    };
    assert_eq!(
        check_package(&env, &anchors, &opts).unwrap_err(),
        SuitError::ImageSizeMismatch
    );
}
