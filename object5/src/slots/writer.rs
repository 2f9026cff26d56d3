//! The streaming download writer: blocks go straight to flash as they arrive.
//!
//! Sectors are erased lazily, just before their first byte is written; the download offset is
//! journaled each time a whole sector is in flash, so a reboot resumes at a sector boundary and
//! re-erases the sector it resumes in. `finish` re-reads the image from flash and checks its
//! SHA-256 against the manifest, so what is verified is what is stored.
//!
//! The progress of a download is plain data ([`Download`]): a caller that handles one block
//! per event detaches it with [`DownloadWriter::detach`] and reattaches it with
//! [`SlotManager::writer`] for the next block.

use embedded_storage::nor_flash::NorFlash;

use super::error::{flash_err, SlotError, VerifyError};
use super::manager::SlotManager;
use super::record::Phase;
use super::ManifestFacts;
use crate::status::UpdateResult;

/// Where a download stands: detached from the manager between blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Download {
    base: u32,
    facts: Option<ManifestFacts>,
    size: u32,
    written: u32,
    tail: [u8; 16],
    tail_len: usize,
    erased_sectors: u32,
    persisted: u32,
}

impl Download {
    pub(crate) fn new(
        base: u32,
        facts: Option<ManifestFacts>,
        size: u32,
        offset: u32,
        sector: u32,
    ) -> Self {
        Self {
            base,
            facts,
            size,
            written: offset,
            tail: [0xFF; 16],
            tail_len: 0,
            erased_sectors: offset / sector,
            persisted: offset,
        }
    }

    /// Bytes accepted so far: where the next block starts.
    pub fn offset(&self) -> u32 {
        self.written + self.tail_len as u32
    }

    /// Bytes the manifest's images span in the slot ([`ManifestFacts::span`]).
    pub fn size(&self) -> u32 {
        self.size
    }
}

/// Writes one image into the candidate slot; created by [`SlotManager::begin_download`],
/// [`SlotManager::resume_download`] or [`SlotManager::writer`].
pub struct DownloadWriter<'m, 'b, F: NorFlash> {
    mgr: &'m mut SlotManager<'b, F>,
    dl: Download,
}

impl<'m, 'b, F: NorFlash> SlotManager<'b, F> {
    /// Reattaches a detached download. Refused unless a download of the same package is
    /// still journaled (e.g. it was aborted or replaced meanwhile).
    pub fn writer(&'m mut self, dl: Download) -> Result<DownloadWriter<'m, 'b, F>, SlotError> {
        let same = dl
            .facts
            .is_some_and(|f| f.sequence == self.record.candidate_seq);
        if !self.known || self.record.phase != Some(Phase::Downloading) || !same {
            return Err(SlotError::Busy(self.record.phase.unwrap_or(Phase::Idle)));
        }
        Ok(DownloadWriter { mgr: self, dl })
    }
}

impl<'m, 'b, F: NorFlash> DownloadWriter<'m, 'b, F> {
    pub(crate) fn attach(mgr: &'m mut SlotManager<'b, F>, dl: Download) -> Self {
        Self { mgr, dl }
    }

    /// Bytes accepted so far: where the next block starts.
    pub fn offset(&self) -> u32 {
        self.dl.offset()
    }

    /// Bytes the manifest's images span in the slot ([`ManifestFacts::span`]).
    pub fn size(&self) -> u32 {
        self.dl.size
    }

    /// The second image starts: the writer moves to its region
    /// ([`ManifestFacts::second_offset`]) once component 0's image is complete.
    pub fn begin_second_image(&mut self) -> Result<(), SlotError> {
        let sector = self.mgr.layout.sector_size;
        let facts = self.dl.facts.ok_or(SlotError::SizeMismatch)?;
        if facts.second.is_none() || self.offset() != facts.size {
            return Err(SlotError::SizeMismatch);
        }
        let offset = facts.second_offset(sector).ok_or(SlotError::SizeMismatch)?;
        self.skip_to(offset)
    }

    /// The next image starts at `offset` of the image area: the partial last word of the one
    /// before is padded and written, and the bytes in between stay as they are (never read:
    /// not part of any image). Only forward, to a sector boundary.
    pub(crate) fn skip_to(&mut self, offset: u32) -> Result<(), SlotError> {
        let sector = self.mgr.layout.sector_size;
        if offset < self.offset() || !offset.is_multiple_of(sector) || offset > self.dl.size {
            return Err(SlotError::SizeMismatch);
        }
        self.flush_tail()?;
        self.dl.written = offset;
        Ok(())
    }

    /// The facts of the package being downloaded.
    pub fn facts(&self) -> Option<ManifestFacts> {
        self.dl.facts
    }

