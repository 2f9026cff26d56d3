//! Push-based envelope processing for a device that receives a package block by block (CoAP
//! Block1/Block2): the authentication wrapper and manifest are buffered in a caller-provided
//! buffer and authenticated before anything else is parsed; payload bytes then flow to the
//! caller's [`PayloadSink`] through SHA-256 and are never held whole in RAM.

use super::cbor::{parse_head, Reader, MAJOR_BSTR, MAJOR_MAP, MAJOR_TAG, MAJOR_TSTR, MAJOR_UINT};
use super::crypto::{ct_eq, CryptoBackend, Sha256Hasher};
use super::envelope::{Envelope, KEY_AUTH, KEY_MANIFEST, SEVERABLE_KEYS, TAG_ENVELOPE};
use super::policy::Policy;
use super::{describe, verify_wrapper, SuitError};
#[cfg(feature = "encryption")]
use super::{ContentAlg, DecryptionKey, Decryptor, EncryptionInfo, GCM_TAG};

/// Where verified payload bytes go (a flash slot writer, typically).
pub trait PayloadSink {
    /// A payload for `component` starts; `size` is the manifest's image-size. Refuse with
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
    /// SHA-256 of the image that was written to the sink.
    pub digest: [u8; 32],
    /// Image length in bytes.
    pub size: u64,
}

/// How envelope processing ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished<'a> {
    /// The integrated payload was written to the sink and matched digest and size.
    Complete(Verified),
    /// Two-stage pull: the image is at `uri`; fetch it and pass it to
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
    /// Streaming an integrated payload: bytes left; whether it is the image.
    Payload { left: u64, image: bool },
    /// Every member seen.
    Done,
    /// A previous call failed; nothing more is accepted.
    Failed,
}

/// Facts kept after authentication; byte ranges point into the buffer.
#[derive(Clone, Copy, Debug)]
struct Facts {
    sequence_number: u64,
    anchor: usize,
    digest: [u8; 32],
    size: Option<u64>,
    uri: Option<(usize, usize)>,
    /// The image arrives encrypted: its SUIT_Encryption_Info, and the ciphertext's digest and
    /// size when the manifest states them.
    #[cfg(feature = "encryption")]
    encryption: Option<Encrypted>,
}

#[cfg(feature = "encryption")]
#[derive(Clone, Copy, Debug)]
struct Encrypted {
    info: Range,
    digest: Option<[u8; 32]>,
    size: Option<u64>,
}

type Range = (usize, usize);

