//! Robustness: every single-byte change to the authentication wrapper or the manifest of valid
//! vectors is refused without a panic, and every truncation is refused, in memory and streamed.

#[path = "suit/common.rs"]
mod common;

use common::{index, key, read};
use object5::manifest::{
    authenticate, DeviceIdentity, Envelope, Freshness, PayloadSink, Policy, Software,
    StreamVerifier, SuitError, TrustAnchor,
};

fn anchor_for<'k>(name: &str, bytes: &'k [u8]) -> TrustAnchor<'k> {
    if name == "K3" {
        TrustAnchor::Hmac256(bytes)
    } else {
        TrustAnchor::P256(bytes)
    }
}

/// Byte range of the wrapper and manifest members (keys and values) inside `env`.
fn signed_region(env: &[u8]) -> std::ops::Range<usize> {
    let e = Envelope::parse(env).unwrap();
    let base = env.as_ptr() as usize;
    // The wrapper bstr starts before its content; the key byte precedes the bstr header.
    let auth_content = e.auth.as_ptr() as usize - base;
    let start = env[..auth_content]
        .iter()
        .rposition(|b| *b == 0x02)
        .unwrap();
    let end = e.manifest_item.as_ptr() as usize - base + e.manifest_item.len();
    start..end
}

#[test]
fn every_value_of_every_wrapper_and_manifest_byte_is_refused() {
    // All 255 alternative values at every position, for one ES256 (Sign1), one ESP256 with
    // severed members in the envelope, and one COSE_Mac0 vector.
    let mut trials = 0u64;
    for file in [
        "ms37_ex0_signed.cbor",
        "ms188_ex2_signed.cbor",
        "enc24_aes_kw_content.cbor",
    ] {
        let row = index().into_iter().find(|r| r.file == file).unwrap();
        let k = key(&row.key);
        let anchors = [anchor_for(&row.key, &k)];
        let original = read(file);
        authenticate(&original, &anchors, &Software).unwrap();
        let mut env = original.clone();
        for pos in signed_region(&original) {
            for delta in 1..=255u8 {
                env[pos] = original[pos].wrapping_add(delta);
                assert!(
                    authenticate(&env, &anchors, &Software).is_err(),
                    "{file}: byte {pos} = {:#04x} accepted",
                    env[pos]
                );
                trials += 1;
            }
            env[pos] = original[pos];
        }
    }
    assert!(trials > 100_000, "{trials}");
}

#[test]
fn a_bit_flip_anywhere_in_the_signed_region_of_any_valid_vector_is_refused() {
    for row in index().into_iter().filter(|r| r.valid) {
        let k = key(&row.key);
        let anchors = [anchor_for(&row.key, &k)];
        let original = read(&row.file);
        let mut env = original.clone();
        for pos in signed_region(&original) {
            for bit in [0x01u8, 0x80] {
                env[pos] = original[pos] ^ bit;
                assert!(
                    authenticate(&env, &anchors, &Software).is_err(),
                    "{} byte {pos}",
                    row.file
                );
            }
            env[pos] = original[pos];
        }
    }
}

struct Discard;

impl PayloadSink for Discard {
    fn begin(&mut self, _: usize, _: Option<u64>) -> Result<(), SuitError> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> Result<(), SuitError> {
        Ok(())
    }
}

#[test]
fn every_truncation_of_every_vector_is_refused_in_memory_and_streamed() {
    let vendor = [0u8; 16];
    for row in index() {
        let env = read(&row.file);
        let k = if row.key.is_empty() {
            key("K1")
        } else {
            key(&row.key)
        };
        let anchors = [anchor_for(
            if row.key.is_empty() { "K1" } else { &row.key },
            &k,
        )];
        for len in 0..env.len() {
            let prefix = &env[..len];
            assert!(
                authenticate(prefix, &anchors, &Software).is_err(),
                "{} len {len}",
                row.file
            );
            let policy = Policy {
                anchors: &anchors,
                identity: DeviceIdentity {
                    vendor_id: &vendor,
                    class_id: &vendor,
                    device_id: None,
                },
                freshness: Freshness::AtLeastInstalled(0),
            };
            let mut buf = [0u8; 4096];
            let mut v = StreamVerifier::new(&mut buf, policy, Software);
            let fed = v.feed(prefix, &mut Discard);
            let finished = fed.and_then(|()| v.finish().map(|_| ()));
            assert!(finished.is_err(), "{} streamed len {len}", row.file);
        }
    }
}

