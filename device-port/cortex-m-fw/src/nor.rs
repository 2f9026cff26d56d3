//! NOR flash in RAM, behind embedded-storage's `NorFlash`: the emulated board has no flash
//! controller QEMU models, so memory QEMU keeps across a system reset plays the part.
//!
//! NOR semantics as on a real part (and as device-port's host `SimFlash`): an erase sets a
//! whole 4 KiB sector to 0xFF, a write may only clear bits (one that would set a bit is
//! refused, never silently applied), writes are 4-byte aligned. Mutating operations are
//! counted from power-on; a [`PowerCut`] interrupts operation `at`: half of it lands (a torn
//! write or a half-erased sector), then its handler runs and never returns (the firmware
//! resets the core there).

use embedded_storage::nor_flash::{
    check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash,
};

/// Erase-sector size in bytes.
pub const SECTOR: usize = 4096;
/// Write granularity in bytes.
pub const WORD: usize = 4;

/// Interrupts mutating operation `at` (0-based, counted from power-on) and calls `then`.
#[derive(Clone, Copy, Debug)]
pub struct PowerCut {
    /// Operations that complete before the cut.
    pub at: u32,
    /// What happens to the core: on the board, a system reset.
    pub then: fn() -> !,
}

/// A NOR flash over a RAM buffer (see the module docs).
pub struct RamNor<'m> {
    mem: &'m mut [u8],
    ops: u32,
    cut: Option<PowerCut>,
}

impl<'m> RamNor<'m> {
    /// A flash over `mem` as it is (its length must be a whole number of sectors).
    pub fn new(mem: &'m mut [u8], cut: Option<PowerCut>) -> Self {
        Self { mem, ops: 0, cut }
    }

    /// Erases every sector: a blank part, as it leaves the factory.
    pub fn erase_all(&mut self) {
        self.mem.fill(0xFF);
    }

    /// Mutating operations since power-on.
    pub fn ops(&self) -> u32 {
        self.ops
    }

    /// The flash as the core sees it memory-mapped (execute-in-place parts).
    pub fn mapped(&self) -> &[u8] {
        self.mem
    }

    /// Counts one mutating operation; `Some(handler)` when this one is to be cut.
    fn count(&mut self) -> Option<fn() -> !> {
        let n = self.ops;
        self.ops += 1;
        self.cut.filter(|c| c.at == n).map(|c| c.then)
    }
}

impl ErrorType for RamNor<'_> {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RamNor<'_> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        check_read(self, offset, bytes.len())?;
        let at = offset as usize;
        bytes.copy_from_slice(&self.mem[at..at + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for RamNor<'_> {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        check_erase(self, from, to)?;
        let cut = self.count();
        let range = &mut self.mem[from as usize..to as usize];
        if let Some(cut) = cut {
            let half = range.len() / 2;
            range[..half].fill(0xFF);
            cut();
        }
        range.fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(self, offset, bytes.len())?;
        let at = offset as usize;
        let cells = &self.mem[at..at + bytes.len()];
        if cells.iter().zip(bytes).any(|(&old, &new)| old & new != new) {
            return Err(NorFlashErrorKind::Other);
        }
        let cut = self.count();
        let land = if cut.is_some() {
            bytes.len() / 2
        } else {
            bytes.len()
        };
        let cells = &mut self.mem[at..at + bytes.len()];
        for (cell, &new) in cells.iter_mut().zip(bytes).take(land) {
            *cell &= new;
        }
        if let Some(cut) = cut {
            cut();
        }
        Ok(())
    }
}
