//! Packages built by the author side, streamed block by block through the device verifier:
//! accepted when right, and refused with the documented code when rolled back, for another
//! vendor or class, signed with another key, or carrying a wrong image or image size.

use object5::author::{self, Delivery, PackageSpec, SignAlg, Value};
use object5::manifest::{
    DeviceIdentity, Finished, Freshness, PayloadSink, Policy, Software, StreamVerifier, SuitError,
    TrustAnchor,
};
use object5::UpdateResult;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};

const VENDOR: [u8; 16] = *b"vendor-id-16byte";
const CLASS: [u8; 16] = *b"class-id-16bytes";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn sec1(k: &SigningKey) -> Vec<u8> {
    k.verifying_key().to_sec1_point(false).as_bytes().to_vec()
}

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn spec(image: &[u8], seq: u64, delivery: Delivery) -> PackageSpec<'_> {
    PackageSpec {
        vendor_id: VENDOR,
        class_id: CLASS,
        sequence_number: seq,
        version: "2.0.1".into(),
        name: "app".into(),
        image,
        delivery,
        alg: SignAlg::Esp256,
    }
}

#[derive(Default)]
struct Collect {
    begun: Option<Option<u64>>,
    bytes: Vec<u8>,
    capacity: Option<u64>,
}

impl PayloadSink for Collect {
    fn begin(&mut self, component: usize, size: Option<u64>) -> Result<(), SuitError> {
        assert_eq!(component, 0);
        if let (Some(cap), Some(size)) = (self.capacity, size) {
            if size > cap {
                return Err(SuitError::ImageTooLarge);
            }
        }
        self.begun = Some(size);
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
}

struct Device {
    keys: Vec<Vec<u8>>,
    vendor: [u8; 16],
    class: [u8; 16],
    freshness: Freshness,
    block: usize,
    buffer: usize,
}

impl Device {
    fn new(k: &SigningKey) -> Self {
        Self {
            keys: vec![sec1(k)],
            vendor: VENDOR,
            class: CLASS,
            freshness: Freshness::NewerThanInstalled(4),
            block: 64,
            buffer: 2048,
        }
    }

    /// Streams `env`; for URI packages then streams `fetched`.
    fn run(
        &self,
        env: &[u8],
        fetched: Option<&[u8]>,
        sink: &mut Collect,
    ) -> Result<u64, SuitError> {
        let anchors: Vec<TrustAnchor> = self.keys.iter().map(|k| TrustAnchor::P256(k)).collect();
        let policy = Policy {
            anchors: &anchors,
            identity: DeviceIdentity {
                vendor_id: &self.vendor,
                class_id: &self.class,
                device_id: None,
            },
            freshness: self.freshness,
        };
        let mut buf = vec![0u8; self.buffer];
        let mut v = StreamVerifier::new(&mut buf, policy, Software);
        for block in env.chunks(self.block) {
            v.feed(block, sink)?;
        }
        match v.finish()? {
            Finished::Complete(done) => Ok(done.size),
            Finished::FetchRequired { uri } => {
                assert_eq!(uri, b"coap://[::1]/fw.bin");
                v.begin_fetched(sink)?;
                for block in fetched.expect("URI package needs an image").chunks(100) {
                    v.feed_fetched(block, sink)?;
                }
                match v.finish_fetched()? {
                    Finished::Complete(done) => Ok(done.size),
                    other => panic!("one image expected: {other:?}"),
                }
            }
        }
    }
}

fn expect(result: Result<u64, SuitError>, error: SuitError, code: u8) {
    let e = result.unwrap_err();
    assert_eq!(e, error);
    assert_eq!(e.update_result().code(), code, "{e}");
}

#[test]
fn integrated_packages_stream_in_any_block_size_into_the_sink() {
    let k = key(1);
    let img = image(10_000);
    let env = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &k).unwrap();
    for block in [1, 7, 64, 1024, env.len()] {
        let mut dev = Device::new(&k);
        dev.block = block;
        let mut sink = Collect::default();
        assert_eq!(dev.run(&env, None, &mut sink).unwrap(), 10_000);
        assert_eq!(sink.bytes, img, "block {block}");
        assert_eq!(sink.begun, Some(Some(10_000)));
    }
}

