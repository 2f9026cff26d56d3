//! Encrypting an image for `package build --encrypt-for` / `--kek`
//! (draft-ietf-suit-firmware-encryption-24): a fresh content key (CEK) encrypts the image
//! with A128GCM or A128CTR, and one COSE recipient carries the CEK wrapped with A128KW, under
//! a pre-shared KEK or under a KEK derived by ECDH-ES with the device's P-256 public key
//! (section 4.2, RFC 9053 section 6.3.1). The result is the SUIT_Encryption_Info and the
//! ciphertext the envelope carries.

use super::keys::KeyError;
use super::Value;
use crate::manifest::{ecdh_kek, Software, ALG_A128CTR, ALG_A128GCM};
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

/// Content encryption algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentEncryption {
    /// AES-128-GCM (COSE 1), the default: authenticated; 16-byte tag after the ciphertext.
    #[default]
    A128Gcm,
    /// AES-128-CTR (COSE -65534, RFC 9459): not authenticated by itself, so the manifest also
    /// carries the ciphertext's digest (checked before the image is accepted).
    A128Ctr,
}

/// Who can decrypt: the key the CEK is wrapped for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// ECDH-ES+A128KW to the device's P-256 public key (SEC1).
    EcdhP256(Vec<u8>),
    /// A128KW with a KEK shared with the device.
    Aes128Kw([u8; 16]),
}

/// How a package's image is encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    /// The recipient key.
    pub recipient: Recipient,
    /// The content algorithm.
    pub content: ContentEncryption,
}

/// An encrypted image: the encoded SUIT_Encryption_Info (COSE_Encrypt) and the ciphertext
/// (with the GCM tag appended).
pub struct Encrypted {
    /// suit-parameter-encryption-info content.
    pub info: Vec<u8>,
    /// The payload the envelope or server carries.
    pub ciphertext: Vec<u8>,
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    use std::io::Read;
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(KeyError::Random)?;
    Ok(out)
}

fn int(v: i64) -> Value {
    Value::Int(v)
}

/// Encrypts `image` as `enc` says, with fresh random CEK, IV and (for ECDH) ephemeral key.
pub fn encrypt_image(image: &[u8], enc: &Encryption) -> Result<Encrypted, KeyError> {
    let cek: [u8; 16] = random()?;
    let recipient = wrap_for(&enc.recipient, &cek)?;
    match enc.content {
        ContentEncryption::A128Gcm => {
            use aes_gcm::aead::{AeadInOut, KeyInit};
            let iv: [u8; 12] = random()?;
            let protected = Value::Map(vec![(int(1), int(ALG_A128GCM))]).encode();
            // AAD: Enc_structure ["Encrypt", protected, h''] (RFC 9052 section 5.3).
            let aad = Value::Array(vec![
                Value::Text("Encrypt".into()),
                Value::Bytes(protected.clone()),
                Value::Bytes(vec![]),
            ])
            .encode();
            let mut ciphertext = image.to_vec();
            let tag = aes_gcm::Aes128Gcm::new((&cek).into())
                .encrypt_inout_detached((&iv).into(), &aad, ciphertext.as_mut_slice().into())
                .map_err(|_| KeyError::Sign)?;
            ciphertext.extend_from_slice(&tag);
            let info = cose_encrypt(
                protected,
                vec![(int(5), Value::Bytes(iv.to_vec()))],
                recipient,
            );
            Ok(Encrypted { info, ciphertext })
        }
        ContentEncryption::A128Ctr => {
            use aes::cipher::{KeyIvInit, StreamCipher};
            let iv: [u8; 16] = random()?;
            let mut ciphertext = image.to_vec();
            ctr::Ctr128BE::<aes::Aes128>::new((&cek).into(), (&iv).into())
                .apply_keystream(&mut ciphertext);
            // RFC 9459: no protected header; the algorithm goes unprotected.
            let unprotected = vec![
                (int(1), int(ALG_A128CTR)),
                (int(5), Value::Bytes(iv.to_vec())),
            ];
            let info = cose_encrypt(vec![], unprotected, recipient);
            Ok(Encrypted { info, ciphertext })
        }
    }
}

fn cose_encrypt(protected: Vec<u8>, unprotected: Vec<(Value, Value)>, recipient: Value) -> Vec<u8> {
    Value::Tag(
        96,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(unprotected),
            Value::Null, // detached: the ciphertext is the payload
            Value::Array(vec![recipient]),
        ])),
    )
    .encode()
}

fn a128kw(kek: &[u8; 16], cek: &[u8; 16]) -> Result<Vec<u8>, KeyError> {
    use aes::cipher::KeyInit;
    let mut out = [0u8; 24];
    let wrapped = aes_kw::KwAes128::new(kek.into())
        .wrap_key(cek, &mut out)
        .map_err(|_| KeyError::Sign)?;
    Ok(wrapped.to_vec())
}

/// The COSE_recipient for `to` carrying `cek`.
fn wrap_for(to: &Recipient, cek: &[u8; 16]) -> Result<Value, KeyError> {
    match to {
        Recipient::Aes128Kw(kek) => Ok(Value::Array(vec![
            Value::Bytes(vec![]), // AES-KW has no protected parameters (section 4.1.3)
            Value::Map(vec![(int(1), int(-3))]),
            Value::Bytes(a128kw(kek, cek)?),
        ])),
        Recipient::EcdhP256(public) => {
            use p256::elliptic_curve::sec1::ToSec1Point;
            let device = p256::PublicKey::from_sec1_bytes(public).map_err(|_| KeyError::Pem)?;
            let ephemeral = loop {
                if let Ok(k) = p256::SecretKey::from_slice(&random::<32>()?) {
                    break k;
                }
            };
            let shared =
                p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), device.as_affine());
            let protected = Value::Map(vec![(int(1), int(-29))]).encode();
            let kek = ecdh_kek(&Software, &[], shared.raw_secret_bytes(), &protected);
            let point = ephemeral.public_key().to_sec1_point(false);
            let (x, y) = (
                point.x().ok_or(KeyError::Pem)?,
                point.y().ok_or(KeyError::Pem)?,
            );
            let cose_key = Value::Map(vec![
                (int(1), int(2)),
                (int(-1), int(1)),
                (int(-2), Value::Bytes(x.to_vec())),
                (int(-3), Value::Bytes(y.to_vec())),
            ]);
            Ok(Value::Array(vec![
                Value::Bytes(protected),
                Value::Map(vec![(int(-1), cose_key)]),
                Value::Bytes(a128kw(&kek, cek)?),
            ]))
        }
    }
}
