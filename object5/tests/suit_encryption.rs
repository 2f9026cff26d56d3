//! Encrypted payloads (draft-ietf-suit-firmware-encryption-24) against the official examples:
//! the enc24 vectors' content keys open with K4 (ECDH-ES+A128KW) and the KEK (A128KW), and
//! their payloads decrypt to payloads/raw_image.bin, as INDEX.md says; the draft's AES-CTR
//! and AES-GCM known answers decrypt in any block split; wrong keys and changed bytes fail.

#[path = "suit/common.rs"]
mod common;

use common::read;
use object5::author::Value;
use object5::manifest::{
    static_params, ContentAlg, DecryptionKey, Decryptor, EncryptionInfo, Envelope, Manifest,
    Software, SuitError,
};

fn k4() -> [u8; 32] {
    use p256::pkcs8::DecodePrivateKey;
    let pem = String::from_utf8(read("keys/K4_kid-2_ecdh_receiver_p256_private.pem")).unwrap();
    p256::SecretKey::from_pkcs8_pem(&pem)
        .unwrap()
        .to_bytes()
        .into()
}

fn kek() -> [u8; 16] {
    read("keys/KEK_kid-1_a128kw.key").try_into().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Decrypts `payload` in blocks of `block` bytes.
fn decrypt(
    info: &EncryptionInfo<'_>,
    cek: &[u8; 16],
    payload: &[u8],
    block: usize,
) -> Result<Vec<u8>, SuitError> {
    let mut d = Decryptor::new(info, cek, payload.len() as u64)?;
    let mut out = Vec::new();
    for chunk in payload.chunks(block) {
        let mut buf = chunk.to_vec();
        let n = d.update(&mut buf)?;
        out.extend_from_slice(&buf[..n]);
    }
    d.finish()?;
    Ok(out)
}

/// Component 0's encryption info and content (if written) from a vector's install sequence.
fn component0(file: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let env_bytes = read(file);
    let env = Envelope::parse(&env_bytes).unwrap();
    let m = Manifest::parse(env.manifest).unwrap();
    let install = match m.install {
        object5::manifest::Member::Present(b) => b,
        other => panic!("{other:?}"),
    };
    let p = static_params(&[m.shared_sequence, Some(install)], 0, m.component_count).unwrap();
    (
        p.encryption_info.expect("encryption info").to_vec(),
        p.content.map(<[u8]>::to_vec),
    )
}

#[test]
fn the_enc24_vectors_decrypt_to_the_raw_image_with_k4_and_the_kek() {
    let raw = read("payloads/raw_image.bin");
    let (k4, kek) = (k4(), kek());
    let keys = [
        DecryptionKey::EcdhP256 {
            kid: Some(b"kid-2"),
            private: &k4,
        },
        DecryptionKey::Aes128Kw {
            kid: Some(b"kid-1"),
            kek: &kek,
        },
    ];
    // Written content (the payload is in the signed manifest) ...
    for file in ["enc24_es_ecdh_content.cbor", "enc24_aes_kw_content.cbor"] {
        let (info, content) = component0(file);
        let info = EncryptionInfo::parse(&info).unwrap();
        assert_eq!(info.alg, ContentAlg::A128Gcm, "{file}");
        let cek = info.content_key(&keys, &Software).unwrap();
        let content = content.expect("parameter-content");
        for block in [1, 5, 16, 17, content.len()] {
            assert_eq!(
                decrypt(&info, &cek, &content, block).unwrap(),
                raw,
                "{file} {block}"
            );
        }
    }
    // ... and the fetched payload of the fetch + decrypting-copy examples.
    for file in ["enc24_aes_kw.cbor", "enc24_aes_kw_slot.cbor"] {
        let (info, _) = component0(file);
        let info = EncryptionInfo::parse(&info).unwrap();
        let cek = info.content_key(&keys, &Software).unwrap();
        let payload = read("payloads/encrypted-payload-aes-kw-aes-gcm.bin");
        assert_eq!(decrypt(&info, &cek, &payload, 7).unwrap(), raw, "{file}");
    }
}

#[test]
fn wrong_keys_changed_bytes_and_wrong_lengths_are_refused() {
    let raw = read("payloads/raw_image.bin");
    let (info_bytes, content) = component0("enc24_es_ecdh_content.cbor");
    let content = content.unwrap();
    let info = EncryptionInfo::parse(&info_bytes).unwrap();
    // Another P-256 key, the KEK (wrong kind) and a kid that does not match open nothing.
    let other = [7u8; 32];
    let kek = kek();
    let k4 = k4();
    for keys in [
        vec![DecryptionKey::EcdhP256 {
            kid: None,
            private: &other,
        }],
        vec![DecryptionKey::Aes128Kw {
            kid: None,
            kek: &kek,
        }],
        vec![DecryptionKey::EcdhP256 {
            kid: Some(b"kid-9"),
            private: &k4,
        }],
        vec![],
    ] {
        let e = info.content_key(&keys, &Software).unwrap_err();
        assert_eq!(
            (e, e.update_result().code()),
            (SuitError::NoDecryptionKey, 5)
        );
    }
    let cek = info
        .content_key(
            &[DecryptionKey::EcdhP256 {
                kid: None,
                private: &k4,
            }],
            &Software,
        )
        .unwrap();
    // Any changed ciphertext or tag byte fails the GCM tag.
    for i in 0..content.len() {
        let mut bad = content.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            decrypt(&info, &cek, &bad, 8).unwrap_err(),
            SuitError::DecryptionFailed,
            "{i}"
        );
    }
    // A wrong content key fails the tag too; lengths that disagree are size errors.
    let mut wrong = cek;
    wrong[0] ^= 1;
    assert_eq!(
        decrypt(&info, &wrong, &content, 8).unwrap_err(),
        SuitError::DecryptionFailed
    );
    let mut d = Decryptor::new(&info, &cek, content.len() as u64).unwrap();
    let mut long = [content.as_slice(), &[0]].concat();
    assert_eq!(
        d.update(&mut long).unwrap_err(),
        SuitError::ImageSizeMismatch
    );
    let mut d = Decryptor::new(&info, &cek, content.len() as u64).unwrap();
    let mut short = content[..40].to_vec();
    d.update(&mut short).unwrap();
    assert_eq!(d.finish().unwrap_err(), SuitError::ImageSizeMismatch);
    assert_eq!(decrypt(&info, &cek, &content, 3).unwrap(), raw);
}

