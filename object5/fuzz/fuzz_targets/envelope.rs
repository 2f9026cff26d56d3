//! Fuzzes every SUIT entry point that sees untrusted bytes: whole-envelope authentication,
//! the streaming verifier at several block sizes (with decryption keys, so encrypted seeds
//! reach the content-key unwrap and the streamed decryption; two-image seeds reach the second
//! image; a two-stage package gets the input's second half as each fetched image; an
//! authenticated input is also resumed inside each image, integrated or fetched, as after a
//! reboot), and (since
//! a fuzzer cannot forge signatures) the manifest parser, the command interpreter with several
//! components, the SUIT_Encryption_Info parser and the decryptor directly. Seeds: the official
//! vectors, and envelopes signed with their key K1 whose payloads stream (object5's
//! `fuzz_seeds` example: encrypted integrated images, two-image packages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use object5::manifest::{
    authenticate, DecryptionKey, Decryptor, DeviceIdentity, EncryptionInfo, Envelope, Finished,
    Freshness, Interpreter, Manifest, Params, PayloadSink, Platform, Policy, Software,
    StreamVerifier, SuitError, TrustAnchor,
};

/// K1 of the draft (uncompressed SEC1) and the K3 HMAC key, so valid seeds authenticate.
const K1: [u8; 65] = [
    0x04, 0x84, 0x96, 0x81, 0x1a, 0xae, 0x0b, 0xaa, 0xab, 0xd2, 0x61, 0x57, 0x18, 0x9e, 0xec, 0xda,
    0x26, 0xbe, 0xaa, 0x8b, 0xf1, 0x1b, 0x6f, 0x3f, 0xe6, 0xe2, 0xb5, 0x65, 0x9c, 0x85, 0xdb, 0xc0,
    0xad, 0x3b, 0x1f, 0x2a, 0x4b, 0x6c, 0x09, 0x81, 0x31, 0xc0, 0xa3, 0x6d, 0xac, 0xd1, 0xd7, 0x8b,
    0xd3, 0x81, 0xdc, 0xdf, 0xb0, 0x9c, 0x05, 0x2d, 0xb3, 0x39, 0x91, 0xdb, 0x73, 0x38, 0xb4, 0xa8,
    0x96,
];
const K3: [u8; 32] = [b'a'; 32];
/// The enc24 examples' KEK ('a' x 16) and receiver key K4 ('kid-2', printed in the draft).
const KEK: [u8; 16] = [b'a'; 16];
const K4: [u8; 32] = [
    0x60, 0xfe, 0x6d, 0xd6, 0xd8, 0x5d, 0x57, 0x40, 0xa5, 0x34, 0x9b, 0x6f, 0x91, 0x26, 0x7e, 0xea,
    0xc5, 0xba, 0x81, 0xb8, 0xcb, 0x53, 0xee, 0x24, 0x9e, 0x4b, 0x4e, 0xb1, 0x02, 0xc4, 0x76, 0xb3,
];
const VENDOR: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
const CLASS: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x25, 0x69, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x2d, 0x51, 0xf2, 0xab, 0x45,
];

struct Discard;

impl PayloadSink for Discard {
    fn begin(&mut self, _: usize, _: Option<u64>) -> Result<(), SuitError> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> Result<(), SuitError> {
        Ok(())
    }
}

/// A platform with one 64-byte image per component, so every command has an effect path.
struct Tiny([u8; 64]);

