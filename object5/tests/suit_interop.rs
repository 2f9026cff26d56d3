//! Interop with an independent COSE implementation (Python cbor2 + pycose + cryptography, run
//! through `python3`): packages our tool builds verify there, and envelopes that peer signs
//! verify here.

use object5::author::{self, Delivery, PackageSpec, SignAlg};
use object5::manifest::{
    DeviceIdentity, Finished, Freshness, PayloadSink, Policy, Software, StreamVerifier, SuitError,
    TrustAnchor,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn peer(args: &[&str]) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/suit/cose_peer.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 with cbor2, pycose and cryptography (scripts/test installs them)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("object5-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const VENDOR: [u8; 16] = [7; 16];
const CLASS: [u8; 16] = [8; 16];

#[test]
fn packages_built_by_the_tool_verify_with_pycose_and_cryptography() {
    let dir = temp_dir("interop-out");
    let (private, public) = author::generate_key_pem().unwrap();
    std::fs::write(dir.join("key.pub.pem"), &public).unwrap();
    let key = author::signing_key_from_pem(&private).unwrap();
    let image: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    for (alg, how) in [
        (SignAlg::Es256, "pycose ES256"),
        (SignAlg::Esp256, "cryptography ESP256"),
    ] {
        let spec = PackageSpec {
            vendor_id: VENDOR,
            class_id: CLASS,
            sequence_number: 42,
            version: "3.1".into(),
            name: "fw".into(),
            image: &image,
            delivery: Delivery::Integrated,
            alg,
        };
        let env = author::build_envelope(&spec, &key).unwrap();
        let path = dir.join("fw.suit");
        std::fs::write(&path, &env).unwrap();
        let (ok, out) = peer(&["verify", s(&path), s(&dir.join("key.pub.pem"))]);
        assert!(ok, "{out}");
        assert!(out.contains(&format!("OK {how} seq=42")), "{out}");
        // A flipped signature bit is caught by the peer too, so the check above has teeth.
        let mut bad = env.clone();
        // The signature is the last element of the wrapper.
        let auth = object5::manifest::Envelope::parse(&env).unwrap().auth;
        let last_sig_byte = auth.as_ptr() as usize - env.as_ptr() as usize + auth.len() - 1;
        bad[last_sig_byte] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let (ok, out) = peer(&["verify", s(&path), s(&dir.join("key.pub.pem"))]);
        assert!(!ok, "peer accepted a bad signature: {out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

struct Collect(Vec<u8>);

impl PayloadSink for Collect {
    fn begin(&mut self, _: usize, _: Option<u64>) -> Result<(), SuitError> {
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

#[test]
fn envelopes_signed_by_pycose_verify_and_stream_here() {
    let dir = temp_dir("interop-in");
    let (private, public) = author::generate_key_pem().unwrap();
    std::fs::write(dir.join("key.pem"), &private).unwrap();
    let image: Vec<u8> = (0..7000u32).map(|i| (i * 31) as u8).collect();
    std::fs::write(dir.join("fw.bin"), &image).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out_path = dir.join("peer.suit");
    let (ok, out) = peer(&[
        "sign",
        s(&out_path),
        s(&dir.join("key.pem")),
        s(&dir.join("fw.bin")),
        &hex(&VENDOR),
        &hex(&CLASS),
        "9",
    ]);
    assert!(ok, "{out}");
    let env = std::fs::read(&out_path).unwrap();
    let sec1 = author::public_sec1_from_pem(&public).unwrap();
    let anchors = [TrustAnchor::P256(&sec1)];
    let policy = Policy {
        anchors: &anchors,
        identity: DeviceIdentity {
            vendor_id: &VENDOR,
            class_id: &CLASS,
            device_id: None,
        },
        freshness: Freshness::NewerThanInstalled(8),
    };
    let mut buf = [0u8; 2048];
    let mut v = StreamVerifier::new(&mut buf, policy, Software);
    let mut sink = Collect(Vec::new());
    for block in env.chunks(256) {
        v.feed(block, &mut sink).unwrap();
    }
    match v.finish().unwrap() {
        Finished::Complete(done) => assert_eq!((done.sequence_number, done.size), (9, 7000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(sink.0, image);
    // The same envelope with another trust anchor is refused.
    let other = author::public_sec1_from_pem(&author::generate_key_pem().unwrap().1).unwrap();
    let e =
        object5::manifest::authenticate(&env, &[TrustAnchor::P256(&other)], &Software).unwrap_err();
    assert_eq!(e, SuitError::BadSignature);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ed25519_packages_verify_with_pycose_and_cryptography_both_ways() {
    let dir = temp_dir("interop-ed25519");
    let (private, public) = author::generate_key_pem_for(author::KeyAlg::Ed25519).unwrap();
    std::fs::write(dir.join("key.pem"), &private).unwrap();
    std::fs::write(dir.join("key.pub.pem"), &public).unwrap();
    let key = author::AuthorKey::from_pem(&private).unwrap();
    let image: Vec<u8> = (0..9000u32).map(|i| (i % 241) as u8).collect();
    // Ours -> peer, under both registrations.
    for (alg, how) in [
        (SignAlg::Ed25519, "cryptography Ed25519"),
        (SignAlg::EdDsa, "pycose EdDSA"),
    ] {
        let spec = PackageSpec {
            vendor_id: VENDOR,
            class_id: CLASS,
            sequence_number: 7,
            version: "1".into(),
            name: "fw".into(),
            image: &image,
            delivery: Delivery::Integrated,
            alg,
        };
        let env = author::build_envelope_with(&spec, &key).unwrap();
        let path = dir.join("fw.suit");
        std::fs::write(&path, &env).unwrap();
        let (ok, out) = peer(&["verify", s(&path), s(&dir.join("key.pub.pem"))]);
        assert!(ok && out.contains(&format!("OK {how} seq=7")), "{out}");
        let auth = object5::manifest::Envelope::parse(&env).unwrap().auth;
        let mut bad = env.clone();
        bad[auth.as_ptr() as usize - env.as_ptr() as usize + auth.len() - 1] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(!peer(&["verify", s(&path), s(&dir.join("key.pub.pem"))]).0);
    }
    // Peer -> ours: both algorithm ids stream through the device verifier with an Ed25519
    // trust anchor, and are refused with a P-256 anchor only.
    std::fs::write(dir.join("fw.bin"), &image).unwrap();
    let public = author::ed25519_public_from_pem(&public).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for alg in ["eddsa", "ed25519"] {
        let out_path = dir.join(format!("peer-{alg}.suit"));
        let (ok, out) = peer(&[
            "sign",
            s(&out_path),
            s(&dir.join("key.pem")),
            s(&dir.join("fw.bin")),
            &hex(&VENDOR),
            &hex(&CLASS),
            "11",
            alg,
        ]);
        assert!(ok, "{out}");
        let env = std::fs::read(&out_path).unwrap();
        let anchors = [TrustAnchor::Ed25519(&public)];
        let policy = Policy {
            anchors: &anchors,
            identity: DeviceIdentity {
                vendor_id: &VENDOR,
                class_id: &CLASS,
                device_id: None,
            },
            freshness: Freshness::NewerThanInstalled(10),
        };
        let mut buf = [0u8; 2048];
        let mut v = StreamVerifier::new(&mut buf, policy, Software);
        let mut sink = Collect(Vec::new());
        for block in env.chunks(300) {
            v.feed(block, &mut sink).unwrap();
        }
        match v.finish().unwrap() {
            Finished::Complete(done) => assert_eq!((done.sequence_number, done.size), (11, 9000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(sink.0, image);
        let p256 = author::public_sec1_from_pem(&author::generate_key_pem().unwrap().1).unwrap();
        let e = object5::manifest::authenticate(&env, &[TrustAnchor::P256(&p256)], &Software)
            .unwrap_err();
        assert_eq!(e, SuitError::BadSignature, "{alg}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Encrypted packages both ways (draft-ietf-suit-firmware-encryption-24): what our author
/// side encrypts, Python's cryptography decrypts to the image; what Python encrypts and
/// signs, the device's streaming verifier decrypts with its key, for A128GCM and A128CTR
/// under ECDH-ES+A128KW and A128KW.
#[test]
fn encrypted_packages_decrypt_with_python_cryptography_both_ways() {
    use object5::author::{ContentEncryption, Encryption, Recipient};
    use object5::manifest::DecryptionKey;
    let dir = temp_dir("interop-encrypted");
    let device = p256::SecretKey::from_slice(&[0x2a; 32]).unwrap();
    let device_private: [u8; 32] = device.to_bytes().into();
    let device_public = device.public_key().to_sec1_bytes().to_vec();
    {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        std::fs::write(
            dir.join("dev.pem"),
            device.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            dir.join("dev.pub.pem"),
            device
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
    }
    let kek = [0x6b; 16];
    std::fs::write(dir.join("kek.bin"), kek).unwrap();
    let (signer_pem, signer_pub) = author::generate_key_pem().unwrap();
    std::fs::write(dir.join("signer.pem"), &signer_pem).unwrap();
    let signer = author::AuthorKey::from_pem(&signer_pem).unwrap();
    let anchor = author::public_sec1_from_pem(&signer_pub).unwrap();
    let image: Vec<u8> = (0..12_345u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("fw.bin"), &image).unwrap();
    let keys = [
        DecryptionKey::EcdhP256 {
            kid: None,
            private: &device_private,
        },
        DecryptionKey::Aes128Kw {
            kid: None,
            kek: &kek,
        },
    ];
    let stream = |env: &[u8], seq: u64| -> Result<Vec<u8>, SuitError> {
        let anchors = [TrustAnchor::P256(&anchor)];
        let policy = Policy {
            anchors: &anchors,
            identity: DeviceIdentity {
                vendor_id: &VENDOR,
                class_id: &CLASS,
                device_id: None,
            },
            freshness: Freshness::NewerThanInstalled(seq - 1),
        };
        let mut buf = [0u8; 2048];
        let mut v = StreamVerifier::new(&mut buf, policy, Software).with_decryption_keys(&keys);
        let mut sink = Collect(Vec::new());
        for block in env.chunks(333) {
            v.feed(block, &mut sink)?;
        }
        match v.finish()? {
            Finished::Complete(_) => Ok(sink.0),
            other => panic!("{other:?}"),
        }
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for (content, name) in [
        (ContentEncryption::A128Gcm, "gcm"),
        (ContentEncryption::A128Ctr, "ctr"),
    ] {
        for (recipient, key_file, arg) in [
            (
                Recipient::EcdhP256(device_public.clone()),
                "dev.pem",
                format!("ecdh:{}", s(&dir.join("dev.pub.pem"))),
            ),
            (
                Recipient::Aes128Kw(kek),
                "kek.bin",
                format!("kek:{}", s(&dir.join("kek.bin"))),
            ),
        ] {
            // Ours -> Python.
            let spec = PackageSpec {
                vendor_id: VENDOR,
                class_id: CLASS,
                sequence_number: 3,
                version: "3".into(),
                name: "fw".into(),
                image: &image,
                delivery: Delivery::Integrated,
                alg: SignAlg::Esp256,
            };
            let enc = Encryption {
                recipient: recipient.clone(),
                content,
            };
            let (env, _) = author::build_envelope_encrypted(&spec, &signer, &enc).unwrap();
            let path = dir.join("ours.suit");
            std::fs::write(&path, &env).unwrap();
            let out = dir.join("plain.bin");
            let (ok, text) = peer(&["decrypt", s(&path), s(&dir.join(key_file)), s(&out)]);
            assert!(ok, "{name} {arg}: {text}");
            assert_eq!(std::fs::read(&out).unwrap(), image, "{name} {arg}: {text}");
            // Python -> ours, through the device's streaming verifier.
            let path = dir.join("peer.suit");
            let (ok, text) = peer(&[
                "sign-encrypted",
                s(&path),
                s(&dir.join("signer.pem")),
                s(&dir.join("fw.bin")),
                &hex(&VENDOR),
                &hex(&CLASS),
                "4",
                &arg,
                name,
            ]);
            assert!(ok, "{text}");
            let env = std::fs::read(&path).unwrap();
            assert_eq!(stream(&env, 4).unwrap(), image, "{name} {arg}");
            // The peer's ciphertext with one changed byte is refused.
            let mut bad = env.clone();
            let at = bad.len() - 10;
            bad[at] ^= 1;
            let e = stream(&bad, 4).unwrap_err();
            assert_eq!(e.update_result().code(), 5, "{name} {arg}: {e}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
