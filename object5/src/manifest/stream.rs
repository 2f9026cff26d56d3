//! Push-based envelope processing for a device that receives a package block by block (CoAP
//! Block1/Block2): the authentication wrapper and manifest are buffered in a caller-provided
//! buffer and authenticated before anything else is parsed; payload bytes then flow to the
//! caller's [`PayloadSink`] through SHA-256 and are never held whole in RAM. After a reboot
//! cut a download, [`StreamVerifier::reload`] and [`StreamVerifier::resume_image`] go on
//! inside the image it was in.

use super::cbor::{parse_head, Reader, MAJOR_BSTR, MAJOR_MAP, MAJOR_TAG, MAJOR_TSTR, MAJOR_UINT};
use super::crypto::{ct_eq, CryptoBackend, Sha256Hasher};
use super::envelope::{Envelope, KEY_AUTH, KEY_MANIFEST, SEVERABLE_KEYS, TAG_ENVELOPE};
use super::policy::Policy;
use super::{verify_wrapper, ImageInfo, Sequences, SuitError, MAX_IMAGES};
#[cfg(feature = "encryption")]
use super::{ContentAlg, DecryptionKey, Decryptor, EncryptionInfo, GCM_TAG};

/// Where verified payload bytes go (a flash slot writer, typically).
pub trait PayloadSink {
    /// A payload for `component` starts (the next image; the previous one, if any, ended and
    /// verified); `size` is the manifest's image-size. Refuse with
    /// [`SuitError::ImageTooLarge`] when it cannot fit.
    fn begin(&mut self, component: usize, size: Option<u64>) -> Result<(), SuitError>;
    /// The next payload bytes, in order.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError>;
}

/// A package that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The manifest's sequence number: persist it once the image is installed.
    pub sequence_number: u64,
    /// Index of the trust anchor that verified.
    pub anchor: usize,
    /// SHA-256 of component 0's image as written to the sink.
    pub digest: [u8; 32],
    /// Its length in bytes.
    pub size: u64,
    /// The second image of a two-image package: its component, SHA-256 and length.
    pub second: Option<(usize, [u8; 32], u64)>,
}

/// How envelope processing ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished<'a> {
    /// Every image was written to the sink and matched its digest and size.
    Complete(Verified),
    /// Two-stage pull: the next image is at `uri`; fetch it and pass it to
    /// [`StreamVerifier::begin_fetched`], [`StreamVerifier::feed_fetched`] and
    /// [`StreamVerifier::finish_fetched`].
    FetchRequired {
        /// The authenticated URI from the manifest.
        uri: &'a [u8],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading envelope members into the buffer.
    Members,
    /// Streaming an integrated payload: bytes left; the image it is, if any.
    Payload { left: u64, image: Option<usize> },
    /// Every member seen.
    Done,
    /// A previous call failed; nothing more is accepted.
    Failed,
}

/// One image's authenticated facts; byte ranges point into the buffer.
#[derive(Clone, Copy, Debug)]
struct ImageFacts {
    component: usize,
    digest: [u8; 32],
    size: Option<u64>,
    uri: Option<Range>,
    /// The image arrives encrypted: its SUIT_Encryption_Info, and the ciphertext's digest and
    /// size when the manifest states them.
    #[cfg(feature = "encryption")]
    encryption: Option<Encrypted>,
}

/// Facts kept after authentication.
#[derive(Clone, Copy, Debug)]
struct Facts {
    sequence_number: u64,
    anchor: usize,
    images: [Option<ImageFacts>; MAX_IMAGES],
}

impl Facts {
    fn image(&self, i: usize) -> Result<&ImageFacts, SuitError> {
        self.images
            .get(i)
            .and_then(Option::as_ref)
            .ok_or(SuitError::OutOfOrder)
    }
}

#[cfg(feature = "encryption")]
#[derive(Clone, Copy, Debug)]
struct Encrypted {
    info: Range,
    digest: Option<[u8; 32]>,
    size: Option<u64>,
}

/// A byte range in the buffer; u16 offsets keep the verifier small (the buffer is used up
/// to 64 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u16,
    end: u16,
}

impl Range {
    fn new(start: usize, end: usize) -> Result<Self, SuitError> {
        let at = |x: usize| u16::try_from(x).map_err(|_| SuitError::BufferTooSmall);
        Ok(Self {
            start: at(start)?,
            end: at(end)?,
        })
    }

    fn of(self, buf: &[u8]) -> Option<&[u8]> {
        buf.get(usize::from(self.start)..usize::from(self.end))
    }
}

/// The part of a buffer the verifier uses ([`Range`]).
const MAX_BUFFER: usize = u16::MAX as usize;

