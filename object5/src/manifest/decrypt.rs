//! Streamed payload decryption (draft-ietf-suit-firmware-encryption-24 section 5): ciphertext
//! arrives in blocks of any size and leaves as plaintext in place, so an image is decrypted
//! on its way into the candidate slot without ever being held whole.
//!
//! - A128CTR (RFC 9459): the keystream starts at the IV as a 128-bit big-endian counter.
//! - A128GCM (NIST SP 800-38D): CTR from inc32(IV || 1) for the data, GHASH over the AAD (the
//!   COSE Enc_structure `["Encrypt", protected, h'']`, RFC 9052 section 5.3) and the
//!   ciphertext; the 16-byte tag that ends the payload is compared in [`Decryptor::finish`],
//!   before the image can count as received.

use super::cbor::{encode_head, MAJOR_BSTR};
use super::cose_encrypt::{ContentAlg, EncryptionInfo};
use super::crypto::ct_eq;
use super::SuitError;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

/// GCM tag length.
pub const GCM_TAG: usize = 16;

/// Counter blocks encrypted per batch (the fixsliced cipher works on several at once).
const BATCH: usize = 4;

/// GCM's authenticator between calls: GHASH's hash subkey and running value, the partial
/// block it has not taken yet, and the tag as it arrives.
#[derive(Clone, Copy)]
struct GcmState {
    /// H = E_K(0^128).
    h: [u8; 16],
    /// GHASH over every whole block so far (carried into the next run, see [`Ghash`]).
    acc: [u8; 16],
    /// E_K(J0), XORed into the GHASH result.
    tag_mask: [u8; 16],
    pending: [u8; 16],
    pending_len: usize,
    aad_len: u64,
    data_len: u64,
    tag: [u8; GCM_TAG],
    tag_len: usize,
}

/// Decrypts one payload of a known ciphertext length; see the module documentation.
///
/// Between calls it keeps the content key and counters (about 150 bytes), not an expanded
/// AES key schedule: the cipher is expanded on the stack for each [`Decryptor::run`], so a
/// verifier holding a decryptor costs little RAM while it checks signatures, and one run
/// decrypts as many buffers as it is given.
#[derive(Clone, Copy)]
pub struct Decryptor {
    cek: [u8; 16],
    /// The counter block of the first data byte (CTR: the IV; GCM: inc32(J0)).
    counter: [u8; 16],
    /// Whether the counter is GCM's 32-bit one (inc32) rather than a 128-bit one.
    inc32: bool,
    /// Data bytes decrypted so far (the keystream position).
    position: u64,
    /// Ciphertext bytes still expected (GCM: data only, the tag counted apart).
    data_left: u64,
    gcm: Option<GcmState>,
    /// A GCM payload entered mid-way ([`Decryptor::skip_to`]): tag bytes passed so far,
    /// taken without a check.
    unchecked_tag: Option<usize>,
}

impl Decryptor {
    /// Starts decrypting `payload_len` bytes as they arrive (for GCM the length includes the
    /// trailing tag) with the content key `cek`.
    #[inline(never)] // own frame: the key expansion here is not under the caller's
    pub fn new(
        info: &EncryptionInfo<'_>,
        cek: &[u8; 16],
        payload_len: u64,
    ) -> Result<Self, SuitError> {
        let data_left =
            Self::plaintext_len(info.alg, payload_len).ok_or(SuitError::ImageSizeMismatch)?;
        let mut counter = [0u8; 16];
        let gcm = match info.alg {
            ContentAlg::A128Ctr => {
                counter.copy_from_slice(info.iv.get(..16).ok_or(SuitError::Malformed)?);
                None
            }
            ContentAlg::A128Gcm => {
                counter
                    .get_mut(..12)
                    .ok_or(SuitError::Malformed)?
                    .copy_from_slice(info.iv.get(..12).ok_or(SuitError::Malformed)?);
                counter[15] = 1; // J0 = IV || 1 (96-bit IV)
                let mut state = gcm_keys(cek, &counter);
                counter[15] = 2; // inc32(J0): the first data block
                                 // AAD: Enc_structure = ["Encrypt", protected, h''] (RFC 9052 section 5.3),
                                 // fed without building it.
                let mut head = [0u8; 9];
                let n = encode_head(MAJOR_BSTR, info.protected.len() as u64, &mut head);
                let mut g = Ghash::new(&mut state);
                g.absorb(&[0x83, 0x67]);
                g.absorb(b"Encrypt");
                g.absorb(head.get(..n).unwrap_or(&[]));
                g.absorb(info.protected);
                g.absorb(&[0x40]);
                g.flush();
                drop(g);
                state.aad_len = state.data_len;
                state.data_len = 0;
                Some(state)
            }
        };
        Ok(Self {
            cek: *cek,
            counter,
            inc32: gcm.is_some(),
            position: 0,
            data_left,
            gcm,
            unchecked_tag: None,
        })
    }

