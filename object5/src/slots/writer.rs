//! The streaming download writer: blocks go straight to flash as they arrive.
//!
//! Sectors are erased lazily, just before their first byte is written; the download offset is
//! journaled each time a whole sector is in flash, so a reboot resumes at a sector boundary and
//! re-erases the sector it resumes in. `finish` re-reads the image from flash and checks its
//! SHA-256 against the manifest, so what is verified is what is stored.

use embedded_storage::nor_flash::NorFlash;

use super::error::{flash_err, Error, VerifyError};
use super::manager::SlotManager;
use super::record::Phase;
use super::ManifestFacts;
use crate::status::UpdateResult;

/// Writes one image into the candidate slot; created by
/// [`SlotManager::begin_download`] or [`SlotManager::resume_download`].
pub struct DownloadWriter<'m, 'b, F: NorFlash> {
    mgr: &'m mut SlotManager<'b, F>,
    base: u32,
    facts: Option<ManifestFacts>,
    size: u32,
    written: u32,
    tail: [u8; 16],
    tail_len: usize,
    erased_sectors: u32,
    persisted: u32,
}

impl<'m, 'b, F: NorFlash> DownloadWriter<'m, 'b, F> {
    /// A writer that journals nothing (factory provisioning).
    pub(crate) fn raw(mgr: &'m mut SlotManager<'b, F>, base: u32, size: u32) -> Self {
        Self {
            mgr,
            base,
            facts: None,
            size,
            written: 0,
            tail: [0xFF; 16],
            tail_len: 0,
            erased_sectors: 0,
            persisted: 0,
        }
    }

    pub(crate) fn resume(
        mgr: &'m mut SlotManager<'b, F>,
        base: u32,
        facts: ManifestFacts,
        offset: u32,
    ) -> Self {
        let sector = mgr.layout.sector_size;
        Self {
            mgr,
            base,
            facts: Some(facts),
            size: facts.size,
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

    /// Image size announced by the manifest.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Appends `data` at [`offset`](Self::offset).
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), Error> {
        if data.len() as u64 > u64::from(self.size.saturating_sub(self.offset())) {
            return Err(Error::SizeMismatch);
        }
        let w = F::WRITE_SIZE;
        if self.tail_len > 0 {
            let take = (w - self.tail_len).min(data.len());
            let (head, rest) = data.split_at(take);
            self.tail
                .get_mut(self.tail_len..self.tail_len + take)
                .ok_or(Error::BufferTooSmall)?
                .copy_from_slice(head);
            self.tail_len += take;
            data = rest;
            if self.tail_len == w {
                let block = self.tail;
                self.program(block.get(..w).ok_or(Error::BufferTooSmall)?)?;
                self.tail_len = 0;
            }
        }
        let aligned = data.len() - data.len() % w;
        let (body, rest) = data.split_at(aligned);
        if !body.is_empty() {
            self.program(body)?;
        }
        self.tail
            .get_mut(..rest.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(rest);
        self.tail_len += rest.len();
        self.persist_progress()
    }

    /// Checks the whole image in flash against the manifest and journals `Downloaded`. On a
    /// digest or size mismatch the candidate is dropped: `Idle`, Update Result 5.
    pub fn finish(mut self) -> Result<(), Error> {
        self.flush_tail()?;
        let Some(facts) = self.facts else {
            return Ok(());
        };
        let digest = self.mgr.image_digest(self.base, self.size)?;
        if self.written < self.size || digest != facts.digest {
            self.mgr.abort_download(UpdateResult::IntegrityFailure)?;
            return Err(if self.written < self.size {
                Error::SizeMismatch
            } else {
                Error::Verify(VerifyError::Digest)
            });
        }
        let mut next = self.mgr.record;
        next.phase = Some(Phase::Downloaded);
        next.offset = self.size;
        self.mgr.commit(next)
    }

    /// Writes a partial last word padded with 0xFF.
    pub(crate) fn flush_tail(&mut self) -> Result<(), Error> {
        if self.tail_len == 0 {
            return Ok(());
        }
        let mut block = self.tail;
        block
            .get_mut(self.tail_len..)
            .ok_or(Error::BufferTooSmall)?
            .fill(0xFF);
        let len = self.tail_len;
        self.program(block.get(..F::WRITE_SIZE).ok_or(Error::BufferTooSmall)?)?;
        // `written` counts image bytes; the padding is not part of the image.
        self.written -= (F::WRITE_SIZE - len) as u32;
        self.tail_len = 0;
        Ok(())
    }

    /// Writes word-aligned `bytes` at `written`, erasing each sector before its first write.
    fn program(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        let sector = self.mgr.layout.sector_size;
        while !bytes.is_empty() {
            let index = self.written / sector;
            if index >= self.erased_sectors {
                let from = self.base + index * sector;
                self.mgr
                    .flash
                    .erase(from, from + sector)
                    .map_err(flash_err)?;
                self.erased_sectors = index + 1;
            }
            let room = ((index + 1) * sector - self.written) as usize;
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.mgr
                .flash
                .write(self.base + self.written, now)
                .map_err(flash_err)?;
            self.written += now.len() as u32;
            bytes = later;
        }
        Ok(())
    }

    /// Journals the offset when another whole sector is in flash.
    fn persist_progress(&mut self) -> Result<(), Error> {
        let sector = self.mgr.layout.sector_size;
        let boundary = self.written / sector * sector;
        if self.facts.is_none() || boundary <= self.persisted {
            return Ok(());
        }
        let mut next = self.mgr.record;
        next.offset = boundary;
        self.mgr.commit(next)?;
        self.persisted = boundary;
        Ok(())
    }
}