/// A COSE_Encrypt with one A128KW recipient around `cek`... for the draft's known answers the
/// content key is given, so the recipient is never opened.
fn info_for(alg: i64, iv: &[u8]) -> Vec<u8> {
    let (protected, unprotected) = if alg == -65534 {
        (
            vec![],
            vec![
                (Value::Int(1), Value::Int(alg)),
                (Value::Int(5), Value::Bytes(iv.to_vec())),
            ],
        )
    } else {
        (
            Value::Map(vec![(Value::Int(1), Value::Int(alg))]).encode(),
            vec![(Value::Int(5), Value::Bytes(iv.to_vec()))],
        )
    };
    Value::Tag(
        96,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(unprotected),
            Value::Null,
            Value::Array(vec![Value::Array(vec![
                Value::Bytes(vec![]),
                Value::Map(vec![(Value::Int(1), Value::Int(-3))]),
                Value::Bytes(vec![0; 24]),
            ])]),
        ])),
    )
    .encode()
}

#[test]
fn the_drafts_ctr_and_gcm_payloads_decrypt_with_its_content_keys() {
    let raw = read("payloads/raw_image.bin");
    // Section 5.2: AES-CTR-128, k 261DE6..., IV DAE613..., both key distributions.
    let ctr_info = info_for(-65534, &hex("DAE613B2E0DC55F4322BE38BDBA9DC68"));
    let ctr = EncryptionInfo::parse(&ctr_info).unwrap();
    assert_eq!(ctr.alg, ContentAlg::A128Ctr);
    let k: [u8; 16] = hex("261DE6165070FB8951EC5D7B92A065FE").try_into().unwrap();
    for file in [
        "encrypted-payload-aes-kw-aes-ctr.bin",
        "encrypted-payload-es-ecdh-aes-ctr.bin",
    ] {
        let payload = read(&format!("payloads/{file}"));
        for block in [1, 15, 16, 30] {
            assert_eq!(decrypt(&ctr, &k, &payload, block).unwrap(), raw, "{file}");
        }
    }
    // Section 5.1: AES-GCM-128, k 15F785..., IV F14AAB9D81D51F7AD943FE87.
    let gcm_info = info_for(1, &hex("F14AAB9D81D51F7AD943FE87"));
    let gcm = EncryptionInfo::parse(&gcm_info).unwrap();
    let k: [u8; 16] = hex("15F785B5C931414411B4B71373A9C0F7").try_into().unwrap();
    for file in [
        "encrypted-payload-aes-kw-aes-gcm.bin",
        "encrypted-payload-es-ecdh-aes-gcm.bin",
    ] {
        let payload = read(&format!("payloads/{file}"));
        for block in [1, 13, 16, 46] {
            assert_eq!(decrypt(&gcm, &k, &payload, block).unwrap(), raw, "{file}");
        }
    }
}