#[test]
fn uri_packages_say_where_to_fetch_and_check_the_fetched_image() {
    let k = key(1);
    let img = image(3000);
    let uri = Delivery::Uri("coap://[::1]/fw.bin".into());
    let env = author::build_envelope(&spec(&img, 5, uri), &k).unwrap();
    let mut sink = Collect::default();
    assert_eq!(
        Device::new(&k).run(&env, Some(&img), &mut sink).unwrap(),
        3000
    );
    assert_eq!(sink.bytes, img);
    // Fetched bytes that differ, or are too long or too short, are refused.
    let mut bad = img.clone();
    bad[1234] ^= 1;
    expect(
        Device::new(&k).run(&env, Some(&bad), &mut Collect::default()),
        SuitError::ImageDigestMismatch,
        5,
    );
    let longer = [img.as_slice(), b"x"].concat();
    expect(
        Device::new(&k).run(&env, Some(&longer), &mut Collect::default()),
        SuitError::ImageSizeMismatch,
        5,
    );
    expect(
        Device::new(&k).run(&env, Some(&img[..2999]), &mut Collect::default()),
        SuitError::ImageSizeMismatch,
        5,
    );
}

#[test]
fn rollback_equal_and_lower_sequence_numbers_are_refused_for_downloads() {
    let k = key(1);
    let img = image(100);
    for (seq, ok) in [(3, false), (4, false), (5, true)] {
        let env = author::build_envelope(&spec(&img, seq, Delivery::Integrated), &k).unwrap();
        let r = Device::new(&k).run(&env, None, &mut Collect::default());
        if ok {
            r.unwrap();
        } else {
            expect(r, SuitError::Rollback, 6);
        }
    }
    // The bootloader re-verifying the installed image accepts the equal number.
    let env = author::build_envelope(&spec(&img, 4, Delivery::Integrated), &k).unwrap();
    let mut dev = Device::new(&k);
    dev.freshness = Freshness::AtLeastInstalled(4);
    dev.run(&env, None, &mut Collect::default()).unwrap();
    dev.freshness = Freshness::AtLeastInstalled(5);
    expect(
        dev.run(&env, None, &mut Collect::default()),
        SuitError::Rollback,
        6,
    );
}

#[test]
fn wrong_vendor_wrong_class_and_wrong_key_are_refused_before_any_payload_byte() {
    let k = key(1);
    let img = image(500);
    let env = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &k).unwrap();
    let mut dev = Device::new(&k);
    dev.vendor = *b"another-vendor!!";
    let mut sink = Collect::default();
    expect(dev.run(&env, None, &mut sink), SuitError::VendorMismatch, 6);
    assert!(sink.begun.is_none() && sink.bytes.is_empty());
    let mut dev = Device::new(&k);
    dev.class = *b"another-class!!!";
    expect(
        dev.run(&env, None, &mut Collect::default()),
        SuitError::ClassMismatch,
        6,
    );
    let other = key(2);
    let mut sink = Collect::default();
    expect(
        Device::new(&other).run(&env, None, &mut sink),
        SuitError::BadSignature,
        5,
    );
    assert!(sink.bytes.is_empty());
}

#[test]
fn a_rotated_key_set_accepts_both_generations_and_a_retired_key_is_refused() {
    let (old, new) = (key(1), key(2));
    let img = image(100);
    let env_old = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &old).unwrap();
    let env_new = author::build_envelope(&spec(&img, 6, Delivery::Integrated), &new).unwrap();
    let mut dev = Device::new(&old);
    dev.keys.push(sec1(&new));
    dev.run(&env_old, None, &mut Collect::default()).unwrap();
    dev.run(&env_new, None, &mut Collect::default()).unwrap();
    dev.keys.remove(0); // old key retired
    expect(
        dev.run(&env_old, None, &mut Collect::default()),
        SuitError::BadSignature,
        5,
    );
}

