//! SUIT_Encryption_Info (draft-ietf-suit-firmware-encryption-24 sections 4-5): the COSE_Encrypt
//! a payload is encrypted with, and how a device recovers its content-encryption key (CEK)
//! with one of its own decryption keys: AES key wrap with a pre-shared KEK (section 4.1,
//! RFC 3394, RFC 9053 section 6.2.1) or ECDH-ES+A128KW with its P-256 private key (section
//! 4.2, RFC 9053 section 6.3.1: ECDH, HKDF-SHA-256 over the COSE_KDF_Context, AES key wrap).
//! Parsed only after the manifest that carries it authenticated.

use super::aes_inverse::Aes128Inverse;
use super::cbor::{encode_head, Reader, MAJOR_BSTR, MAJOR_MAP, MAJOR_TAG};
use super::crypto::{CryptoBackend, HmacSha256};
use super::SuitError;

/// COSE_Encrypt tag.
const TAG_ENCRYPT: u64 = 96;
/// COSE algorithm ids (RFC 9053, RFC 9459).
pub(crate) const ALG_A128GCM: i64 = 1;
pub(crate) const ALG_A128CTR: i64 = -65534;
const ALG_A128KW: i64 = -3;
const ALG_ECDH_ES_A128KW: i64 = -29;
/// COSE header labels.
const HDR_ALG: i64 = 1;
const HDR_KID: i64 = 4;
const HDR_IV: i64 = 5;
const HDR_EPHEMERAL_KEY: i64 = -1;
const HDR_SALT: i64 = -20;
/// The COSE_KDF_Context `other` value the draft fixes (section 4.2.4).
const KDF_OTHER: &[u8] = b"SUIT Payload Encryption";

/// A key the device decrypts payloads with (kept in its key store beside the trust anchors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecryptionKey<'k> {
    /// A128KW key-encryption key shared with the author.
    Aes128Kw {
        /// Key id the author names it by (COSE `kid`); `None` matches any recipient.
        kid: Option<&'k [u8]>,
        /// The 16-byte KEK.
        kek: &'k [u8; 16],
    },
    /// The device's P-256 private key for ECDH-ES+A128KW.
    EcdhP256 {
        /// Key id the author names it by (COSE `kid`); `None` matches any recipient.
        kid: Option<&'k [u8]>,
        /// The 32-byte private scalar.
        private: &'k [u8; 32],
    },
}

/// The content encryption a payload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentAlg {
    /// AES-128-GCM (COSE 1): 12-byte IV, 16-byte tag after the ciphertext.
    A128Gcm,
    /// AES-128-CTR (COSE -65534, RFC 9459): 16-byte initial counter block, no tag.
    A128Ctr,
}

/// A parsed SUIT_Encryption_Info: slices into the authenticated manifest.
#[derive(Clone, Copy, Debug)]
pub struct EncryptionInfo<'m> {
    /// Content encryption algorithm.
    pub alg: ContentAlg,
    /// The COSE_Encrypt protected bucket as encoded (GCM's AAD binds it).
    pub protected: &'m [u8],
    /// IV (GCM) or initial counter block (CTR).
    pub iv: &'m [u8],
    /// The encoded recipients array.
    recipients: &'m [u8],
}

/// The header parameters the decryption needs from one bucket.
#[derive(Default)]
struct Headers<'m> {
    alg: Option<i64>,
    kid: Option<&'m [u8]>,
    iv: Option<&'m [u8]>,
    salt: Option<&'m [u8]>,
    /// Ephemeral COSE_Key: (x, y) of an EC2 P-256 key.
    ephemeral: Option<(&'m [u8], &'m [u8])>,
}

fn headers<'m>(r: &mut Reader<'m>, out: &mut Headers<'m>) -> Result<(), SuitError> {
    for _ in 0..r.map()? {
        match r.int()? {
            HDR_ALG => out.alg = Some(r.int()?),
            HDR_KID => out.kid = Some(r.bytes()?),
            HDR_IV => out.iv = Some(r.bytes()?),
            HDR_SALT => out.salt = Some(r.bytes()?),
            HDR_EPHEMERAL_KEY => out.ephemeral = Some(ec2_p256(r)?),
            _ => r.skip()?,
        }
    }
    Ok(())
}

/// Reads a COSE_Key map that must be EC2 (kty 2) on P-256 (crv 1): `(x, y)`.
fn ec2_p256<'m>(r: &mut Reader<'m>) -> Result<(&'m [u8], &'m [u8]), SuitError> {
    let (mut kty, mut crv, mut x, mut y) = (None, None, None, None);
    for _ in 0..r.map()? {
        match r.int()? {
            1 => kty = Some(r.int()?),
            -1 => crv = Some(r.int()?),
            -2 => x = Some(r.bytes()?),
            -3 => y = Some(r.bytes()?),
            _ => r.skip()?,
        }
    }
    match (kty, crv, x, y) {
        (Some(2), Some(1), Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => Ok((x, y)),
        (Some(2), Some(1), ..) => Err(SuitError::Malformed),
        _ => Err(SuitError::Unsupported),
    }
}

fn protected_headers<'m>(protected: &'m [u8], out: &mut Headers<'m>) -> Result<(), SuitError> {
    if protected.is_empty() {
        return Ok(());
    }
    let mut r = Reader::new(protected);
    headers(&mut r, out)?;
    if r.is_empty() {
        Ok(())
    } else {
        Err(SuitError::Malformed)
    }
}