    /// Continues at data byte `offset` of a payload that was being decrypted before a reboot
    /// (the bytes before it are stored): counter mode seeks to any block (NIST SP 800-38A
    /// section 6.5). The GHASH over the skipped ciphertext is gone, so a GCM tag is passed
    /// over, not checked: the plaintext in the slot is checked against the signed image
    /// digest instead, which authenticates it whole (draft-ietf-suit-firmware-encryption-24,
    /// "Image Match after Decryption"). Only before the first byte.
    pub fn skip_to(&mut self, offset: u64) -> Result<(), SuitError> {
        if self.position != 0 || offset > self.data_left {
            return Err(SuitError::ImageSizeMismatch);
        }
        self.position = offset;
        self.data_left -= offset;
        if self.gcm.take().is_some() {
            self.unchecked_tag = Some(0);
        }
        Ok(())
    }

    /// Plaintext length of a payload of `payload_len` bytes.
    pub fn plaintext_len(alg: ContentAlg, payload_len: u64) -> Option<u64> {
        match alg {
            ContentAlg::A128Ctr => Some(payload_len),
            ContentAlg::A128Gcm => payload_len.checked_sub(GCM_TAG as u64),
        }
    }

    /// Expands the cipher on the caller's stack for a run of [`DecryptRun::update`] calls;
    /// the state goes back into the decryptor as the run goes. Not inlined: the expansion's
    /// temporaries stay in this frame, below the run's callers.
    #[inline(never)]
    pub fn run(&mut self) -> DecryptRun<'_> {
        let Self {
            cek,
            counter,
            inc32,
            position,
            data_left,
            gcm,
            unchecked_tag,
        } = self;
        DecryptRun {
            aes: aes::Aes128::new((&*cek).into()),
            counter: *counter,
            inc32: *inc32,
            position,
            data_left,
            ghash: gcm.as_mut().map(Ghash::new),
            unchecked_tag: unchecked_tag.as_mut(),
        }
    }

    /// Decrypts the next bytes in place (one [`Decryptor::run`] per call; give a run several
    /// buffers instead where the cipher should be expanded once).
    pub fn update(&mut self, buf: &mut [u8]) -> Result<usize, SuitError> {
        self.run().update(buf)
    }

    /// The payload ended: for GCM, checks the tag (constant time). Refuses a payload that
    /// ended early.
    pub fn finish(mut self) -> Result<(), SuitError> {
        if self.data_left != 0 {
            return Err(SuitError::ImageSizeMismatch);
        }
        if let Some(passed) = self.unchecked_tag {
            return if passed == GCM_TAG {
                Ok(())
            } else {
                Err(SuitError::ImageSizeMismatch)
            };
        }
        let Some(state) = self.gcm.as_mut() else {
            return Ok(());
        };
        if state.tag_len != GCM_TAG {
            return Err(SuitError::ImageSizeMismatch);
        }
        let (tag_mask, received) = (state.tag_mask, state.tag);
        let mut g = Ghash::new(state);
        g.flush();
        let mut lens = [0u8; 16];
        lens[..8].copy_from_slice(&(g.state.aad_len * 8).to_be_bytes());
        lens[8..].copy_from_slice(&(g.state.data_len * 8).to_be_bytes());
        g.block(&lens);
        let mut tag = g.value();
        for (t, m) in tag.iter_mut().zip(tag_mask) {
            *t ^= m;
        }
        if ct_eq(&tag, &received) {
            Ok(())
        } else {
            Err(SuitError::DecryptionFailed)
        }
    }
}

/// GCM's H = E_K(0^128) and E_K(J0) (NIST SP 800-38D section 7.1), with the key expanded
/// once in this frame.
#[inline(never)]
fn gcm_keys(cek: &[u8; 16], j0: &[u8; 16]) -> GcmState {
    let aes = aes::Aes128::new(cek.into());
    let mut h = [0u8; 16];
    aes.encrypt_block((&mut h).into());
    let mut tag_mask = *j0;
    aes.encrypt_block((&mut tag_mask).into());
    GcmState {
        h,
        acc: [0; 16],
        tag_mask,
        pending: [0; 16],
        pending_len: 0,
        aad_len: 0,
        data_len: 0,
        tag: [0; GCM_TAG],
        tag_len: 0,
    }
}

