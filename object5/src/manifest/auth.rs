//! The authentication wrapper (section 5.2, 8.3): a SUIT_Digest of the manifest and COSE blocks
//! that sign or MAC that digest (detached payload). Checked before the manifest is parsed.
//! Signatures: ES256/ESP256 (P-256) and, with the `ed25519` feature, EdDSA/Ed25519; MACs:
//! HMAC 256/256.

use super::cbor::{encode_head, Reader, MAJOR_BSTR, MAJOR_TAG};
use super::crypto::{ct_eq, CryptoBackend, HmacSha256, Sha256Hasher};
use super::SuitError;

/// COSE algorithm ids the verifier accepts.
const ALG_ES256: i64 = -7;
const ALG_ESP256: i64 = -9;
const ALG_HMAC256: i64 = 5;
/// EdDSA (-8, RFC 9053) and the fully specified Ed25519 (-19, RFC 9864), which the SUIT MTI
/// profile suit-sha256-ed25519-ecdh-a128ctr names.
#[cfg(feature = "ed25519")]
const ALG_EDDSA: i64 = -8;
#[cfg(feature = "ed25519")]
const ALG_ED25519: i64 = -19;
/// COSE_Sign1 / COSE_Mac0 tags.
const TAG_SIGN1: u64 = 18;
const TAG_MAC0: u64 = 17;
/// SUIT digest algorithm SHA-256.
pub(crate) const DIGEST_SHA256: i64 = -16;

