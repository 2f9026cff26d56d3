//! `SimFlash`: NOR flash in host memory, optionally backed by a file, with power-cut injection.
//!
//! NOR semantics: an erase sets a whole sector to 0xFF; a write may only clear bits (a write
//! that would set a bit is an error, never silently accepted); offsets and lengths must be
//! aligned to the write size. Fault injection counts mutating operations (writes and erases;
//! reads change nothing) and interrupts operation number `k` (0-based): in [`CutMode::Clean`]
//! nothing of it lands, in [`CutMode::Partial`] a torn write lands a prefix of its bytes plus
//! one byte with only some bits cleared, and an interrupted erase sets a prefix of the sector
//! to 0xFF plus one byte with only some bits set. From then on every operation, reads included,
//! fails with [`SimFlashError::PowerLost`] until [`SimFlash::power_on`] — a power loss ends the
//! running firmware as on hardware. With a file backing, every change is written through (to
//! a shared `mmap` of the file), so a new process is a reboot.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::mapped::MappedFile;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Environment variable: interrupt mutating flash operation number k (0-based) of this process.
pub const ENV_POWER_CUT_AFTER: &str = "SIM_POWER_CUT_AFTER";
/// Environment variable: `clean` (default) or `partial` (torn write / interrupted erase).
pub const ENV_POWER_CUT_MODE: &str = "SIM_POWER_CUT_MODE";

/// What lands of the interrupted operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Nothing of the interrupted operation lands.
    Clean,
    /// Part of it lands: a torn write or an interrupted erase.
    Partial,
}

/// Lose power during mutating operation number `after_ops` (0-based, counted from power-on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PowerCut {
    /// Operations that complete before the cut.
    pub after_ops: u64,
    /// What lands of the interrupted operation.
    pub mode: CutMode,
}

impl PowerCut {
    /// Reads [`ENV_POWER_CUT_AFTER`] / [`ENV_POWER_CUT_MODE`]; `Ok(None)` when unset.
    pub fn from_env() -> Result<Option<Self>, SimFlashError> {
        let Ok(after) = std::env::var(ENV_POWER_CUT_AFTER) else {
            return Ok(None);
        };
        let after_ops = after
            .trim()
            .parse()
            .map_err(|_| SimFlashError::BadSetting(ENV_POWER_CUT_AFTER))?;
        let mode = match std::env::var(ENV_POWER_CUT_MODE).as_deref() {
            Err(_) | Ok("clean") => CutMode::Clean,
            Ok("partial" | "torn" | "erase") => CutMode::Partial,
            Ok(_) => return Err(SimFlashError::BadSetting(ENV_POWER_CUT_MODE)),
        };
        Ok(Some(Self { after_ops, mode }))
    }
}

/// The kind of the interrupted operation, as recorded by the last power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutOperation {
    /// A write was interrupted.
    Write,
    /// An erase was interrupted.
    Erase,
}

/// Errors of the simulated flash.
#[derive(Debug)]
pub enum SimFlashError {
    /// Offset or length not aligned to the write or erase size.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
    /// A write would set a bit that is 0 (NOR can only clear bits): erase first.
    NotErased {
        /// First offending address.
        offset: u32,
    },
    /// Power was cut; every operation fails until power-on.
    PowerLost,
    /// The backing file failed.
    Io(io::ErrorKind),
    /// The backing file has another size than the configured capacity.
    BackingSize {
        /// Size found.
        found: u64,
        /// Size expected.
        expected: u64,
    },
    /// An environment setting does not parse.
    BadSetting(&'static str),
}

impl fmt::Display for SimFlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAligned => f.write_str("flash access not aligned"),
            Self::OutOfBounds => f.write_str("flash access out of bounds"),
            Self::NotErased { offset } => write!(f, "write to non-erased flash at {offset:#x}"),
            Self::PowerLost => f.write_str("power lost"),
            Self::Io(kind) => write!(f, "flash backing file: {kind}"),
            Self::BackingSize { found, expected } => {
                write!(
                    f,
                    "flash backing file has {found} bytes, expected {expected}"
                )
            }
            Self::BadSetting(name) => write!(f, "{name} does not parse"),
        }
    }
}

impl std::error::Error for SimFlashError {}

impl NorFlashError for SimFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

impl From<io::Error> for SimFlashError {
    fn from(e: io::Error) -> Self {
        Self::Io(e.kind())
    }
}

