//! The device's acceptance policy (section 6.1, 6.2, 8.4.2): which keys it trusts, which
//! vendor and class it is, and the sequence number it already runs.

use super::auth::TrustAnchor;
use super::interp::DeviceIdentity;
use super::{Authenticated, ImageInfo, SuitError};

/// What a new sequence number is compared against.
///
/// Lower is always refused (section 8.4.2). An *equal* number is a replay when it arrives as a
/// new download ([`Freshness::NewerThanInstalled`]) and refused; it is expected when the
/// bootloader re-verifies the installed or pending image ([`Freshness::AtLeastInstalled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Download path: accept only `sequence > installed`.
    NewerThanInstalled(u64),
    /// Re-verification path (boot, re-check of a stored package): accept `sequence >= installed`.
    AtLeastInstalled(u64),
}

impl Freshness {
    /// Checks `sequence` against the floor.
    pub fn check(self, sequence: u64) -> Result<(), SuitError> {
        let ok = match self {
            Self::NewerThanInstalled(floor) => sequence > floor,
            Self::AtLeastInstalled(floor) => sequence >= floor,
        };
        if ok {
            Ok(())
        } else {
            Err(SuitError::Rollback)
        }
    }
}

/// Everything a device decides acceptance with.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'p> {
    /// Keys allowed to authorise firmware (several during a key rotation).
    pub anchors: &'p [TrustAnchor<'p>],
    /// Vendor, class and device identifiers of this device.
    pub identity: DeviceIdentity<'p>,
    /// Anti-rollback floor.
    pub freshness: Freshness,
}

impl Policy<'_> {
    /// Applies the policy to an authenticated envelope: sequence number first (section 6.1, before
    /// any command runs), then the vendor and class identifiers the manifest sets for
    /// component 0, which section 6.2 says every shared sequence should check.
    pub fn check(&self, auth: &Authenticated<'_>) -> Result<(), SuitError> {
        self.check_image(auth.sequence_number, &auth.image)
    }

    /// [`Policy::check`] on a sequence number and component 0's image parameters.
    pub(crate) fn check_image(
        &self,
        sequence: u64,
        image: &ImageInfo<'_>,
    ) -> Result<(), SuitError> {
        self.freshness.check(sequence)?;
        let vendor = image.vendor_id.ok_or(SuitError::VendorMismatch)?;
        if vendor != self.identity.vendor_id {
            return Err(SuitError::VendorMismatch);
        }
        let class = image.class_id.ok_or(SuitError::ClassMismatch)?;
        if class != self.identity.class_id {
            return Err(SuitError::ClassMismatch);
        }
        Ok(())
    }
}
