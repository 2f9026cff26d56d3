//! The slot manager: persistent update state and the operations the device performs on it.

use embedded_storage::nor_flash::NorFlash;
use sha2::{Digest, Sha256};

use super::error::{flash_err, SlotError, VerifyError};
use super::journal::Journal;
use super::layout::{Layout, Strategy};
use super::record::{Field, Phase, Record};
use super::writer::{Download, DownloadWriter};
use super::{header, Authenticate, ManifestFacts};
use crate::status::{State, UpdateResult};

/// A snapshot of the persistent state, as Object 5 and the bootloader see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Journal phase; `None` when no committed record exists or its phase is unknown (the
    /// bootloader then verifies the slots and rewrites a known state).
    pub phase: Option<Phase>,
    /// Object 5 State derived from the phase (`Idle` when unknown).
    pub state: State,
    /// Object 5 Update Result (`Initial` when the stored value is unknown).
    pub result: UpdateResult,
    /// Anti-rollback floor: the sequence number of the newest confirmed image.
    pub floor: u64,
    /// Sequence number of the stored candidate (0 when none was offered).
    pub candidate_sequence: u64,
    /// Bytes of the candidate safely in flash; a resumed download continues here.
    pub download_offset: u32,
}

/// Owns the flash and the work buffer; every state change is one journal append.
pub struct SlotManager<'b, F: NorFlash> {
    pub(crate) flash: F,
    pub(crate) layout: Layout,
    pub(crate) buf: &'b mut [u8],
    journal: Journal,
    pub(crate) record: Record,
    pub(crate) known: bool,
}

impl<'b, F: NorFlash> SlotManager<'b, F> {
    /// Opens the manager on `flash`: validates the layout and reads the newest journal record.
    /// `buf` must hold [`MIN_WORK_BUFFER`](super::MIN_WORK_BUFFER) bytes and the largest
    /// envelope head the bootloader authenticates (one sector is always enough).
    pub fn open(mut flash: F, layout: Layout, buf: &'b mut [u8]) -> Result<Self, SlotError> {
        layout
            .validate(F::ERASE_SIZE, F::WRITE_SIZE, flash.capacity())
            .map_err(SlotError::Layout)?;
        let (journal, record) = Journal::load(&mut flash, layout.journal, layout.sector_size, buf)?;
        let known = record.is_some();
        let record = record.unwrap_or(Record {
            phase: None,
            ..Record::factory(0)
        });
        Ok(Self {
            flash,
            layout,
            buf,
            journal,
            record,
            known,
        })
    }

    /// Factory provisioning: writes `image` and its envelope head into slot 0 and journals
    /// `Idle` with the image's sequence number as the floor. Not power-fail safe by design
    /// (the factory reruns it); the journal record is written last.
    pub fn provision(
        &mut self,
        facts: &ManifestFacts,
        envelope: &[u8],
        image: &[u8],
    ) -> Result<(), SlotError> {
        self.provision_images(facts, envelope, image, None)
    }

    /// [`SlotManager::provision`] of a two-image package: `second` goes to the second image's
    /// region ([`ManifestFacts::second_offset`]).
    pub fn provision_images(
        &mut self,
        facts: &ManifestFacts,
        envelope: &[u8],
        image: &[u8],
        second: Option<&[u8]>,
    ) -> Result<(), SlotError> {
        let slot = self.layout.slots[0];
        let s = self.layout.sector_size;
        let lengths_match = facts.size as usize == image.len()
            && facts.second.map(|f| f.size as usize) == second.map(<[u8]>::len);
        let span = facts.span(s).ok_or(SlotError::ImageTooLarge)?;
        if !lengths_match || span > self.layout.image_capacity() {
            return Err(SlotError::ImageTooLarge);
        }
        header::write(&mut self.flash, slot, s, facts, envelope)?;
        let raw = Download::new(slot + s, None, span, 0, s);
        let mut writer = DownloadWriter::attach(self, raw);
        writer.write(image)?;
        if let (Some(bytes), Some(offset)) = (second, facts.second_offset(s)) {
            writer.skip_to(offset)?;
            writer.write(bytes)?;
        }
        writer.flush_tail()?;
        self.commit(Record::factory(facts.sequence))
    }