/// Signs an arbitrary manifest with `k` and integrates `payload` (which may disagree with it).
fn sign_with_payload(manifest: &[u8], payload: &[u8], k: &SigningKey) -> Vec<u8> {
    let manifest_bstr = Value::Bytes(manifest.to_vec()).encode();
    let digest = author::suit_digest(&manifest_bstr);
    let protected = Value::Map(vec![(Value::Int(1), Value::Int(-9))]).encode();
    let tbs = author::sig_structure(&protected, &digest);
    let mut h = sha2::Sha256::default();
    sha2::Digest::update(&mut h, &tbs);
    let prehash: [u8; 32] = sha2::Digest::finalize(h).into();
    let sig: Signature = k.sign_prehash(&prehash).unwrap();
    let block = Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![]),
            Value::Null,
            Value::Bytes(sig.to_bytes().to_vec()),
        ])),
    )
    .encode();
    author::assemble(
        &digest,
        &[block],
        &manifest_bstr,
        &spec(payload, 0, Delivery::Integrated),
    )
}

#[test]
fn an_authentic_manifest_with_a_wrong_integrated_image_or_size_is_refused() {
    let k = key(1);
    let img = image(4000);
    let manifest = author::build_manifest(&spec(&img, 5, Delivery::Integrated));
    let mut other = img.clone();
    other[3999] ^= 0x40;
    let env = sign_with_payload(&manifest, &other, &k);
    let mut sink = Collect::default();
    expect(
        Device::new(&k).run(&env, None, &mut sink),
        SuitError::ImageDigestMismatch,
        5,
    );
    let env = sign_with_payload(&manifest, &img[..3000], &k);
    expect(
        Device::new(&k).run(&env, None, &mut Collect::default()),
        SuitError::ImageSizeMismatch,
        5,
    );
    // The untampered combination passes, so the refusals above are about the image only.
    let env = sign_with_payload(&manifest, &img, &k);
    Device::new(&k)
        .run(&env, None, &mut Collect::default())
        .unwrap();
}

#[test]
fn small_buffers_and_small_slots_fail_with_out_of_ram_and_not_enough_flash() {
    let k = key(1);
    let img = image(2000);
    let env = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &k).unwrap();
    let mut dev = Device::new(&k);
    dev.buffer = 128;
    expect(
        dev.run(&env, None, &mut Collect::default()),
        SuitError::BufferTooSmall,
        3,
    );
    let mut sink = Collect {
        capacity: Some(1999),
        ..Collect::default()
    };
    let e = Device::new(&k).run(&env, None, &mut sink).unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::NotEnoughFlash);
}

#[test]
fn a_payload_before_the_manifest_is_refused() {
    let k = key(1);
    let img = image(10);
    let env = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &k).unwrap();
    // Re-order: tag, map(3), "#fw" payload first, then wrapper and manifest.
    let payload = Value::Bytes(img.clone()).encode();
    let key_fw = Value::Text("#fw".into()).encode();
    let tail_len = key_fw.len() + payload.len();
    let members = &env[3..env.len() - tail_len];
    let reordered = [&env[..3], &key_fw, &payload, members].concat();
    expect(
        Device::new(&k).run(&reordered, None, &mut Collect::default()),
        SuitError::OutOfOrder,
        5,
    );
}

