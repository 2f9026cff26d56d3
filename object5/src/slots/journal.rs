//! The state journal: records appended into two alternating sectors.
//!
//! A record is written payload first, commit word second, into a slot that is known blank; the
//! newest committed record (highest sequence, valid CRC) wins. A torn or uncommitted record is
//! skipped and the next append goes to the next blank slot, so the last good record is never
//! overwritten. When a sector is full the other one (holding only older records) is erased
//! and written; an interrupted erase leaves the current sector untouched.

use embedded_storage::nor_flash::NorFlash;

use super::error::{flash_err, SlotError};
use super::layout::progress_word;
use super::record::{Record, COMMIT, COMMIT_AT, PAYLOAD_SIZE, RECORD_SIZE};

/// Where the next record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// A blank record slot: (sector 0/1, index).
    At(u32, u32),
    /// Erase this sector first, then write at its index 0.
    Switch(u32),
}

/// Append position and the sequence of the newest record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Journal {
    base: u32,
    sector: u32,
    next: Next,
    last_seq: u32,
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0xFF)
}

impl Journal {
    fn per_sector(&self) -> u32 {
        self.sector / RECORD_SIZE as u32
    }

    fn addr(&self, sector: u32, index: u32) -> u32 {
        self.base + sector * self.sector + index * RECORD_SIZE as u32
    }

    /// Scans both sectors: the newest committed record (if any) and the append position.
    pub(crate) fn load<F: NorFlash>(
        flash: &mut F,
        base: u32,
        sector: u32,
        buf: &mut [u8],
    ) -> Result<(Self, Option<Record>), SlotError> {
        let raw = buf
            .get_mut(..RECORD_SIZE)
            .ok_or(SlotError::BufferTooSmall)?;
        let mut journal = Self {
            base,
            sector,
            next: Next::Switch(0),
            last_seq: 0,
        };
        let mut best: Option<(Record, u32, u32)> = None;
        // Newest first within a sector (appends go up): a committed record whose sequence
        // number cannot beat the best so far is not worth its CRC, so a scan decodes about
        // one record per sector (every boot and every reopen does this scan).
        for s in 0..2 {
            for i in (0..journal.per_sector()).rev() {
                flash.read(journal.addr(s, i), raw).map_err(flash_err)?;
                let beats = |seq: u32| best.as_ref().is_none_or(|(b, _, _)| seq > b.seq);
                if !Record::committed_seq(raw).is_some_and(beats) {
                    continue;
                }
                if let Some(r) = Record::decode(raw) {
                    if beats(r.seq) {
                        best = Some((r, s, i));
                    }
                }
            }
        }
        let Some((record, s, i)) = best else {
            return Ok((journal, None));
        };
        journal.last_seq = record.seq;
        journal.next = Next::Switch(1 - s);
        for j in i + 1..journal.per_sector() {
            flash.read(journal.addr(s, j), raw).map_err(flash_err)?;
            if is_blank(raw) {
                journal.next = Next::At(s, j);
                break;
            }
        }
        Ok((journal, Some(record)))
    }

    /// Appends `record` with the next sequence number (stored back into `record.seq`).
    pub(crate) fn append<F: NorFlash>(
        &mut self,
        flash: &mut F,
        record: &mut Record,
        buf: &mut [u8],
    ) -> Result<(), SlotError> {
        let (s, i) = match self.next {
            Next::At(s, i) => (s, i),
            Next::Switch(s) => {
                let from = self.addr(s, 0);
                flash.erase(from, from + self.sector).map_err(flash_err)?;
                self.next = Next::At(s, 0);
                (s, 0)
            }
        };
        record.seq = self.last_seq.wrapping_add(1);
        let payload: &mut [u8; PAYLOAD_SIZE] = buf
            .get_mut(..PAYLOAD_SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or(SlotError::BufferTooSmall)?;
        record.encode(payload);
        let at = self.addr(s, i);
        flash.write(at, payload).map_err(flash_err)?;
        let mut commit = [0xFF; 16];
        for chunk in commit.chunks_mut(4) {
            chunk.copy_from_slice(&COMMIT);
        }
        let len = progress_word(F::WRITE_SIZE);
        flash
            .write(
                at + COMMIT_AT as u32,
                commit.get(..len).ok_or(SlotError::BufferTooSmall)?,
            )
            .map_err(flash_err)?;
        self.last_seq = record.seq;
        self.next = if i + 1 < self.per_sector() {
            Next::At(s, i + 1)
        } else {
            Next::Switch(1 - s)
        };
        Ok(())
    }
}
