//! The cryptography the verifier needs, behind a trait so a board can plug in its hardware
//! accelerator and a host its fastest library; [`Software`] (p256 + sha2) is the default that
//! runs anywhere without std or alloc.

use sha2::Digest as _;

/// An incremental SHA-256 computation.
pub trait Sha256Hasher {
    /// Absorbs more bytes.
    fn update(&mut self, data: &[u8]);
    /// Returns the 32-byte digest.
    fn finish(self) -> [u8; 32];
}

/// The primitives a SUIT verifier needs (profiles suit-sha256-esp256, suit-sha256-ed25519 and
/// HMAC-256).
pub trait CryptoBackend {
    /// The hasher this backend produces.
    type Hasher: Sha256Hasher;

    /// Starts a SHA-256 computation.
    fn sha256(&self) -> Self::Hasher;

    /// Verifies an ECDSA P-256 signature (`r || s`, 64 bytes) over a SHA-256 digest with a
    /// public key in SEC1 encoding. `false` for any malformed key or signature.
    fn verify_p256(&self, public_sec1: &[u8], digest: &[u8; 32], signature: &[u8]) -> bool;

    /// Verifies an Ed25519 signature (RFC 8032 PureEdDSA, strict: small-order and
    /// non-canonical points refused) over `message` with a 32-byte public key. `false` for
    /// any malformed key or signature. The default is the portable software implementation.
    #[cfg(feature = "ed25519")]
    fn verify_ed25519(&self, public: &[u8], message: &[u8], signature: &[u8]) -> bool {
        software_ed25519(public, message, signature)
    }

    /// ECDH on P-256 with the device's private key and a peer's affine point: the shared
    /// secret (x coordinate), `None` for an invalid point. Default: portable software.
    #[cfg(feature = "encryption")]
    fn ecdh_p256(&self, private: &[u8; 32], x: &[u8], y: &[u8]) -> Option<[u8; 32]> {
        software_ecdh_p256(private, x, y)
    }
}

/// ECDH on P-256 (SEC 1 v2 section 3.3.1): the x coordinate of `private * (x, y)`, `None`
/// for a point off the curve or a zero result. The scalar multiplication is the library's
/// constant-time one (the scalar is the device's private key), in its own frame.
#[cfg(feature = "encryption")]
#[inline(never)]
pub fn software_ecdh_p256(private: &[u8; 32], x: &[u8], y: &[u8]) -> Option<[u8; 32]> {
    use p256::elliptic_curve::point::AffineCoordinates;
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1.get_mut(1..33)?
        .copy_from_slice(x.get(..32).filter(|_| x.len() == 32)?);
    sec1.get_mut(33..65)?
        .copy_from_slice(y.get(..32).filter(|_| y.len() == 32)?);
    let q = decode_key(&sec1)?.into();
    let d: p256::Scalar = Option::from(p256::NonZeroScalar::from_repr((*private).into()))
        .map(|d: p256::NonZeroScalar| *d)?;
    let shared = scalar_mul(&q, &d).to_affine();
    if bool::from(shared.is_identity()) {
        return None;
    }
    Some(shared.x().into())
}

/// Ed25519 verification with `ed25519-dalek` (no precomputed tables: small code, no alloc).
#[cfg(feature = "ed25519")]
#[inline(never)] // own stack frame: keeps peak stack the max, not the sum (README)
pub fn software_ed25519(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(public), Ok(signature)) = (
        <&[u8; 32]>::try_from(public),
        ed25519_dalek::Signature::from_slice(signature),
    ) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(public)
        .is_ok_and(|key| key.verify_strict(message, &signature).is_ok())
}

/// Portable software backend: RustCrypto `sha2` and `p256`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Software;

/// [`Sha256Hasher`] of the [`Software`] backend.
#[derive(Clone, Default)]
pub struct SoftwareSha256(sha2::Sha256);

