//! Where the journal, the copy-progress sector and the two slots live.

use core::fmt;

use super::record::RECORD_SIZE;

/// How a candidate becomes the running image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// MCUboot-style swap without scratch ("swap-move"): the primary slot, one sector larger,
    /// always runs; its sectors first move up by one, then trade places with the secondary
    /// slot's, so the old image ends in the secondary slot and can be swapped back (revert).
    Swap,
    /// Two bootable slots; activation flips which one boots, nothing is copied.
    AB,
    /// The candidate is copied over the primary slot, deleting the old image; no revert.
    Overwrite,
}

impl Strategy {
    /// All strategies, for sweeps and reports.
    pub const ALL: [Strategy; 3] = [Strategy::Swap, Strategy::AB, Strategy::Overwrite];

    /// Lower-case name used in reports and on command lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Swap => "swap",
            Self::AB => "ab",
            Self::Overwrite => "overwrite",
        }
    }

    /// Parses [`Strategy::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a candidate can be reverted after an unconfirmed test boot.
    pub const fn can_revert(self) -> bool {
        !matches!(self, Self::Overwrite)
    }
}

/// Flash addresses (byte offsets) of every region; all sector-aligned.
///
/// Each slot is one header sector (manifest envelope head) followed by the image sectors; swap
/// and overwrite move whole slots, so a manifest always travels with its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Activation strategy.
    pub strategy: Strategy,
    /// Erase-sector size in bytes (the flash's `ERASE_SIZE`).
    pub sector_size: u32,
    /// Two sectors of state journal.
    pub journal: u32,
    /// One sector of copy-progress words (swap and overwrite).
    pub progress: u32,
    /// Slot 0 (primary / A) and slot 1 (secondary / B). For swap, slot 0 has one extra sector
    /// after its `slot_sectors` (the room the move step needs).
    pub slots: [u32; 2],
    /// Sectors per slot, header sector included.
    pub slot_sectors: u32,
}

/// Why a layout does not fit a flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The sector size differs from the flash's erase size.
    SectorSize,
    /// The write size is above 16 bytes or does not divide 16.
    WriteSize,
    /// A region is not sector-aligned.
    Alignment,
    /// Regions overlap or exceed the flash capacity.
    Overlap,
    /// A sector cannot hold two journal records, or the progress words do not fit one sector.
    TooSmall,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SectorSize => "sector size differs from the flash erase size",
            Self::WriteSize => "flash write size must divide 16",
            Self::Alignment => "region not sector-aligned",
            Self::Overlap => "regions overlap or exceed the flash",
            Self::TooSmall => "sectors too small for journal records or progress words",
        })
    }
}

/// Bytes of one copy-progress word.
pub(crate) const fn progress_word(write_size: usize) -> usize {
    if write_size < 4 {
        4
    } else {
        write_size
    }
}

impl Layout {
    /// A packed layout from offset 0: journal (2 sectors), progress, then both slots, each
    /// sized for `image_capacity` bytes plus a header sector (plus the move sector for swap).
    pub fn packed(strategy: Strategy, sector_size: u32, image_capacity: u32) -> Self {
        let slot_sectors = image_capacity.div_ceil(sector_size.max(1)) + 1;
        let extra = u32::from(strategy == Strategy::Swap);
        let first_slot = 3 * sector_size;
        Self {
            strategy,
            sector_size,
            journal: 0,
            progress: 2 * sector_size,
            slots: [
                first_slot,
                first_slot + (slot_sectors + extra) * sector_size,
            ],
            slot_sectors,
        }
    }

    /// Bytes of flash slot `slot` occupies (slot 0 of swap has the extra move sector).
    pub fn region_bytes(&self, slot: usize) -> u32 {
        let extra = u32::from(slot == 0 && self.strategy == Strategy::Swap);
        self.slot_sectors
            .saturating_add(extra)
            .saturating_mul(self.sector_size)
    }