/// GHASH (NIST SP 800-38D section 6.4) resumed from a [`GcmState`]: `Y_i = (Y_{i-1} xor
/// X_i) * H`, so a fresh instance fed `Y xor X` as its first block continues the value the
/// last one ended with; the value goes back into the state when this is dropped.
struct Ghash<'s> {
    state: &'s mut GcmState,
    hash: GHash,
    /// Whether a block was taken (the value then lives in `hash`).
    fed: bool,
}

impl<'s> Ghash<'s> {
    fn new(state: &'s mut GcmState) -> Self {
        let hash = GHash::new((&state.h).into());
        Self {
            state,
            hash,
            fed: false,
        }
    }

    /// One whole block.
    fn block(&mut self, block: &[u8; 16]) {
        let mut b = *block;
        if !self.fed {
            for (x, a) in b.iter_mut().zip(self.state.acc) {
                *x ^= a;
            }
            self.fed = true;
        }
        self.hash.update(&[b.into()]);
    }

    /// The GHASH value so far.
    fn value(&self) -> [u8; 16] {
        if self.fed {
            self.hash.clone().finalize().into()
        } else {
            self.state.acc
        }
    }

    /// Feeds bytes in whole blocks, keeping a partial one for later.
    fn absorb(&mut self, mut data: &[u8]) {
        self.state.data_len += data.len() as u64;
        if self.state.pending_len > 0 {
            let at = self.state.pending_len;
            let n = (16 - at).min(data.len());
            let (head, rest) = data.split_at(n);
            self.state.pending[at..at + n].copy_from_slice(head);
            self.state.pending_len += n;
            data = rest;
            if self.state.pending_len < 16 {
                return;
            }
            self.state.pending_len = 0;
            let block = self.state.pending;
            self.block(&block);
        }
        let mut blocks = data.chunks_exact(16);
        for block in blocks.by_ref() {
            let mut b = [0u8; 16];
            b.copy_from_slice(block);
            self.block(&b);
        }
        let tail = blocks.remainder();
        self.state.pending[..tail.len()].copy_from_slice(tail);
        self.state.pending_len = tail.len();
    }

    /// Pads and absorbs a partial block (end of the AAD, end of the ciphertext).
    fn flush(&mut self) {
        let len = self.state.pending_len;
        if len > 0 {
            let mut b = [0u8; 16];
            b[..len].copy_from_slice(&self.state.pending[..len]);
            self.state.pending_len = 0;
            self.block(&b);
        }
    }
}

impl Drop for Ghash<'_> {
    fn drop(&mut self) {
        self.state.acc = self.value();
    }
}

/// One run of a [`Decryptor`] with its cipher expanded: decrypts buffers in place, counter
/// mode (NIST SP 800-38A section 6.5) with the 128-bit big-endian increment of RFC 9459 or
/// GCM's 32-bit one, keystream in batches of four blocks.
pub struct DecryptRun<'d> {
    aes: aes::Aes128,
    counter: [u8; 16],
    inc32: bool,
    position: &'d mut u64,
    data_left: &'d mut u64,
    ghash: Option<Ghash<'d>>,
    unchecked_tag: Option<&'d mut usize>,
}

