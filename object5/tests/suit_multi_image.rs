//! Several images in one package through the streaming verifier (SUIT section 8.4.10.1,
//! set-component-index): the official Examples 4 and 5 (draft-ietf-suit-manifest Appendix
//! B.5, B.6), and two-image packages built by the author side, integrated, fetched or mixed,
//! whose images reach the sink one after another, each checked at its end.

#[path = "suit/common.rs"]
mod common;

use common::{key, read};
use object5::author::{self, AuthorKey, Delivery, PackageSpec, SecondImage, SignAlg, Value};
use object5::manifest::{
    authenticate, DeviceIdentity, Finished, Freshness, PayloadSink, Policy, Software,
    StreamVerifier, SuitError, TrustAnchor,
};
use p256::ecdsa::SigningKey;

const VENDOR: [u8; 16] = *b"vendor-id-16byte";
const CLASS: [u8; 16] = *b"class-id-16bytes";
/// Vendor and class of the draft's examples.
const ARM: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
const SUIT: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x25, 0x69, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x2d, 0x51, 0xf2, 0xab, 0x45,
];

/// What reached the sink: per image, the component, its announced size and its bytes.
#[derive(Default, Debug)]
struct Collect(Vec<(usize, Option<u64>, Vec<u8>)>);

impl PayloadSink for Collect {
    fn begin(&mut self, component: usize, size: Option<u64>) -> Result<(), SuitError> {
        self.0.push((component, size, Vec::new()));
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
        self.0
            .last_mut()
            .ok_or(SuitError::OutOfOrder)?
            .2
            .extend_from_slice(bytes);
        Ok(())
    }
}

fn signer() -> (SigningKey, Vec<u8>) {
    let k = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let public = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
    (k, public)
}

fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8 ^ seed).collect()
}

fn spec(image: &[u8], delivery: Delivery) -> PackageSpec<'_> {
    PackageSpec {
        vendor_id: VENDOR,
        class_id: CLASS,
        sequence_number: 7,
        version: "2.0.0".into(),
        name: "app".into(),
        image,
        delivery,
        alg: SignAlg::Esp256,
    }
}

fn second(image: &[u8], delivery: Delivery) -> SecondImage<'_> {
    SecondImage {
        image,
        name: "radio".into(),
        version: "5.1.0".into(),
        delivery,
    }
}

fn policy<'a>(
    anchors: &'a [TrustAnchor<'a>],
    vendor: &'a [u8; 16],
    class: &'a [u8; 16],
) -> Policy<'a> {
    Policy {
        anchors,
        identity: DeviceIdentity {
            vendor_id: vendor,
            class_id: class,
            device_id: None,
        },
        freshness: Freshness::NewerThanInstalled(1),
    }
}

/// Streams `env` in `block`-byte pieces, then serves each fetch from `fetches` (URI, bytes).
fn stream(
    env: &[u8],
    anchor: &[u8],
    block: usize,
    fetches: &[(&str, &[u8])],
    sink: &mut Collect,
) -> Result<object5::manifest::Verified, SuitError> {
    let anchors = [TrustAnchor::P256(anchor)];
    let mut buf = vec![0u8; 2048];
    let mut v = StreamVerifier::new(&mut buf, policy(&anchors, &VENDOR, &CLASS), Software);
    for b in env.chunks(block) {
        v.feed(b, sink)?;
    }
    let mut next = v.finish()?;
    loop {
        let uri = match next {
            Finished::Complete(done) => return Ok(done),
            Finished::FetchRequired { uri } => String::from_utf8(uri.to_vec()).unwrap(),
        };
        let (_, bytes) = fetches
            .iter()
            .find(|(u, _)| *u == uri)
            .unwrap_or_else(|| panic!("unexpected fetch of {uri}"));
        v.begin_fetched(sink)?;
        for b in bytes.chunks(block) {
            v.feed_fetched(b, sink)?;
        }
        next = v.finish_fetched()?;
    }
}