    /// One past the last byte the layout uses.
    pub fn end(&self) -> u32 {
        self.slots[1].saturating_add(self.slot_bytes())
    }

    /// Bytes in one slot, header sector included.
    pub fn slot_bytes(&self) -> u32 {
        self.slot_sectors.saturating_mul(self.sector_size)
    }

    /// Largest image a slot holds.
    pub fn image_capacity(&self) -> u32 {
        self.slot_sectors
            .saturating_sub(1)
            .saturating_mul(self.sector_size)
    }

    /// Copy steps of one swap (3 per sector) or overwrite (1 per sector); 0 for A/B.
    pub(crate) fn copy_steps(&self) -> u32 {
        match self.strategy {
            Strategy::Swap => self.slot_sectors.saturating_mul(3),
            Strategy::Overwrite => self.slot_sectors,
            Strategy::AB => 0,
        }
    }

    /// Checks the layout against a flash geometry.
    pub fn validate(
        &self,
        erase_size: usize,
        write_size: usize,
        capacity: usize,
    ) -> Result<(), LayoutError> {
        if self.sector_size as usize != erase_size || erase_size == 0 {
            return Err(LayoutError::SectorSize);
        }
        if write_size == 0 || write_size > 16 || 16 % write_size != 0 {
            return Err(LayoutError::WriteSize);
        }
        if erase_size < 2 * RECORD_SIZE
            || self.copy_steps() as usize * progress_word(write_size) > erase_size
            || self.slot_sectors < 2
        {
            return Err(LayoutError::TooSmall);
        }
        let s = self.sector_size;
        let mut regions = [(0u32, 0u32); 4];
        let mut n = 0;
        regions[n] = (self.journal, 2 * s);
        n += 1;
        if self.strategy != Strategy::AB {
            regions[n] = (self.progress, s);
            n += 1;
        }
        for (i, slot) in self.slots.into_iter().enumerate() {
            regions[n] = (slot, self.region_bytes(i));
            n += 1;
        }
        let regions = &regions[..n];
        for (i, &(start, len)) in regions.iter().enumerate() {
            if start % s != 0 {
                return Err(LayoutError::Alignment);
            }
            let end = start.checked_add(len).ok_or(LayoutError::Overlap)?;
            if end as usize > capacity {
                return Err(LayoutError::Overlap);
            }
            for &(other, other_len) in &regions[i + 1..] {
                if start < other.saturating_add(other_len) && other < end {
                    return Err(LayoutError::Overlap);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_layouts_validate_and_broken_ones_say_why() {
        for strategy in Strategy::ALL {
            let layout = Layout::packed(strategy, 4096, 64 * 1024);
            assert_eq!(layout.slot_sectors, 17);
            assert_eq!(layout.image_capacity(), 64 * 1024);
            assert_eq!(layout.validate(4096, 4, layout.end() as usize), Ok(()));
            assert_eq!(
                layout.validate(4096, 4, layout.end() as usize - 1),
                Err(LayoutError::Overlap)
            );
            assert_eq!(
                layout.validate(2048, 4, 1 << 20),
                Err(LayoutError::SectorSize)
            );
            assert_eq!(
                layout.validate(4096, 3, 1 << 20),
                Err(LayoutError::WriteSize)
            );
            assert_eq!(
                layout.validate(4096, 32, 1 << 20),
                Err(LayoutError::WriteSize)
            );
            let mut overlapping = layout;
            overlapping.slots[1] = overlapping.slots[0] + 4096;
            assert_eq!(
                overlapping.validate(4096, 4, 1 << 20),
                Err(LayoutError::Overlap)
            );
            let mut misaligned = layout;
            misaligned.journal = 100;
            assert_eq!(
                misaligned.validate(4096, 4, 1 << 20),
                Err(LayoutError::Alignment)
            );
        }
        let tiny = Layout::packed(Strategy::Swap, 512, 4096);
        assert_eq!(tiny.validate(512, 4, 1 << 20), Err(LayoutError::TooSmall));
    }
}
