//! The download path: a SUIT package arriving block by block, into the candidate slot.
//!
//! [`PackageReceiver`] joins the streaming verifier and the slot manager. The envelope head
//! (authentication wrapper + manifest) is buffered and authenticated before anything reaches
//! flash; at the first payload byte the slot manager stores the authenticated head in the
//! candidate slot's header and journals Downloading; payload bytes then stream through SHA-256
//! into the slot; at the end the verifier checks digest and size on the fly and the slot manager
//! re-reads flash and checks the digest again (what is verified is what is stored) before it
//! journals Downloaded.
//!
//! A download interrupted by a reboot resumes where the slot journal stood: the head stored when
//! the download began is authenticated again, the verifier re-enters the image there
//! (decrypting from that point when it is encrypted), and the caller re-requests the envelope
//! or the fetched image from [`PackageReceiver::resume_from`]'s offset (only when the server
//! still has the same entity, by ETag). The bytes stored before the reboot are not hashed
//! again on the way: the final flash re-read proves every image against its signed digest.

use embedded_storage::nor_flash::NorFlash;

use crate::manifest::{
    text_info, CryptoBackend, Finished, Manifest, Member, PayloadSink, Policy, StreamVerifier,
    SuitError,
};
use crate::slots::{
    Download, ImageFacts, ManifestFacts, SlotError, SlotManager, MAX_NAME, MAX_VERSION,
};
use crate::status::UpdateResult;

/// Why a package was refused; each maps to the Update Result the device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageError {
    /// The SUIT envelope failed authentication, policy or integrity checks.
    Suit(SuitError),
    /// The slot manager refused or the flash failed.
    Slot(SlotError),
    /// The envelope head does not fit the caller's scratch buffer.
    HeadTooLarge,
    /// Bytes arrived after the receiver had finished or failed.
    Unexpected,
    /// The data does not start like a SUIT envelope at all (neither tag 107 nor a map).
    NotSuit,
    /// The interrupted download cannot continue: the stored head no longer authenticates
    /// under the current policy or keys or describes other images than the slot was opened
    /// for, or the start of its integrated payload was not kept. The download starts again.
    NotResumable,
}

impl PackageError {
    /// The Update Result for this failure.
    pub fn update_result(self) -> UpdateResult {
        match self {
            PackageError::Suit(e) => e.update_result(),
            PackageError::Slot(SlotError::ImageTooLarge | SlotError::EnvelopeTooLarge) => {
                UpdateResult::NotEnoughFlash
            }
            PackageError::Slot(SlotError::Rollback { .. }) => UpdateResult::UnsupportedPackage,
            PackageError::Slot(SlotError::Verify(_) | SlotError::SizeMismatch) => {
                UpdateResult::IntegrityFailure
            }
            PackageError::Slot(SlotError::BufferTooSmall) | PackageError::HeadTooLarge => {
                UpdateResult::OutOfRam
            }
            PackageError::NotSuit => UpdateResult::UnsupportedPackage,
            PackageError::NotResumable => UpdateResult::ConnectionLost,
            PackageError::Slot(_) | PackageError::Unexpected => UpdateResult::UpdateFailed,
        }
    }
}

impl core::fmt::Display for PackageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PackageError::Suit(e) => write!(f, "package refused: {e}"),
            PackageError::Slot(e) => write!(f, "slot: {e}"),
            PackageError::HeadTooLarge => f.write_str("manifest larger than the receive buffer"),
            PackageError::Unexpected => f.write_str("data after the end of the package"),
            PackageError::NotSuit => f.write_str("not a SUIT envelope"),
            PackageError::NotResumable => f.write_str("the interrupted download cannot continue"),
        }
    }
}

impl From<SuitError> for PackageError {
    fn from(e: SuitError) -> Self {
        PackageError::Suit(e)
    }
}

impl From<SlotError> for PackageError {
    fn from(e: SlotError) -> Self {
        PackageError::Slot(e)
    }
}

