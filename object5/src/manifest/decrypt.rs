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
use aes::cipher::{BlockCipherEncrypt, KeyInit, KeyIvInit, StreamCipher};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

/// GCM tag length.
pub const GCM_TAG: usize = 16;

type Ctr128 = ctr::Ctr128BE<aes::Aes128>;
type Ctr32 = ctr::Ctr32BE<aes::Aes128>;

/// GCM's running state: keystream, authenticator, the partial ciphertext block GHASH has not
/// taken yet, and the tag as it arrives.
struct Gcm {
    ctr: Ctr32,
    ghash: GHash,
    /// E_K(J0), XORed into the GHASH result.
    tag_mask: [u8; 16],
    pending: [u8; 16],
    pending_len: usize,
    aad_len: u64,
    data_len: u64,
    tag: [u8; GCM_TAG],
    tag_len: usize,
}

#[allow(clippy::large_enum_variant)] // no allocator to box with; one lives per download
enum Mode {
    Ctr(Ctr128),
    Gcm(Gcm),
}

/// Decrypts one payload of a known ciphertext length; see the module documentation.
pub struct Decryptor {
    mode: Mode,
    /// Ciphertext bytes still expected (GCM: data only, the tag counted apart).
    data_left: u64,
}

impl Decryptor {
    /// Starts decrypting `payload_len` bytes as they arrive (for GCM the length includes the
    /// trailing tag) with the content key `cek`.
    pub fn new(
        info: &EncryptionInfo<'_>,
        cek: &[u8; 16],
        payload_len: u64,
    ) -> Result<Self, SuitError> {
        let mode = match info.alg {
            ContentAlg::A128Ctr => {
                Mode::Ctr(Ctr128::new_from_slices(cek, info.iv).map_err(|_| SuitError::Malformed)?)
            }
            ContentAlg::A128Gcm => Mode::Gcm(Gcm::new(info, cek)?),
        };
        let data_left = match mode {
            Mode::Ctr(_) => payload_len,
            Mode::Gcm(_) => payload_len
                .checked_sub(GCM_TAG as u64)
                .ok_or(SuitError::ImageSizeMismatch)?,
        };
        Ok(Self { mode, data_left })
    }

    /// Plaintext length of a payload of `payload_len` bytes.
    pub fn plaintext_len(alg: ContentAlg, payload_len: u64) -> Option<u64> {
        match alg {
            ContentAlg::A128Ctr => Some(payload_len),
            ContentAlg::A128Gcm => payload_len.checked_sub(GCM_TAG as u64),
        }
    }

    /// Decrypts the next bytes in place and returns how many of them are plaintext (the rest,
    /// at the end of a GCM payload, are tag bytes, kept for [`Decryptor::finish`]). More bytes
    /// than the payload has are refused.
    pub fn update(&mut self, buf: &mut [u8]) -> Result<usize, SuitError> {
        let data = usize::try_from(self.data_left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (text, rest) = buf.split_at_mut(data);
        self.data_left -= data as u64;
        match &mut self.mode {
            Mode::Ctr(ctr) => {
                if !rest.is_empty() {
                    return Err(SuitError::ImageSizeMismatch);
                }
                ctr.apply_keystream(text);
            }
            Mode::Gcm(gcm) => {
                gcm.absorb(text);
                gcm.ctr.apply_keystream(text);
                gcm.take_tag(rest)?;
            }
        }
        Ok(data)
    }

    /// The payload ended: for GCM, checks the tag (constant time). Refuses a payload that
    /// ended early.
    pub fn finish(self) -> Result<(), SuitError> {
        if self.data_left != 0 {
            return Err(SuitError::ImageSizeMismatch);
        }
        match self.mode {
            Mode::Ctr(_) => Ok(()),
            Mode::Gcm(gcm) => gcm.verify(),
        }
    }
}

impl Gcm {
    fn new(info: &EncryptionInfo<'_>, cek: &[u8; 16]) -> Result<Self, SuitError> {
        let aes = aes::Aes128::new(cek.into());
        let mut h = [0u8; 16];
        aes.encrypt_block((&mut h).into());
        let mut j0 = [0u8; 16];
        j0.get_mut(..12)
            .ok_or(SuitError::Malformed)?
            .copy_from_slice(info.iv.get(..12).ok_or(SuitError::Malformed)?);
        j0[15] = 1;
        let mut tag_mask = j0;
        aes.encrypt_block((&mut tag_mask).into());
        let mut counter = j0;
        counter[15] = 2; // inc32(J0): the first data block
        let ctr = Ctr32::new(cek.into(), (&counter).into());
        let mut gcm = Self {
            ctr,
            ghash: GHash::new((&h).into()),
            tag_mask,
            pending: [0; 16],
            pending_len: 0,
            aad_len: 0,
            data_len: 0,
            tag: [0; GCM_TAG],
            tag_len: 0,
        };
        // AAD: Enc_structure = ["Encrypt", protected, h''], fed without building it.
        let mut head = [0u8; 9];
        gcm.absorb(&[0x83, 0x67]);
        gcm.absorb(b"Encrypt");
        let n = encode_head(MAJOR_BSTR, info.protected.len() as u64, &mut head);
        gcm.absorb(head.get(..n).unwrap_or(&[]));
        gcm.absorb(info.protected);
        gcm.absorb(&[0x40]);
        gcm.flush();
        gcm.aad_len = gcm.data_len;
        gcm.data_len = 0;
        Ok(gcm)
    }

    /// Feeds bytes to GHASH in whole blocks, keeping a partial one for later.
    fn absorb(&mut self, mut data: &[u8]) {
        self.data_len += data.len() as u64;
        if self.pending_len > 0 {
            let n = (16 - self.pending_len).min(data.len());
            let (head, rest) = data.split_at(n);
            self.pending[self.pending_len..self.pending_len + n].copy_from_slice(head);
            self.pending_len += n;
            data = rest;
            if self.pending_len < 16 {
                return;
            }
            self.ghash.update(&[self.pending.into()]);
            self.pending_len = 0;
        }
        let whole = data.len() / 16 * 16;
        let (blocks, tail) = data.split_at(whole);
        for block in blocks.chunks_exact(16) {
            let mut b = [0u8; 16];
            b.copy_from_slice(block);
            self.ghash.update(&[b.into()]);
        }
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len();
    }

    /// Pads and absorbs a partial block (end of the AAD, end of the ciphertext).
    fn flush(&mut self) {
        if self.pending_len > 0 {
            let mut b = [0u8; 16];
            b[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            self.ghash.update(&[b.into()]);
            self.pending_len = 0;
        }
    }

    fn take_tag(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
        let end = self.tag_len + bytes.len();
        self.tag
            .get_mut(self.tag_len..end)
            .ok_or(SuitError::ImageSizeMismatch)?
            .copy_from_slice(bytes);
        self.tag_len = end;
        Ok(())
    }

    fn verify(mut self) -> Result<(), SuitError> {
        if self.tag_len != GCM_TAG {
            return Err(SuitError::ImageSizeMismatch);
        }
        self.flush();
        let mut lens = [0u8; 16];
        lens[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lens[8..].copy_from_slice(&(self.data_len * 8).to_be_bytes());
        self.ghash.update(&[lens.into()]);
        let s: [u8; 16] = self.ghash.finalize().into();
        let mut tag = [0u8; 16];
        for ((t, a), b) in tag.iter_mut().zip(s).zip(self.tag_mask) {
            *t = a ^ b;
        }
        if ct_eq(&tag, &self.tag) {
            Ok(())
        } else {
            Err(SuitError::DecryptionFailed)
        }
    }
}