impl Sha256Hasher for SoftwareSha256 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl CryptoBackend for Software {
    type Hasher = SoftwareSha256;

    fn sha256(&self) -> SoftwareSha256 {
        SoftwareSha256::default()
    }

    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum (README)
    fn verify_p256(&self, public_sec1: &[u8], digest: &[u8; 32], signature: &[u8]) -> bool {
        compact_verify(public_sec1, digest, signature).unwrap_or(false)
    }
}

/// ECDSA P-256 verification (SEC 1 v2, 4.1.4): `u1*G + u2*Q` in one pass over the bits of
/// both scalars (Shamir's trick, Hankerson-Menezes-Vanstone, Guide to ECC, algorithm 3.48) with
/// the three-point affine table {G, Q, G+Q} and the library's complete addition formulas, so no
/// input needs a special case. It runs in variable time: every input of a verification is
/// public (key, digest, signature). The library's `verify_prehash` uses an interleaved
/// width-5 wNAF over both points, faster but about 4.6 KiB of stack on Cortex-M; this keeps
/// the curve arithmetic near 1 KiB (measured in README) and is faster than two separate
/// constant-time multiplications. Hosts that want speed plug in another [`CryptoBackend`].
fn compact_verify(public_sec1: &[u8], digest: &[u8; 32], signature: &[u8]) -> Option<bool> {
    use p256::elliptic_curve::ops::Reduce;
    use p256::{FieldBytes, Scalar};

    let q = decode_key(public_sec1)?;
    let sig = p256::ecdsa::Signature::from_slice(signature).ok()?;
    let (r, s) = sig.split_scalars();
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest));
    let s_inv = invert(&s)?;
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let x = affine_x(&double_mul(&u1, &q, &u2));
    Some(*r == <Scalar as Reduce<FieldBytes>>::reduce(&x))
}

/// The P-256 base field (p256 does not export its type by name).
type FieldElement = <p256::NistP256 as p256::elliptic_curve::hazmat::FieldArithmetic>::FieldElement;

/// `(p + 1) / 4` for the P-256 prime, big-endian: since `p = 3 mod 4`, a square root of `a`
/// is `a^((p + 1) / 4)` (SEC 1 v2 section 2.3.4, step 2.4.1).
const SQRT_EXPONENT: [u8; 32] = [
    0x3f, 0xff, 0xff, 0xff, 0xc0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0,
];

/// A SEC1 public key (SEC 1 v2 section 2.3.4: 65-byte uncompressed or 33-byte compressed) as
/// a curve point, `None` when it is not one: in its own frame. Both forms end in the
/// library's on-curve check of `(x, y)`. The library's own decoding decompresses even an
/// uncompressed key (its square root is an unrolled addition chain, about 1.8 KiB of stack
/// on Cortex-M, under the signature check); here the square root of a compressed key is a
/// square-and-multiply loop over the public exponent (variable time: the key is public).
#[inline(never)]
fn decode_key(public_sec1: &[u8]) -> Option<p256::AffinePoint> {
    use p256::elliptic_curve::ff::PrimeField;
    use p256::elliptic_curve::point::AffineCoordinates;
    use p256::FieldBytes;
    let x = FieldBytes::try_from(public_sec1.get(1..33)?).ok()?;
    let y = match (public_sec1.first(), public_sec1.len()) {
        (Some(0x04), 65) => FieldBytes::try_from(public_sec1.get(33..65)?).ok()?,
        (Some(&tag @ (0x02 | 0x03)), 33) => {
            let fx = Option::<FieldElement>::from(FieldElement::from_repr(x))?;
            let alpha = fx.square() * fx - fx.double() - fx + b_coefficient()?;
            let beta = sqrt_candidate(&alpha);
            let odd = beta.to_repr().last().is_some_and(|b| b & 1 == 1);
            let y = if odd == (tag == 0x03) { beta } else { -beta };
            y.to_repr()
        }
        _ => return None,
    };
    Option::from(p256::AffinePoint::from_coordinates(&x, &y))
}