/// What the receiver reports after [`PackageReceiver::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The package is stored, verified and journaled Downloaded.
    Downloaded,
    /// Two-stage pull: the manifest names the next image's URI
    /// ([`PackageReceiver::fetch_uri`]); fetch it, pass the bytes to
    /// [`PackageReceiver::feed_fetched`], then call [`PackageReceiver::finish_fetched`]
    /// (which may name one more image).
    FetchImage,
}

/// Where a resumed download continues ([`PackageReceiver::resume_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeAt {
    /// The package (envelope) from this byte offset; its bytes go to
    /// [`PackageReceiver::feed`].
    Package(u64),
    /// The image at [`PackageReceiver::fetch_uri`] from this byte offset (a two-stage pull);
    /// its bytes go to [`PackageReceiver::feed_fetched`].
    Image(u64),
}

/// Envelope offsets of the integrated images' first payload bytes, once known: what a
/// download persists so that [`PackageReceiver::resume_from`] can continue inside either image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadStarts {
    /// Component 0's (the application's) payload.
    pub first: Option<u64>,
    /// Component 1's payload, when that image is integrated.
    pub second: Option<u64>,
}

/// Gives payload bytes to the slot writer; the verifier calls it from inside `feed`.
struct SlotSink<'x, 'b, F: NorFlash> {
    slots: &'x mut SlotManager<'b, F>,
    download: Option<Download>,
    /// The verifier asked to begin a payload; the head is stored after `feed` returns.
    begin_requested: bool,
    error: Option<SlotError>,
}