impl<'m> EncryptionInfo<'m> {
    /// Parses the content of suit-parameter-encryption-info: a COSE_Encrypt with a detached
    /// ciphertext (section 4). Only A128GCM and A128CTR content is implemented.
    pub fn parse(bytes: &'m [u8]) -> Result<Self, SuitError> {
        let mut r = Reader::new(bytes);
        if r.peek_major()? != MAJOR_TAG || r.tag()? != TAG_ENCRYPT {
            return Err(SuitError::Unsupported); // COSE_Encrypt0 or other structures
        }
        if r.array()? != 4 {
            return Err(SuitError::Malformed);
        }
        let protected = r.bytes()?;
        let mut h = Headers::default();
        protected_headers(protected, &mut h)?;
        if r.peek_major()? != MAJOR_MAP {
            return Err(SuitError::Malformed);
        }
        headers(&mut r, &mut h)?;
        if !r.null()? {
            return Err(SuitError::Malformed); // the ciphertext is the payload, never in here
        }
        let recipients = r.raw_item()?;
        if !r.is_empty() {
            return Err(SuitError::Malformed);
        }
        let (alg, iv_len) = match h.alg {
            Some(ALG_A128GCM) => (ContentAlg::A128Gcm, 12),
            // RFC 9459 section 4: no protected header for AES-CTR.
            Some(ALG_A128CTR) if protected.is_empty() => (ContentAlg::A128Ctr, 16),
            Some(ALG_A128CTR) => return Err(SuitError::Malformed),
            _ => return Err(SuitError::Unsupported),
        };
        let iv = h.iv.ok_or(SuitError::MissingParameter)?;
        if iv.len() != iv_len {
            return Err(SuitError::Malformed);
        }
        Ok(Self {
            alg,
            protected,
            iv,
            recipients,
        })
    }

