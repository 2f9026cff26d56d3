//! The board's trust anchors in the form object5's verifier takes.

use object5::manifest::TrustAnchor;

/// P-256 trust anchors borrowed from SEC1 key bytes (as [`crate::board::TrustAnchors`] gives
/// them), for [`object5::slots::SuitAuthenticator`] and `object5::manifest::authenticate`.
pub fn p256_anchors(keys: &[Vec<u8>]) -> Vec<TrustAnchor<'_>> {
    keys.iter().map(|k| TrustAnchor::P256(k)).collect()
}