/// `a^((p + 1) / 4)`, a square root of `a` when `a` has one: square-and-multiply, most
/// significant bit first (variable time; only public keys come here).
#[inline(never)]
fn sqrt_candidate(a: &FieldElement) -> FieldElement {
    let mut r = FieldElement::ONE;
    for byte in SQRT_EXPONENT {
        for bit in (0..8).rev() {
            r = r.square();
            if (byte >> bit) & 1 == 1 {
                r *= a;
            }
        }
    }
    r
}

/// The curve coefficient `b` of P-256 (SEC 2 v2 section 2.4.2), `y^2 = x^3 - 3x + b`.
fn b_coefficient() -> Option<FieldElement> {
    use p256::elliptic_curve::ff::PrimeField;
    const B: [u8; 32] = [
        0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86,
        0xbc, 0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2,
        0x60, 0x4b,
    ];
    Option::from(FieldElement::from_repr(B.into()))
}

/// `s^-1 mod n` in its own frame (the safegcd inversion has large temporaries).
#[inline(never)]
fn invert(s: &p256::Scalar) -> Option<p256::Scalar> {
    Option::from(s.invert_vartime())
}

/// The affine x coordinate of `p` (zero for the identity), in its own frame (field inversion).
#[inline(never)]
fn affine_x(p: &p256::ProjectivePoint) -> p256::FieldBytes {
    use p256::elliptic_curve::point::AffineCoordinates;
    p.to_affine().x()
}

/// `u1*G + u2*q`, most significant bit first: double, then add the table entry the two bits
/// select (none, G, q or G+q).
#[inline(never)]
fn double_mul(
    u1: &p256::Scalar,
    q: &p256::AffinePoint,
    u2: &p256::Scalar,
) -> p256::ProjectivePoint {
    let table = [p256::AffinePoint::GENERATOR, *q, sum_affine(q)];
    let (b1, b2) = (u1.to_bytes(), u2.to_bytes());
    let mut acc = p256::ProjectivePoint::IDENTITY;
    for (x, y) in b1.iter().zip(b2.iter()) {
        for bit in (0..8).rev() {
            double(&mut acc);
            let pick = ((x >> bit) & 1) | (((y >> bit) & 1) << 1);
            if let Some(entry) = table.get(usize::from(pick).wrapping_sub(1)) {
                add(&mut acc, entry);
            }
        }
    }
    acc
}

/// `G + q` in affine form (the identity when `q = -G`), in its own frame (field inversion).
#[inline(never)]
fn sum_affine(q: &p256::AffinePoint) -> p256::AffinePoint {
    (p256::ProjectivePoint::GENERATOR + q).to_affine()
}

/// `acc = 2 * acc`, in its own frame: the formula's temporaries are not under the table.
#[inline(never)]
fn double(acc: &mut p256::ProjectivePoint) {
    use p256::elliptic_curve::ops::Double;
    acc.double_in_place();
}

/// `acc = acc + p` (mixed addition, complete), in its own frame like [`double`].
#[inline(never)]
fn add(acc: &mut p256::ProjectivePoint, p: &p256::AffinePoint) {
    *acc += p;
}

/// `k * p` for a private scalar `k` (ECDH): a Montgomery ladder (Joye and Yen, "The
/// Montgomery Powering Ladder", CHES 2002) over all 256 bits with constant-time conditional
/// swaps and the library's complete addition formulas, so time and memory access do not
/// depend on `k`. Two points of state instead of the library's window table of sixteen
/// (about 1.2 KiB of stack on Cortex-M); one ECDH per package pays its extra additions.
#[cfg(feature = "encryption")]
#[inline(never)]
fn scalar_mul(p: &p256::ProjectivePoint, k: &p256::Scalar) -> p256::ProjectivePoint {
    use p256::elliptic_curve::subtle::{Choice, ConditionallySelectable};
    let bytes = k.to_bytes();
    let (mut r0, mut r1) = (p256::ProjectivePoint::IDENTITY, *p);
    for byte in bytes.iter() {
        for shift in (0..8).rev() {
            let bit = Choice::from((byte >> shift) & 1);
            p256::ProjectivePoint::conditional_swap(&mut r0, &mut r1, bit);
            add_projective(&mut r1, &r0);
            double(&mut r0);
            p256::ProjectivePoint::conditional_swap(&mut r0, &mut r1, bit);
        }
    }
    r0
}