/// An erased sector, for the memcmp fast path of `write`.
static ERASED: [u8; 4096] = [0xFF; 4096];

/// Simulated NOR flash with `ERASE`-byte sectors and `WRITE`-byte write units.
pub struct SimFlash<const ERASE: usize = 4096, const WRITE: usize = 4> {
    data: Vec<u8>,
    erases: Vec<u32>,
    writes: Vec<u32>,
    ops: u64,
    cut: Option<PowerCut>,
    powered: bool,
    last_cut: Option<CutOperation>,
    /// The flash file and its erase counters, mapped (`None` in memory, or for zero sectors).
    backing: Option<(MappedFile, MappedFile)>,
}

impl<const ERASE: usize, const WRITE: usize> SimFlash<ERASE, WRITE> {
    /// An erased in-memory flash of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        Self {
            data: vec![0xFF; sectors * ERASE],
            erases: vec![0; sectors],
            writes: vec![0; sectors],
            ops: 0,
            cut: None,
            powered: true,
            last_cut: None,
            backing: None,
        }
    }

    /// A flash of `sectors` sectors stored in the file `path` (created erased when missing)
    /// with its erase counters in `path` + ".wear".
    pub fn open_file(path: &Path, sectors: usize) -> Result<Self, SimFlashError> {
        let mut flash = Self::new(sectors);
        let expected = flash.data.len() as u64;
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
        };
        let file = open(path)?;
        let found = file.metadata()?.len();
        if found == 0 {
            file.write_all_at(&flash.data, 0)?;
        } else if found != expected {
            return Err(SimFlashError::BackingSize { found, expected });
        } else {
            file.read_exact_at(&mut flash.data, 0)?;
        }
        let mut wear_path = PathBuf::from(path);
        wear_path.as_mut_os_string().push(".wear");
        let wear = open(&wear_path)?;
        let mut counters = vec![0u8; sectors * 4];
        if wear.metadata()?.len() == counters.len() as u64 {
            wear.read_exact_at(&mut counters, 0)?;
            for (count, raw) in flash.erases.iter_mut().zip(counters.chunks_exact(4)) {
                *count = u32::from_le_bytes(raw.try_into().unwrap_or([0; 4]));
            }
        } else {
            wear.set_len(0)?;
            wear.write_all_at(&counters, 0)?;
        }
        // Both files have their full length now, written (no holes), so the mappings cover them.
        if sectors > 0 {
            flash.backing = Some((
                MappedFile::new(file, flash.data.len())?,
                MappedFile::new(wear, counters.len())?,
            ));
        }
        Ok(flash)
    }

    /// Arms a power cut, counted from now.
    pub fn arm(&mut self, cut: Option<PowerCut>) {
        self.ops = 0;
        self.cut = cut;
    }

    /// Restores power after a cut (a reboot); the armed cut is consumed.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.cut = None;
    }

    /// Whether a power cut happened and power is not back.
    pub fn is_powered_off(&self) -> bool {
        !self.powered
    }

    /// The kind of operation the last cut interrupted.
    pub fn last_cut(&self) -> Option<CutOperation> {
        self.last_cut
    }

    /// Mutating operations since the last [`arm`](Self::arm) (or creation).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Erases per sector since creation (persisted with a file backing).
    pub fn erase_counts(&self) -> &[u32] {
        &self.erases
    }

    /// Writes per sector since creation (this process only).
    pub fn write_counts(&self) -> &[u32] {
        &self.writes
    }

    /// The raw contents, for tests that compare images.
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    /// Overwrites the raw contents and counters from another flash of the same size (fast
    /// restore of a snapshot in sweeps); power on, no cut armed.
    pub fn restore_from(&mut self, other: &Self) -> Result<(), SimFlashError> {
        if self.data.len() != other.data.len() {
            return Err(SimFlashError::OutOfBounds);
        }
        self.data.copy_from_slice(&other.data);
        self.erases.copy_from_slice(&other.erases);
        self.writes.copy_from_slice(&other.writes);
        self.ops = 0;
        self.cut = None;
        self.powered = true;
        self.last_cut = None;
        Ok(())
    }

    /// Decides whether this operation is cut; `Some(mode)` means "interrupt it".
    fn begin_op(&mut self, kind: CutOperation) -> Result<Option<CutMode>, SimFlashError> {
        if !self.powered {
            return Err(SimFlashError::PowerLost);
        }
        let index = self.ops;
        self.ops += 1;
        match self.cut {
            Some(cut) if cut.after_ops == index => {
                self.powered = false;
                self.last_cut = Some(kind);
                Ok(Some(cut.mode))
            }
            _ => Ok(None),
        }
    }

    /// Deterministic "how much landed" for the interrupted operation: a value in 0..n.
    fn partial_point(&self, n: usize) -> usize {
        let mut x = self.ops.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        (x % n.max(1) as u64) as usize
    }

    fn persist(&mut self, from: usize, to: usize) -> Result<(), SimFlashError> {
        if let (Some((file, _)), Some(bytes)) = (&mut self.backing, self.data.get(from..to)) {
            file.write_at(from, bytes)?;
        }
        Ok(())
    }

    fn persist_wear(&mut self, sector: usize) -> Result<(), SimFlashError> {
        if let (Some((_, wear)), Some(count)) = (&mut self.backing, self.erases.get(sector)) {
            wear.write_at(sector * 4, &count.to_le_bytes())?;
        }
        Ok(())
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<(usize, usize), SimFlashError> {
        let from = offset as usize;
        let to = from.checked_add(len).ok_or(SimFlashError::OutOfBounds)?;
        if to > self.data.len() {
            return Err(SimFlashError::OutOfBounds);
        }
        if !from.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(SimFlashError::NotAligned);
        }
        Ok((from, to))
    }
}