#[test]
fn example_5_names_two_images_and_fetches_them_in_component_order() {
    let k1 = key("K1");
    let env = read("ms37_ex5_signed.cbor");
    let anchors = [TrustAnchor::P256(&k1)];
    let mut buf = vec![0u8; 2048];
    let mut v = StreamVerifier::new(&mut buf, policy(&anchors, &ARM, &SUIT), Software);
    let mut sink = Collect::default();
    for b in env.chunks(50) {
        v.feed(b, &mut sink).unwrap();
    }
    let (d0, s0) = v.image_facts().unwrap();
    let (c1, d1, s1) = v.second_image_facts().unwrap();
    assert_eq!((d0[0], d0[31], s0), (0x00, 0x10, Some(34768)));
    assert_eq!((c1, d1[0], d1[31], s1), (1, 0x01, 0xff, Some(76834)));
    assert_eq!(
        v.finish().unwrap(),
        Finished::FetchRequired {
            uri: b"http://example.com/file1.bin"
        }
    );
    // The example's digests are sample patterns: whatever is fetched fails the first image,
    // at its last byte, before the second is asked for.
    v.begin_fetched(&mut sink).unwrap();
    v.feed_fetched(&vec![0; 34768], &mut sink).unwrap();
    assert_eq!(v.finish_fetched(), Err(SuitError::ImageDigestMismatch));
    assert_eq!(sink.0.len(), 1);
    assert_eq!((sink.0[0].0, sink.0[0].1), (0, Some(34768)));
    // The interpreter sees the same two images (suit_interpreter), and so does authenticate.
    let a = authenticate(&env, &anchors, &Software).unwrap();
    let second = a.second.unwrap();
    assert_eq!((second.component, second.image.size), (1, Some(76834)));
    assert_eq!(second.image.uri, Some(&b"http://example.com/file2.bin"[..]));
    assert!(!a.more_images);
}

#[test]
fn example_4_streams_the_staged_fetch_straight_into_component_0() {
    // Component 1 (external storage) only stages the image that install copies into
    // component 0; component 2 (RAM) gets a copy at load time, not an image of its own.
    let k1 = key("K1");
    let env = read("ms37_ex4_signed.cbor");
    let anchors = [TrustAnchor::P256(&k1)];
    let mut buf = vec![0u8; 2048];
    let mut v = StreamVerifier::new(&mut buf, policy(&anchors, &ARM, &SUIT), Software);
    let mut sink = Collect::default();
    for b in env.chunks(64) {
        v.feed(b, &mut sink).unwrap();
    }
    assert_eq!(v.second_image_facts(), None);
    assert_eq!(v.image_facts().unwrap().1, Some(34768));
    assert_eq!(
        v.finish().unwrap(),
        Finished::FetchRequired {
            uri: b"http://example.com/file.bin"
        }
    );
    v.begin_fetched(&mut sink).unwrap();
    assert_eq!(sink.0[0].0, 0);
    // One byte too many is refused as it arrives.
    assert_eq!(
        v.feed_fetched(&vec![0; 34769], &mut sink),
        Err(SuitError::ImageSizeMismatch)
    );
}

#[test]
fn two_integrated_images_reach_the_sink_in_order_in_any_block_size() {
    let (k, public) = signer();
    let (app, radio) = (image(5000, 0), image(3001, 0x5a));
    let env = author::build_envelope_two(
        &spec(&app, Delivery::Integrated),
        &second(&radio, Delivery::Integrated),
        &AuthorKey::P256(k),
    )
    .unwrap();
    for block in [1, 7, 64, 512, 100_000] {
        let mut sink = Collect::default();
        let done = stream(&env, &public, block, &[], &mut sink).unwrap();
        assert_eq!(sink.0.len(), 2, "block {block}");
        assert_eq!(sink.0[0], (0, Some(5000), app.clone()));
        assert_eq!(sink.0[1], (1, Some(3001), radio.clone()));
        assert_eq!(done.size, 5000);
        let (c, digest, size) = done.second.unwrap();
        assert_eq!((c, size), (1, 3001));
        assert_eq!(author::suit_digest(&radio)[4..], digest);
    }
}

#[test]
fn a_wrong_byte_in_either_image_is_refused_at_the_end_of_that_image() {
    let (k, public) = signer();
    let (app, radio) = (image(2000, 0), image(1000, 0x5a));
    let env = author::build_envelope_two(
        &spec(&app, Delivery::Integrated),
        &second(&radio, Delivery::Integrated),
        &AuthorKey::P256(k),
    )
    .unwrap();
    let app_at = env.windows(app.len()).position(|w| w == app).unwrap();
    let radio_at = env.windows(radio.len()).position(|w| w == radio).unwrap();
    for (at, images_begun) in [(app_at + 1500, 1), (radio_at + 999, 2)] {
        let mut bad = env.clone();
        bad[at] ^= 0x01;
        let mut sink = Collect::default();
        assert_eq!(
            stream(&bad, &public, 256, &[], &mut sink).unwrap_err(),
            SuitError::ImageDigestMismatch
        );
        assert_eq!(sink.0.len(), images_begun);
    }
}

