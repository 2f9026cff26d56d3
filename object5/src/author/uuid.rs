//! Vendor and class identifiers (section 8.4.8.2): UUIDs given literally, or derived from names
//! as UUIDv5 (RFC 9562): vendor = UUID5(DNS namespace, vendor domain), class = UUID5(vendor, name).

use std::string::String;

/// The RFC 9562 DNS namespace UUID.
pub const NAMESPACE_DNS: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// UUIDv5 of `name` in `namespace`.
pub fn uuid5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut msg = std::vec::Vec::with_capacity(16 + name.len());
    msg.extend_from_slice(namespace);
    msg.extend_from_slice(name);
    let hash = sha1(&msg);
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// Parses `8-4-4-4-12` hex text.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Formats as `8-4-4-4-12` lower-case hex.
pub fn format_uuid(id: &[u8]) -> String {
    let mut s = String::new();
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&std::format!("{b:02x}"));
    }
    s
}

/// Vendor id from a UUID or a vendor domain name.
pub fn vendor_id(arg: &str) -> [u8; 16] {
    parse_uuid(arg).unwrap_or_else(|| uuid5(&NAMESPACE_DNS, arg.as_bytes()))
}

/// Class id from a UUID or a class name under `vendor`.
pub fn class_id(arg: &str, vendor: &[u8; 16]) -> [u8; 16] {
    parse_uuid(arg).unwrap_or_else(|| uuid5(vendor, arg.as_bytes()))
}

/// SHA-1 (FIPS 180-4), needed only to name UUIDv5 identifiers; not used for security.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_example_ids_are_reproduced() {
        let vendor = vendor_id("arm.com");
        assert_eq!(format_uuid(&vendor), "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe");
        assert_eq!(
            format_uuid(&class_id("suit", &vendor)),
            "1492af14-2569-5e48-bf42-9b2d51f2ab45"
        );
        assert_eq!(vendor_id("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"), vendor);
    }
}