/// The image being received: plaintext hash and length, and for an encrypted image the
/// decryption state and, when the manifest states the ciphertext's digest, its hash.
struct ImageState<H> {
    hasher: Option<H>,
    received: u64,
    #[cfg(feature = "encryption")]
    decrypt: Option<(Decryptor, Option<H>)>,
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
    payload_seen: bool,
    policy: Policy<'p>,
    crypto: C,
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
                hasher: None,
                received: 0,
                #[cfg(feature = "encryption")]
                decrypt: None,
            },
            payload_seen: false,
            policy,
            crypto,
            #[cfg(feature = "encryption")]
            keys: &[],
        }
    }

    /// Gives the verifier the device's payload decryption keys (draft-ietf-suit-firmware-
    /// encryption): an encrypted image is decrypted as it streams to the sink.
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
        self.facts.map(|f| f.sequence_number)
    }

    /// The authenticated image digest and image size of component 0, once known: what the
    /// slot manager stores with the candidate for the bootloader's re-check.
    pub fn image_facts(&self) -> Option<([u8; 32], Option<u64>)> {
        self.facts.map(|f| (f.digest, f.size))
    }

    /// The authenticated manifest bytes and the envelope parts buffered so far, once
    /// authenticated (for the caller's own command processing or reporting).
    pub fn envelope(&self) -> Option<Envelope<'_>> {
        self.facts?;
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
                    data = data.get(used..).unwrap_or(&[]);
                }
                Phase::Members => {
                    let free = self.buf.len().saturating_sub(self.len);
                    let n = free.min(data.len());
                    let (head, rest) = data.split_at(n);
                    if let Some(dst) = self.buf.get_mut(self.len..self.len + n) {
                        dst.copy_from_slice(head);
                    }
                    self.len += n;
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
        let facts = self.facts;
        payload_step(&mut self.phase, &mut self.image, facts, data, sink)
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
                        .is_none_or(|end| end > self.buf.len())
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
                    let range = Some((self.cursor + khl, self.cursor + total));
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
                    let facts = self.facts.ok_or(SuitError::OutOfOrder)?;
                    let key = self
                        .buf
                        .get(self.cursor + khl..self.cursor + key_end)
                        .unwrap_or(&[]);
                    let uri = facts.uri.and_then(|(s, e)| self.buf.get(s..e));
                    let image = uri == Some(key);
                    if image {
                        if self.payload_seen {
                            return Err(SuitError::Malformed);
                        }
                        self.start_image(facts, Some(vlen), sink)?;
                    }
                    self.members_left = Some(left - 1);
                    self.phase = Phase::Payload { left: vlen, image };
                    // Payload bytes already buffered leave the buffer now; the key goes too.
                    let start = self.cursor + key_end + vhl;
                    let mut at = start;
                    if at < self.len {
                        // Disjoint borrows: the bytes stay in the buffer while the hash state
                        // and phase advance (no copy, no extra stack).
                        let data = self.buf.get(at..self.len).unwrap_or(&[]);
                        at +=
                            payload_step(&mut self.phase, &mut self.image, self.facts, data, sink)?;
                    }
                    // Keep whatever follows the payload, directly after the retained members.
                    self.buf.copy_within(at..self.len, self.cursor);
                    self.len = self.cursor + (self.len - at);
                }
                _ => return Err(SuitError::Malformed),
            }
        }
    }

    fn parts(&self) -> Result<Envelope<'_>, SuitError> {
        let item = |r: Option<Range>| -> Result<&[u8], SuitError> {
            let (s, e) = r.ok_or(SuitError::Malformed)?;
            self.buf.get(s..e).ok_or(SuitError::Malformed)
        };
        let auth = Reader::new(item(self.auth)?).bytes()?;
        let manifest_item = item(self.manifest)?;
        let manifest = Reader::new(manifest_item).bytes()?;
        let mut severed = [None; 5];
        for (out, r) in severed.iter_mut().zip(self.severed) {
            if r.is_some() {
                *out = Some(item(r)?);
            }
        }
        Ok(Envelope::from_parts(auth, manifest_item, manifest, severed))
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

    #[inline(never)]
    fn record_facts(&mut self, anchor: usize) -> Result<(), SuitError> {
        let env = self.parts()?;
        let auth = describe(env, anchor, &self.crypto)?;
        self.policy.check(&auth)?;
        let base = self.buf.as_ptr() as usize;
        let uri = auth.image.uri.map(|u| {
            let s = (u.as_ptr() as usize).wrapping_sub(base);
            (s, s + u.len())
        });
        #[cfg(not(feature = "encryption"))]
        if auth.image.encryption_info.is_some() {
            return Err(SuitError::Unsupported);
        }
        let facts = Facts {
            sequence_number: auth.sequence_number,
            anchor: auth.anchor,
            digest: auth.image.digest.ok_or(SuitError::MissingParameter)?,
            size: auth.image.size,
            uri,
            #[cfg(feature = "encryption")]
            encryption: auth.image.encryption_info.map(|info| {
                let s = (info.as_ptr() as usize).wrapping_sub(base);
                Encrypted {
                    info: (s, s + info.len()),
                    digest: auth.image.ciphertext_digest,
                    size: auth.image.ciphertext_size,
                }
            }),
        };
        self.facts = Some(facts);
        Ok(())
    }

    /// Ends the envelope: checks the integrated image, or says where to fetch it.
    pub fn finish(&mut self) -> Result<Finished<'_>, SuitError> {
        if self.phase != Phase::Done {
            self.phase = Phase::Failed;
            return Err(SuitError::Truncated);
        }
        let facts = self.facts.ok_or(SuitError::Truncated)?;
        if self.payload_seen {
            return self.check_image(facts).map(Finished::Complete);
        }
        match facts.uri.and_then(|(s, e)| self.buf.get(s..e)) {
            Some(uri) if uri.first() == Some(&b'#') => Err(SuitError::Truncated),
            Some(uri) => Ok(Finished::FetchRequired { uri }),
            None => Err(SuitError::MissingParameter),
        }
    }

    /// The image payload starts: `payload_len` bytes (ciphertext and tag when encrypted;
    /// `None` when a fetched plaintext image's length is not stated). Checks the length
    /// against image-size, opens the content key with the device's keys (before any byte
    /// reaches the sink), then tells the sink.
    fn start_image(
        &mut self,
        facts: Facts,
        payload_len: Option<u64>,
        sink: &mut dyn PayloadSink,
    ) -> Result<(), SuitError> {
        #[cfg(feature = "encryption")]
        if let Some(enc) = facts.encryption {
            let payload_len = payload_len.ok_or(SuitError::MissingParameter)?;
            let decryptor = self.open_decryption(enc, payload_len)?;
            let plain = Decryptor::plaintext_len(decryptor.0, payload_len)
                .ok_or(SuitError::ImageSizeMismatch)?;
            if facts.size.is_some_and(|s| s != plain) {
                return Err(SuitError::ImageSizeMismatch);
            }
            // Only a stated ciphertext digest costs a second hash of the payload (GCM's tag
            // already authenticates the ciphertext; draft section 6.1).
            let cipher_hasher = enc.digest.map(|_| self.crypto.sha256());
            self.image.decrypt = Some((decryptor.1, cipher_hasher));
        }
        #[cfg(feature = "encryption")]
        let plain_payload = facts.encryption.is_none();
        #[cfg(not(feature = "encryption"))]
        let plain_payload = true;
        if plain_payload
            && facts
                .size
                .is_some_and(|s| payload_len.is_some_and(|p| s != p))
        {
            return Err(SuitError::ImageSizeMismatch);
        }
        self.payload_seen = true;
        sink.begin(0, facts.size)?;
        self.image.received = 0;
        self.image.hasher = Some(self.crypto.sha256());
        Ok(())
    }

    /// The content key from the device's keys, and a decryptor for `payload_len` bytes.
    #[cfg(feature = "encryption")]
    #[inline(never)]
    fn open_decryption(
        &self,
        enc: Encrypted,
        payload_len: u64,
    ) -> Result<(ContentAlg, Decryptor), SuitError> {
        if enc.size.is_some_and(|s| s != payload_len) {
            return Err(SuitError::ImageSizeMismatch);
        }
        let bytes = self
            .buf
            .get(enc.info.0..enc.info.1)
            .ok_or(SuitError::Malformed)?;
        let info = EncryptionInfo::parse(bytes)?;
        let cek = info.content_key(self.keys, &self.crypto)?;
        Ok((info.alg, Decryptor::new(&info, &cek, payload_len)?))
    }

    /// Length of the fetched payload of a two-stage pull: the ciphertext's stated size, or
    /// the image size (plus the GCM tag when encrypted).
    fn fetched_len(&self, facts: Facts) -> Result<Option<u64>, SuitError> {
        #[cfg(feature = "encryption")]
        if let Some(enc) = facts.encryption {
            if let Some(size) = enc.size {
                return Ok(Some(size));
            }
            let bytes = self
                .buf
                .get(enc.info.0..enc.info.1)
                .ok_or(SuitError::Malformed)?;
            let plain = facts.size.ok_or(SuitError::MissingParameter)?;
            return Ok(Some(match EncryptionInfo::parse(bytes)?.alg {
                ContentAlg::A128Gcm => plain.saturating_add(GCM_TAG as u64),
                ContentAlg::A128Ctr => plain,
            }));
        }
        Ok(facts.size)
    }

    fn check_image(&mut self, facts: Facts) -> Result<Verified, SuitError> {
        let hasher = self.image.hasher.take().ok_or(SuitError::Truncated)?;
        // Encrypted: the GCM tag and the ciphertext digest first (section 6.1).
        #[cfg(feature = "encryption")]
        if let Some((decryptor, cipher_hasher)) = self.image.decrypt.take() {
            decryptor.finish()?;
            let want = facts.encryption.and_then(|e| e.digest);
            if want.is_some_and(|d| !cipher_hasher.is_some_and(|h| ct_eq(&h.finish(), &d))) {
                return Err(SuitError::ImageDigestMismatch);
            }
        }
        if facts.size.is_some_and(|s| s != self.image.received) {
            return Err(SuitError::ImageSizeMismatch);
        }
        if !ct_eq(&hasher.finish(), &facts.digest) {
            return Err(SuitError::ImageDigestMismatch);
        }
        Ok(Verified {
            sequence_number: facts.sequence_number,
            anchor: facts.anchor,
            digest: facts.digest,
            size: self.image.received,
        })
    }

    /// Two-stage pull: the fetched image starts (after [`Finished::FetchRequired`]).
    pub fn begin_fetched(&mut self, sink: &mut dyn PayloadSink) -> Result<(), SuitError> {
        let facts = self.facts.ok_or(SuitError::OutOfOrder)?;
        if self.phase != Phase::Done || self.payload_seen {
            return Err(SuitError::OutOfOrder);
        }
        let len = self.fetched_len(facts)?;
        self.start_image(facts, len, sink)
    }

    /// Two-stage pull: the next fetched bytes.
    pub fn feed_fetched(
        &mut self,
        data: &[u8],
        sink: &mut dyn PayloadSink,
    ) -> Result<(), SuitError> {
        if self.phase != Phase::Done || self.image.hasher.is_none() {
            return Err(SuitError::OutOfOrder);
        }
        image_step(&mut self.image, self.facts, data, sink)
    }

    /// Two-stage pull: the fetched image ended; checks digest and size.
    pub fn finish_fetched(&mut self) -> Result<Verified, SuitError> {
        let facts = self.facts.ok_or(SuitError::OutOfOrder)?;
        if self.phase != Phase::Done {
            return Err(SuitError::OutOfOrder);
        }
        self.check_image(facts)
    }
}

