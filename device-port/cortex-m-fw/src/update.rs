//! The device side of an update with object5's own code, as this firmware runs it: the same
//! calls device-port's simulated device and lwm2m-client's `SimFirmware` make, on a
//! [`RamNor`] flash, with fixed buffers and no allocator.
//!
//! - download: [`download`] streams a SUIT envelope arriving in [`BLOCK`]-byte pieces through
//!   `object5::package::PackageReceiver` (authenticate the head before anything reaches flash,
//!   hash the payload on the way into the candidate slot, re-read flash at the end);
//! - Execute: `SlotManager::request_install` marks it pending;
//! - after the reset: `SlotManager::boot` with [`authenticator`] re-verifies (P-256 signature
//!   over the stored head, SHA-256 over the image in flash) and swaps or flips;
//! - the new image confirms with `SlotManager::confirm`, or a reset before that reverts it.

use object5::manifest::{DeviceIdentity, Freshness, Policy, Software, SuitError, TrustAnchor};
use object5::package::{Outcome, PackageError, PackageReceiver};
use object5::slots::{Authenticate, Layout, SlotError, SlotManager, Strategy, SuitAuthenticator};

use crate::nor::{RamNor, SECTOR};
use crate::packages;

/// Receive buffer of the transport: one CoAP Block1/Block2 payload of 1 KiB (SZX 6).
pub const BLOCK: usize = 1024;
/// Buffer for the envelope head (authentication wrapper + manifest) while it is verified. The
/// bootloader re-authenticates the stored head from the slot manager's work buffer, so no
/// larger head could be installed anyway; the packages here have a 352-byte head.
pub const HEAD_BUFFER: usize = WORK_BUFFER;
/// The slot manager's work buffer: one journal record (`object5::slots::MIN_WORK_BUFFER`),
/// which also holds any stored envelope head the bootloader re-authenticates.
pub const WORK_BUFFER: usize = object5::slots::MIN_WORK_BUFFER;
/// Largest image a slot holds.
pub const IMAGE_CAPACITY: u32 = 64 * 1024;
/// Flash the largest layout (swap) needs: journal (2 sectors), progress (1), primary slot
/// (header + 16 image sectors + the move sector), secondary slot (header + 16).
pub const FLASH_BYTES: usize = (3 + 18 + 17) * SECTOR;

/// The slot manager as this firmware uses it: it owns the RAM NOR flash.
pub type Slots<'m> = SlotManager<'m, RamNor<'m>>;

/// The trust anchors compiled into the device.
pub static ANCHORS: [TrustAnchor<'static>; 1] = [TrustAnchor::P256(&packages::TRUST_ANCHOR)];

/// This device's vendor and class (SUIT section 8.4.8.2).
pub fn identity() -> DeviceIdentity<'static> {
    DeviceIdentity {
        vendor_id: &packages::VENDOR_ID,
        class_id: &packages::CLASS_ID,
        device_id: None,
    }
}

/// The flash layout of `strategy` (journal, progress, two 64 KiB slots; `Layout::packed`).
pub fn layout(strategy: Strategy) -> Layout {
    Layout::packed(strategy, SECTOR as u32, IMAGE_CAPACITY)
}

/// What the bootloader checks a candidate with: the compiled-in anchors, software P-256 and
/// SHA-256, and this device's vendor and class.
pub fn authenticator() -> SuitAuthenticator<'static, Software> {
    SuitAuthenticator::new(&ANCHORS, Software).with_identity(identity())
}

/// Why the factory image could not be provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisionError {
    /// The factory envelope does not verify with the compiled-in anchors.
    Verify(object5::slots::VerifyError),
    /// The slot manager refused or the flash failed.
    Slots(SlotError),
}

impl core::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Verify(e) => write!(f, "factory envelope: {e}"),
            Self::Slots(e) => write!(f, "factory provisioning: {e}"),
        }
    }
}

/// Factory provisioning, as device-port's `SimDevice` does on a blank flash: the factory
/// envelope head is authenticated, then it and the image go into slot 0 and the journal
/// starts Idle with the image's sequence number as the anti-rollback floor.
pub fn provision(slots: &mut Slots<'_>, head: &[u8], image: &[u8]) -> Result<(), ProvisionError> {
    let facts = authenticator()
        .authenticate(head)
        .map_err(ProvisionError::Verify)?;
    slots
        .provision(&facts, head, image)
        .map_err(ProvisionError::Slots)
}

/// Streams one package into the candidate slot. `link` fills the receive buffer with the next
/// piece and returns its length (0 at the end). Any refusal is journaled as Idle with its
/// Update Result, as Object 5 reports it (lwm2m-client's `SimFirmware::discard`), and
/// returned.
///
/// The steps are separate functions that are never inlined: with LTO every object5 call here
/// has one call site and would be inlined, and the frames of all of them (journal records
/// are copied by value) would add up under the verifier's P-256 frames.
pub fn download(
    slots: &mut Slots<'_>,
    head: &mut [u8],
    link: &mut dyn FnMut(&mut [u8; BLOCK]) -> usize,
) -> Result<(), PackageError> {
    let r = receive(slots, head, link);
    if let Err(e) = r {
        abort(slots, e)?;
    }
    r
}

#[inline(never)] // own stack frame: keeps peak stack the max, not the sum
fn receive(
    slots: &mut Slots<'_>,
    head: &mut [u8],
    link: &mut dyn FnMut(&mut [u8; BLOCK]) -> usize,
) -> Result<(), PackageError> {
    let policy = Policy {
        anchors: &ANCHORS,
        identity: identity(),
        freshness: Freshness::NewerThanInstalled(slots.status().floor),
    };
    let mut rx = PackageReceiver::new(head, policy, Software);
    let mut block = [0u8; BLOCK];
    loop {
        let n = link(&mut block).min(BLOCK);
        if n == 0 {
            break;
        }
        feed(&mut rx, slots, &block[..n])?;
    }
    match finish(&mut rx, slots)? {
        Outcome::Downloaded => Ok(()),
        // The packages here integrate their image; a two-stage pull has no link to fetch on.
        Outcome::FetchImage => Err(PackageError::Suit(SuitError::Unsupported)),
    }
}

#[inline(never)] // own stack frame: keeps peak stack the max, not the sum
fn feed(
    rx: &mut PackageReceiver<'_, '_, Software>,
    slots: &mut Slots<'_>,
    data: &[u8],
) -> Result<(), PackageError> {
    rx.feed(slots, data)
}

#[inline(never)] // own stack frame: keeps peak stack the max, not the sum
fn finish(
    rx: &mut PackageReceiver<'_, '_, Software>,
    slots: &mut Slots<'_>,
) -> Result<Outcome, PackageError> {
    rx.finish(slots)
}

#[inline(never)] // own stack frame: keeps peak stack the max, not the sum
fn abort(slots: &mut Slots<'_>, e: PackageError) -> Result<(), PackageError> {
    slots
        .abort_download(e.update_result())
        .map_err(PackageError::Slot)
}