impl<F: NorFlash> PayloadSink for SlotSink<'_, '_, F> {
    /// Component 0's image opens the candidate slot (after `feed` returns, see
    /// [`PackageReceiver::feed`]); a second image, which must follow it, goes to its own
    /// region of the same slot.
    fn begin(&mut self, component: usize, size: Option<u64>) -> Result<(), SuitError> {
        let cap = u64::from(self.slots.layout().image_capacity());
        if size.is_none_or(|s| s > cap) {
            return Err(SuitError::ImageTooLarge);
        }
        if component == 0 {
            if self.download.is_some() {
                return Err(SuitError::OutOfOrder);
            }
            self.begin_requested = true;
            return Ok(());
        }
        let dl = self.download.take().ok_or(SuitError::OutOfOrder)?;
        let moved = self.slots.writer(dl).and_then(|mut w| {
            w.begin_second_image()?;
            Ok(w.detach())
        });
        match moved {
            Ok(dl) => {
                self.download = Some(dl);
                Ok(())
            }
            Err(e) => {
                self.error = Some(e);
                Err(SuitError::Platform(PackageError::Slot(e).update_result()))
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
        let dl = self.download.take().ok_or(SuitError::OutOfOrder)?;
        let mut w = match self.slots.writer(dl) {
            Ok(w) => w,
            Err(e) => {
                self.error = Some(e);
                return Err(SuitError::Platform(UpdateResult::UpdateFailed));
            }
        };
        let r = w.write(bytes);
        self.download = Some(w.detach());
        r.map_err(|e| {
            self.error = Some(e);
            SuitError::Platform(PackageError::Slot(e).update_result())
        })
    }
}

enum Mode {
    /// Receiving and verifying the envelope (from its start or, resumed, from inside an
    /// image).
    Verify,
    /// Finished or failed: nothing more is accepted.
    Closed,
}

/// Streams one SUIT package into the candidate slot; see the module documentation.
pub struct PackageReceiver<'b, 'p, C: CryptoBackend> {
    verifier: StreamVerifier<'b, 'p, C>,
    mode: Mode,
    download: Option<Download>,
    /// Envelope bytes consumed so far (resume offsets are in these units).
    consumed: u64,
    /// The payload starts persisted before a resume (the verifier saw them go by then).
    resumed_starts: PayloadStarts,
    /// Envelope offset the verifier's stream began at (a resume's offset, else 0).
    fed_from: u64,
    /// Two-stage pull: a fetched image has begun.
    fetching: bool,
}

/// Length of the head [`compose_head`] writes.
fn head_len(auth: &[u8], manifest_item: &[u8]) -> usize {
    2 + bstr_header(auth.len() as u64, &mut [0u8; 9]) + auth.len() + 1 + manifest_item.len()
}

/// Writes `{2: bstr(auth), 3: manifest-bstr}`, the head the bootloader re-authenticates, into
/// `out`, which must be [`head_len`] bytes long.
fn compose_head(auth: &[u8], manifest_item: &[u8], out: &mut [u8]) -> Option<()> {
    let mut hdr = [0u8; 9];
    let hl = bstr_header(auth.len() as u64, &mut hdr);
    if out.len() != head_len(auth, manifest_item) {
        return None;
    }
    out[0] = 0xA2; // map(2)
    out[1] = 0x02;
    out[2..2 + hl].copy_from_slice(&hdr[..hl]);
    let mut at = 2 + hl;
    out[at..at + auth.len()].copy_from_slice(auth);
    at += auth.len();
    out[at] = 0x03;
    out[at + 1..].copy_from_slice(manifest_item);
    Some(())
}

/// The shortest CBOR byte-string header for `len`.
fn bstr_header(len: u64, out: &mut [u8; 9]) -> usize {
    const BSTR: u8 = 2 << 5;
    match len {
        0..=23 => {
            out[0] = BSTR | len as u8;
            1
        }
        24..=0xFF => {
            out[0] = BSTR | 24;
            out[1] = len as u8;
            2
        }
        0x100..=0xFFFF => {
            out[0] = BSTR | 25;
            out[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            3
        }
        0x1_0000..=0xFFFF_FFFF => {
            out[0] = BSTR | 26;
            out[1..5].copy_from_slice(&(len as u32).to_be_bytes());
            5
        }
        _ => {
            out[0] = BSTR | 27;
            out[1..9].copy_from_slice(&len.to_be_bytes());
            9
        }
    }
}

impl<'b, 'p, C: CryptoBackend> PackageReceiver<'b, 'p, C> {
    /// A receiver for a new package: `buf` holds the envelope head (2-4 KiB), `policy` says
    /// which keys, vendor, class and sequence numbers are acceptable.
    pub fn new(buf: &'b mut [u8], policy: Policy<'p>, crypto: C) -> Self {
        Self {
            verifier: StreamVerifier::new(buf, policy, crypto),
            mode: Mode::Verify,
            download: None,
            consumed: 0,
            resumed_starts: PayloadStarts::default(),
            fed_from: 0,
            fetching: false,
        }
    }

    /// Gives the receiver the device's payload decryption keys (its key store): an encrypted
    /// image is decrypted as it streams into the candidate slot; the content key is opened
    /// before the slot is touched, so a wrong key leaves it alone (Update Result 5).
    #[cfg(feature = "encryption")]
    pub fn with_decryption_keys(mut self, keys: &'p [crate::manifest::DecryptionKey<'p>]) -> Self {
        self.verifier = self.verifier.with_decryption_keys(keys);
        self
    }

    /// Turns a fresh receiver into the continuation of the download the slot manager
    /// journaled as Downloading before a reboot; says what the transfer must ask for.
    /// `starts` is [`PackageReceiver::payload_starts`] as persisted then (`first` is `None`
    /// when no integrated payload had begun, e.g. in a two-stage pull's image).
    ///
    /// The stored envelope head is authenticated again and the verifier goes on inside the
    /// image where the journal stood: an encrypted image is decrypted from there, later
    /// images arrive as usual. A fetched image continues at its journaled offset
    /// ([`ResumeAt::Image`], from the URI [`PackageReceiver::fetch_uri`] names); an
    /// integrated one in the envelope ([`ResumeAt::Package`]) from its payload's start plus
    /// the bytes stored. When an integrated second image's start was not persisted (the cut
    /// came first) or cannot be right (before the end of component 0's payload), a cut
    /// inside it continues in component 0's last sector instead, where the second image's
    /// member is read again. On error the receiver stays unusable but
    /// still gives its buffer back through [`PackageReceiver::into_buffer`];
    /// [`PackageError::NotResumable`] says the package must be downloaded again from its
    /// start.
    pub fn resume_from<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
        starts: PayloadStarts,
    ) -> Result<ResumeAt, PackageError> {
        if self.consumed != 0 || self.download.is_some() {
            return Err(PackageError::Unexpected);
        }
        self.mode = Mode::Closed;
        let reloaded = self
            .verifier
            .reload(|buf| slots.candidate_head(buf).ok().flatten());
        let sector = slots.layout().sector_size;
        let mut w = slots.resume_download()?;
        let facts = w.facts().ok_or(PackageError::Unexpected)?;
        // The head must say what the slot was opened for.
        let same = self.verifier.image_facts() == Some((facts.digest, Some(u64::from(facts.size))))
            && self.verifier.second_image_facts().map(|(_, d, s)| (d, s))
                == facts.second.map(|s| (s.digest, Some(u64::from(s.size))));
        if reloaded.is_err() || !same {
            return Err(PackageError::NotResumable);
        }
        let second_at = facts
            .second_offset(sector)
            .ok_or(PackageError::NotResumable)?;
        let in_second = facts.second.is_some() && w.offset() >= second_at;
        // Persisted data is not trusted blindly: the second payload follows the first.
        let after_first = |s: &u64| {
            starts
                .first
                .is_none_or(|f| *s >= f.saturating_add(u64::from(facts.size)))
        };
        let starts = PayloadStarts {
            second: starts.second.filter(after_first),
            ..starts
        };
        let second_found = match self.verifier.is_integrated(1) {
            Some(true) => starts.second.is_some(),
            Some(false) => true,
            None => false,
        };
        let (index, at) = if in_second && second_found {
            (1, w.offset() - second_at)
        } else {
            if w.offset() >= facts.size {
                // Back into component 0's last sector, whose place in the package is known.
                let last = facts
                    .size
                    .checked_sub(1)
                    .ok_or(PackageError::NotResumable)?;
                w.rewind(last / sector * sector)?;
            }
            (0, w.offset())
        };
        let dl = w.detach();
        let integrated = self.verifier.is_integrated(index) == Some(true);
        let start = if index == 0 {
            starts.first
        } else {
            starts.second
        };
        let resume_at = match (integrated, start) {
            (true, Some(start)) => ResumeAt::Package(start + u64::from(at)),
            (true, None) => return Err(PackageError::NotResumable),
            (false, _) => ResumeAt::Image(u64::from(at)),
        };
        if self.verifier.resume_image(index, u64::from(at)).is_err() {
            return Err(PackageError::NotResumable);
        }
        self.download = Some(dl);
        self.mode = Mode::Verify;
        match resume_at {
            ResumeAt::Package(offset) => {
                self.consumed = offset;
                self.fed_from = offset;
                self.resumed_starts = starts;
            }
            ResumeAt::Image(_) => self.fetching = true,
        }
        Ok(resume_at)
    }

    /// Gives the receive buffer back once the download is over, for the next one.
    pub fn into_buffer(self) -> &'b mut [u8] {
        self.verifier.into_buffer()
    }