/// The image being received (index into the facts' images): plaintext hash and length, and
/// for an encrypted image the decryption state and, when the manifest states the
/// ciphertext's digest, its hash. `done` has bit `i` set once image `i` verified, with its
/// length in `lengths[i]`.
struct ImageState<H> {
    current: Option<usize>,
    /// `None` while `partial`: its first bytes were hashed before a reboot.
    hasher: Option<H>,
    /// The current image was entered mid-way ([`StreamVerifier::resume_image`]): the slot's
    /// re-read of the whole image checks its digest, not this verifier.
    partial: bool,
    received: u64,
    done: u8,
    lengths: [u64; MAX_IMAGES],
    #[cfg(feature = "encryption")]
    decrypt: Option<Decryptor>,
    #[cfg(feature = "encryption")]
    cipher_hasher: Option<H>,
}

/// Incremental envelope verifier; see the module documentation.
pub struct StreamVerifier<'b, 'p, C: CryptoBackend> {
    buf: &'b mut [u8],
    len: usize,
    cursor: usize,
    members_left: Option<u64>,
    auth: Option<Range>,
    manifest: Option<Range>,
    severed: [Option<Range>; 5],
    phase: Phase,
    facts: Option<Facts>,
    image: ImageState<C::Hasher>,
    policy: Policy<'p>,
    crypto: C,
    /// Entered mid-payload after a reboot ([`StreamVerifier::resume_image`]): the envelope's
    /// member count went by before, so its end is taken after any whole member.
    resumed: bool,
    /// Bytes taken from [`StreamVerifier::feed`] so far (since [`StreamVerifier::resume_image`]
    /// after a reboot).
    fed: u64,
    /// Where each integrated image's payload began, in [`StreamVerifier::feed`]'s bytes.
    payload_at: [Option<u64>; MAX_IMAGES],
    /// The device's decryption keys (key store), for encrypted images.
    #[cfg(feature = "encryption")]
    keys: &'p [DecryptionKey<'p>],
}

impl<'b, 'p, C: CryptoBackend> StreamVerifier<'b, 'p, C> {
    /// A verifier that buffers the wrapper and manifest in `buf` (2-4 KiB is typical).
    pub fn new(buf: &'b mut [u8], policy: Policy<'p>, crypto: C) -> Self {
        Self {
            buf,
            len: 0,
            cursor: 0,
            members_left: None,
            auth: None,
            manifest: None,
            severed: [None; 5],
            phase: Phase::Members,
            facts: None,
            image: ImageState {
                current: None,
                hasher: None,
                partial: false,
                received: 0,
                done: 0,
                lengths: [0; MAX_IMAGES],
                #[cfg(feature = "encryption")]
                decrypt: None,
                #[cfg(feature = "encryption")]
                cipher_hasher: None,
            },
            policy,
            crypto,
            resumed: false,
            fed: 0,
            payload_at: [None; MAX_IMAGES],
            #[cfg(feature = "encryption")]
            keys: &[],
        }
    }

