//! Slot manager: where a downloaded image lives, how it becomes the running one, and how that
//! survives a power cut at any instant.
//!
//! Everything persistent goes through three mechanisms, each safe against a clean cut, a torn
//! write (only part of the interrupted write lands) and an interrupted erase:
//!
//! - the state journal (`journal.rs`): fixed-size records with a sequence number and a CRC, the
//!   commit word written last, appended into two alternating sectors so the last good record
//!   survives any interrupted write or erase;
//! - the slot header (`header.rs`): the stored manifest envelope head and the facts it proves
//!   (sequence number, image size, SHA-256 digest), re-authenticated by the bootloader;
//! - copy progress (`copy.rs`): one flash word per swap or copy step, written only after the step
//!   completed (embassy-boot style), so any non-blank word means "done" and every step redone
//!   after a cut is idempotent.
//!
//! Strategies ([`Strategy`]) trade flash space against the ability to revert; see README.md,
//! section "Slot strategies". The code is generic over `embedded_storage::nor_flash::NorFlash`,
//! never rewrites a written word, uses one caller-provided work buffer and allocates nothing.

mod boot;
mod copy;
mod crc;
mod error;
mod header;
mod journal;
mod layout;
mod manager;
mod record;
mod suit;
mod writer;

pub use boot::{BootDecision, BootPath};
pub use error::{SlotError, VerifyError};
pub use layout::{Layout, LayoutError, Strategy};
pub use manager::{SlotManager, Status};
pub use record::{Phase, MAX_NAME, MAX_URI, MAX_VERSION};
pub use suit::SuitAuthenticator;
pub use writer::{Download, DownloadWriter};

/// What an authenticated manifest says about its images: all the slot manager trusts.
///
/// A slot holds the package's images one after another, each in its own sector-aligned
/// region of the slot's image area: component 0 (the image the bootloader runs) from the
/// start, a second image from the first sector boundary after it
/// ([`ManifestFacts::second_offset`]). Swap, copy and A/B selection move the whole slot, so
/// both images are installed, reverted and verified together: a package replaces the set of
/// images as a whole (an image it does not carry is absent from the new slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestFacts {
    /// SUIT sequence number; must exceed the stored anti-rollback floor.
    pub sequence: u64,
    /// Size in bytes of component 0's image.
    pub size: u32,
    /// SHA-256 digest of component 0's image.
    pub digest: [u8; 32],
    /// The second image of a two-image package.
    pub second: Option<ImageFacts>,
}

/// Size and digest of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    /// Size in bytes.
    pub size: u32,
    /// SHA-256 digest.
    pub digest: [u8; 32],
}

impl ManifestFacts {
    /// Facts of a one-image package.
    pub fn single(sequence: u64, size: u32, digest: [u8; 32]) -> Self {
        Self {
            sequence,
            size,
            digest,
            second: None,
        }
    }

    /// Offset of the second image in the slot's image area: the first multiple of `sector`
    /// at or after the end of component 0's image.
    pub fn second_offset(&self, sector: u32) -> Option<u32> {
        self.size.div_ceil(sector.max(1)).checked_mul(sector.max(1))
    }

    /// Bytes of the image area the images span (`None` on overflow).
    pub fn span(&self, sector: u32) -> Option<u32> {
        match self.second {
            Some(s) => self.second_offset(sector)?.checked_add(s.size),
            None => Some(self.size),
        }
    }

    /// Each image as (offset in the image area, size, digest), component 0 first.
    pub(crate) fn regions(&self, sector: u32) -> [Option<(u32, u32, [u8; 32])>; 2] {
        [
            Some((0, self.size, self.digest)),
            self.second
                .and_then(|s| Some((self.second_offset(sector)?, s.size, s.digest))),
        ]
    }
}

/// Authenticates a stored manifest envelope head (authentication wrapper + manifest) and
/// extracts its facts. The bootloader calls it on every activation, with the trust anchors of
/// the board; an `Err` keeps the old image.
pub trait Authenticate {
    /// Verifies `envelope` and returns what it proves, or why it does not verify.
    fn authenticate(&mut self, envelope: &[u8]) -> Result<ManifestFacts, VerifyError>;

    /// Verifies the envelope of an image already installed, before it runs again: that it is
    /// authentic and what it proves (MCUboot's validate-primary-slot checks signature and
    /// digest only). Acceptance policy (vendor, class) was applied when the image was
    /// accepted; a policy change must not stop an installed image from booting. Defaults to
    /// [`Authenticate::authenticate`].
    fn authenticate_installed(&mut self, envelope: &[u8]) -> Result<ManifestFacts, VerifyError> {
        self.authenticate(envelope)
    }
}

/// Smallest work buffer the manager accepts: one journal record.
pub const MIN_WORK_BUFFER: usize = record::RECORD_SIZE;
