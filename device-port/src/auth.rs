//! The board's trust anchors in the form object5's verifier takes.

use object5::manifest::TrustAnchor;

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