mod streamed {
    use super::*;
    use object5::author::{
        build_envelope_encrypted, AuthorKey, ContentEncryption, Delivery, Encryption, PackageSpec,
        Recipient, SignAlg,
    };
    use object5::manifest::{
        DeviceIdentity, Finished, Freshness, PayloadSink, Policy, StreamVerifier, TrustAnchor,
    };

    const VENDOR: [u8; 16] = [0x51; 16];
    const CLASS: [u8; 16] = [0x52; 16];

    #[derive(Default)]
    struct Collect(Vec<u8>, bool);

    impl PayloadSink for Collect {
        fn begin(&mut self, component: usize, _: Option<u64>) -> Result<(), SuitError> {
            assert_eq!(component, 0);
            self.1 = true;
            Ok(())
        }
        fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }

    pub struct Fixture {
        pub signer: AuthorKey,
        pub anchor: Vec<u8>,
        pub device_private: [u8; 32],
        pub device_public: Vec<u8>,
        pub kek: [u8; 16],
    }

    pub fn fixture() -> Fixture {
        let sk = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
        let anchor = sk.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let device = p256::SecretKey::from_slice(&[6u8; 32]).unwrap();
        Fixture {
            signer: AuthorKey::P256(sk),
            anchor,
            device_private: device.to_bytes().into(),
            device_public: device.public_key().to_sec1_bytes().to_vec(),
            kek: [0x4b; 16],
        }
    }