impl<const ERASE: usize, const WRITE: usize> ErrorType for SimFlash<ERASE, WRITE> {
    type Error = SimFlashError;
}

impl<const ERASE: usize, const WRITE: usize> ReadNorFlash for SimFlash<ERASE, WRITE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if !self.powered {
            return Err(SimFlashError::PowerLost);
        }
        let (from, to) = self.range(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.data[from..to]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl<const ERASE: usize, const WRITE: usize> NorFlash for SimFlash<ERASE, WRITE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to.checked_sub(from).ok_or(SimFlashError::OutOfBounds)? as usize;
        let (start, end) = self.range(from, len, ERASE)?;
        for sector_start in (start..end).step_by(ERASE) {
            let sector = sector_start / ERASE;
            let cut = self.begin_op(CutOperation::Erase)?;
            self.erases[sector] += 1;
            let sector_end = sector_start + ERASE;
            match cut {
                None => self.data[sector_start..sector_end].fill(0xFF),
                Some(CutMode::Clean) => {}
                Some(CutMode::Partial) => {
                    let point = self.partial_point(ERASE);
                    self.data[sector_start..sector_start + point].fill(0xFF);
                    let bits = self.partial_point(255) as u8 | 1;
                    self.data[sector_start + point] |= bits;
                }
            }
            self.persist(sector_start, sector_end)?;
            self.persist_wear(sector)?;
            if cut.is_some() {
                return Err(SimFlashError::PowerLost);
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if !self.powered {
            return Err(SimFlashError::PowerLost);
        }
        let (from, to) = self.range(offset, bytes.len(), WRITE)?;
        // Fast path (memcmp): most writes go to erased flash.
        let blank = ERASED
            .get(..to - from)
            .is_some_and(|e| e == &self.data[from..to]);
        let conflict = if blank {
            None
        } else {
            self.data[from..to]
                .iter()
                .zip(bytes)
                .position(|(&old, &new)| new & !old != 0)
        };
        if let Some(i) = conflict {
            return Err(SimFlashError::NotErased {
                offset: (from + i) as u32,
            });
        }
        let cut = self.begin_op(CutOperation::Write)?;
        for sector in from / ERASE..to.div_ceil(ERASE) {
            self.writes[sector] += 1;
        }
        let landed = match cut {
            None => bytes.len(),
            Some(CutMode::Clean) => 0,
            Some(CutMode::Partial) => self.partial_point(bytes.len()),
        };
        if blank {
            self.data[from..from + landed].copy_from_slice(&bytes[..landed]);
        } else {
            for (cell, &new) in self.data[from..from + landed].iter_mut().zip(bytes) {
                *cell &= new;
            }
        }
        if cut == Some(CutMode::Partial) {
            // The byte being programmed when power failed: only some of its zero bits landed.
            let keep = self.partial_point(255) as u8 | 1;
            if let (Some(cell), Some(&new)) = (self.data.get_mut(from + landed), bytes.get(landed))
            {
                *cell &= new | keep;
            }
        }
        self.persist(from, to)?;
        if cut.is_some() {
            return Err(SimFlashError::PowerLost);
        }
        Ok(())
    }
}
