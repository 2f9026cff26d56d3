//! P-256 keys as PEM: PKCS#8 private keys and SPKI public keys.

use crate::manifest::TrustAnchor;
use core::fmt;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use std::string::String;
use std::vec::Vec;

/// Why a key could not be made, read or used.
#[derive(Debug)]
pub enum KeyError {
    /// The system random source failed.
    Random(std::io::Error),
    /// Not a P-256 PKCS#8 private key / SPKI public key in PEM.
    Pem,
    /// Signing failed.
    Sign,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random(e) => write!(f, "system random source failed: {e}"),
            Self::Pem => f.write_str("not a P-256 key in PEM (PKCS#8 private or SPKI public)"),
            Self::Sign => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A fresh P-256 key: `(PKCS#8 private PEM, SPKI public PEM)`. Randomness comes from the
/// operating system (`/dev/urandom`).
pub fn generate_key_pem() -> Result<(String, String), KeyError> {
    use std::io::Read;
    let mut file = std::fs::File::open("/dev/urandom").map_err(KeyError::Random)?;
    loop {
        let mut bytes = [0u8; 32];
        file.read_exact(&mut bytes).map_err(KeyError::Random)?;
        // Rejection sampling: retry the (astronomically rare) values outside [1, n).
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            let private = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| KeyError::Pem)?;
            let public = public_pem(key.verifying_key())?;
            return Ok((String::from(private.as_str()), public));
        }
    }
}

fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|_| KeyError::Pem)
}

/// Reads a PKCS#8 private key PEM.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::Pem)
}

/// The public key PEM of a private key PEM.
pub fn public_pem_from_private(pem: &str) -> Result<String, KeyError> {
    public_pem(signing_key_from_pem(pem)?.verifying_key())
}

/// SEC1 public key bytes (uncompressed) from an SPKI public key PEM, the form trust anchors use.
pub fn public_sec1_from_pem(pem: &str) -> Result<Vec<u8>, KeyError> {
    use p256::pkcs8::DecodePublicKey;
    let key = p256::PublicKey::from_public_key_pem(pem).map_err(|_| KeyError::Pem)?;
    Ok(key.to_sec1_bytes().to_vec())
}

/// A key `package verify` and `package inspect` trust, owned, in the form the verifier takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorKey {
    /// P-256 public key, SEC1 uncompressed.
    P256(Vec<u8>),
    /// HMAC-256 shared secret (COSE_Mac0).
    Hmac256(Vec<u8>),
}

impl AnchorKey {
    /// A public key from an SPKI PEM.
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        public_sec1_from_pem(pem).map(Self::P256)
    }

    /// The trust anchor borrowing this key.
    pub fn anchor(&self) -> TrustAnchor<'_> {
        match self {
            Self::P256(k) => TrustAnchor::P256(k),
            Self::Hmac256(k) => TrustAnchor::Hmac256(k),
        }
    }
}