    /// The content-encryption key: the first recipient one of `keys` opens. Recipients and
    /// keys with a `kid` are only paired when the kids match.
    pub fn content_key<C: CryptoBackend>(
        &self,
        keys: &[DecryptionKey<'_>],
        crypto: &C,
    ) -> Result<[u8; 16], SuitError> {
        let mut r = Reader::new(self.recipients);
        let n = r.array()?;
        if n == 0 {
            return Err(SuitError::Malformed);
        }
        let mut any_supported = false;
        for _ in 0..n {
            if r.array()? != 3 {
                return Err(SuitError::Malformed);
            }
            let protected = r.bytes()?;
            let mut h = Headers::default();
            protected_headers(protected, &mut h)?;
            headers(&mut r, &mut h)?;
            let wrapped = r.bytes()?;
            let alg = h.alg.ok_or(SuitError::Malformed)?;
            if alg != ALG_A128KW && alg != ALG_ECDH_ES_A128KW {
                continue;
            }
            any_supported = true;
            for key in keys {
                if let Some(cek) = open(alg, &h, protected, wrapped, key, crypto) {
                    return Ok(cek);
                }
            }
        }
        if !r.is_empty() {
            return Err(SuitError::Malformed);
        }
        Err(if any_supported {
            SuitError::NoDecryptionKey
        } else {
            SuitError::Unsupported
        })
    }
}

/// Opens one recipient with one key: `None` when the key does not fit or unwrapping fails
/// (AES-KW's integrity check rejects a wrong KEK).
fn open<C: CryptoBackend>(
    alg: i64,
    h: &Headers<'_>,
    protected: &[u8],
    wrapped: &[u8],
    key: &DecryptionKey<'_>,
    crypto: &C,
) -> Option<[u8; 16]> {
    let kid_ok = |mine: Option<&[u8]>| match (mine, h.kid) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let kek = match (alg, key) {
        (ALG_A128KW, DecryptionKey::Aes128Kw { kid, kek }) if kid_ok(*kid) => **kek,
        (ALG_ECDH_ES_A128KW, DecryptionKey::EcdhP256 { kid, private }) if kid_ok(*kid) => {
            let (x, y) = h.ephemeral?;
            let z = crypto.ecdh_p256(private, x, y)?;
            ecdh_kek(crypto, h.salt.unwrap_or(&[]), &z, protected)
        }
        _ => return None,
    };
    unwrap_a128kw(&kek, wrapped)
}

/// The initial value RFC 3394 section 2.2.3.1 wraps with; unwrapping checks it.
const KW_IV: [u8; 8] = [0xA6; 8];

/// AES key unwrap (RFC 3394 section 2.2.2, index-based form) of a 16-byte CEK: `None` when
/// the integrity check fails (a wrong KEK). In its own frame (the key schedule).
#[inline(never)]
pub(crate) fn unwrap_a128kw(kek: &[u8; 16], wrapped: &[u8]) -> Option<[u8; 16]> {
    if wrapped.len() != 24 {
        return None;
    }
    let aes = Aes128Inverse::new(kek);
    let mut a = [0u8; 8];
    a.copy_from_slice(wrapped.get(..8)?);
    let mut r = [[0u8; 8]; 2];
    for (i, r) in r.iter_mut().enumerate() {
        r.copy_from_slice(wrapped.get(8 + 8 * i..16 + 8 * i)?);
    }
    for j in (0..6u64).rev() {
        for i in (0..2usize).rev() {
            let t = 2 * j + i as u64 + 1;
            let mut b = [0u8; 16];
            for (o, (x, y)) in b.iter_mut().zip(a.iter().zip(t.to_be_bytes())) {
                *o = x ^ y;
            }
            b[8..].copy_from_slice(&r[i]);
            aes.decrypt_block(&mut b);
            a.copy_from_slice(&b[..8]);
            r[i].copy_from_slice(&b[8..]);
        }
    }
    if !super::crypto::ct_eq(&a, &KW_IV) {
        return None;
    }
    let mut cek = [0u8; 16];
    cek[..8].copy_from_slice(&r[0]);
    cek[8..].copy_from_slice(&r[1]);
    Some(cek)
}

/// Feeds the COSE_KDF_Context (RFC 9053 section 5.2, draft section 4.2.4) for A128KW into `f`:
/// `[-3, [nil, nil, nil], [nil, nil, nil], [128, protected, 'SUIT Payload Encryption']]`.
fn kdf_context(protected: &[u8], f: &mut impl FnMut(&[u8])) {
    let mut head = [0u8; 9];
    f(&[
        0x84, 0x22, 0x83, 0xf6, 0xf6, 0xf6, 0x83, 0xf6, 0xf6, 0xf6, 0x83, 0x18, 0x80,
    ]);
    let n = encode_head(MAJOR_BSTR, protected.len() as u64, &mut head);
    f(head.get(..n).unwrap_or(&[]));
    f(protected);
    let n = encode_head(MAJOR_BSTR, KDF_OTHER.len() as u64, &mut head);
    f(head.get(..n).unwrap_or(&[]));
    f(KDF_OTHER);
}

/// The A128KW key-encryption key of ECDH-ES+A128KW: HKDF-SHA-256 (RFC 5869) of the shared
/// secret `z`, with the COSE_KDF_Context of the recipient's `protected` bucket as info. In
/// its own frame (two HMAC states).
#[inline(never)]
pub(crate) fn ecdh_kek<C: CryptoBackend>(
    crypto: &C,
    salt: &[u8],
    z: &[u8],
    protected: &[u8],
) -> [u8; 16] {
    let mut kek = [0u8; 16];
    hkdf_sha256(crypto, salt, z, protected, &mut kek);
    kek
}

/// HKDF-SHA-256 (RFC 5869) with the COSE_KDF_Context as info, for 16 bytes of output.
fn hkdf_sha256<C: CryptoBackend>(
    crypto: &C,
    salt: &[u8],
    ikm: &[u8],
    protected: &[u8],
    out: &mut [u8; 16],
) {
    // Extract: PRK = HMAC(salt, IKM); an absent salt is HashLen zeros (RFC 5869 section 2.2).
    let zeros = [0u8; 32];
    let salt = if salt.is_empty() { &zeros[..] } else { salt };
    let mut mac = HmacSha256::new(salt, || crypto.sha256());
    mac.update(ikm);
    let prk = mac.finish(crypto.sha256());
    // Expand: T(1) = HMAC(PRK, info || 0x01) is enough for 16 bytes.
    let mut mac = HmacSha256::new(&prk, || crypto.sha256());
    kdf_context(protected, &mut |d| mac.update(d));
    mac.update(&[1]);
    let t1 = mac.finish(crypto.sha256());
    out.copy_from_slice(&t1[..16]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3394 section 4.1: 128 bits of key data wrapped with a 128-bit KEK.
    #[test]
    fn unwrap_matches_rfc3394_and_refuses_a_wrong_kek_or_length() {
        let kek: [u8; 16] = core::array::from_fn(|i| i as u8);
        let key: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let wrapped = [
            0x1F, 0xA6, 0x8B, 0x0A, 0x81, 0x12, 0xB4, 0x47, 0xAE, 0xF3, 0x4B, 0xD8, 0xFB, 0x5A,
            0x7B, 0x82, 0x9D, 0x3E, 0x86, 0x23, 0x71, 0xD2, 0xCF, 0xE5,
        ];
        assert_eq!(unwrap_a128kw(&kek, &wrapped), Some(key));
        let mut other = kek;
        other[15] ^= 1;
        assert_eq!(unwrap_a128kw(&other, &wrapped), None);
        for i in 0..wrapped.len() {
            let mut bad = wrapped;
            bad[i] ^= 0x80;
            assert_eq!(unwrap_a128kw(&kek, &bad), None, "byte {i}");
        }
        assert_eq!(unwrap_a128kw(&kek, &wrapped[..16]), None);
        assert_eq!(
            unwrap_a128kw(&kek, &[wrapped.as_slice(), &[0; 8]].concat()),
            None
        );
    }
}