    pub fn image(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + i / 97) as u8).collect()
    }

    pub fn build(
        f: &Fixture,
        img: &[u8],
        enc: &Encryption,
        delivery: Delivery,
    ) -> (Vec<u8>, Vec<u8>) {
        let spec = PackageSpec {
            vendor_id: VENDOR,
            class_id: CLASS,
            sequence_number: 9,
            version: "9".into(),
            name: "enc".into(),
            image: img,
            delivery,
            alg: SignAlg::Esp256,
        };
        build_envelope_encrypted(&spec, &f.signer, enc).unwrap()
    }

    /// Streams `env` (then `fetched`, for a URI package) with `keys`; returns the plaintext.
    pub fn stream(
        f: &Fixture,
        env: &[u8],
        fetched: Option<&[u8]>,
        keys: &[DecryptionKey<'_>],
        block: usize,
    ) -> Result<Vec<u8>, (SuitError, bool)> {
        let anchors = [TrustAnchor::P256(&f.anchor)];
        let policy = Policy {
            anchors: &anchors,
            identity: DeviceIdentity {
                vendor_id: &VENDOR,
                class_id: &CLASS,
                device_id: None,
            },
            freshness: Freshness::NewerThanInstalled(1),
        };
        let mut buf = vec![0u8; 2048];
        let mut v = StreamVerifier::new(&mut buf, policy, Software).with_decryption_keys(keys);
        let mut sink = Collect::default();
        let r = (|| {
            for b in env.chunks(block) {
                v.feed(b, &mut sink)?;
            }
            match v.finish()? {
                Finished::Complete(done) => Ok(done.size),
                Finished::FetchRequired { .. } => {
                    v.begin_fetched(&mut sink)?;
                    for b in fetched.expect("URI package").chunks(block) {
                        v.feed_fetched(b, &mut sink)?;
                    }
                    match v.finish_fetched()? {
                        Finished::Complete(done) => Ok(done.size),
                        other => panic!("one image expected: {other:?}"),
                    }
                }
            }
        })();
        match r {
            Ok(size) => {
                assert_eq!(size, sink.0.len() as u64);
                Ok(sink.0)
            }
            Err(e) => Err((e, sink.1)),
        }
    }

    fn encryptions(f: &Fixture) -> Vec<Encryption> {
        let mut out = Vec::new();
        for content in [ContentEncryption::A128Gcm, ContentEncryption::A128Ctr] {
            out.push(Encryption {
                recipient: Recipient::EcdhP256(f.device_public.clone()),
                content,
            });
            out.push(Encryption {
                recipient: Recipient::Aes128Kw(f.kek),
                content,
            });
        }
        out
    }

    #[test]
    fn encrypted_packages_decrypt_as_they_stream_in_any_block_size() {
        let f = fixture();
        let img = image(5000);
        let keys = [
            DecryptionKey::EcdhP256 {
                kid: None,
                private: &f.device_private,
            },
            DecryptionKey::Aes128Kw {
                kid: None,
                kek: &f.kek,
            },
        ];
        for enc in encryptions(&f) {
            let (env, ciphertext) = build(&f, &img, &enc, Delivery::Integrated);
            assert_ne!(&ciphertext[..img.len()], &img[..], "{enc:?}");
            for block in [1, 17, 64, 1000, env.len()] {
                assert_eq!(
                    stream(&f, &env, None, &keys, block).unwrap(),
                    img,
                    "{enc:?} {block}"
                );
            }
            let uri = Delivery::Uri("coap://[::1]/fw.enc".into());
            let (env, ciphertext) = build(&f, &img, &enc, uri);
            assert_eq!(
                stream(&f, &env, Some(&ciphertext), &keys, 100).unwrap(),
                img,
                "{enc:?}"
            );
        }
    }

    #[test]
    fn a_wrong_key_or_a_changed_ciphertext_is_an_integrity_failure() {
        let f = fixture();
        let img = image(3000);
        let other_private = [9u8; 32];
        let other_kek = [1u8; 16];
        for enc in encryptions(&f) {
            let (env, _) = build(&f, &img, &enc, Delivery::Integrated);
            // The wrong key of the right kind: refused before the sink saw a byte.
            let wrong = match enc.recipient {
                Recipient::EcdhP256(_) => DecryptionKey::EcdhP256 {
                    kid: None,
                    private: &other_private,
                },
                Recipient::Aes128Kw(_) => DecryptionKey::Aes128Kw {
                    kid: None,
                    kek: &other_kek,
                },
            };
            let (e, begun) = stream(&f, &env, None, &[wrong], 256).unwrap_err();
            assert_eq!(
                (e, e.update_result().code(), begun),
                (SuitError::NoDecryptionKey, 5, false),
                "{enc:?}"
            );
            // A device without decryption keys refuses the same way.
            assert_eq!(
                stream(&f, &env, None, &[], 256).unwrap_err().0,
                SuitError::NoDecryptionKey
            );
            // A changed ciphertext byte: GCM's tag or CTR's ciphertext digest refuses it.
            let keys = [
                DecryptionKey::EcdhP256 {
                    kid: None,
                    private: &f.device_private,
                },
                DecryptionKey::Aes128Kw {
                    kid: None,
                    kek: &f.kek,
                },
            ];
            for at in [env.len() - 1, env.len() - 20, env.len() - 2000] {
                let mut bad = env.clone();
                bad[at] ^= 0x04;
                let (e, _) = stream(&f, &bad, None, &keys, 256).unwrap_err();
                let want = match enc.content {
                    ContentEncryption::A128Gcm => SuitError::DecryptionFailed,
                    ContentEncryption::A128Ctr => SuitError::ImageDigestMismatch,
                };
                assert_eq!((e, e.update_result().code()), (want, 5), "{enc:?} {at}");
            }
        }
    }
}