#[test]
fn bytes_after_the_envelope_are_an_integrity_failure_in_any_block_size() {
    let k = key(1);
    let img = image(1000);
    let integrated = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &k).unwrap();
    let uri = Delivery::Uri("coap://[::1]/fw.bin".into());
    let by_uri = author::build_envelope(&spec(&img, 5, uri), &k).unwrap();
    for env in [&integrated, &by_uri] {
        for trailing in [&[0u8][..], &[0xa0], &[0x61, 0x78, 0x40]] {
            let long = [env.as_slice(), trailing].concat();
            // Whole-envelope verification refuses it ...
            let anchors = [TrustAnchor::P256(&sec1(&k))];
            let e = object5::manifest::authenticate(&long, &anchors, &Software).unwrap_err();
            assert_eq!((e, e.update_result().code()), (SuitError::TrailingBytes, 5));
            // ... and so does the streaming verifier, whether the extra bytes arrive with the
            // last member or on their own.
            for block in [1, 7, 64, 1024, long.len()] {
                let mut dev = Device::new(&k);
                dev.block = block;
                expect(
                    dev.run(&long, Some(&img), &mut Collect::default()),
                    SuitError::TrailingBytes,
                    5,
                );
            }
        }
        // Without the extra bytes the same envelope passes.
        Device::new(&k)
            .run(env, Some(&img), &mut Collect::default())
            .unwrap();
    }
}

#[test]
fn ed25519_packages_are_accepted_per_trust_anchor_kind() {
    let ed = author::AuthorKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]));
    let author::AuthorKey::Ed25519(sk) = &ed else {
        unreachable!()
    };
    let ed_public = sk.verifying_key().to_bytes();
    let p256 = key(1);
    let img = image(2500);
    let run = |env: &[u8], anchors: &[TrustAnchor]| -> Result<(usize, Vec<u8>), SuitError> {
        let policy = Policy {
            anchors,
            identity: DeviceIdentity {
                vendor_id: &VENDOR,
                class_id: &CLASS,
                device_id: None,
            },
            freshness: Freshness::NewerThanInstalled(4),
        };
        let mut buf = vec![0u8; 2048];
        let mut v = StreamVerifier::new(&mut buf, policy, Software);
        let mut sink = Collect::default();
        for block in env.chunks(100) {
            v.feed(block, &mut sink)?;
        }
        match v.finish()? {
            Finished::Complete(done) => Ok((done.anchor, sink.bytes)),
            other => panic!("{other:?}"),
        }
    };
    let p256_public = sec1(&p256);
    // A device trusting both kinds (e.g. during a move from P-256 to Ed25519) accepts either.
    let both = [
        TrustAnchor::P256(&p256_public),
        TrustAnchor::Ed25519(&ed_public),
    ];
    for alg in [SignAlg::Ed25519, SignAlg::EdDsa] {
        let mut s = spec(&img, 5, Delivery::Integrated);
        s.alg = alg;
        let env = author::build_envelope_with(&s, &ed).unwrap();
        let (anchor, bytes) = run(&env, &both).unwrap();
        assert_eq!((anchor, bytes == img), (1, true), "{alg:?}");
        // A P-256-only device refuses it: its anchors do not include the signer.
        let e = run(&env, &[TrustAnchor::P256(&p256_public)]).unwrap_err();
        assert_eq!((e, e.update_result().code()), (SuitError::BadSignature, 5));
        // A flipped signature bit is refused.
        let auth = object5::manifest::Envelope::parse(&env).unwrap().auth;
        let mut bad = env.clone();
        bad[auth.as_ptr() as usize - env.as_ptr() as usize + auth.len() - 1] ^= 0x10;
        assert_eq!(run(&bad, &both).unwrap_err(), SuitError::BadSignature);
    }
    // A P-256 package on an Ed25519-only device is refused the same way.
    let env = author::build_envelope(&spec(&img, 5, Delivery::Integrated), &p256).unwrap();
    assert_eq!(run(&env, &both).unwrap().0, 0);
    let e = run(&env, &[TrustAnchor::Ed25519(&ed_public)]).unwrap_err();
    assert_eq!(e, SuitError::BadSignature);
    // An Ed25519 algorithm with a P-256 key is an author error, not a package.
    let mut s = spec(&img, 5, Delivery::Integrated);
    s.alg = SignAlg::Ed25519;
    assert!(author::build_envelope(&s, &p256).is_err());
}