    /// The current persistent state.
    pub fn status(&self) -> Status {
        let phase = self.known.then_some(self.record.phase).flatten();
        Status {
            phase,
            state: phase.map_or(State::Idle, Phase::object5_state),
            result: self.record.result.unwrap_or(UpdateResult::Initial),
            floor: self.record.floor,
            candidate_sequence: self.record.candidate_seq,
            download_offset: self.record.offset,
        }
    }

    /// Whether the journal holds any committed record (false on a never-provisioned flash).
    pub fn has_record(&self) -> bool {
        self.known
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The flash, e.g. to read the booted image.
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// Stored Package URI (/5/0/1).
    pub fn package_uri(&self) -> &[u8] {
        self.record.uri.as_bytes()
    }

    /// Stored PkgName (/5/0/6).
    pub fn package_name(&self) -> &[u8] {
        self.record.name.as_bytes()
    }

    /// Stored PkgVersion (/5/0/7).
    pub fn package_version(&self) -> &[u8] {
        self.record.version.as_bytes()
    }

    /// The slot the bootloader runs: the active one for A/B, slot 0 otherwise. `None` when the
    /// stored A/B selector is unknown.
    pub fn running_slot(&self) -> Option<usize> {
        match self.layout.strategy {
            Strategy::AB => match self.record.active {
                0 => Some(0),
                1 => Some(1),
                _ => None,
            },
            Strategy::Swap | Strategy::Overwrite => Some(0),
        }
    }

    /// The slot a download goes to.
    pub fn candidate_slot(&self) -> Option<usize> {
        match self.layout.strategy {
            Strategy::AB => self.running_slot().map(|s| 1 - s),
            Strategy::Swap | Strategy::Overwrite => Some(1),
        }
    }

    /// Flash address of the first image byte of `slot` (after its header sector).
    pub fn image_address(&self, slot: usize) -> Option<u32> {
        self.layout
            .slots
            .get(slot)
            .map(|&a| a + self.layout.sector_size)
    }

    /// A download was requested: a pull of `uri` (/5/0/1), or a push when `uri` is empty.
    /// Journals [`Phase::Requested`] with Update Result 0 and the URI, so that a reset before
    /// [`SlotManager::begin_download`] still shows a download under way (the caller restarts
    /// the pull, or reports 4 for a push); a stored candidate is no longer claimed. A URI
    /// longer than [`MAX_URI`](super::record::MAX_URI) is journaled empty (a reset then ends
    /// that pull with 4 rather than forgetting it) and refused with `FieldTooLong`. Refused
    /// during install, test or revert.
    pub fn request_download(&mut self, uri: &[u8]) -> Result<(), SlotError> {
        self.check_not_installing()?;
        let field = Field::new(uri);
        let mut next = self.record;
        next.phase = Some(Phase::Requested);
        next.result = Some(UpdateResult::Initial);
        next.offset = 0;
        next.uri = field.unwrap_or(Field::EMPTY);
        self.commit(next)?;
        field.map(|_| ()).ok_or(SlotError::FieldTooLong)
    }

    /// Refuses with `Busy` unless the journal is known and no install, test, revert or
    /// restore is under way (the phases a download or a result may change).
    fn check_not_installing(&self) -> Result<(), SlotError> {
        match self.record.phase {
            Some(Phase::Idle | Phase::Requested | Phase::Downloading | Phase::Downloaded)
                if self.known =>
            {
                Ok(())
            }
            other => Err(SlotError::Busy(other.unwrap_or(Phase::Idle))),
        }
    }

    /// Stores PkgName and PkgVersion (/5/0/6, /5/0/7) of the candidate.
    pub fn set_package_info(&mut self, name: &[u8], version: &[u8]) -> Result<(), SlotError> {
        let mut next = self.record;
        next.name = Field::new(name).ok_or(SlotError::FieldTooLong)?;
        next.version = Field::new(version).ok_or(SlotError::FieldTooLong)?;
        self.commit(next)
    }

    /// Starts a download of an authenticated package: checks the floor and sizes, stores the
    /// envelope head in the candidate slot's header and journals `Downloading` at offset 0
    /// (Update Result back to 0). Refused while an install or an unconfirmed image is pending.
    pub fn begin_download(
        &mut self,
        facts: &ManifestFacts,
        envelope: &[u8],
    ) -> Result<DownloadWriter<'_, 'b, F>, SlotError> {
        self.begin_download_with(facts, envelope.len(), |out| {
            out.copy_from_slice(envelope);
            Some(())
        })
    }

    /// [`begin_download`](Self::begin_download) for a head the caller writes into the work
    /// buffer (`len` bytes, by `write_head`; `None` refuses with `EnvelopeTooLarge`): a device
    /// that re-encodes the head it received needs no second head-sized buffer on its stack.
    pub fn begin_download_with(
        &mut self,
        facts: &ManifestFacts,
        len: usize,
        write_head: impl FnOnce(&mut [u8]) -> Option<()>,
    ) -> Result<DownloadWriter<'_, 'b, F>, SlotError> {
        self.check_not_installing()?;
        if facts.sequence <= self.record.floor {
            return Err(SlotError::Rollback {
                sequence: facts.sequence,
                floor: self.record.floor,
            });
        }
        let span = facts
            .span(self.layout.sector_size)
            .ok_or(SlotError::ImageTooLarge)?;
        if span > self.layout.image_capacity() {
            return Err(SlotError::ImageTooLarge);
        }
        if len > header::max_envelope(self.layout.sector_size, facts) || len > self.buf.len() {
            return Err(SlotError::EnvelopeTooLarge);
        }
        let slot = self.candidate_slot().ok_or(SlotError::Busy(Phase::Idle))?;
        if matches!(
            self.record.phase,
            Some(Phase::Downloading | Phase::Downloaded)
        ) {
            // The stored candidate is about to be erased: stop claiming it first, still
            // showing the download that replaces it.
            let mut unclaimed = self.record;
            unclaimed.phase = Some(Phase::Requested);
            unclaimed.offset = 0;
            self.commit(unclaimed)?;
        }
        // The journal uses the work buffer too: the head goes in only after the commit above.
        let head = self.buf.get_mut(..len).ok_or(SlotError::EnvelopeTooLarge)?;
        write_head(head).ok_or(SlotError::EnvelopeTooLarge)?;
        header::write(
            &mut self.flash,
            self.layout.slots[slot],
            self.layout.sector_size,
            facts,
            head,
        )?;
        let mut next = self.record;
        next.phase = Some(Phase::Downloading);
        next.result = Some(UpdateResult::Initial);
        next.candidate_seq = facts.sequence;
        next.offset = 0;
        self.commit(next)?;
        self.resume_download()
    }

    /// Continues an interrupted download at [`Status::download_offset`] (sector-aligned).
    pub fn resume_download(&mut self) -> Result<DownloadWriter<'_, 'b, F>, SlotError> {
        if self.record.phase != Some(Phase::Downloading) || !self.known {
            return Err(SlotError::Busy(self.record.phase.unwrap_or(Phase::Idle)));
        }
        let slot = self
            .candidate_slot()
            .ok_or(SlotError::Busy(Phase::Downloading))?;
        let facts = match header::read(
            &mut self.flash,
            self.layout.slots[slot],
            self.layout.sector_size,
            self.buf,
        )? {
            Ok((facts, _)) => facts,
            Err(e) => {
                self.abort_download(UpdateResult::IntegrityFailure)?;
                return Err(SlotError::Verify(e));
            }
        };
        let sector = self.layout.sector_size;
        let span = facts.span(sector).ok_or(SlotError::ImageTooLarge)?;
        let offset = self.record.offset.min(span) / sector * sector;
        let base = self
            .image_address(slot)
            .ok_or(SlotError::Busy(Phase::Downloading))?;
        let dl = Download::new(base, Some(facts), span, offset, sector);
        Ok(DownloadWriter::attach(self, dl))
    }

    /// Stores an Update Result without changing the phase (e.g. 7 after an invalid Package
    /// URI, 11 after a deferral). Refused during install, test or revert.
    pub fn set_result(&mut self, result: UpdateResult) -> Result<(), SlotError> {
        self.check_not_installing()?;
        let mut next = self.record;
        next.result = Some(result);
        self.commit(next)
    }

    /// Ends a download or discards a stored candidate: `Idle` with `result` (e.g. 4 for a lost
    /// connection, 10 for a cancel). A pull that lost its connection keeps its offset, so
    /// that the same Package URI written again continues it ([`SlotManager::retry_download`]).
    pub fn abort_download(&mut self, result: UpdateResult) -> Result<(), SlotError> {
        self.check_not_installing()?;
        let mut next = self.record;
        let resumable = next.phase == Some(Phase::Downloading)
            && result == UpdateResult::ConnectionLost
            && !next.uri.as_bytes().is_empty();
        next.phase = Some(Phase::Idle);
        next.result = Some(result);
        if !resumable {
            next.offset = 0;
        }
        self.commit(next)
    }

    /// The Package URI written again after its pull ended with the connection lost (Update
    /// Result 4), as servers retry (Leshan issue 367 asks for it; the shim's jobs do it): the
    /// download continues where it was journaled, as after a reset ([`Phase::Downloading`]
    /// at the kept offset; [`SlotManager::resume_download`] checks the candidate's head
    /// again), and `true` says so. The candidate was not touched since: any other download or
    /// push starts with [`SlotManager::request_download`], which forgets the offset. Any
    /// other URI, or another ending, is [`SlotManager::request_download`] (`false`).
    pub fn retry_download(&mut self, uri: &[u8]) -> Result<bool, SlotError> {
        self.check_not_installing()?;
        let r = &self.record;
        if r.phase == Some(Phase::Idle)
            && r.result == Some(UpdateResult::ConnectionLost)
            && r.offset > 0
            && !uri.is_empty()
            && r.uri.as_bytes() == uri
        {
            let mut next = self.record;
            next.phase = Some(Phase::Downloading);
            next.result = Some(UpdateResult::Initial);
            self.commit(next)?;
            return Ok(true);
        }
        self.request_download(uri).map(|()| false)
    }

    /// Execute (/5/0/2): marks the verified candidate for activation at the next reset.
    pub fn request_install(&mut self) -> Result<(), SlotError> {
        if self.record.phase != Some(Phase::Downloaded) || !self.known {
            return Err(SlotError::Busy(self.record.phase.unwrap_or(Phase::Idle)));
        }
        let mut next = self.record;
        next.phase = Some(Phase::Pending);
        self.commit(next)
    }

    /// Confirms the running test image after it re-registered: `Idle`, Update Result 1, and
    /// the floor rises to its sequence number. A no-op when nothing is under test.
    pub fn confirm(&mut self) -> Result<(), SlotError> {
        match self.record.phase {
            Some(Phase::Testing) if self.known => {}
            Some(Phase::Idle) if self.known => return Ok(()),
            other => return Err(SlotError::Busy(other.unwrap_or(Phase::Idle))),
        }
        let mut next = self.record;
        next.phase = Some(Phase::Idle);
        next.result = Some(UpdateResult::Success);
        next.floor = next.floor.max(next.candidate_seq);
        next.offset = 0;
        self.commit(next)
    }

    /// Raises the anti-rollback floor to `floor` (a no-op when it is not higher): for a board
    /// that keeps a second copy of the floor outside the journal, so a journal that lost its
    /// newest records cannot lower it. Returns whether the floor rose. Refused while the
    /// journal holds no known state (the bootloader writes one first).
    pub fn raise_floor(&mut self, floor: u64) -> Result<bool, SlotError> {
        if !self.known || self.record.phase.is_none() {
            return Err(SlotError::Busy(Phase::Idle));
        }
        if floor <= self.record.floor {
            return Ok(false);
        }
        let mut next = self.record;
        next.floor = floor;
        self.commit(next)?;
        Ok(true)
    }

    /// Whether the running image is under test and must confirm itself.
    pub fn is_testing(&self) -> bool {
        self.known && self.record.phase == Some(Phase::Testing)
    }

    /// Verifies `slot`: header intact, envelope authenticates to the same facts, image digest
    /// matches. The outer `Err` is a flash failure, the inner one a verification failure.
    pub fn verify_slot<A: Authenticate>(
        &mut self,
        slot: usize,
        auth: &mut A,
    ) -> Result<Result<ManifestFacts, VerifyError>, SlotError> {
        self.check_slot(slot, auth, false)
    }

    /// [`SlotManager::verify_slot`] for an image already installed: authenticity and digest,
    /// without the acceptance policy ([`Authenticate::authenticate_installed`]).
    pub fn verify_installed<A: Authenticate>(
        &mut self,
        slot: usize,
        auth: &mut A,
    ) -> Result<Result<ManifestFacts, VerifyError>, SlotError> {
        self.check_slot(slot, auth, true)
    }

    fn check_slot<A: Authenticate>(
        &mut self,
        slot: usize,
        auth: &mut A,
        installed: bool,
    ) -> Result<Result<ManifestFacts, VerifyError>, SlotError> {
        let Some(&addr) = self.layout.slots.get(slot) else {
            return Ok(Err(VerifyError::NoHeader));
        };
        let (stored, len) =
            match header::read(&mut self.flash, addr, self.layout.sector_size, self.buf)? {
                Ok(found) => found,
                Err(e) => return Ok(Err(e)),
            };
        let envelope = self.buf.get(..len).ok_or(SlotError::BufferTooSmall)?;
        let authenticated = if installed {
            auth.authenticate_installed(envelope)
        } else {
            auth.authenticate(envelope)
        };
        let facts = match authenticated {
            Ok(facts) => facts,
            Err(e) => return Ok(Err(e)),
        };
        if facts != stored {
            return Ok(Err(VerifyError::FactsMismatch));
        }
        let sector = self.layout.sector_size;
        if facts
            .span(sector)
            .is_none_or(|span| span > self.layout.image_capacity())
        {
            return Ok(Err(VerifyError::Size));
        }
        if !self.images_match(addr + sector, &facts)? {
            return Ok(Err(VerifyError::Digest));
        }
        Ok(Ok(facts))
    }

    /// Whether every image region of the image area at `base` hashes to its digest.
    pub(crate) fn images_match(
        &mut self,
        base: u32,
        facts: &ManifestFacts,
    ) -> Result<bool, SlotError> {
        for (offset, size, digest) in facts.regions(self.layout.sector_size).into_iter().flatten() {
            if self.image_digest(base + offset, size)? != digest {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The facts stored with `slot`'s envelope head (read without authenticating them: for a
    /// slot the boot path verified, to locate its images). `None` when it has no valid header.
    pub fn stored_facts(&mut self, slot: usize) -> Result<Option<ManifestFacts>, SlotError> {
        let Some(&addr) = self.layout.slots.get(slot) else {
            return Ok(None);
        };
        Ok(
            header::read(&mut self.flash, addr, self.layout.sector_size, self.buf)?
                .ok()
                .map(|(facts, _)| facts),
        )
    }

    /// The envelope head stored with the candidate of the download in progress, into `out`;
    /// its length, or `None` when there is no such download or its header is not valid (or
    /// does not fit `out`). Read without authenticating it: a resumed download authenticates
    /// it again before it trusts it.
    pub fn candidate_head(&mut self, out: &mut [u8]) -> Result<Option<usize>, SlotError> {
        if self.record.phase != Some(Phase::Downloading) || !self.known {
            return Ok(None);
        }
        let Some(&addr) = self.candidate_slot().and_then(|s| self.layout.slots.get(s)) else {
            return Ok(None);
        };
        Ok(
            header::read(&mut self.flash, addr, self.layout.sector_size, out)?
                .ok()
                .map(|(_, len)| len),
        )
    }

    /// SHA-256 over `len` bytes of flash from `addr`, read through the work buffer.
    pub(crate) fn image_digest(&mut self, addr: u32, len: u32) -> Result<[u8; 32], SlotError> {
        let mut hasher = Sha256::new();
        let chunk = self.buf.len().min(4096) as u32;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk);
            let part = self
                .buf
                .get_mut(..n as usize)
                .ok_or(SlotError::BufferTooSmall)?;
            self.flash.read(addr + done, part).map_err(flash_err)?;
            hasher.update(&*part);
            done += n;
        }
        Ok(hasher.finalize().into())
    }

    /// Appends `next` to the journal and makes it current.
    pub(crate) fn commit(&mut self, mut next: Record) -> Result<(), SlotError> {
        self.journal.append(&mut self.flash, &mut next, self.buf)?;
        self.record = next;
        self.known = true;
        Ok(())
    }
}