/// A key the device trusts to authorise firmware. Several may be configured at once so keys
/// can rotate across firmware generations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustAnchor<'k> {
    /// ECDSA P-256 public key, SEC1 encoded (65-byte uncompressed or 33-byte compressed);
    /// accepted with COSE algorithms ES256 (-7) and ESP256 (-9).
    P256(&'k [u8]),
    /// HMAC-SHA-256 shared secret for COSE_Mac0 algorithm HMAC 256/256 (5).
    Hmac256(&'k [u8]),
    /// Ed25519 public key (32 bytes); accepted with COSE algorithms EdDSA (-8) and Ed25519
    /// (-19) when the `ed25519` feature is built in.
    Ed25519(&'k [u8]),
}

/// Parses an encoded SUIT_Digest `[alg, bytes, *ext]`; only SHA-256 is implemented.
pub(crate) fn parse_digest(encoded: &[u8]) -> Result<[u8; 32], SuitError> {
    let mut r = Reader::new(encoded);
    let n = r.array()?;
    if n < 2 {
        return Err(SuitError::Malformed);
    }
    let alg = r.int()?;
    let bytes = r.bytes()?;
    for _ in 2..n {
        r.skip()?;
    }
    if !r.is_empty() {
        return Err(SuitError::Malformed);
    }
    if alg != DIGEST_SHA256 {
        return Err(SuitError::Unsupported);
    }
    bytes.try_into().map_err(|_| SuitError::Malformed)
}

/// Feeds the COSE Sig_structure / MAC_structure `[context, protected, h'', payload]` into `h`
/// without building it in memory.
fn absorb_to_be_signed(
    h: &mut impl FnMut(&[u8]),
    context: &[u8],
    protected: &[u8],
    payload: &[u8],
) {
    let mut head = [0u8; 9];
    h(&[0x84]);
    let n = encode_head(3, context.len() as u64, &mut head);
    h(head.get(..n).unwrap_or(&[]));
    h(context);
    let n = encode_head(MAJOR_BSTR, protected.len() as u64, &mut head);
    h(head.get(..n).unwrap_or(&[]));
    h(protected);
    h(&[0x40]);
    let n = encode_head(MAJOR_BSTR, payload.len() as u64, &mut head);
    h(head.get(..n).unwrap_or(&[]));
    h(payload);
}

/// Reads the protected header bucket and returns its `alg`.
fn protected_alg(protected: &[u8]) -> Result<i64, SuitError> {
    let mut r = Reader::new(protected);
    let pairs = r.map()?;
    let mut alg = None;
    for _ in 0..pairs {
        let key = r.int()?;
        if key == 1 {
            if alg.is_some() {
                return Err(SuitError::Malformed);
            }
            alg = Some(r.int()?);
        } else {
            r.skip()?;
        }
    }
    if !r.is_empty() {
        return Err(SuitError::Malformed);
    }
    // MTI: the algorithm MUST be in the protected bucket.
    alg.ok_or(SuitError::UnsupportedAlgorithm)
}

/// One authentication block, parsed and ready to check against the anchors.
enum Block<'a> {
    /// COSE_Sign1 ES256/ESP256: the SHA-256 of the Sig_structure and the signature `r || s`.
    P256 { tbs: [u8; 32], sig: &'a [u8] },
    /// COSE_Sign1 EdDSA/Ed25519 (signs the Sig_structure itself, built when checked).
    #[cfg(feature = "ed25519")]
    Ed25519 { protected: &'a [u8], sig: &'a [u8] },
    /// COSE_Mac0 HMAC 256/256.
    Mac0 { protected: &'a [u8], tag: &'a [u8] },
    /// An algorithm or structure this verifier does not implement.
    Unsupported,
}

/// Parses one block of the wrapper (and for P-256 hashes its Sig_structure), in a frame of
/// its own that returns before any signature is checked: the curve arithmetic then runs
/// directly under [`verify_wrapper`], not under the parse frames too.
#[inline(never)]
fn parse_block<'a, C: CryptoBackend>(
    block: &'a [u8],
    digest_encoded: &[u8],
    crypto: &C,
) -> Result<Block<'a>, SuitError> {
    let mut r = Reader::new(block);
    if r.peek_major()? != MAJOR_TAG {
        return Err(SuitError::Malformed);
    }
    let tag = r.tag()?;
    if tag != TAG_SIGN1 && tag != TAG_MAC0 {
        // COSE_Sign / COSE_Mac (several recipients) are not implemented.
        r.skip()?;
        return if r.is_empty() {
            Ok(Block::Unsupported)
        } else {
            Err(SuitError::Malformed)
        };
    }
    if r.array()? != 4 {
        return Err(SuitError::Malformed);
    }
    let protected = r.bytes()?;
    if r.peek_major()? != super::cbor::MAJOR_MAP {
        return Err(SuitError::Malformed);
    }
    r.skip()?; // unprotected bucket: nothing in it is trusted
               // Detached payload (nil); an attached copy must be the digest itself.
    if !r.null()? && r.bytes()? != digest_encoded {
        return Err(SuitError::Malformed);
    }
    let sig = r.bytes()?;
    if !r.is_empty() {
        return Err(SuitError::Malformed);
    }
    let alg = protected_alg(protected)?;
    match (tag, alg) {
        (TAG_SIGN1, ALG_ES256 | ALG_ESP256) => {
            if sig.len() != 64 {
                return Err(SuitError::Malformed);
            }
            let mut h = crypto.sha256();
            absorb_to_be_signed(
                &mut |d| h.update(d),
                b"Signature1",
                protected,
                digest_encoded,
            );
            Ok(Block::P256 {
                tbs: h.finish(),
                sig,
            })
        }
        #[cfg(feature = "ed25519")]
        (TAG_SIGN1, ALG_EDDSA | ALG_ED25519) => {
            if sig.len() != 64 {
                return Err(SuitError::Malformed);
            }
            Ok(Block::Ed25519 { protected, sig })
        }
        (TAG_MAC0, ALG_HMAC256) => {
            if sig.len() != 32 {
                return Err(SuitError::Malformed);
            }
            Ok(Block::Mac0 {
                protected,
                tag: sig,
            })
        }
        _ => Ok(Block::Unsupported),
    }
}

