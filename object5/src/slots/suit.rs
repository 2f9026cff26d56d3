//! The SUIT verifier as the slot manager's [`Authenticate`]: what a minimal bootloader built
//! from object5 runs before it activates a candidate.

use super::{Authenticate, ImageFacts, ManifestFacts, VerifyError};
use crate::manifest::{
    self, Authenticated, CryptoBackend, DeviceIdentity, Freshness, Policy, TrustAnchor,
};

impl ManifestFacts {
    /// The facts of an authenticated envelope: its sequence number, component 0's image size
    /// and digest, and those of its second image. `None` when the manifest lacks a digest or
    /// size, a size exceeds 4 GiB, or it installs more images than a slot holds.
    pub fn from_authenticated(verified: &Authenticated<'_>) -> Option<Self> {
        let facts = |image: &manifest::ImageInfo<'_>| {
            Some(ImageFacts {
                size: image.size.and_then(|s| u32::try_from(s).ok())?,
                digest: image.digest?,
            })
        };
        if verified.more_images {
            return None;
        }
        let first = facts(&verified.image)?;
        let second = match &verified.second {
            Some(s) => Some(facts(&s.image)?),
            None => None,
        };
        Some(Self {
            sequence: verified.sequence_number,
            size: first.size,
            digest: first.digest,
            second,
        })
    }
}

/// Authenticates stored envelope heads against `anchors` with `crypto`, and optionally checks
/// that the manifest is for this device's vendor and class. (The sequence number is checked by
/// the slot manager against its floor.)
pub struct SuitAuthenticator<'a, C: CryptoBackend> {
    anchors: &'a [TrustAnchor<'a>],
    identity: Option<DeviceIdentity<'a>>,
    crypto: C,
}

impl<'a, C: CryptoBackend> SuitAuthenticator<'a, C> {
    /// An authenticator trusting `anchors`.
    pub fn new(anchors: &'a [TrustAnchor<'a>], crypto: C) -> Self {
        Self {
            anchors,
            identity: None,
            crypto,
        }
    }

    /// Also refuses manifests for another vendor or class (SUIT section 6.2).
    pub fn with_identity(mut self, identity: DeviceIdentity<'a>) -> Self {
        self.identity = Some(identity);
        self
    }
}

impl<C: CryptoBackend> SuitAuthenticator<'_, C> {
    /// Authenticates `envelope` and, when `policy` is set and an identity is configured,
    /// checks vendor and class. One body for both [`Authenticate`] methods: the slot manager
    /// calls either from the same frame, and two inlined copies would each keep their own
    /// authenticated manifest, one under the other's P-256 frames.
    fn facts(&self, envelope: &[u8], policy: bool) -> Result<ManifestFacts, VerifyError> {
        let verified = manifest::authenticate(envelope, self.anchors, &self.crypto)
            .map_err(|_| VerifyError::Authentication)?;
        if let (true, Some(identity)) = (policy, self.identity) {
            let policy = Policy {
                anchors: self.anchors,
                identity,
                freshness: Freshness::AtLeastInstalled(0),
            };
            policy.check(&verified).map_err(|_| VerifyError::Manifest)?;
        }
        ManifestFacts::from_authenticated(&verified).ok_or(VerifyError::Manifest)
    }
}

impl<C: CryptoBackend> Authenticate for SuitAuthenticator<'_, C> {
    fn authenticate_installed(&mut self, envelope: &[u8]) -> Result<ManifestFacts, VerifyError> {
        self.facts(envelope, false)
    }

    fn authenticate(&mut self, envelope: &[u8]) -> Result<ManifestFacts, VerifyError> {
        self.facts(envelope, true)
    }
}