#[test]
fn inputs_the_fuzzer_found_are_refused_without_a_panic() {
    // A text key with a 2^64-1 length once overflowed an offset sum in the streaming verifier.
    let cases: [&[u8]; 1] = [&[
        0xba, 0x1a, 0xff, 0xae, 0x23, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0x3d,
    ]];
    let k1 = key("K1");
    let anchors = [TrustAnchor::P256(&k1)];
    let vendor = [0u8; 16];
    for case in cases {
        assert!(authenticate(case, &anchors, &Software).is_err());
        for block in 1..=case.len() {
            let policy = Policy {
                anchors: &anchors,
                identity: DeviceIdentity {
                    vendor_id: &vendor,
                    class_id: &vendor,
                    device_id: None,
                },
                freshness: Freshness::AtLeastInstalled(0),
            };
            let mut buf = [0u8; 1024];
            let mut v = StreamVerifier::new(&mut buf, policy, Software);
            let fed = case.chunks(block).try_for_each(|c| v.feed(c, &mut Discard));
            assert!(fed.and_then(|()| v.finish().map(|_| ())).is_err());
        }
    }
}

#[test]
fn every_byte_of_an_encrypted_envelope_changed_is_refused_without_a_panic() {
    use object5::author::{
        build_envelope_encrypted, AuthorKey, ContentEncryption, Delivery, Encryption, PackageSpec,
        Recipient, SignAlg,
    };
    use object5::manifest::DecryptionKey;
    let signer = p256::ecdsa::SigningKey::from_slice(&[0x21; 32]).unwrap();
    let anchor = signer
        .verifying_key()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    let kek = [0x42u8; 16];
    let image: Vec<u8> = (0..300u32).map(|i| (i * 11) as u8).collect();
    let vendor = [1u8; 16];
    let class = [2u8; 16];
    let spec = PackageSpec {
        vendor_id: vendor,
        class_id: class,
        sequence_number: 2,
        version: "2".into(),
        name: "enc".into(),
        image: &image,
        delivery: Delivery::Integrated,
        alg: SignAlg::Esp256,
    };
    let keys = [DecryptionKey::Aes128Kw {
        kid: None,
        kek: &kek,
    }];
    let anchors = [TrustAnchor::P256(&anchor)];
    let stream = |env: &[u8]| -> Result<(), SuitError> {
        let policy = Policy {
            anchors: &anchors,
            identity: DeviceIdentity {
                vendor_id: &vendor,
                class_id: &class,
                device_id: None,
            },
            freshness: Freshness::NewerThanInstalled(1),
        };
        let mut buf = [0u8; 2048];
        let mut v = StreamVerifier::new(&mut buf, policy, Software).with_decryption_keys(&keys);
        for block in env.chunks(97) {
            v.feed(block, &mut Discard)?;
        }
        v.finish().map(|_| ())
    };
    for content in [ContentEncryption::A128Gcm, ContentEncryption::A128Ctr] {
        let enc = Encryption {
            recipient: Recipient::Aes128Kw(kek),
            content,
        };
        let (original, _) =
            build_envelope_encrypted(&spec, &AuthorKey::P256(signer.clone()), &enc).unwrap();
        stream(&original).unwrap();
        let mut env = original.clone();
        for pos in 0..original.len() {
            for bit in [0x01u8, 0x80] {
                env[pos] = original[pos] ^ bit;
                // Refused, never a panic: the signature, the manifest digest, the key unwrap,
                // the GCM tag or the digests catch every change.
                let e = stream(&env)
                    .expect_err(&format!("{content:?}: byte {pos} ^ {bit:#x} accepted"));
                assert_ne!(e.update_result(), object5::UpdateResult::Success);
            }
            env[pos] = original[pos];
        }
    }
}
