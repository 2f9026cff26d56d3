//! The bootloader's manifest check: object5's SUIT verifier against the board's trust anchors.

use object5::manifest::{self, Software, TrustAnchor};
use object5::slots::{Authenticate, ManifestFacts, VerifyError};

/// Authenticates stored envelope heads with P-256 trust anchors (COSE_Sign1 ES256/ESP256) and
/// extracts sequence number, image size and digest of component 0.
pub struct SuitAuthenticator<'k> {
    anchors: Vec<TrustAnchor<'k>>,
}

impl<'k> SuitAuthenticator<'k> {
    /// An authenticator trusting `p256_keys` (SEC1).
    pub fn new(p256_keys: &'k [Vec<u8>]) -> Self {
        Self {
            anchors: p256_keys.iter().map(|k| TrustAnchor::P256(k)).collect(),
        }
    }
}

impl Authenticate for SuitAuthenticator<'_> {
    fn authenticate(&mut self, envelope: &[u8]) -> Result<ManifestFacts, VerifyError> {
        let verified = manifest::authenticate(envelope, &self.anchors, &Software)
            .map_err(|_| VerifyError::Authentication)?;
        let digest = verified.image.digest.ok_or(VerifyError::Manifest)?;
        let size = verified
            .image
            .size
            .and_then(|s| u32::try_from(s).ok())
            .ok_or(VerifyError::Manifest)?;
        Ok(ManifestFacts {
            sequence: verified.sequence_number,
            size,
            digest,
        })
    }
}
