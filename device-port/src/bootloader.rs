//! The simulated bootloader: object5's boot decision (which verifies the image it chose, on
//! every boot, and falls back to the other slot's when it fails), then "jump" to the chosen
//! slot by reading the simulated image header found there.

use embedded_storage::nor_flash::NorFlash;
use object5::slots::{Authenticate, BootPath, SlotManager};

use crate::image::{self, ImageInfo, HEADER_LEN, MAX_TEXT};

/// What the bootloader started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booted {
    /// Slot index the image runs from.
    pub slot: usize,
    /// Why (normal, test boot, reverted, rejected, recovered, fallback).
    pub path: BootPath,
    /// The running image's header.
    pub image: ImageInfo,
    /// The header of the second image installed with it (component 1 of a two-image
    /// package), verified with it; `None` when the slot holds one image.
    pub second: Option<ImageInfo>,
}

/// Why nothing could be booted.
#[derive(Debug)]
pub enum BootError {
    /// The slot manager failed (flash error, or no slot verifies).
    Slots(object5::slots::SlotError),
    /// The chosen slot verified but holds no simulated image.
    Image(image::ImageError),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Slots(e) => write!(f, "boot: {e}"),
            Self::Image(e) => write!(f, "boot: {e}"),
        }
    }
}

impl std::error::Error for BootError {}

/// Runs one boot: activate/resume/revert as the journal says, verify the image chosen (or fall
/// back), then read its header and that of a second image in the same slot.
/// `BootError::Slots(Error::NoBootableImage)`: nothing verifies.
pub fn boot<F: NorFlash, A: Authenticate>(
    slots: &mut SlotManager<'_, F>,
    auth: &mut A,
) -> Result<Booted, BootError> {
    let decision = slots.boot(auth).map_err(BootError::Slots)?;
    let addr = slots
        .image_address(decision.slot)
        .ok_or(BootError::Slots(object5::slots::SlotError::NoBootableImage))?;
    let image = read_header(slots, addr, slots.layout().image_capacity())?;
    // The slot verified as a whole: its stored facts say where the second image is.
    let facts = slots
        .stored_facts(decision.slot)
        .map_err(BootError::Slots)?;
    let sector = slots.layout().sector_size;
    let second = match facts.and_then(|f| Some((f.second?, f.second_offset(sector)?))) {
        Some((second, offset)) => Some(read_header(slots, addr + offset, second.size)?),
        None => None,
    };
    Ok(Booted {
        slot: decision.slot,
        path: decision.path,
        image,
        second,
    })
}

/// The simulated image header at `addr`, reading at most `room` bytes.
fn read_header<F: NorFlash>(
    slots: &mut SlotManager<'_, F>,
    addr: u32,
    room: u32,
) -> Result<ImageInfo, BootError> {
    let mut head = [0u8; HEADER_LEN + 2 * MAX_TEXT];
    let head = &mut head[..(room as usize).min(HEADER_LEN + 2 * MAX_TEXT)];
    slots.flash_mut().read(addr, head).map_err(|e| {
        BootError::Slots(object5::slots::SlotError::Flash(
            embedded_storage::nor_flash::NorFlashError::kind(&e),
        ))
    })?;
    image::parse(head).map_err(BootError::Image)
}