#[test]
fn fetched_and_mixed_images_are_asked_for_one_after_another() {
    let (k, public) = signer();
    let key = AuthorKey::P256(k);
    let (app, radio) = (image(4100, 1), image(2222, 2));
    let (u0, u1) = ("coap://[::1]/app.bin", "coap://[::1]/radio.bin");
    let fetched = author::build_envelope_two(
        &spec(&app, Delivery::Uri(u0.into())),
        &second(&radio, Delivery::Uri(u1.into())),
        &key,
    )
    .unwrap();
    let mut sink = Collect::default();
    let done = stream(
        &fetched,
        &public,
        300,
        &[(u0, &app), (u1, &radio)],
        &mut sink,
    )
    .unwrap();
    assert_eq!((done.size, done.second.map(|s| s.2)), (4100, Some(2222)));
    assert_eq!(sink.0[0], (0, Some(4100), app.clone()));
    assert_eq!(sink.0[1], (1, Some(2222), radio.clone()));
    // The application in the envelope, the second image fetched.
    let mixed = author::build_envelope_two(
        &spec(&app, Delivery::Integrated),
        &second(&radio, Delivery::Uri(u1.into())),
        &key,
    )
    .unwrap();
    let mut sink = Collect::default();
    stream(&mixed, &public, 300, &[(u1, &radio)], &mut sink).unwrap();
    assert_eq!(sink.0.len(), 2);
    assert_eq!(sink.0[1].2, radio);
    // A wrong second image fetched is refused; the first stays the only one verified.
    let mut wrong = radio.clone();
    wrong[0] ^= 1;
    let mut sink = Collect::default();
    assert_eq!(
        stream(&mixed, &public, 300, &[(u1, &wrong)], &mut sink).unwrap_err(),
        SuitError::ImageDigestMismatch
    );
}

#[test]
fn a_manifest_installing_more_images_than_the_device_has_regions_is_refused() {
    // Three components, each with its own digest and integrated payload.
    let (k, public) = signer();
    let images = [image(100, 1), image(200, 2), image(300, 3)];
    let i = Value::Int;
    let mut shared = vec![
        i(20),
        Value::Map(vec![
            (i(1), Value::Bytes(VENDOR.to_vec())),
            (i(2), Value::Bytes(CLASS.to_vec())),
        ]),
    ];
    let mut install = Vec::new();
    for (c, img) in images.iter().enumerate() {
        shared.extend([
            i(12),
            i(c as i64),
            i(20),
            Value::Map(vec![
                (i(3), Value::Bytes(author::suit_digest(img))),
                (i(14), i(img.len() as i64)),
            ]),
        ]);
        install.extend([
            i(12),
            i(c as i64),
            i(20),
            Value::Map(vec![(i(21), Value::Text(format!("#c{c}")))]),
            i(21),
            i(15),
        ]);
    }
    let components: Vec<Value> = (0..3u8)
        .map(|c| Value::Array(vec![Value::Bytes(vec![c])]))
        .collect();
    let common = Value::Map(vec![
        (i(2), Value::Array(components)),
        (i(4), Value::wrap(&Value::Array(shared))),
    ]);
    let manifest = Value::Map(vec![
        (i(1), i(1)),
        (i(2), i(9)),
        (i(3), Value::wrap(&common)),
        (i(20), Value::wrap(&Value::Array(install))),
    ])
    .encode();
    let manifest_bstr = Value::Bytes(manifest).encode();
    let digest = author::suit_digest(&manifest_bstr);
    let block = author::sign1_block(&digest, SignAlg::Esp256, &AuthorKey::P256(k)).unwrap();
    let auth = Value::Array(vec![Value::Bytes(digest), Value::Bytes(block)]).encode();
    let mut env = vec![0xd8, 0x6b, 0xa2 + 3, 0x02];
    env.extend(Value::Bytes(auth).encode());
    env.push(0x03);
    env.extend(manifest_bstr);
    for (c, img) in images.iter().enumerate() {
        env.extend(Value::Text(format!("#c{c}")).encode());
        env.extend(Value::Bytes(img.clone()).encode());
    }
    let a = authenticate(&env, &[TrustAnchor::P256(&public)], &Software).unwrap();
    assert!(a.more_images);
    let mut sink = Collect::default();
    assert_eq!(
        stream(&env, &public, 128, &[], &mut sink).unwrap_err(),
        SuitError::BadComponent
    );
    assert!(sink.0.is_empty());
}
