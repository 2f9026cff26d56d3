//! Every way a SUIT envelope can be refused, each mapped to one Object 5 Update Result.

use crate::status::UpdateResult;
use core::fmt;

/// Why an envelope, manifest or payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuitError {
    /// Not well-formed (or not canonical) CBOR, or a structure that breaks the SUIT CDDL.
    Malformed,
    /// CBOR nesting deeper than the verifier follows.
    TooDeep,
    /// The input ended before the envelope was complete.
    Truncated,
    /// Bytes follow the end of the envelope: what was signed is not all that was delivered.
    TrailingBytes,
    /// The authentication wrapper holds only the digest: the envelope is unsigned (section 8.3).
    Unauthenticated,
    /// No authentication block uses an algorithm this verifier implements.
    UnsupportedAlgorithm,
    /// Signature or MAC did not verify with any configured trust anchor (wrong key or tampering).
    BadSignature,
    /// The manifest bytes do not hash to the authenticated digest.
    ManifestDigestMismatch,
    /// `suit-manifest-version` is not 1.
    UnsupportedManifestVersion,
    /// Sequence number lower than (or, for a new download, equal to) the installed one.
    Rollback,
    /// A vendor-identifier condition failed: the package is for another vendor.
    VendorMismatch,
    /// A class-identifier condition failed: the package is for another device class.
    ClassMismatch,
    /// A device-identifier condition failed.
    DeviceMismatch,
    /// The payload does not hash to the image digest.
    ImageDigestMismatch,
    /// The payload length differs from the image size.
    ImageSizeMismatch,
    /// The image does not fit the storage the device has for it.
    ImageTooLarge,
    /// A severable member in the envelope does not match its digest in the manifest.
    SeverableDigestMismatch,
    /// A command sequence the processor needs was severed and not delivered.
    SeverableMissing,
    /// A command, parameter or digest algorithm this processor does not implement.
    Unsupported,
    /// A condition failed (component-slot, check-content, abort) with no soft-failure to absorb it.
    ConditionFailed,
    /// A parameter needed by a command was never set.
    MissingParameter,
    /// More components than the processor supports, or an index outside the component list.
    BadComponent,
    /// The caller's buffer cannot hold the authentication wrapper and manifest.
    BufferTooSmall,
    /// Bytes arrived in an order a streaming processor cannot accept (payload before manifest).
    OutOfOrder,
    /// No decryption key of this device opens any recipient of the payload's content key.
    NoDecryptionKey,
    /// The decrypted payload failed its authentication tag (AES-GCM): wrong key or tampering.
    DecryptionFailed,
    /// The caller's platform (storage, network, boot) reported a failure with this result code.
    Platform(UpdateResult),
}

impl SuitError {
    /// The Update Result (/5/0/5) a device reports for this failure (table in README.md).
    pub const fn update_result(self) -> UpdateResult {
        match self {
            Self::Malformed
            | Self::TooDeep
            | Self::Truncated
            | Self::TrailingBytes
            | Self::Unauthenticated
            | Self::BadSignature
            | Self::ManifestDigestMismatch
            | Self::ImageDigestMismatch
            | Self::ImageSizeMismatch
            | Self::SeverableDigestMismatch
            | Self::SeverableMissing
            | Self::OutOfOrder
            | Self::NoDecryptionKey
            | Self::DecryptionFailed => UpdateResult::IntegrityFailure,
            Self::UnsupportedAlgorithm
            | Self::UnsupportedManifestVersion
            | Self::Rollback
            | Self::VendorMismatch
            | Self::ClassMismatch
            | Self::DeviceMismatch
            | Self::Unsupported
            | Self::BadComponent => UpdateResult::UnsupportedPackage,
            Self::ConditionFailed | Self::MissingParameter => UpdateResult::UpdateFailed,
            Self::ImageTooLarge => UpdateResult::NotEnoughFlash,
            Self::BufferTooSmall => UpdateResult::OutOfRam,
            Self::Platform(result) => result,
        }
    }
}

impl fmt::Display for SuitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Malformed => "malformed SUIT envelope",
            Self::TooDeep => "CBOR nesting too deep",
            Self::Truncated => "envelope truncated",
            Self::TrailingBytes => "bytes after the end of the envelope",
            Self::Unauthenticated => "unsigned envelope: no authentication block",
            Self::UnsupportedAlgorithm => "no supported authentication algorithm",
            Self::BadSignature => "signature does not verify with any trust anchor",
            Self::ManifestDigestMismatch => "manifest does not match its signed digest",
            Self::UnsupportedManifestVersion => "unsupported manifest version",
            Self::Rollback => "sequence number not newer than the installed one (rollback)",
            Self::VendorMismatch => "vendor identifier does not match this device",
            Self::ClassMismatch => "class identifier does not match this device",
            Self::DeviceMismatch => "device identifier does not match this device",
            Self::ImageDigestMismatch => "image digest mismatch",
            Self::ImageSizeMismatch => "image size mismatch",
            Self::ImageTooLarge => "image larger than the storage for it",
            Self::SeverableDigestMismatch => "severable member does not match its digest",
            Self::SeverableMissing => "needed severable member missing",
            Self::Unsupported => "unsupported command, parameter or algorithm",
            Self::ConditionFailed => "manifest condition failed",
            Self::MissingParameter => "command needs a parameter the manifest did not set",
            Self::BadComponent => "component index or count unsupported",
            Self::BufferTooSmall => "buffer too small for the manifest",
            Self::OutOfOrder => "payload before the authenticated manifest",
            Self::NoDecryptionKey => "no decryption key of this device opens the payload's key",
            Self::DecryptionFailed => "decrypted payload fails its authentication tag",
            Self::Platform(_) => "platform operation failed",
        };
        write!(f, "{text}; Update Result {}", self.update_result())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SuitError {}