    /// Gives the verifier the device's payload decryption keys (draft-ietf-suit-firmware-
    /// encryption): an encrypted image is decrypted as it streams to the sink.
    #[cfg(feature = "encryption")]
    pub fn set_decryption_keys(&mut self, keys: &'p [DecryptionKey<'p>]) {
        self.keys = keys;
    }

    /// [`StreamVerifier::set_decryption_keys`] in builder form.
    #[cfg(feature = "encryption")]
    pub fn with_decryption_keys(mut self, keys: &'p [DecryptionKey<'p>]) -> Self {
        self.keys = keys;
        self
    }

    /// Gives the buffer back (a device has one static receive buffer for every download).
    pub fn into_buffer(self) -> &'b mut [u8] {
        self.buf
    }

    /// True once the wrapper verified and the policy accepted the manifest.
    pub fn is_authenticated(&self) -> bool {
        self.facts.is_some()
    }

    /// The authenticated sequence number, once known.
    pub fn sequence_number(&self) -> Option<u64> {
        self.facts.as_ref().map(|f| f.sequence_number)
    }

    /// The authenticated image digest and image size of component 0, once known: what the
    /// slot manager stores with the candidate for the bootloader's re-check.
    pub fn image_facts(&self) -> Option<([u8; 32], Option<u64>)> {
        let image = self.facts.as_ref()?.image(0).ok()?;
        Some((image.digest, image.size))
    }

    /// The second image of a two-image package, once authenticated: its component, digest
    /// and size.
    pub fn second_image_facts(&self) -> Option<(usize, [u8; 32], Option<u64>)> {
        let image = self.facts.as_ref()?.image(1).ok()?;
        Some((image.component, image.digest, image.size))
    }

    /// The authenticated manifest bytes and the envelope parts buffered so far, once
    /// authenticated (for the caller's own command processing or reporting).
    pub fn envelope(&self) -> Option<Envelope<'_>> {
        self.facts.as_ref()?;
        self.parts().ok()
    }

    /// Pushes the next bytes of the envelope. Any error is final.
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn PayloadSink) -> Result<(), SuitError> {
        let r = self.feed_inner(data, sink);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn feed_inner(&mut self, mut data: &[u8], sink: &mut dyn PayloadSink) -> Result<(), SuitError> {
        while !data.is_empty() {
            match self.phase {
                Phase::Failed => return Err(SuitError::Malformed),
                Phase::Done => return Err(SuitError::TrailingBytes),
                Phase::Payload { .. } => {
                    let used = self.payload_bytes(data, sink)?;
                    self.fed += used as u64;
                    data = data.get(used..).unwrap_or(&[]);
                }
                Phase::Members => {
                    let free = self.buf.len().min(MAX_BUFFER).saturating_sub(self.len);
                    let n = free.min(data.len());
                    let (head, rest) = data.split_at(n);
                    if let Some(dst) = self.buf.get_mut(self.len..self.len + n) {
                        dst.copy_from_slice(head);
                    }
                    self.len += n;
                    self.fed += n as u64;
                    data = rest;
                    let before = (self.cursor, self.len, self.phase);
                    self.advance(sink)?;
                    if n == 0 && before == (self.cursor, self.len, self.phase) {
                        return Err(SuitError::BufferTooSmall);
                    }
                }
            }
        }
        // Buffered bytes may complete more members even without new input.
        if self.phase == Phase::Members {
            self.advance(sink)?;
        }
        Ok(())
    }

    /// Hashes and forwards payload bytes; returns how many of `data` belonged to the payload.
    fn payload_bytes(
        &mut self,
        data: &[u8],
        sink: &mut dyn PayloadSink,
    ) -> Result<usize, SuitError> {
        payload_step(
            &mut self.phase,
            &mut self.image,
            self.facts.as_ref(),
            data,
            sink,
        )
    }

    /// Parses as many complete members as the buffer holds.
    fn advance(&mut self, sink: &mut dyn PayloadSink) -> Result<(), SuitError> {
        loop {
            if self.phase != Phase::Members {
                return Ok(());
            }
            let rest = self.buf.get(self.cursor..self.len).unwrap_or(&[]);
            let Some(left) = self.members_left else {
                let Some((major, value, hl)) = parse_head(rest)? else {
                    return Ok(());
                };
                match major {
                    MAJOR_TAG if self.cursor == 0 && value == TAG_ENVELOPE => {}
                    MAJOR_MAP => self.members_left = Some(value),
                    _ => return Err(SuitError::Malformed),
                }
                self.cursor += hl;
                continue;
            };
            if left == 0 {
                if !rest.is_empty() {
                    // Bytes after the map's last member arrived in the same block.
                    return Err(SuitError::TrailingBytes);
                }
                if self.facts.is_none() {
                    self.authenticate()?;
                }
                self.phase = Phase::Done;
                return Ok(());
            }
            let Some((kmajor, kvalue, khl)) = parse_head(rest)? else {
                return Ok(());
            };
            match kmajor {
                MAJOR_UINT => {
                    let Some((vmajor, vlen, vhl)) = parse_head(rest.get(khl..).unwrap_or(&[]))?
                    else {
                        return Ok(());
                    };
                    if vmajor != MAJOR_BSTR {
                        return Err(SuitError::Malformed);
                    }
                    let total = usize::try_from(vlen)
                        .ok()
                        .and_then(|v| v.checked_add(khl + vhl))
                        .ok_or(SuitError::BufferTooSmall)?;
                    if self
                        .cursor
                        .checked_add(total)
                        .is_none_or(|end| end > self.buf.len().min(MAX_BUFFER))
                    {
                        return Err(SuitError::BufferTooSmall);
                    }
                    if total > rest.len() {
                        return Ok(());
                    }
                    if self.facts.is_some() {
                        // Canonical order puts wrapper, manifest and severed members first.
                        return Err(SuitError::OutOfOrder);
                    }
                    let range = Some(Range::new(self.cursor + khl, self.cursor + total)?);
                    let slot = match kvalue {
                        KEY_AUTH => &mut self.auth,
                        KEY_MANIFEST => &mut self.manifest,
                        k => {
                            let i = SEVERABLE_KEYS
                                .iter()
                                .position(|s| *s == k)
                                .ok_or(SuitError::Unsupported)?;
                            self.severed.get_mut(i).ok_or(SuitError::Unsupported)?
                        }
                    };
                    if slot.replace(range.ok_or(SuitError::Malformed)?).is_some() {
                        return Err(SuitError::Malformed);
                    }
                    self.cursor += total;
                    self.members_left = Some(left - 1);
                }
                MAJOR_TSTR => {
                    let klen = usize::try_from(kvalue).map_err(|_| SuitError::BufferTooSmall)?;
                    let key_end = khl.checked_add(klen).ok_or(SuitError::BufferTooSmall)?;
                    // Key and bstr head must be buffered; if they never fit, the caller's
                    // feed loop reports BufferTooSmall once the buffer is full.
                    let Some((vmajor, vlen, vhl)) = parse_head(rest.get(key_end..).unwrap_or(&[]))?
                    else {
                        return Ok(());
                    };
                    if vmajor != MAJOR_BSTR {
                        return Err(SuitError::Malformed);
                    }
                    if self.facts.is_none() {
                        if self.auth.is_none() || self.manifest.is_none() {
                            return Err(SuitError::OutOfOrder);
                        }
                        self.authenticate()?;
                    }
                    let image = self.integrated_image(self.cursor + khl, self.cursor + key_end)?;
                    if let Some(i) = image {
                        self.start_image(i, Some(vlen), sink)?;
                    }
                    self.members_left = Some(left - 1);
                    self.phase = Phase::Payload { left: vlen, image };
                    // Payload bytes already buffered leave the buffer now; the key goes too.
                    let start = self.cursor + key_end + vhl;
                    if let Some(at) = image.and_then(|i| self.payload_at.get_mut(i)) {
                        // The bytes buffered after `start` are the last ones fed.
                        *at = self.fed.checked_sub(self.len.saturating_sub(start) as u64);
                    }
                    let mut at = start;
                    if at < self.len {
                        // Disjoint borrows: the bytes stay in the buffer while the hash state
                        // and phase advance (no copy, no extra stack).
                        let data = self.buf.get(at..self.len).unwrap_or(&[]);
                        at += payload_step(
                            &mut self.phase,
                            &mut self.image,
                            self.facts.as_ref(),
                            data,
                            sink,
                        )?;
                    }
                    // Keep whatever follows the payload, directly after the retained members.
                    self.buf.copy_within(at..self.len, self.cursor);
                    self.len = self.cursor + (self.len - at);
                }
                _ => return Err(SuitError::Malformed),
            }
        }
    }

    /// The image an integrated payload under the key at `buf[start..end]` is: the first one
    /// not yet received whose URI is that key (section 7.5: `#key`). Other payloads are
    /// skipped; a second payload for an image already received is refused.
    fn integrated_image(&self, start: usize, end: usize) -> Result<Option<usize>, SuitError> {
        let facts = self.facts.as_ref().ok_or(SuitError::OutOfOrder)?;
        let key = self.buf.get(start..end).unwrap_or(&[]);
        let mut seen = false;
        for (i, image) in facts.images.iter().enumerate() {
            let Some(uri) = image.and_then(|f| f.uri) else {
                continue;
            };
            if uri.of(self.buf) != Some(key) {
                continue;
            }
            if self.image.done & (1 << i) == 0 && self.image.current != Some(i) {
                return Ok(Some(i));
            }
            seen = true;
        }
        if seen {
            return Err(SuitError::Malformed);
        }
        Ok(None)
    }

    fn parts(&self) -> Result<Envelope<'_>, SuitError> {
        envelope_parts(self.buf, self.auth, self.manifest, &self.severed)
    }

    fn authenticate(&mut self) -> Result<(), SuitError> {
        // Signature first, in its own short chain of frames; the parse and the facts after.
        let anchor = self.verify_head()?;
        self.record_facts(anchor)
    }

    #[inline(never)]
    fn verify_head(&self) -> Result<usize, SuitError> {
        let env = self.parts()?;
        verify_wrapper(
            env.auth,
            env.manifest_item,
            self.policy.anchors,
            &self.crypto,
        )
    }

    #[inline(never)] // its locals are not above the signature check's frames
    fn record_facts(&mut self, anchor: usize) -> Result<(), SuitError> {
        let env = envelope_parts(self.buf, self.auth, self.manifest, &self.severed)?;
        let base = self.buf.as_ptr() as usize;
        let r = facts_into(
            env,
            base,
            anchor,
            &self.policy,
            &self.crypto,
            &mut self.facts,
        );
        if r.is_err() {
            self.facts = None;
        }
        r
    }

    /// Ends the envelope: says where to fetch the next image that was not integrated, or
    /// reports every image verified.
    pub fn finish(&mut self) -> Result<Finished<'_>, SuitError> {
        let ended = self.resumed && self.phase == Phase::Members && self.cursor == self.len;
        if ended {
            self.phase = Phase::Done;
        }
        if self.phase != Phase::Done {
            self.phase = Phase::Failed;
            return Err(SuitError::Truncated);
        }
        let facts = self.facts.as_ref().ok_or(SuitError::Truncated)?;
        if self.image.current.is_some() {
            return Err(SuitError::OutOfOrder);
        }
        let Some(next) = next_missing(facts, self.image.done) else {
            return verified(facts, &self.image);
        };
        let image = facts.image(next)?;
        match image.uri.and_then(|r| r.of(self.buf)) {
            Some(uri) if uri.first() == Some(&b'#') => Err(SuitError::Truncated),
            Some(uri) => Ok(Finished::FetchRequired { uri }),
            None => Err(SuitError::MissingParameter),
        }
    }

    /// Image `index` starts: `payload_len` bytes (ciphertext and tag when encrypted; `None`
    /// when a fetched plaintext image's length is not stated). Checks the length against
    /// image-size, opens the content key with the device's keys (before any byte reaches the
    /// sink), then tells the sink. In its own frame, beside the payload path.
    #[inline(never)]
    fn start_image(
        &mut self,
        index: usize,
        payload_len: Option<u64>,
        sink: &mut dyn PayloadSink,
    ) -> Result<(), SuitError> {
        if self.image.current.is_some() {
            return Err(SuitError::OutOfOrder);
        }
        let facts = self.facts.as_ref().ok_or(SuitError::OutOfOrder)?;
        let image = facts.image(index)?;
        let (component, size) = (image.component, image.size);
        #[cfg(feature = "encryption")]
        if let Some(enc) = image.encryption {
            let payload_len = payload_len.ok_or(SuitError::MissingParameter)?;
            let cek = self.open_key(enc, size, payload_len)?;
            self.open_decryption(enc, &cek, payload_len)?;
        } else if size.is_some_and(|s| payload_len.is_some_and(|p| s != p)) {
            return Err(SuitError::ImageSizeMismatch);
        }
        #[cfg(not(feature = "encryption"))]
        if size.is_some_and(|s| payload_len.is_some_and(|p| s != p)) {
            return Err(SuitError::ImageSizeMismatch);
        }
        sink.begin(component, size)?;
        self.image.current = Some(index);
        self.image.received = 0;
        self.image.hasher = Some(self.crypto.sha256());
        Ok(())
    }

    /// Checks the lengths of an encrypted image's `payload_len` bytes and opens its content
    /// key with the device's keys, in a small frame of its own: the key agreement and key
    /// unwrap run under it, not under the decryption state being set up.
    #[cfg(feature = "encryption")]
    #[inline(never)]
    fn open_key(
        &self,
        enc: Encrypted,
        plain_size: Option<u64>,
        payload_len: u64,
    ) -> Result<[u8; 16], SuitError> {
        if enc.size.is_some_and(|s| s != payload_len) {
            return Err(SuitError::ImageSizeMismatch);
        }
        let info = EncryptionInfo::parse(enc.info.of(self.buf).ok_or(SuitError::Malformed)?)?;
        let plain =
            Decryptor::plaintext_len(info.alg, payload_len).ok_or(SuitError::ImageSizeMismatch)?;
        if plain_size.is_some_and(|s| s != plain) {
            return Err(SuitError::ImageSizeMismatch);
        }
        content_key(&info, self.keys, &self.crypto)
    }

    /// Sets up the decryption of `payload_len` bytes with the content key `cek`.
    #[cfg(feature = "encryption")]
    #[inline(never)]
    fn open_decryption(
        &mut self,
        enc: Encrypted,
        cek: &[u8; 16],
        payload_len: u64,
    ) -> Result<(), SuitError> {
        let info = EncryptionInfo::parse(enc.info.of(self.buf).ok_or(SuitError::Malformed)?)?;
        // Only a stated ciphertext digest costs a second hash of the payload (GCM's tag
        // already authenticates the ciphertext; draft section 6.1).
        self.image.cipher_hasher = enc.digest.map(|_| self.crypto.sha256());
        self.image.decrypt = Some(Decryptor::new(&info, cek, payload_len)?);
        Ok(())
    }

    /// Length of the fetched payload of image `index`: the ciphertext's stated size, or the
    /// image size (plus the GCM tag when encrypted).
    fn fetched_len(&self, image: &ImageFacts) -> Result<Option<u64>, SuitError> {
        #[cfg(feature = "encryption")]
        if let Some(enc) = image.encryption {
            if let Some(size) = enc.size {
                return Ok(Some(size));
            }
            let bytes = enc.info.of(self.buf).ok_or(SuitError::Malformed)?;
            let plain = image.size.ok_or(SuitError::MissingParameter)?;
            return Ok(Some(match EncryptionInfo::parse(bytes)?.alg {
                ContentAlg::A128Gcm => plain.saturating_add(GCM_TAG as u64),
                ContentAlg::A128Ctr => plain,
            }));
        }
        Ok(image.size)
    }

    /// Authenticates, under this verifier's policy, the envelope head stored with a candidate
    /// whose download a reboot cut (`{2: wrapper, 3: manifest}`, written into the buffer by
    /// `load_head`, which returns its length), as at the start of that download. Then
    /// [`StreamVerifier::resume_image`] says where the download goes on. Any error is final;
    /// the caller then downloads the package from its start.
    pub fn reload(
        &mut self,
        load_head: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), SuitError> {
        if self.len != 0 || self.phase != Phase::Members || self.facts.is_some() {
            return Err(SuitError::OutOfOrder);
        }
        let room = self.buf.len().min(MAX_BUFFER);
        let head = self.buf.get_mut(..room).ok_or(SuitError::BufferTooSmall)?;
        let len = load_head(head).filter(|&n| n <= room);
        let r = match len {
            Some(n) => {
                self.len = n;
                // The head holds no payload: a sink that is called is a malformed head.
                self.advance(&mut NoPayload)
            }
            None => Err(SuitError::Truncated),
        };
        if r.is_err() || self.phase != Phase::Done || self.facts.is_none() {
            self.phase = Phase::Failed;
            return Err(r.err().unwrap_or(SuitError::Truncated));
        }
        Ok(())
    }

    /// Whether image `index` (0: component 0's) is an integrated payload of the envelope
    /// rather than fetched from its URI; `None` before authentication or when the package
    /// has no such image.
    pub fn is_integrated(&self, index: usize) -> Option<bool> {
        let image = self.facts.as_ref()?.image(index).ok()?;
        let uri = image.uri.and_then(|r| r.of(self.buf))?;
        Some(uri.first() == Some(&b'#'))
    }

    /// After [`StreamVerifier::reload`]: goes on inside image `index` at its data byte
    /// `offset` (the slot holds the bytes before it, and every image before this one). An
    /// integrated image's next bytes come through [`StreamVerifier::feed`] (the envelope
    /// from that point on; its map header went by before the reboot, so
    /// [`StreamVerifier::finish`] takes the end of the bytes after any whole member as its
    /// end), a fetched one's through [`StreamVerifier::feed_fetched`]. An encrypted image is
    /// decrypted from `offset` (its content key opened again). The bytes before `offset`, and
    /// the images before, are not hashed again: the slot's re-read of every image checks its
    /// digest. Images after this one are received and checked whole. Any error is final.
    pub fn resume_image(&mut self, index: usize, offset: u64) -> Result<(), SuitError> {
        let r = self.resume_image_inner(index, offset);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn resume_image_inner(&mut self, index: usize, offset: u64) -> Result<(), SuitError> {
        let fresh = self.image.current.is_none() && self.image.done == 0 && !self.resumed;
        if self.phase != Phase::Done || !fresh {
            return Err(SuitError::OutOfOrder);
        }
        let integrated = self
            .is_integrated(index)
            .ok_or(SuitError::MissingParameter)?;
        let facts = self.facts.as_ref().ok_or(SuitError::OutOfOrder)?;
        let image = *facts.image(index)?;
        let payload_len = self
            .fetched_len(&image)?
            .ok_or(SuitError::MissingParameter)?;
        if image.size.is_none_or(|size| offset >= size) {
            return Err(SuitError::ImageSizeMismatch);
        }
        for before in 0..index {
            let size = facts
                .image(before)?
                .size
                .ok_or(SuitError::MissingParameter)?;
            if let Some(length) = self.image.lengths.get_mut(before) {
                *length = size;
            }
            self.image.done |= 1 << before;
        }
        #[cfg(feature = "encryption")]
        if let Some(enc) = image.encryption {
            let cek = self.open_key(enc, image.size, payload_len)?;
            self.open_decryption(enc, &cek, payload_len)?;
            self.image.cipher_hasher = None;
            if let Some(d) = self.image.decrypt.as_mut() {
                d.skip_to(offset)?;
            }
        }
        self.image.current = Some(index);
        self.image.received = offset;
        self.image.partial = true;
        if integrated {
            self.phase = Phase::Payload {
                left: payload_len - offset,
                image: Some(index),
            };
            self.members_left = Some(u64::MAX);
            self.resumed = true;
        }
        Ok(())
    }

    /// Where integrated image `index`'s payload began, counted in the bytes given to
    /// [`StreamVerifier::feed`] (since [`StreamVerifier::resume_image`] after a reboot): a
    /// resume inside that image continues the envelope at this offset plus the bytes stored.
    pub fn payload_offset(&self, index: usize) -> Option<u64> {
        self.payload_at.get(index).copied().flatten()
    }

    /// The URI of the fetched image [`StreamVerifier::resume_image`] went on inside, until
    /// it is complete.
    pub fn resumed_fetch_uri(&self) -> Option<&[u8]> {
        let index = self.image.current.filter(|_| self.image.partial)?;
        if self.is_integrated(index)? {
            return None;
        }
        self.facts.as_ref()?.image(index).ok()?.uri?.of(self.buf)
    }

    /// Two-stage pull: the next fetched image starts (after [`Finished::FetchRequired`]).
    pub fn begin_fetched(&mut self, sink: &mut dyn PayloadSink) -> Result<(), SuitError> {
        let facts = self.facts.as_ref().ok_or(SuitError::OutOfOrder)?;
        if self.phase != Phase::Done || self.image.current.is_some() {
            return Err(SuitError::OutOfOrder);
        }
        let next = next_missing(facts, self.image.done).ok_or(SuitError::OutOfOrder)?;
        let len = self.fetched_len(facts.image(next)?)?;
        self.start_image(next, len, sink)
    }

    /// Two-stage pull: the next fetched bytes.
    pub fn feed_fetched(
        &mut self,
        data: &[u8],
        sink: &mut dyn PayloadSink,
    ) -> Result<(), SuitError> {
        if self.phase != Phase::Done || self.image.current.is_none() {
            return Err(SuitError::OutOfOrder);
        }
        image_step(&mut self.image, self.facts.as_ref(), data, sink)
    }

    /// Two-stage pull: the fetched image ended; checks its digest and size, then reports
    /// every image verified or names the next one to fetch.
    pub fn finish_fetched(&mut self) -> Result<Finished<'_>, SuitError> {
        let facts = self.facts.as_ref().ok_or(SuitError::OutOfOrder)?;
        if self.phase != Phase::Done {
            return Err(SuitError::OutOfOrder);
        }
        complete_image(&mut self.image, facts)?;
        self.finish()
    }
}