/// The index of the first anchor a parsed block verifies with; `Ok(None)` when none does,
/// `Err(())` when the block's algorithm is not implemented.
fn check_block<C: CryptoBackend>(
    block: &Block<'_>,
    digest_encoded: &[u8],
    anchors: &[TrustAnchor<'_>],
    crypto: &C,
) -> Result<Option<usize>, ()> {
    match *block {
        Block::P256 { ref tbs, sig } => Ok(anchors.iter().position(
            |anchor| matches!(anchor, TrustAnchor::P256(key) if crypto.verify_p256(key, tbs, sig)),
        )),
        #[cfg(feature = "ed25519")]
        Block::Ed25519 { protected, sig } => Ok(check_sign1_ed25519(
            protected,
            digest_encoded,
            sig,
            anchors,
            crypto,
        )),
        Block::Mac0 { protected, tag } => {
            Ok(check_mac0(protected, digest_encoded, tag, anchors, crypto))
        }
        Block::Unsupported => Err(()),
    }
}

/// Longest Sig_structure an Ed25519 block may have: PureEdDSA signs the whole message, which
/// is built on the stack (a SHA-256 SUIT_Digest and a protected bucket with `alg` and a few
/// more parameters fit; a larger one fails to verify).
#[cfg(feature = "ed25519")]
const ED25519_TBS_MAX: usize = 192;

/// COSE_Sign1 EdDSA/Ed25519 against every Ed25519 anchor (RFC 9053 section 2.2: the signature
/// is over the Sig_structure itself, not a hash of it).
#[cfg(feature = "ed25519")]
#[inline(never)]
fn check_sign1_ed25519<C: CryptoBackend>(
    protected: &[u8],
    digest_encoded: &[u8],
    sig: &[u8],
    anchors: &[TrustAnchor<'_>],
    crypto: &C,
) -> Option<usize> {
    let mut tbs = [0u8; ED25519_TBS_MAX];
    let mut len = 0usize;
    let mut fits = true;
    absorb_to_be_signed(
        &mut |d| match tbs.get_mut(len..len + d.len()) {
            Some(dst) => {
                dst.copy_from_slice(d);
                len += d.len();
            }
            None => fits = false,
        },
        b"Signature1",
        protected,
        digest_encoded,
    );
    let tbs = tbs.get(..len).filter(|_| fits)?;
    anchors.iter().position(
        |anchor| matches!(anchor, TrustAnchor::Ed25519(key) if crypto.verify_ed25519(key, tbs, sig)),
    )
}

/// COSE_Mac0 HMAC 256/256 against every HMAC anchor (tag compared in constant time).
#[inline(never)]
fn check_mac0<C: CryptoBackend>(
    protected: &[u8],
    digest_encoded: &[u8],
    tag: &[u8],
    anchors: &[TrustAnchor<'_>],
    crypto: &C,
) -> Option<usize> {
    anchors.iter().position(|anchor| match anchor {
        TrustAnchor::Hmac256(key) => {
            let mut mac = HmacSha256::new(key, || crypto.sha256());
            absorb_to_be_signed(&mut |d| mac.update(d), b"MAC0", protected, digest_encoded);
            ct_eq(&mac.finish(crypto.sha256()), tag)
        }
        _ => false,
    })
}

/// Verifies the authentication wrapper against `anchors` and then the manifest against the
/// authenticated digest. Returns the index of the anchor that verified.
///
/// `manifest_item` is the manifest bstr as encoded in the envelope, header included.
#[inline(never)] // own stack frame: keeps peak stack the max, not the sum (README)
pub fn verify_wrapper<C: CryptoBackend>(
    auth: &[u8],
    manifest_item: &[u8],
    anchors: &[TrustAnchor<'_>],
    crypto: &C,
) -> Result<usize, SuitError> {
    let mut r = Reader::new(auth);
    let blocks = r.array()?;
    let digest_encoded = r.bytes()?;
    let digest = match parse_digest(digest_encoded) {
        Err(SuitError::Unsupported) => return Err(SuitError::UnsupportedAlgorithm),
        other => other?,
    };
    if blocks < 2 {
        return Err(SuitError::Unauthenticated);
    }
    // The cheap check first: a manifest that does not match the digest is refused without
    // spending a signature verification on it. Both must pass before the manifest is parsed.
    if !ct_eq(&sha256(crypto, manifest_item), &digest) {
        return Err(SuitError::ManifestDigestMismatch);
    }
    let mut verified = None;
    let mut any_supported = false;
    for _ in 1..blocks {
        let block = parse_block(r.bytes()?, digest_encoded, crypto)?;
        if let Ok(found) = check_block(&block, digest_encoded, anchors, crypto) {
            any_supported = true;
            if let (None, Some(i)) = (verified, found) {
                verified = Some(i);
            }
        }
    }
    if !r.is_empty() {
        return Err(SuitError::Malformed);
    }
    let anchor = match (verified, any_supported) {
        (Some(i), _) => i,
        (None, true) => return Err(SuitError::BadSignature),
        (None, false) => return Err(SuitError::UnsupportedAlgorithm),
    };
    Ok(anchor)
}

/// SHA-256 of `bytes` with the caller's backend.
pub(crate) fn sha256<C: CryptoBackend>(crypto: &C, bytes: &[u8]) -> [u8; 32] {
    let mut h = crypto.sha256();
    h.update(bytes);
    h.finish()
}
