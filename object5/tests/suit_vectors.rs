//! Every official vector in ../shared/vectors/suit/INDEX.md gives what INDEX.md says.

#[path = "suit/common.rs"]
mod common;

use common::{index, key, read};
use object5::manifest::{authenticate, Software, SuitError, TrustAnchor};

fn anchor_for<'k>(name: &str, bytes: &'k [u8]) -> TrustAnchor<'k> {
    if name == "K3" {
        TrustAnchor::Hmac256(bytes)
    } else {
        TrustAnchor::P256(bytes)
    }
}

#[test]
fn valid_vectors_authenticate_with_the_named_key_and_report_their_sequence_number() {
    for row in index().iter().filter(|r| r.valid) {
        let envelope = read(&row.file);
        let k = key(&row.key);
        let anchors = [anchor_for(&row.key, &k)];
        let auth = authenticate(&envelope, &anchors, &Software)
            .unwrap_or_else(|e| panic!("{}: {e}", row.file));
        assert_eq!(auth.sequence_number, row.seq, "{}", row.file);
        assert_eq!(auth.anchor, 0);
    }
}

#[test]
fn valid_vectors_are_refused_with_a_key_that_did_not_sign_them() {
    let k1 = key("K1");
    let k2 = key("K2");
    let k3 = key("K3");
    for row in index().iter().filter(|r| r.valid) {
        let envelope = read(&row.file);
        // Every key except the named one, of both kinds.
        let others: Vec<TrustAnchor> = [("K1", &k1), ("K2", &k2), ("K3", &k3)]
            .into_iter()
            .filter(|(n, _)| *n != row.key)
            .map(|(n, k)| anchor_for(n, k))
            .collect();
        let err = authenticate(&envelope, &others, &Software).unwrap_err();
        assert_eq!(err, SuitError::BadSignature, "{}", row.file);
        assert_eq!(err.update_result().code(), 5);
    }
}

#[test]
fn unsigned_vectors_are_refused_as_unauthenticated() {
    let k1 = key("K1");
    let unsigned: Vec<_> = index().into_iter().filter(|r| !r.valid).collect();
    assert_eq!(unsigned.len(), 6);
    for row in unsigned {
        assert_eq!(row.auth, "none");
        let err = authenticate(&read(&row.file), &[TrustAnchor::P256(&k1)], &Software).unwrap_err();
        assert_eq!(err, SuitError::Unauthenticated, "{}", row.file);
        assert_eq!(err.update_result().code(), 5);
    }
}

#[test]
fn several_trust_anchors_accept_packages_of_either_generation() {
    let (k1, k2) = (key("K1"), key("K2"));
    let anchors = [TrustAnchor::P256(&k2), TrustAnchor::P256(&k1)];
    let old = read("ms188_ex1_signed.cbor");
    assert_eq!(authenticate(&old, &anchors, &Software).unwrap().anchor, 1);
    let new = read("enc24_es_ecdh_dependency.cbor");
    assert_eq!(authenticate(&new, &anchors, &Software).unwrap().anchor, 0);
}

#[test]
fn component_zero_image_facts_come_from_the_signed_manifest() {
    let k1 = key("K1");
    let env = read("ms37_ex1_signed.cbor");
    let auth = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    assert_eq!(auth.image.size, Some(34768));
    assert_eq!(auth.image.uri, Some(&b"http://example.com/file.bin"[..]));
    let d = auth.image.digest.unwrap();
    assert_eq!(&d[..4], &[0x00, 0x11, 0x22, 0x33]);
    assert_eq!(auth.image.vendor_id.unwrap()[..2], [0xfa, 0x6b]);
    // Example 2 carries its install sequence and text severed in the envelope.
    let env = read("ms37_ex2_signed.cbor");
    let auth = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    assert_eq!(
        auth.image.uri,
        Some(&b"http://example.com/very/long/path/to/file/file.bin"[..])
    );
    assert!(auth.text.description.is_some());
    // ... and without them the URI is simply unknown, but authentication still holds.
    let env = read("ms37_ex2_severed_signed.cbor");
    let auth = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    assert_eq!(auth.image.uri, None);
}