/// The sink of a head that carries no payload: any call is a malformed head.
struct NoPayload;

impl PayloadSink for NoPayload {
    fn begin(&mut self, _: usize, _: Option<u64>) -> Result<(), SuitError> {
        Err(SuitError::Malformed)
    }

    fn write(&mut self, _: &[u8]) -> Result<(), SuitError> {
        Err(SuitError::Malformed)
    }
}

/// The envelope's parts from their ranges in `buf`.
fn envelope_parts<'a>(
    buf: &'a [u8],
    auth: Option<Range>,
    manifest: Option<Range>,
    severed: &[Option<Range>; 5],
) -> Result<Envelope<'a>, SuitError> {
    let item = |r: Option<Range>| -> Result<&'a [u8], SuitError> {
        r.and_then(|r| r.of(buf)).ok_or(SuitError::Malformed)
    };
    let auth = Reader::new(item(auth)?).bytes()?;
    let manifest_item = item(manifest)?;
    let manifest = Reader::new(manifest_item).bytes()?;
    let mut parts = [None; 5];
    for (out, r) in parts.iter_mut().zip(severed) {
        if r.is_some() {
            *out = Some(item(*r)?);
        }
    }
    Ok(Envelope::from_parts(auth, manifest_item, manifest, parts))
}

/// Parses the authenticated manifest in `env` (in the buffer at address `base`; the wrapper
/// verified with anchor `anchor`), applies `policy` and writes the facts the payloads are
/// checked against into `out`, in place, one image at a time.
#[inline(never)]
fn facts_into<C: CryptoBackend>(
    env: Envelope<'_>,
    base: usize,
    anchor: usize,
    policy: &Policy<'_>,
    crypto: &C,
    out: &mut Option<Facts>,
) -> Result<(), SuitError> {
    let s = Sequences::of(&env, crypto)?;
    let first = s.image(0)?;
    policy.check_image(s.manifest.sequence_number, &first)?;
    let (second, more) = s.second_image()?;
    if more {
        return Err(SuitError::BadComponent);
    }
    let facts = out.insert(Facts {
        sequence_number: s.manifest.sequence_number,
        anchor,
        images: [None; MAX_IMAGES],
    });
    facts.images[0] = Some(image_facts(0, &first, base)?);
    if let (Some(slot), Some(component)) = (facts.images.get_mut(1), second) {
        *slot = Some(image_facts(component, &s.image(component)?, base)?);
    }
    Ok(())
}