impl DecryptRun<'_> {
    /// Decrypts the next bytes in place and returns how many of them are plaintext (the
    /// rest, at the end of a GCM payload, are tag bytes, kept for [`Decryptor::finish`]).
    /// More bytes than the payload has are refused.
    pub fn update(&mut self, buf: &mut [u8]) -> Result<usize, SuitError> {
        let data = usize::try_from(*self.data_left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (text, rest) = buf.split_at_mut(data);
        *self.data_left -= data as u64;
        match self.ghash.as_mut() {
            Some(g) => {
                g.absorb(text);
                let st = &mut *g.state;
                let end = st.tag_len + rest.len();
                st.tag
                    .get_mut(st.tag_len..end)
                    .ok_or(SuitError::ImageSizeMismatch)?
                    .copy_from_slice(rest);
                st.tag_len = end;
            }
            None if rest.is_empty() => {}
            None => match self.unchecked_tag.as_deref_mut() {
                Some(passed) if *passed + rest.len() <= GCM_TAG => *passed += rest.len(),
                _ => return Err(SuitError::ImageSizeMismatch),
            },
        }
        self.keystream(text);
        Ok(data)
    }

    /// XORs the keystream from the current position into `data`.
    fn keystream(&mut self, mut data: &mut [u8]) {
        let mut blocks = [aes::Block::default(); BATCH];
        while !data.is_empty() {
            let offset = (*self.position % 16) as usize;
            let first = *self.position / 16;
            let count = (offset + data.len()).div_ceil(16).min(BATCH);
            for (k, block) in blocks.iter_mut().take(count).enumerate() {
                block.copy_from_slice(&self.counter_block(first + k as u64));
            }
            let batch = blocks.get_mut(..count).unwrap_or(&mut []);
            self.aes.encrypt_blocks(batch);
            let take = (count * 16 - offset).min(data.len());
            let keystream = batch.iter().flat_map(|b| b.iter()).skip(offset);
            let (now, later) = data.split_at_mut(take);
            for (d, k) in now.iter_mut().zip(keystream) {
                *d ^= k;
            }
            *self.position += take as u64;
            data = later;
        }
    }

    /// The counter block of keystream block `index`.
    fn counter_block(&self, index: u64) -> [u8; 16] {
        if self.inc32 {
            let mut block = self.counter;
            let low = u32::from_be_bytes([block[12], block[13], block[14], block[15]]);
            block[12..].copy_from_slice(&low.wrapping_add(index as u32).to_be_bytes());
            block
        } else {
            u128::from_be_bytes(self.counter)
                .wrapping_add(u128::from(index))
                .to_be_bytes()
        }
    }
}