impl Platform for Tiny {
    fn fetch(&mut self, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Ok(())
    }
    fn write(&mut self, _: usize, content: &[u8], _: &Params<'_>) -> Result<(), SuitError> {
        let n = content.len().min(64);
        self.0[..n].copy_from_slice(&content[..n]);
        Ok(())
    }
    fn copy(&mut self, _: usize, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Ok(())
    }
    fn swap(&mut self, _: usize, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Ok(())
    }
    fn invoke(&mut self, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Ok(())
    }
    fn slot_matches(&mut self, _: usize, slot: u64) -> bool {
        slot == 1
    }
    fn read_image(
        &mut self,
        _: usize,
        _: &Params<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, SuitError> {
        sink(&self.0);
        Ok(64)
    }
}

fuzz_target!(|data: &[u8]| {
    let anchors = [TrustAnchor::P256(&K1), TrustAnchor::Hmac256(&K3)];
    let _ = authenticate(data, &anchors, &Software);

    let identity = DeviceIdentity {
        vendor_id: &VENDOR,
        class_id: &CLASS,
        device_id: None,
    };
    let policy = Policy {
        anchors: &anchors,
        identity,
        freshness: Freshness::AtLeastInstalled(0),
    };
    let block = 1 + usize::from(data.first().copied().unwrap_or(0) % 97);
    let mut buf = [0u8; 1024];
    let keys = [
        DecryptionKey::Aes128Kw { kid: None, kek: &KEK },
        DecryptionKey::EcdhP256 { kid: None, private: &K4 },
    ];
    let mut v = StreamVerifier::new(&mut buf, policy, Software).with_decryption_keys(&keys);
    let mut ok = true;
    for chunk in data.chunks(block) {
        if v.feed(chunk, &mut Discard).is_err() {
            ok = false;
            break;
        }
    }
    // Where the integrated payloads began, for the resume below.
    let starts = [v.payload_offset(0), v.payload_offset(1)];
    let mut complete = false;
    if ok {
        // Two-stage pulls: the input's second half stands in for every fetched image.
        let fetched = data.get(data.len() / 2..).unwrap_or(&[]);
        let finished = v.finish();
        complete = matches!(finished, Ok(Finished::Complete(_)));
        let mut fetch = matches!(finished, Ok(Finished::FetchRequired { .. }));
        for _ in 0..3 {
            if !fetch || v.begin_fetched(&mut Discard).is_err() {
                break;
            }
            if fetched
                .chunks(block)
                .any(|chunk| v.feed_fetched(chunk, &mut Discard).is_err())
            {
                break;
            }
            fetch = matches!(v.finish_fetched(), Ok(Finished::FetchRequired { .. }));
        }
    }

    if let Ok(env) = Envelope::parse(data) {
        let _ = Manifest::parse(env.manifest);
        let _ = env.payloads().count();
        let verified = Verified { starts, complete };
        resume_inside_an_image(data, &env, policy, &keys, block, verified);
    }
    let _ = Manifest::parse(data);
    // The encryption structures as if a manifest had carried them.
    if let Ok(info) = EncryptionInfo::parse(data) {
        if let Ok(cek) = info.content_key(&keys, &Software) {
            if let Ok(mut d) = Decryptor::new(&info, &cek, data.len() as u64) {
                let mut copy = [0u8; 256];
                let n = data.len().min(copy.len());
                copy[..n].copy_from_slice(&data[..n]);
                let _ = d.skip_to(u64::from(data.get(1).copied().unwrap_or(0) % 4) * 16);
                let _ = d.update(&mut copy[..n]);
                let _ = d.finish();
            }
        }
    }
    for count in [1, 2, 3, 4] {
        if let Ok(mut vm) = Interpreter::new(count, identity, Software) {
            let _ = vm.run(data, &mut Tiny([0; 64]));
        }
    }
});

/// What the whole-input run of the streaming verifier found.
struct Verified {
    /// [`StreamVerifier::payload_offset`] of each image.
    starts: [Option<u64>; 2],
    /// The input verified completely (every image integrated).
    complete: bool,
}

/// What a device does after a reboot in the middle of a download of `data`: the head it
/// stored (`{2: wrapper, 3: manifest}`) authenticated again, then the download goes on inside
/// each image in turn, at its start and one AES block in: an integrated one with the rest of
/// the input from that point of its payload (where the whole-input run saw it begin, else of
/// the first payload), a fetched one with the input's second half as the rest of that image.
/// (Every byte of a package that authenticates but its payloads is signed, so the input
/// cannot choose where; all places are tried.) An input that verified completely must also
/// verify when resumed at a payload's own start: the bytes before the resume point are the
/// slot's to check, every later one is checked as before.
fn resume_inside_an_image(
    data: &[u8],
    env: &Envelope<'_>,
    policy: Policy<'_>,
    keys: &[DecryptionKey<'_>],
    block: usize,
    verified: Verified,
) {
    let mut head = vec![0xA2, 0x02];
    match env.auth.len() {
        n @ 0..=23 => head.push(0x40 | n as u8),
        n @ 24..=255 => head.extend_from_slice(&[0x58, n as u8]),
        n => {
            head.push(0x59);
            head.extend_from_slice(&(n.min(0xFFFF) as u16).to_be_bytes());
        }
    }
    head.extend_from_slice(env.auth);
    head.push(0x03);
    head.extend_from_slice(env.manifest_item);
    for image in 0..2 {
        for skip in [0usize, 16] {
            let mut buf = [0u8; 1024];
            let mut v = StreamVerifier::new(&mut buf, policy, Software).with_decryption_keys(keys);
            let load = |b: &mut [u8]| {
                b.get_mut(..head.len())?.copy_from_slice(&head);
                Some(head.len())
            };
            if v.reload(load).is_err() {
                return;
            }
            match v.is_integrated(image) {
                Some(true) => {
                    let own = verified.starts[image].and_then(|s| usize::try_from(s).ok());
                    let Some(at) = own.or_else(|| {
                        let payload = env.payloads().next()?;
                        Some((payload.bytes.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize))
                    }) else {
                        continue;
                    };
                    let Some(rest) = data.get(at.saturating_add(skip)..) else {
                        continue;
                    };
                    if v.resume_image(image, skip as u64).is_err() {
                        continue;
                    }
                    let fed = rest.chunks(block).all(|c| v.feed(c, &mut Discard).is_ok());
                    let finished = fed && v.finish().is_ok();
                    assert!(
                        finished || !(verified.complete && own.is_some()),
                        "a verified input fails when resumed in image {image} at {at} + {skip}"
                    );
                }
                Some(false) => {
                    if v.resume_image(image, skip as u64).is_err() {
                        continue;
                    }
                    let _ = v.resumed_fetch_uri();
                    let rest = data.get(data.len() / 2..).unwrap_or(&[]);
                    if rest.chunks(block).all(|c| v.feed_fetched(c, &mut Discard).is_ok()) {
                        let _ = v.finish_fetched();
                    }
                }
                None => {}
            }
        }
    }
}
