//! The board's trust anchors in the form object5's verifier takes.

use object5::manifest::{DecryptionKey, TrustAnchor};

/// P-256 trust anchors borrowed from SEC1 key bytes (as [`crate::board::TrustAnchors`] gives
/// them), for [`object5::slots::SuitAuthenticator`] and `object5::manifest::authenticate`.
pub fn p256_anchors(keys: &[Vec<u8>]) -> Vec<TrustAnchor<'_>> {
    keys.iter().map(|k| TrustAnchor::P256(k)).collect()
}

/// Every trust anchor of the board, P-256 and Ed25519 (as [`crate::board::TrustAnchors`] gives
/// them), for the bootloader's and the download path's verifier.
pub fn trust_anchors<'k>(p256: &'k [Vec<u8>], ed25519: &'k [[u8; 32]]) -> Vec<TrustAnchor<'k>> {
    let mut anchors = p256_anchors(p256);
    anchors.extend(ed25519.iter().map(|k| TrustAnchor::Ed25519(k)));
    anchors
}

/// A payload decryption key in the board's key store (a key kind beside the trust anchors;
/// draft-ietf-suit-firmware-encryption-24 section 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredDecryptionKey {
    /// The device's P-256 private key for ECDH-ES+A128KW.
    EcdhP256([u8; 32]),
    /// An A128KW key-encryption key shared with the firmware author.
    Aes128Kw([u8; 16]),
}

/// The stored decryption keys in the form object5's verifier takes.
pub fn decryption_keys(keys: &[StoredDecryptionKey]) -> Vec<DecryptionKey<'_>> {
    keys.iter()
        .map(|k| match k {
            StoredDecryptionKey::EcdhP256(private) => {
                DecryptionKey::EcdhP256 { kid: None, private }
            }
            StoredDecryptionKey::Aes128Kw(kek) => DecryptionKey::Aes128Kw { kid: None, kek },
        })
        .collect()
}