/// Moves `data` through the payload phase: the image's bytes are size-checked, hashed and
/// written to the sink; other integrated payloads are skipped. Returns the bytes consumed.
fn payload_step<H: Sha256Hasher>(
    phase: &mut Phase,
    image: &mut ImageState<H>,
    facts: Option<Facts>,
    data: &[u8],
    sink: &mut dyn PayloadSink,
) -> Result<usize, SuitError> {
    let Phase::Payload {
        left,
        image: is_image,
    } = *phase
    else {
        return Ok(0);
    };
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
    if is_image {
        image_step(image, facts, data.get(..n).unwrap_or(&[]), sink)?;
    }
    let left = left - n as u64;
    *phase = if left == 0 {
        Phase::Members
    } else {
        Phase::Payload {
            left,
            image: is_image,
        }
    };
    Ok(n)
}

/// Image bytes as they arrive: decrypted first when the image is encrypted (the ciphertext
/// hashed on the way), then size-checked, hashed and written.
fn image_step<H: Sha256Hasher>(
    image: &mut ImageState<H>,
    facts: Option<Facts>,
    chunk: &[u8],
    sink: &mut dyn PayloadSink,
) -> Result<(), SuitError> {
    #[cfg(feature = "encryption")]
    if let Some((decryptor, cipher_hasher)) = image.decrypt.as_mut() {
        if let Some(h) = cipher_hasher.as_mut() {
            h.update(chunk);
        }
        // A small window on the stack: the plaintext never exists whole in RAM.
        let mut window = [0u8; 64];
        for piece in chunk.chunks(window.len()) {
            let buf = window.get_mut(..piece.len()).ok_or(SuitError::Malformed)?;
            buf.copy_from_slice(piece);
            let n = decryptor.update(buf)?;
            plain_step(
                &mut image.hasher,
                &mut image.received,
                facts,
                buf.get(..n).unwrap_or(&[]),
                sink,
            )?;
        }
        return Ok(());
    }
    plain_step(&mut image.hasher, &mut image.received, facts, chunk, sink)
}

/// Size-checks, hashes and writes plaintext image bytes.
fn plain_step<H: Sha256Hasher>(
    hasher: &mut Option<H>,
    received: &mut u64,
    facts: Option<Facts>,
    chunk: &[u8],
    sink: &mut dyn PayloadSink,
) -> Result<(), SuitError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let facts = facts.ok_or(SuitError::OutOfOrder)?;
    *received = received.saturating_add(chunk.len() as u64);
    if facts.size.is_some_and(|s| *received > s) {
        return Err(SuitError::ImageSizeMismatch);
    }
    hasher.as_mut().ok_or(SuitError::OutOfOrder)?.update(chunk);
    sink.write(chunk)
}
