//! What Object 5 needs from the device: a place to stream a package into, verify it, install
//! it, and remember where things stood across a reboot.
//!
//! The object (rules: `object5::machine`) and the transports (Block1 push, CoAP/HTTP pull) are
//! the same on every device; the backend is the board's: on the simulated device it is the
//! SUIT verifier plus the slot manager on SimFlash (`sim::firmware` on the host, feature
//! `sim`), on a microcontroller the same object5 code on real flash. Every error is already the
//! Update Result to report.

use alloc::string::String;
use alloc::vec::Vec;

use object5::{State, UpdateResult};

/// Where an interrupted download stands, as persisted before the reboot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Package (envelope) offset the transfer continues from.
    pub offset: u64,
    /// Entity tag the stored bytes belong to; without one a resume is not safe.
    pub etag: Option<Vec<u8>>,
}

/// A download re-opened after a reboot ([`FirmwareBackend::resume`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Where the transfer continues, and the entity it must still be.
    pub point: ResumePoint,
    /// The transfer is a two-stage pull's image at this URI (its bytes go through
    /// [`FirmwareBackend::write`] as a fetched image's do), not the package.
    pub image_uri: Option<String>,
}

/// The persistent Object 5 facts read at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// State as journaled (`Updating` is never stored: the boot outcome replaces it).
    pub state: State,
    /// Update Result as journaled.
    pub result: UpdateResult,
    /// Package URI (/5/0/1) of the last pull; empty after a push began. With State
    /// Downloading, the pull the reboot interrupted.
    pub uri: String,
    /// PkgName (/5/0/6) of the stored or installed package.
    pub name: String,
    /// PkgVersion (/5/0/7) of the stored or installed package.
    pub version: String,
    /// A download interrupted by the reboot that can continue.
    pub resume: Option<ResumePoint>,
}

impl Stored {
    /// Nothing persisted: Idle, result 0, no package, no download to resume.
    pub fn nothing() -> Self {
        Self {
            state: State::Idle,
            result: UpdateResult::Initial,
            uri: String::new(),
            name: String::new(),
            version: String::new(),
            resume: None,
        }
    }
}

/// How [`FirmwareBackend::finish`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The package is stored and verified; its PkgName and PkgVersion.
    Downloaded {
        /// PkgName (/5/0/6).
        name: String,
        /// PkgVersion (/5/0/7).
        version: String,
    },
    /// Two-stage pull: the authenticated manifest names the image's URI; stream the image
    /// through [`FirmwareBackend::write`] and call [`FirmwareBackend::finish`] again.
    FetchImage(String),
}

/// The device side of Object 5. The provided methods describe a device that persists
/// nothing and cannot install (a test sink); a real device overrides them.
pub trait FirmwareBackend {
    /// The persistent state after a boot (also read when a Package URI is written: a download
    /// of it that the backend can continue shows as Downloading with a resume point).
    fn stored(&mut self) -> Stored {
        Stored::nothing()
    }
    /// Largest package the device can store (sent as Size1 with 4.13).
    fn capacity(&self) -> Option<u32> {
        None
    }
    /// A download was accepted: a pull of `uri`, or a push when `uri` is empty. Persists it as
    /// under way before any package byte arrives, so that after a reset the device still
    /// owes it: [`Stored`] then says Downloading, with the URI of a pull to start again (an
    /// empty one ends as Update Result 4).
    fn download_requested(&mut self, _uri: &str) -> Result<(), UpdateResult> {
        Ok(())
    }
    /// A new package starts at byte 0; `etag` identifies a pulled entity for a later resume.
    fn begin(&mut self, etag: Option<&[u8]>) -> Result<(), UpdateResult>;
    /// Re-opens the download interrupted by the last reboot; says what the transfer must
    /// ask for and from where.
    fn resume(&mut self) -> Result<Resumed, UpdateResult> {
        Err(UpdateResult::ConnectionLost)
    }
    /// A two-stage pull's image starts at byte 0; `etag` identifies it for a later resume.
    fn begin_image(&mut self, _etag: Option<&[u8]>) -> Result<(), UpdateResult> {
        Ok(())
    }
    /// The next package bytes (or image bytes after [`Finished::FetchImage`]).
    fn write(&mut self, data: &[u8]) -> Result<(), UpdateResult>;
    /// The package (or the fetched image) ended: verify and store.
    fn finish(&mut self) -> Result<Finished, UpdateResult>;
    /// Drops any partial or stored package and persists Idle with `result`; a pull that lost
    /// its connection (4) may be kept for the same Package URI written again to continue.
    fn discard(&mut self, result: UpdateResult);
    /// Marks the stored package for installation at the next reset.
    fn install(&mut self) -> Result<(), UpdateResult> {
        Err(UpdateResult::UpdateFailed)
    }
}