/// The device's counter mode and streamed GCM against the RustCrypto `ctr` and `aes-gcm`
/// crates the author side encrypts with, in uneven pieces and across counter carries.
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::author::Value;
    use std::vec::Vec;

    /// A COSE_Encrypt carrying only what [`Decryptor::new`] reads.
    fn info(alg: ContentAlg, iv: &[u8]) -> Vec<u8> {
        let (protected, alg) = match alg {
            ContentAlg::A128Gcm => (
                Value::Map(std::vec![(Value::Int(1), Value::Int(1))]).encode(),
                None,
            ),
            ContentAlg::A128Ctr => (Vec::new(), Some(-65534)),
        };
        let mut unprotected = std::vec![(Value::Int(5), Value::Bytes(iv.to_vec()))];
        if let Some(a) = alg {
            unprotected.push((Value::Int(1), Value::Int(a)));
        }
        Value::Tag(
            96,
            std::boxed::Box::new(Value::Array(std::vec![
                Value::Bytes(protected),
                Value::Map(unprotected),
                Value::Null,
                Value::Array(std::vec![Value::Array(std::vec![
                    Value::Bytes(Vec::new()),
                    Value::Map(std::vec![(Value::Int(1), Value::Int(-3))]),
                    Value::Bytes(std::vec![0; 24]),
                ])]),
            ])),
        )
        .encode()
    }

    /// Decrypts `payload` in pieces of the lengths in `pieces` (cycled), several per run.
    fn decrypt(
        info: &EncryptionInfo<'_>,
        cek: &[u8; 16],
        payload: &[u8],
        pieces: &[usize],
    ) -> Result<Vec<u8>, SuitError> {
        let mut d = Decryptor::new(info, cek, payload.len() as u64)?;
        let mut out = Vec::new();
        let mut rest = payload;
        let mut sizes = pieces.iter().cycle();
        while !rest.is_empty() {
            let mut run = d.run();
            for _ in 0..3 {
                let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
                let mut buf = rest[..n].to_vec();
                let plain = run.update(&mut buf)?;
                out.extend_from_slice(&buf[..plain]);
                rest = &rest[n..];
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn counter_mode_matches_the_ctr_crate_across_a_64_bit_carry() {
        use aes::cipher::{KeyIvInit, StreamCipher};
        let cek = [0x2b; 16];
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        // The low 64 bits of the counter wrap after two blocks: the carry must reach the
        // high half (RFC 9459: one 128-bit big-endian counter).
        let mut iv = [0xffu8; 16];
        iv[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        iv[15] = 0xfe;
        let mut cipher = plain.clone();
        ctr::Ctr128BE::<aes::Aes128>::new((&cek).into(), (&iv).into()).apply_keystream(&mut cipher);
        let bytes = info(ContentAlg::A128Ctr, &iv);
        let parsed = EncryptionInfo::parse(&bytes).unwrap();
        for pieces in [&[1usize][..], &[15, 17, 64], &[100, 3], &[1000]] {
            assert_eq!(
                decrypt(&parsed, &cek, &cipher, pieces).unwrap(),
                plain,
                "{pieces:?}"
            );
        }
    }

    #[test]
    fn streamed_gcm_matches_the_aes_gcm_crate_and_checks_its_tag() {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let cek = [0x4c; 16];
        let iv = [0x11; 12];
        let bytes = info(ContentAlg::A128Gcm, &iv);
        let parsed = EncryptionInfo::parse(&bytes).unwrap();
        // AAD: Enc_structure ["Encrypt", protected, h''].
        let aad = Value::Array(std::vec![
            Value::Text("Encrypt".into()),
            Value::Bytes(parsed.protected.to_vec()),
            Value::Bytes(Vec::new()),
        ])
        .encode();
        for len in [0usize, 1, 16, 31, 700] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            let mut sealed = plain.clone();
            let tag = aes_gcm::Aes128Gcm::new((&cek).into())
                .encrypt_inout_detached((&iv).into(), &aad, (&mut sealed[..]).into())
                .unwrap();
            sealed.extend_from_slice(&tag);
            for pieces in [&[1usize][..], &[5, 16, 33], &[1000]] {
                assert_eq!(decrypt(&parsed, &cek, &sealed, pieces).unwrap(), plain);
            }
            let mut bad = sealed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                decrypt(&parsed, &cek, &bad, &[7]),
                Err(SuitError::DecryptionFailed)
            );
        }
    }

    /// A decryptor entered at a block boundary after a reboot yields the plaintext from there
    /// on, for both modes; a GCM tag is passed over (its GHASH began before the skip) but must
    /// still be whole.
    #[test]
    fn skip_to_continues_at_a_block_boundary_in_both_modes() {
        use aes::cipher::{KeyIvInit, StreamCipher};
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let cek = [0x3d; 16];
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 11 + 1) as u8).collect();
        let ctr_iv = [0x21; 16];
        let mut ctr_sealed = plain.clone();
        ctr::Ctr128BE::<aes::Aes128>::new((&cek).into(), (&ctr_iv).into())
            .apply_keystream(&mut ctr_sealed);
        let gcm_iv = [0x42; 12];
        let gcm_info = info(ContentAlg::A128Gcm, &gcm_iv);
        let gcm = EncryptionInfo::parse(&gcm_info).unwrap();
        let aad = Value::Array(std::vec![
            Value::Text("Encrypt".into()),
            Value::Bytes(gcm.protected.to_vec()),
            Value::Bytes(Vec::new()),
        ])
        .encode();
        let mut gcm_sealed = plain.clone();
        let tag = aes_gcm::Aes128Gcm::new((&cek).into())
            .encrypt_inout_detached((&gcm_iv).into(), &aad, (&mut gcm_sealed[..]).into())
            .unwrap();
        gcm_sealed.extend_from_slice(&tag);
        let ctr_info = info(ContentAlg::A128Ctr, &ctr_iv);
        let ctr = EncryptionInfo::parse(&ctr_info).unwrap();
        for (parsed, sealed) in [(&ctr, &ctr_sealed), (&gcm, &gcm_sealed)] {
            for offset in [0usize, 16, 512, 992] {
                let mut d = Decryptor::new(parsed, &cek, sealed.len() as u64).unwrap();
                d.skip_to(offset as u64).unwrap();
                let mut rest = sealed[offset..].to_vec();
                let n = d.update(&mut rest).unwrap();
                assert_eq!(&rest[..n], &plain[offset..], "{:?} at {offset}", parsed.alg);
                d.finish().unwrap();
            }
            // Past the end, or once bytes went through: refused.
            let mut d = Decryptor::new(parsed, &cek, sealed.len() as u64).unwrap();
            assert!(d.skip_to(1001).is_err());
            d.update(&mut [0u8; 16]).unwrap();
            assert!(d.skip_to(32).is_err());
        }
        // A skipped-into GCM payload still needs its 16 tag bytes, and no more.
        let mut d = Decryptor::new(&gcm, &cek, gcm_sealed.len() as u64).unwrap();
        d.skip_to(512).unwrap();
        let mut short = gcm_sealed[512..gcm_sealed.len() - 1].to_vec();
        d.update(&mut short).unwrap();
        assert_eq!(d.finish(), Err(SuitError::ImageSizeMismatch));
        let mut d = Decryptor::new(&gcm, &cek, gcm_sealed.len() as u64).unwrap();
        d.skip_to(512).unwrap();
        let mut long = [&gcm_sealed[512..], &[0u8][..]].concat();
        assert_eq!(d.update(&mut long), Err(SuitError::ImageSizeMismatch));
    }
}