/// The facts kept for one image of an authenticated manifest whose buffer starts at `base`.
fn image_facts(
    component: usize,
    image: &ImageInfo<'_>,
    base: usize,
) -> Result<ImageFacts, SuitError> {
    let range = |b: &[u8]| {
        let s = (b.as_ptr() as usize).wrapping_sub(base);
        Range::new(s, s + b.len())
    };
    #[cfg(not(feature = "encryption"))]
    if image.encryption_info.is_some() {
        return Err(SuitError::Unsupported);
    }
    Ok(ImageFacts {
        component,
        digest: image.digest.ok_or(SuitError::MissingParameter)?,
        size: image.size,
        uri: image.uri.map(range).transpose()?,
        #[cfg(feature = "encryption")]
        encryption: match image.encryption_info {
            Some(info) => Some(Encrypted {
                info: range(info)?,
                digest: image.ciphertext_digest,
                size: image.ciphertext_size,
            }),
            None => None,
        },
    })
}

/// The content key of `info` from the device's `keys`, in its own frame (ECDH and the
/// key unwrap expand their own temporaries).
#[cfg(feature = "encryption")]
#[inline(never)]
fn content_key<C: CryptoBackend>(
    info: &EncryptionInfo<'_>,
    keys: &[DecryptionKey<'_>],
    crypto: &C,
) -> Result<[u8; 16], SuitError> {
    info.content_key(keys, crypto)
}

/// The first image not received yet.
fn next_missing(facts: &Facts, done: u8) -> Option<usize> {
    (0..MAX_IMAGES).find(|&i| facts.image(i).is_ok() && done & (1 << i) == 0)
}

/// What a package whose images all verified reports.
fn verified<'a, H>(facts: &Facts, image: &ImageState<H>) -> Result<Finished<'a>, SuitError> {
    let first = facts.image(0)?;
    if image.done & 1 == 0 {
        return Err(SuitError::Truncated);
    }
    let second = match facts.image(1).ok() {
        Some(f) if image.done & 2 != 0 => Some((f.component, f.digest, image.lengths[1])),
        Some(_) => return Err(SuitError::Truncated),
        None => None,
    };
    Ok(Finished::Complete(Verified {
        sequence_number: facts.sequence_number,
        anchor: facts.anchor,
        digest: first.digest,
        size: image.lengths[0],
        second,
    }))
}

/// The current image ended: the GCM tag and ciphertext digest first (encryption draft
/// section 6.1), then its size and digest. It counts as received only when all match.
#[inline(never)]
fn complete_image<H: Sha256Hasher>(
    image: &mut ImageState<H>,
    facts: &Facts,
) -> Result<(), SuitError> {
    let index = image.current.take().ok_or(SuitError::Truncated)?;
    let want = facts.image(index)?;
    // A partial image's digests are the slot's to check, over the whole image in flash.
    let partial = core::mem::take(&mut image.partial);
    let hasher = image.hasher.take();
    if hasher.is_none() && !partial {
        return Err(SuitError::Truncated);
    }
    #[cfg(feature = "encryption")]
    if let Some(decryptor) = image.decrypt.take() {
        let cipher_hasher = image.cipher_hasher.take();
        decryptor.finish()?;
        let digest = want.encryption.and_then(|e| e.digest).filter(|_| !partial);
        if digest.is_some_and(|d| !cipher_hasher.is_some_and(|h| ct_eq(&h.finish(), &d))) {
            return Err(SuitError::ImageDigestMismatch);
        }
    }
    if want.size.is_some_and(|s| s != image.received) {
        return Err(SuitError::ImageSizeMismatch);
    }
    if hasher.is_some_and(|h| !ct_eq(&h.finish(), &want.digest)) {
        return Err(SuitError::ImageDigestMismatch);
    }
    if let Some(length) = image.lengths.get_mut(index) {
        *length = image.received;
    }
    image.done |= 1 << index;
    Ok(())
}

/// Moves `data` through the payload phase: an image's bytes are size-checked, hashed and
/// written to the sink, and the image verified at its last byte; other integrated payloads
/// are skipped. Returns the bytes consumed.
fn payload_step<H: Sha256Hasher>(
    phase: &mut Phase,
    image: &mut ImageState<H>,
    facts: Option<&Facts>,
    data: &[u8],
    sink: &mut dyn PayloadSink,
) -> Result<usize, SuitError> {
    let Phase::Payload { left, image: which } = *phase else {
        return Ok(0);
    };
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
    if which.is_some() {
        image_step(image, facts, data.get(..n).unwrap_or(&[]), sink)?;
    }
    let left = left - n as u64;
    if left == 0 {
        *phase = Phase::Members;
        if which.is_some() {
            complete_image(image, facts.ok_or(SuitError::OutOfOrder)?)?;
        }
    } else {
        *phase = Phase::Payload { left, image: which };
    }
    Ok(n)
}

/// Image bytes as they arrive: decrypted first when the image is encrypted (the ciphertext
/// hashed on the way, the cipher expanded once per call), then size-checked, hashed and
/// written. In its own frame: the expanded cipher is not under the image's completion.
#[inline(never)]
fn image_step<H: Sha256Hasher>(
    image: &mut ImageState<H>,
    facts: Option<&Facts>,
    chunk: &[u8],
    sink: &mut dyn PayloadSink,
) -> Result<(), SuitError> {
    let want = facts
        .ok_or(SuitError::OutOfOrder)?
        .image(image.current.ok_or(SuitError::OutOfOrder)?)?;
    #[cfg(feature = "encryption")]
    if let Some(decryptor) = image.decrypt.as_mut() {
        if let Some(h) = image.cipher_hasher.as_mut() {
            h.update(chunk);
        }
        let mut run = decryptor.run();
        for piece in chunk.chunks(DECRYPT_WINDOW) {
            decrypt_piece(
                &mut run,
                piece,
                &mut image.hasher,
                &mut image.received,
                want.size,
                sink,
            )?;
        }
        return Ok(());
    }
    plain_step(
        &mut image.hasher,
        &mut image.received,
        want.size,
        chunk,
        sink,
    )
}

/// Ciphertext bytes decrypted per step, in a window on the stack: the plaintext never exists
/// whole in RAM.
#[cfg(feature = "encryption")]
const DECRYPT_WINDOW: usize = 64;

/// Decrypts one piece (at most [`DECRYPT_WINDOW`] bytes) and passes its plaintext on; in its
/// own frame, beside the cipher expansion rather than under it.
#[cfg(feature = "encryption")]
#[inline(never)]
fn decrypt_piece<H: Sha256Hasher>(
    run: &mut super::DecryptRun<'_>,
    piece: &[u8],
    hasher: &mut Option<H>,
    received: &mut u64,
    size: Option<u64>,
    sink: &mut dyn PayloadSink,
) -> Result<(), SuitError> {
    let mut window = [0u8; DECRYPT_WINDOW];
    let buf = window.get_mut(..piece.len()).ok_or(SuitError::Malformed)?;
    buf.copy_from_slice(piece);
    let n = run.update(buf)?;
    plain_step(hasher, received, size, buf.get(..n).unwrap_or(&[]), sink)
}

/// Size-checks, hashes and writes plaintext image bytes.
fn plain_step<H: Sha256Hasher>(
    hasher: &mut Option<H>,
    received: &mut u64,
    size: Option<u64>,
    chunk: &[u8],
    sink: &mut dyn PayloadSink,
) -> Result<(), SuitError> {
    if chunk.is_empty() {
        return Ok(());
    }
    *received = received.saturating_add(chunk.len() as u64);
    if size.is_some_and(|s| *received > s) {
        return Err(SuitError::ImageSizeMismatch);
    }
    if let Some(h) = hasher.as_mut() {
        h.update(chunk);
    }
    sink.write(chunk)
}
