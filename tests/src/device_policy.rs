//! The acceptance policy of the simulated devices the package-receiver tests build by hand
//! (vendor and class ids, trust anchors, anti-rollback floor).

use object5::manifest::{DeviceIdentity, Freshness, Policy, TrustAnchor};

/// Vendor UUID of those devices.
pub const VENDOR: [u8; 16] = [0x11; 16];
/// Class UUID of those devices.
pub const CLASS: [u8; 16] = [0x22; 16];

/// The policy with `anchors`, accepting sequence numbers above `floor` (a new download).
pub fn policy<'a>(anchors: &'a [TrustAnchor<'a>], floor: u64) -> Policy<'a> {
    Policy {
        anchors,
        identity: DeviceIdentity {
            vendor_id: &VENDOR,
            class_id: &CLASS,
            device_id: None,
        },
        freshness: Freshness::NewerThanInstalled(floor),
    }
}
