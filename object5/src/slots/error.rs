//! Typed errors of the slot manager.

use core::fmt;
use embedded_storage::nor_flash::NorFlashErrorKind;

use super::layout::LayoutError;
use super::record::Phase;

/// Why a slot operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// The flash driver failed (in the simulation: also "power lost").
    Flash(NorFlashErrorKind),
    /// The layout does not fit the flash geometry.
    Layout(LayoutError),
    /// The work buffer is smaller than [`MIN_WORK_BUFFER`](super::MIN_WORK_BUFFER) or than the
    /// envelope to authenticate.
    BufferTooSmall,
    /// The operation is not allowed in the current phase (e.g. a download while an image is
    /// unconfirmed).
    Busy(Phase),
    /// The package's sequence number does not exceed the anti-rollback floor.
    Rollback {
        /// Sequence number of the offered package.
        sequence: u64,
        /// Stored floor.
        floor: u64,
    },
    /// The image does not fit the slot.
    ImageTooLarge,
    /// The envelope head does not fit the slot header sector or the work buffer.
    EnvelopeTooLarge,
    /// A string resource is longer than its stored field.
    FieldTooLong,
    /// More or fewer bytes arrived than the manifest announced.
    SizeMismatch,
    /// The candidate failed verification.
    Verify(VerifyError),
    /// No slot holds an image that verifies: the image the journal selected failed
    /// verification at boot and so did the other slot's (or the journal is unreadable and
    /// both fail). Nothing may run; the journal is left ready for a download.
    NoBootableImage,
}

/// Why a stored candidate did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The slot header is blank, torn or has an unknown magic.
    NoHeader,
    /// The manifest did not authenticate against the trust anchors.
    Authentication,
    /// The manifest is authentic but not acceptable (unknown format, wrong device class...).
    Manifest,
    /// The authenticated facts differ from the facts stored at download time.
    FactsMismatch,
    /// SHA-256 over the stored image differs from the manifest digest.
    Digest,
    /// The sequence number does not exceed the anti-rollback floor.
    Rollback,
    /// The announced image does not fit the slot.
    Size,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(kind) => write!(f, "flash error: {kind}"),
            Self::Layout(e) => write!(f, "slot layout: {e}"),
            Self::BufferTooSmall => f.write_str("work buffer too small"),
            Self::Busy(phase) => write!(f, "not allowed while {phase:?}"),
            Self::Rollback { sequence, floor } => {
                write!(
                    f,
                    "sequence number {sequence} does not exceed floor {floor}"
                )
            }
            Self::ImageTooLarge => f.write_str("image larger than the slot"),
            Self::EnvelopeTooLarge => f.write_str("manifest envelope larger than the slot header"),
            Self::FieldTooLong => f.write_str("resource value longer than its stored field"),
            Self::SizeMismatch => f.write_str("image size differs from the manifest"),
            Self::Verify(e) => write!(f, "candidate rejected: {e}"),
            Self::NoBootableImage => f.write_str("no slot holds an image that verifies"),
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoHeader => "no valid slot header",
            Self::Authentication => "manifest does not authenticate",
            Self::Manifest => "manifest not acceptable",
            Self::FactsMismatch => "manifest differs from the stored facts",
            Self::Digest => "image digest mismatch",
            Self::Rollback => "sequence number not above the floor",
            Self::Size => "image does not fit the slot",
        })
    }
}

/// Maps any driver error to its generic kind (`.map_err(flash_err)`).
pub(crate) fn flash_err<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> SlotError {
    SlotError::Flash(e.kind())
}