    /// Moves a resumed download back to `offset`, a sector boundary at or before
    /// [`offset`](Self::offset), and journals it: the bytes from there are received again
    /// (a resumed two-image download continues inside component 0's image, whose place in
    /// the package is known). Each sector from there is erased again before its first write.
    /// Only before the first write after [`SlotManager::resume_download`].
    pub fn rewind(&mut self, offset: u32) -> Result<(), SlotError> {
        let sector = self.mgr.layout.sector_size;
        if self.dl.tail_len != 0 || offset > self.dl.written || !offset.is_multiple_of(sector) {
            return Err(SlotError::SizeMismatch);
        }
        if self.dl.facts.is_some() && offset < self.dl.persisted {
            let mut next = self.mgr.record;
            next.offset = offset;
            self.mgr.commit(next)?;
        }
        self.dl.written = offset;
        self.dl.persisted = offset;
        self.dl.erased_sectors = offset / sector;
        Ok(())
    }

    /// Detaches the progress so the manager can be released between blocks.
    pub fn detach(self) -> Download {
        self.dl
    }

    /// Appends `data` at [`offset`](Self::offset).
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), SlotError> {
        if data.len() as u64 > u64::from(self.dl.size.saturating_sub(self.offset())) {
            return Err(SlotError::SizeMismatch);
        }
        let w = F::WRITE_SIZE;
        if self.dl.tail_len > 0 {
            let take = (w - self.dl.tail_len).min(data.len());
            let (head, rest) = data.split_at(take);
            let at = self.dl.tail_len;
            self.dl
                .tail
                .get_mut(at..at + take)
                .ok_or(SlotError::BufferTooSmall)?
                .copy_from_slice(head);
            self.dl.tail_len += take;
            data = rest;
            if self.dl.tail_len == w {
                let block = self.dl.tail;
                self.program(block.get(..w).ok_or(SlotError::BufferTooSmall)?)?;
                self.dl.tail_len = 0;
            }
        }
        let aligned = data.len() - data.len() % w;
        let (body, rest) = data.split_at(aligned);
        if !body.is_empty() {
            self.program(body)?;
        }
        let at = self.dl.tail_len;
        self.dl
            .tail
            .get_mut(at..at + rest.len())
            .ok_or(SlotError::BufferTooSmall)?
            .copy_from_slice(rest);
        self.dl.tail_len += rest.len();
        self.persist_progress()
    }

    /// Checks the whole image in flash against the manifest and journals `Downloaded`. On a
    /// digest or size mismatch the candidate is dropped: `Idle`, Update Result 5.
    pub fn finish(mut self) -> Result<(), SlotError> {
        self.flush_tail()?;
        let Some(facts) = self.dl.facts else {
            return Ok(());
        };
        let complete = self.dl.written >= self.dl.size;
        if !complete || !self.mgr.images_match(self.dl.base, &facts)? {
            self.mgr.abort_download(UpdateResult::IntegrityFailure)?;
            return Err(if complete {
                SlotError::Verify(VerifyError::Digest)
            } else {
                SlotError::SizeMismatch
            });
        }
        let mut next = self.mgr.record;
        next.phase = Some(Phase::Downloaded);
        next.offset = self.dl.size;
        self.mgr.commit(next)
    }

    /// Writes a partial last word padded with 0xFF.
    pub(crate) fn flush_tail(&mut self) -> Result<(), SlotError> {
        if self.dl.tail_len == 0 {
            return Ok(());
        }
        let mut block = self.dl.tail;
        block
            .get_mut(self.dl.tail_len..)
            .ok_or(SlotError::BufferTooSmall)?
            .fill(0xFF);
        let len = self.dl.tail_len;
        self.program(
            block
                .get(..F::WRITE_SIZE)
                .ok_or(SlotError::BufferTooSmall)?,
        )?;
        // `written` counts image bytes; the padding is not part of the image.
        self.dl.written -= (F::WRITE_SIZE - len) as u32;
        self.dl.tail_len = 0;
        Ok(())
    }

    /// Writes word-aligned `bytes` at `written`, erasing each sector before its first write.
    fn program(&mut self, mut bytes: &[u8]) -> Result<(), SlotError> {
        let sector = self.mgr.layout.sector_size;
        while !bytes.is_empty() {
            let index = self.dl.written / sector;
            if index >= self.dl.erased_sectors {
                let from = self.dl.base + index * sector;
                self.mgr
                    .flash
                    .erase(from, from + sector)
                    .map_err(flash_err)?;
                self.dl.erased_sectors = index + 1;
            }
            let room = ((index + 1) * sector - self.dl.written) as usize;
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.mgr
                .flash
                .write(self.dl.base + self.dl.written, now)
                .map_err(flash_err)?;
            self.dl.written += now.len() as u32;
            bytes = later;
        }
        Ok(())
    }

    /// Journals the offset when another whole sector is in flash.
    fn persist_progress(&mut self) -> Result<(), SlotError> {
        let sector = self.mgr.layout.sector_size;
        let boundary = self.dl.written / sector * sector;
        if self.dl.facts.is_none() || boundary <= self.dl.persisted {
            return Ok(());
        }
        let mut next = self.mgr.record;
        next.offset = boundary;
        self.mgr.commit(next)?;
        self.dl.persisted = boundary;
        Ok(())
    }
}