    /// Envelope bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Envelope offsets of the integrated images' first bytes, as far as they arrived: persist
    /// them for [`PackageReceiver::resume_from`].
    pub fn payload_starts(&self) -> PayloadStarts {
        let seen = |i| self.verifier.payload_offset(i).map(|o| self.fed_from + o);
        PayloadStarts {
            first: self.resumed_starts.first.or_else(|| seen(0)),
            second: self.resumed_starts.second.or_else(|| seen(1)),
        }
    }

    /// Image bytes stored so far.
    pub fn image_offset(&self) -> u64 {
        self.download.map_or(0, |d| u64::from(d.offset()))
    }

    /// The next envelope bytes. Any error is final: the caller aborts the download with
    /// [`PackageError::update_result`].
    pub fn feed<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
        mut data: &[u8],
    ) -> Result<(), PackageError> {
        let r = self.feed_inner(slots, &mut data);
        if r.is_err() {
            self.mode = Mode::Closed;
        }
        r
    }

    fn feed_inner<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
        data: &mut &[u8],
    ) -> Result<(), PackageError> {
        match self.mode {
            Mode::Closed => return Err(PackageError::Unexpected),
            Mode::Verify => {}
        }
        // Tell "not a SUIT package at all" (result 6) from a damaged one (result 5) by the first
        // byte: an envelope starts with tag 107 (0xD8 0x6B) or a map.
        if self.consumed == 0 {
            if let Some(&first) = data.first() {
                if first != 0xD8 && first >> 5 != 5 {
                    return Err(PackageError::NotSuit);
                }
            }
        }
        // Until the payload begins, feed byte by byte so that the slot is opened before the
        // first payload byte (the verifier calls `begin` on the payload's header byte).
        while self.download.is_none() && !data.is_empty() {
            let (one, rest) = data.split_at(1);
            let begin = self.with_slot(slots, |v, sink| v.feed(one, sink));
            self.consumed += 1;
            *data = rest;
            if begin? {
                self.open_slot(slots)?;
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: &[u8] = data;
        let r = self.with_slot(slots, |v, sink| v.feed(chunk, sink));
        self.consumed += chunk.len() as u64;
        r.map(|_| ())
    }

    /// Runs `step` on the verifier with a sink into the candidate slot (the download goes to
    /// the sink and comes back; a slot error wins over the verifier's report of it). Returns
    /// whether the verifier asked to begin component 0's image: the caller then opens the slot.
    fn with_slot<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
        step: impl FnOnce(&mut StreamVerifier<'b, 'p, C>, &mut dyn PayloadSink) -> Result<(), SuitError>,
    ) -> Result<bool, PackageError> {
        let mut sink = SlotSink {
            slots,
            download: self.download.take(),
            begin_requested: false,
            error: None,
        };
        let r = step(&mut self.verifier, &mut sink);
        self.download = sink.download;
        if let Some(e) = sink.error {
            return Err(PackageError::Slot(e));
        }
        r?;
        Ok(sink.begin_requested)
    }

    /// Stores the authenticated head in the candidate slot and journals Downloading.
    #[inline(never)] // own stack frame: its Record copies are not under the verifier's frames
    fn open_slot<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
    ) -> Result<(), PackageError> {
        let env = self.verifier.envelope().ok_or(SuitError::OutOfOrder)?;
        let (digest, size) = self.verifier.image_facts().ok_or(SuitError::OutOfOrder)?;
        let size32 = |s: Option<u64>| {
            s.and_then(|s| u32::try_from(s).ok())
                .ok_or(SuitError::ImageTooLarge)
        };
        let second = match self.verifier.second_image_facts() {
            Some((_, digest, size)) => Some(ImageFacts {
                size: size32(size)?,
                digest,
            }),
            None => None,
        };
        let facts = ManifestFacts {
            sequence: self
                .verifier
                .sequence_number()
                .ok_or(SuitError::OutOfOrder)?,
            size: size32(size)?,
            digest,
            second,
        };
        // PkgName / PkgVersion come from the authenticated suit-text, when present.
        let mut name = [0u8; MAX_NAME];
        let mut version = [0u8; MAX_VERSION];
        let (mut nl, mut vl) = (0, 0);
        if let Ok(m) = Manifest::parse(env.manifest) {
            if let Member::Present(t) = m.text {
                if let Ok(info) = text_info(t, m.component_id(0)) {
                    if let Some(n) = info.name {
                        nl = n.len().min(MAX_NAME);
                        name[..nl].copy_from_slice(&n[..nl]);
                    }
                    if let Some(v) = info.version {
                        vl = v.len().min(MAX_VERSION);
                        version[..vl].copy_from_slice(&v[..vl]);
                    }
                }
            }
        }
        // The verifier's buffer holds the head in received order (with the map header for the
        // whole envelope); the stored copy is re-encoded as a two-member map, straight into the
        // slot manager's work buffer (no second head-sized buffer on the stack).
        let len = head_len(env.auth, env.manifest_item);
        if len > HEAD_MAX {
            return Err(PackageError::HeadTooLarge);
        }
        let w = slots.begin_download_with(&facts, len, |out| {
            compose_head(env.auth, env.manifest_item, out)
        })?;
        self.download = Some(w.detach());
        slots.set_package_info(&name[..nl], &version[..vl])?;
        Ok(())
    }

    /// The envelope ended: checks the image and journals Downloaded, or asks for the image
    /// (two-stage pull: see [`PackageReceiver::fetch_uri`]).
    pub fn finish<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
    ) -> Result<Outcome, PackageError> {
        let mode = core::mem::replace(&mut self.mode, Mode::Closed);
        if let Mode::Closed = mode {
            return Err(PackageError::Unexpected);
        }
        let complete = matches!(self.verifier.finish()?, Finished::Complete(_));
        self.settle(slots, complete)
    }

    /// Every image verified (`complete`): the slot re-reads and checks them and journals
    /// Downloaded. Otherwise one more image is to be fetched.
    fn settle<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
        complete: bool,
    ) -> Result<Outcome, PackageError> {
        if !complete {
            self.mode = Mode::Verify;
            return Ok(Outcome::FetchImage);
        }
        let dl = self.download.take().ok_or(SuitError::Truncated)?;
        slots.writer(dl)?.finish()?;
        Ok(Outcome::Downloaded)
    }

    /// The authenticated URI of the image, after [`Outcome::FetchImage`] or
    /// [`ResumeAt::Image`].
    pub fn fetch_uri(&mut self) -> Option<&[u8]> {
        if self.verifier.resumed_fetch_uri().is_some() {
            return self.verifier.resumed_fetch_uri();
        }
        match self.verifier.finish() {
            Ok(Finished::FetchRequired { uri }) => Some(uri),
            _ => None,
        }
    }

    /// Two-stage pull: the bytes of the fetched image, in order.
    pub fn feed_fetched<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
        data: &[u8],
    ) -> Result<(), PackageError> {
        if !self.fetching {
            // The first image opens the slot; a second one moves to its region.
            if self.with_slot(slots, |v, sink| v.begin_fetched(sink))? {
                self.open_slot(slots)?;
            }
            self.fetching = true;
        }
        self.with_slot(slots, |v, sink| v.feed_fetched(data, sink))
            .map(|_| ())
    }

    /// Two-stage pull: the fetched image ended. [`Outcome::Downloaded`] once every image is
    /// stored and verified; [`Outcome::FetchImage`] when the package has one more image to
    /// fetch ([`PackageReceiver::fetch_uri`]).
    pub fn finish_fetched<F: NorFlash>(
        &mut self,
        slots: &mut SlotManager<'_, F>,
    ) -> Result<Outcome, PackageError> {
        self.mode = Mode::Closed;
        self.fetching = false;
        let complete = matches!(self.verifier.finish_fetched()?, Finished::Complete(_));
        self.settle(slots, complete)
    }
}

/// Largest envelope head the device stores (wrapper + manifest); one 4 KiB sector holds it
/// with the slot header's own fields.
pub const HEAD_MAX: usize = 3072;
