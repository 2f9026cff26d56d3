//! Signed packages for the demo and the conformance runs: a good image, one that fails its
//! self-test after the reboot, one too large for the device, one with a corrupted payload, one
//! for another device class, and bytes that are no SUIT envelope at all. Images use the
//! simulated image format (device-port's `ImageBuilder`), so the simulated device's
//! bootloader can run them; packages are signed with object5's author side.

use device_port::image::ImageBuilder;
use object5::author::{self, Delivery, KeyError, PackageSpec, SignAlg};

/// Vendor name the simulated device (`lwm2m-client`) accepts by default.
pub const SIM_VENDOR: &str = "sim.example";
/// Class name the simulated device accepts by default.
pub const SIM_CLASS: &str = "sim-device";
/// Image size of good packages: well inside the simulated device's slot.
pub const GOOD_IMAGE_LEN: usize = 32 * 1024;
/// Image size of the too-large package: four times the simulated device's default slot
/// (`lwm2m-client --slot-kib 256`).
pub const TOO_LARGE_IMAGE_LEN: usize = 1024 * 1024;

/// The kinds of package a conformance run needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Valid, signed, for this device: installs and confirms.
    Good,
    /// Valid and signed, but the image never confirms after booting (revert, Result 8).
    FailsSelfTest,
    /// Larger than the device's slot (Result 2).
    TooLarge,
    /// Signed, but a payload byte changed afterwards (integrity failure, Result 5).
    Corrupted,
    /// Signed for another device class (unsupported package type, Result 6).
    WrongClass,
    /// Not a SUIT envelope (unsupported package type, Result 6).
    NotSuit,
}

/// Who signs and for which device.
#[derive(Debug, Clone)]
pub struct Signer {
    /// PKCS#8 PEM of the P-256 signing key.
    pub private_pem: String,
    /// SPKI PEM of its public key: the device's `--trust-anchor`.
    pub public_pem: String,
    /// Vendor name or UUID.
    pub vendor: String,
    /// Class name or UUID.
    pub class: String,
}

impl Signer {
    /// A new key for the simulated device's default vendor and class.
    pub fn generate() -> Result<Self, KeyError> {
        let (private_pem, public_pem) = author::generate_key_pem()?;
        Ok(Self {
            private_pem,
            public_pem,
            vendor: SIM_VENDOR.into(),
            class: SIM_CLASS.into(),
        })
    }

    /// An existing private key.
    pub fn from_pem(private_pem: &str, vendor: &str, class: &str) -> Result<Self, KeyError> {
        Ok(Self {
            public_pem: author::public_pem_from_private(private_pem)?,
            private_pem: private_pem.to_string(),
            vendor: vendor.into(),
            class: class.into(),
        })
    }

    /// Builds and signs a package of `kind` carrying firmware `version` with sequence
    /// number `seq` (the image is inside the envelope, so pull and push carry the same bytes).
    pub fn build(&self, kind: Kind, version: &str, seq: u64) -> Result<Vec<u8>, KeyError> {
        let len = if kind == Kind::TooLarge {
            TOO_LARGE_IMAGE_LEN
        } else {
            GOOD_IMAGE_LEN
        };
        self.build_sized(kind, version, seq, len)
    }

    /// Like [`Self::build`] with an image of `image_len` bytes.
    pub fn build_sized(
        &self,
        kind: Kind,
        version: &str,
        seq: u64,
        image_len: usize,
    ) -> Result<Vec<u8>, KeyError> {
        if kind == Kind::NotSuit {
            // A plain image where an envelope is expected.
            return Ok(ImageBuilder::new("not-suit", version)
                .total_len(image_len)
                .build());
        }
        let image = ImageBuilder::new("sim-fw", version)
            .fails_self_test(kind == Kind::FailsSelfTest)
            .total_len(image_len)
            .build();
        let vendor = author::vendor_id(&self.vendor);
        let class_name = if kind == Kind::WrongClass {
            format!("{}-other", self.class)
        } else {
            self.class.clone()
        };
        let spec = PackageSpec {
            vendor_id: vendor,
            class_id: author::class_id(&class_name, &vendor),
            sequence_number: seq,
            version: version.to_string(),
            name: "sim-fw".into(),
            image: &image,
            delivery: Delivery::Integrated,
            alg: SignAlg::Esp256,
        };
        let key = author::signing_key_from_pem(&self.private_pem)?;
        let mut envelope = author::build_envelope(&spec, &key)?;
        if kind == Kind::Corrupted {
            corrupt_payload(&mut envelope, &image);
        }
        Ok(envelope)
    }
}

/// Flips one byte in the middle of the integrated image, leaving the signed manifest intact.
fn corrupt_payload(envelope: &mut [u8], image: &[u8]) {
    let probe_len = image.len().min(64);
    let Some(probe) = image.get(..probe_len) else {
        return;
    };
    let at = envelope
        .windows(probe_len.max(1))
        .position(|w| w == probe)
        .map(|start| start + image.len() / 2);
    if let Some(b) = at.and_then(|i| envelope.get_mut(i)) {
        *b ^= 0x5a;
    }
}

/// A sequence number newer than any a device got from an earlier run: seconds since 2020
/// times 16, leaving room for several packages per second.
pub fn fresh_sequence() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.saturating_sub(1_577_836_800).saturating_mul(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object5::author::{verify_package, VerifyOptions};
    use object5::manifest::TrustAnchor;

    #[test]
    fn packages_verify_or_fail_as_their_kind_says() {
        let s = Signer::generate().expect("key");
        let anchor = author::public_sec1_from_pem(&s.public_pem).expect("pub");
        let anchors = [TrustAnchor::P256(&anchor)];
        let vendor = author::vendor_id(SIM_VENDOR);
        let opts = VerifyOptions {
            identity: Some((vendor, author::class_id(SIM_CLASS, &vendor))),
            installed_sequence: Some(1),
            ..VerifyOptions::default()
        };
        let seq = fresh_sequence();
        for kind in [Kind::Good, Kind::FailsSelfTest, Kind::TooLarge] {
            let p = s.build(kind, "2.0.0", seq).expect("build");
            assert!(verify_package(&p, &anchors, &opts).is_ok(), "{kind:?}");
        }
        for kind in [Kind::Corrupted, Kind::WrongClass, Kind::NotSuit] {
            let p = s.build(kind, "2.0.0", seq).expect("build");
            assert!(verify_package(&p, &anchors, &opts).is_err(), "{kind:?}");
        }
        let good = s.build(Kind::Good, "2.0.0", seq).expect("build");
        let bad = s.build(Kind::Corrupted, "2.0.0", seq).expect("build");
        assert_eq!(good.len(), bad.len());
        assert_eq!(good.iter().zip(&bad).filter(|(a, b)| a != b).count(), 1);
    }
}