/// `acc = acc + p` (complete formulas), in its own frame like [`double`].
#[cfg(feature = "encryption")]
#[inline(never)]
fn add_projective(acc: &mut p256::ProjectivePoint, p: &p256::ProjectivePoint) {
    *acc += p;
}

/// HMAC-SHA-256 (RFC 2104) over any backend's hasher; keys longer than a block are hashed.
/// A clone taken right after [`HmacSha256::new`] is a keyed MAC ready for another message.
#[derive(Clone)]
pub struct HmacSha256<H: Sha256Hasher> {
    inner: H,
    outer_key: [u8; 64],
}

impl<H: Sha256Hasher> HmacSha256<H> {
    /// Starts a MAC with `key`; `new_hasher` yields fresh hashers from the same backend.
    pub fn new(key: &[u8], mut new_hasher: impl FnMut() -> H) -> Self {
        let mut block = [0u8; 64];
        if key.len() > block.len() {
            let mut h = new_hasher();
            h.update(key);
            let d = h.finish();
            block[..32].copy_from_slice(&d);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner_key = block;
        let mut outer_key = block;
        for (i, o) in inner_key.iter_mut().zip(outer_key.iter_mut()) {
            *i ^= 0x36;
            *o ^= 0x5c;
        }
        let mut inner = new_hasher();
        inner.update(&inner_key);
        Self { inner, outer_key }
    }

    /// Absorbs message bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// Returns the tag; `outer` must be a fresh hasher from the same backend.
    pub fn finish(self, mut outer: H) -> [u8; 32] {
        let inner = self.inner.finish();
        outer.update(&self.outer_key);
        outer.update(&inner);
        outer.finish()
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn hex(s: &str) -> [u8; 32] {
        bytes(s)
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let b = Software;
        let mut mac = HmacSha256::new(b"Jefe", || b.sha256());
        mac.update(b"what do ya want for nothing?");
        let tag = mac.finish(b.sha256());
        assert_eq!(
            tag,
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn compact_verification_agrees_with_the_library_verifier() {
        use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
        // Private keys 1 (Q = G: the table's G+Q is a doubling) and n - 1 (Q = -G: G+Q is the
        // identity), then keys of 24 repeated bytes.
        let mut one = [0u8; 32];
        one[31] = 1;
        let n_minus_1 =
            bytes::<32>("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550");
        let keys = [one, n_minus_1]
            .into_iter()
            .chain((1..=24u8).map(|b| [b; 32]));
        for (i, secret) in keys.enumerate() {
            let seed = i as u8 + 1;
            let key = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
            let public = key.verifying_key().to_sec1_point(seed.is_multiple_of(2));
            let mut digest = [seed.wrapping_mul(37); 32];
            digest[0] = seed;
            let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
            let sig = sig.to_bytes();
            let library = |d: &[u8; 32]| {
                let s = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                key.verifying_key().verify_prehash(d, &s).is_ok()
            };
            assert!(Software.verify_p256(public.as_bytes(), &digest, &sig));
            assert!(library(&digest));
            let mut other = digest;
            other[31] ^= 1;
            assert!(!Software.verify_p256(public.as_bytes(), &other, &sig));
            assert!(!library(&other));
            let mut bad = sig;
            bad[63] ^= 1;
            assert!(!Software.verify_p256(public.as_bytes(), &digest, &bad));
            assert!(!Software.verify_p256(&public.as_bytes()[1..], &digest, &sig));
        }
    }

    #[test]
    fn key_decoding_agrees_with_the_library_and_refuses_points_off_the_curve() {
        for b in 1..=40u8 {
            let key = p256::ecdsa::SigningKey::from_slice(&[b; 32]).unwrap();
            for compress in [false, true] {
                let sec1 = key.verifying_key().to_sec1_point(compress);
                let library = p256::PublicKey::from_sec1_bytes(sec1.as_bytes()).unwrap();
                assert_eq!(decode_key(sec1.as_bytes()), Some(*library.as_affine()));
                // Damaged x: on the curve with another y, or no point at all; never the key.
                let mut bad = sec1.as_bytes().to_vec();
                bad[5] ^= 0x10;
                assert_eq!(
                    decode_key(&bad).is_some(),
                    p256::PublicKey::from_sec1_bytes(&bad).is_ok()
                );
                assert_ne!(decode_key(&bad), Some(*library.as_affine()));
            }
        }
        // Wrong tags and lengths.
        let sec1 = p256::ecdsa::SigningKey::from_slice(&[7; 32])
            .unwrap()
            .verifying_key()
            .to_sec1_point(true);
        let mut tag = sec1.as_bytes().to_vec();
        tag[0] = 0x04;
        assert_eq!(decode_key(&tag), None);
        assert_eq!(decode_key(&sec1.as_bytes()[..32]), None);
        assert_eq!(decode_key(&[]), None);
        // x >= p is not a field element.
        let mut big = [0xffu8; 33];
        big[0] = 0x02;
        assert_eq!(decode_key(&big), None);
    }

    /// The ladder against the library's multiplication: scalars 1, 2, n - 1 (the result is
    /// -P), and scalars with every byte value, on several points.
    #[cfg(feature = "encryption")]
    #[test]
    fn ladder_agrees_with_the_library_multiplication() {
        use p256::elliptic_curve::ops::Reduce;
        let mut scalars = [p256::Scalar::ONE; 9];
        scalars[1] = p256::Scalar::ONE.double();
        scalars[2] = -p256::Scalar::ONE;
        for (k, b) in scalars[3..]
            .iter_mut()
            .zip([0x01u8, 0x5a, 0x80, 0xa5, 0xfe, 0xff])
        {
            let mut bytes = [b; 32];
            bytes[31] ^= 0x33;
            *k = <p256::Scalar as Reduce<p256::FieldBytes>>::reduce(&bytes.into());
        }
        for point in 1..=4u8 {
            let p = p256::ProjectivePoint::GENERATOR * p256::Scalar::from(u64::from(point) * 7919);
            for k in &scalars {
                assert_eq!(scalar_mul(&p, k).to_affine(), (p * k).to_affine());
            }
        }
    }

    /// RFC 8032 section 7.1, TEST 2 (one-byte message) and TEST 1 (empty message).
    #[cfg(feature = "ed25519")]
    #[test]
    fn ed25519_matches_rfc8032_test_vectors() {
        let cases: [(&str, &[u8], &str); 2] = [
            (
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                &[0x72],
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                &[],
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                 5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
        ];
        for (public, message, signature) in cases {
            let public: [u8; 32] = bytes(public);
            let signature: [u8; 64] = bytes(&signature.replace(' ', ""));
            assert!(Software.verify_ed25519(&public, message, &signature));
            let mut bad = signature;
            bad[5] ^= 1;
            assert!(!Software.verify_ed25519(&public, message, &bad));
            assert!(!Software.verify_ed25519(&public, b"other", &signature));
            assert!(!Software.verify_ed25519(&public[..31], message, &signature));
            assert!(!Software.verify_ed25519(&public, message, &signature[..63]));
        }
    }

    #[test]
    fn sha256_matches_known_answer() {
        let mut h = Software.sha256();
        h.update(b"abc");
        assert_eq!(
            h.finish(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