/// `package verify`'s check with decryption keys: every enc24 vector's component 0 decrypts
/// to the raw image (the fetched ones with the draft's encrypted payload given as the image),
/// and without keys the check lists what it could not decrypt.
#[test]
fn the_author_check_decrypts_every_enc24_vector_to_the_raw_image() {
    use object5::author::{check_package, CheckOptions};
    use object5::manifest::TrustAnchor;
    let raw = read("payloads/raw_image.bin");
    let fetched = read("payloads/encrypted-payload-aes-kw-aes-gcm.bin");
    let (k4, kek) = (k4(), kek());
    let keys = [
        DecryptionKey::EcdhP256 {
            kid: Some(b"kid-2"),
            private: &k4,
        },
        DecryptionKey::Aes128Kw {
            kid: Some(b"kid-1"),
            kek: &kek,
        },
    ];
    let (k1, k2, k3) = (common::key("K1"), common::key("K2"), common::key("K3"));
    let cases: [(&str, Vec<TrustAnchor>, bool); 5] = [
        ("enc24_aes_kw.cbor", vec![TrustAnchor::Hmac256(&k3)], true),
        (
            "enc24_aes_kw_slot.cbor",
            vec![TrustAnchor::Hmac256(&k3)],
            true,
        ),
        (
            "enc24_aes_kw_content.cbor",
            vec![TrustAnchor::Hmac256(&k3)],
            false,
        ),
        (
            "enc24_es_ecdh_content.cbor",
            vec![TrustAnchor::P256(&k1)],
            false,
        ),
        (
            "enc24_es_ecdh_dependency.cbor",
            vec![TrustAnchor::P256(&k2), TrustAnchor::P256(&k1)],
            false,
        ),
    ];
    for (file, anchors, needs_image) in cases {
        let env = read(file);
        let opts = CheckOptions {
            image: needs_image.then_some(fetched.as_slice()),
            decryption_keys: &keys,
            ..CheckOptions::default()
        };
        let report = check_package(&env, &anchors, &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            report.component0.as_deref(),
            Some(raw.as_slice()),
            "{file}: {report:#?}"
        );
        assert!(
            report
                .checked
                .iter()
                .any(|l| l.contains("decrypted (A128GCM, tag verified), 30 bytes")),
            "{file}: {report:#?}"
        );
        // Without keys: authentic, and the encrypted part is listed, not decrypted.
        let opts = CheckOptions {
            decryption_keys: &[],
            ..opts
        };
        let report = check_package(&env, &anchors, &opts).unwrap();
        assert_eq!(report.component0, None, "{file}");
        assert!(
            report
                .needs_device
                .iter()
                .any(|l| l.contains("give --decrypt-key or --kek")),
            "{file}: {report:#?}"
        );
        // A key that opens nothing is an integrity failure, as on the device.
        let other = [3u8; 16];
        let opts = CheckOptions {
            decryption_keys: &[DecryptionKey::Aes128Kw {
                kid: None,
                kek: &other,
            }],
            ..opts
        };
        let e = check_package(&env, &anchors, &opts).unwrap_err();
        assert_eq!(
            (e, e.update_result().code()),
            (SuitError::NoDecryptionKey, 5),
            "{file}"
        );
    }
}
