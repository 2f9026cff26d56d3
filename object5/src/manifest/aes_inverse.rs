//! AES-128 decryption (FIPS 197 section 5.3, the inverse cipher) for the one place the device
//! needs it: unwrapping a content key with a pre-shared KEK (RFC 3394, A128KW), a dozen block
//! decryptions per package. The `aes` crate's fixsliced inverse cipher costs about 6.5 KB of
//! code on Cortex-M for that; this is a few hundred bytes and as free of secret-dependent
//! branches and memory indices: the S-box is computed, not looked up (inversion in GF(2^8) as
//! `x^254`, then the affine map), so timing does not depend on the KEK or the data.
//! Encryption (counter mode, GCM) stays with the `aes` crate's fast fixsliced cipher.

/// Multiplication in GF(2^8) modulo `x^8 + x^4 + x^3 + x + 1` (FIPS 197 section 4.2), in
/// constant time.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// The multiplicative inverse, `x^254` (0 maps to 0), section 5.1.1.
fn inverse(x: u8) -> u8 {
    // x^254 = x^2 * x^4 * x^8 * x^16 * x^32 * x^64 * x^128.
    let mut power = mul(x, x);
    let mut result = power;
    for _ in 0..6 {
        power = mul(power, power);
        result = mul(result, power);
    }
    result
}

/// SubBytes' S-box (section 5.1.1): the inverse, then the affine transformation.
fn sub(x: u8) -> u8 {
    let b = inverse(x);
    b ^ b.rotate_left(1) ^ b.rotate_left(2) ^ b.rotate_left(3) ^ b.rotate_left(4) ^ 0x63
}

/// InvSubBytes' S-box (section 5.3.2): the inverse affine transformation, then the inverse.
fn inv_sub(x: u8) -> u8 {
    inverse(x.rotate_left(1) ^ x.rotate_left(3) ^ x.rotate_left(6) ^ 0x05)
}

/// An AES-128 key expanded for decryption (11 round keys, section 5.2).
pub(crate) struct Aes128Inverse {
    round_keys: [[u8; 16]; 11],
}

impl Aes128Inverse {
    /// KeyExpansion (section 5.2) of a 128-bit key.
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        let mut round_keys = [[0u8; 16]; 11];
        round_keys[0] = *key;
        let mut rcon = 1u8;
        for round in 1..11 {
            let prev = round_keys[round - 1];
            // RotWord, SubWord and Rcon on the last word of the previous round key.
            let mut t = [prev[13], prev[14], prev[15], prev[12]];
            for b in t.iter_mut() {
                *b = sub(*b);
            }
            t[0] ^= rcon;
            rcon = mul(rcon, 2);
            // w[i] = w[i - 4] xor (t for the first word, else w[i - 1]).
            let mut next = prev;
            for (n, t) in next.iter_mut().zip(t) {
                *n ^= t;
            }
            for at in 4..16 {
                next[at] ^= next[at - 4];
            }
            round_keys[round] = next;
        }
        Self { round_keys }
    }

    /// InvCipher (section 5.3) of one block, in place. The state is column-major: byte
    /// `r + 4c` is row `r`, column `c`.
    pub(crate) fn decrypt_block(&self, block: &mut [u8; 16]) {
        add_round_key(block, &self.round_keys[10]);
        for round in (0..10).rev() {
            inv_shift_rows(block);
            for b in block.iter_mut() {
                *b = inv_sub(*b);
            }
            add_round_key(block, &self.round_keys[round]);
            if round > 0 {
                inv_mix_columns(block);
            }
        }
    }
}

fn add_round_key(state: &mut [u8; 16], key: &[u8; 16]) {
    for (s, k) in state.iter_mut().zip(key) {
        *s ^= k;
    }
}

/// InvShiftRows (section 5.3.1): row `r` rotates right by `r` columns.
fn inv_shift_rows(state: &mut [u8; 16]) {
    let old = *state;
    for r in 1..4 {
        for c in 0..4 {
            state[r + 4 * ((c + r) % 4)] = old[r + 4 * c];
        }
    }
}

/// InvMixColumns (section 5.3.3): each column times `{0b}x^3 + {0d}x^2 + {09}x + {0e}`.
fn inv_mix_columns(state: &mut [u8; 16]) {
    for column in state.chunks_exact_mut(4) {
        let a = [column[0], column[1], column[2], column[3]];
        for (r, out) in column.iter_mut().enumerate() {
            *out = mul(a[r], 0x0e)
                ^ mul(a[(r + 1) % 4], 0x0b)
                ^ mul(a[(r + 2) % 4], 0x0d)
                ^ mul(a[(r + 3) % 4], 0x09);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockCipherEncrypt, KeyInit};

    #[test]
    fn s_boxes_match_fips_197_and_invert_each_other() {
        // Figure 7: S(00) = 63, S(01) = 7c, S(53) = ed, S(ff) = 16.
        assert_eq!(
            [sub(0x00), sub(0x01), sub(0x53), sub(0xff)],
            [0x63, 0x7c, 0xed, 0x16]
        );
        for x in 0..=255u8 {
            assert_eq!(inv_sub(sub(x)), x);
        }
    }

    #[test]
    fn decrypts_the_fips_197_example_and_what_the_aes_crate_encrypts() {
        // Appendix C.1: AES-128.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let mut block = [
            0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
            0xc5, 0x5a,
        ];
        Aes128Inverse::new(&key).decrypt_block(&mut block);
        assert_eq!(block, plain);
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        };
        for _ in 0..64 {
            let key: [u8; 16] = core::array::from_fn(|_| next());
            let plain: [u8; 16] = core::array::from_fn(|_| next());
            let mut block = plain;
            aes::Aes128::new((&key).into()).encrypt_block((&mut block).into());
            Aes128Inverse::new(&key).decrypt_block(&mut block);
            assert_eq!(block, plain);
        }
    }
}
