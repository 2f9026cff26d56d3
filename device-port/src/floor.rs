//! A second copy of the anti-rollback floor, kept in the board's key-value store beside the
//! slot journal: the journal alone could lose its newest records to damage (an erased or
//! garbled journal sector) and come back with an older, lower floor, which would let an old
//! signed image be installed again. The bootloader takes the higher of the two copies
//! (SUIT manifest draft §8.4.2, the sequence number as anti-rollback counter; RFC 9019 §4.1).

use crate::board::KeyValue;

/// Key of the copy in the key-value store.
pub const KEY: &str = "rollback-floor";

/// The stored copy: the floor as 8 little-endian bytes and its bitwise complement, so a
/// damaged value is recognised rather than read as some other floor.
fn encode(floor: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&floor.to_le_bytes());
    out[8..].copy_from_slice(&(!floor).to_le_bytes());
    out
}

fn decode(raw: &[u8]) -> Option<u64> {
    let value = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    let check = u64::from_le_bytes(raw.get(8..16)?.try_into().ok()?);
    (raw.len() == 16 && check == !value).then_some(value)
}

/// The kept floor; 0 when none was stored or the stored value is damaged (the journal's
/// copy then stands alone, and the next [`write()`] repairs this one).
pub fn read<K: KeyValue>(kv: &K) -> u64 {
    kv.get(KEY)
        .ok()
        .flatten()
        .and_then(|v| decode(&v))
        .unwrap_or(0)
}

/// Stores `floor` as the kept copy.
pub fn write<K: KeyValue>(kv: &mut K, floor: u64) -> Result<(), K::Error> {
    kv.set(KEY, &encode(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_services::SimKv;

    #[test]
    fn round_trips_and_reads_damage_as_absent() {
        let mut kv = SimKv::Memory(Default::default());
        assert_eq!(read(&kv), 0);
        write(&mut kv, 7).unwrap();
        assert_eq!(read(&kv), 7);
        for damaged in [
            &[][..],
            &[0xFF; 16][..],
            &[0; 16][..],
            &encode(7)[..15],
            b"seven",
        ] {
            kv.set(KEY, damaged).unwrap();
            assert_eq!(read(&kv), 0, "{damaged:?}");
        }
        let mut flipped = encode(7);
        flipped[0] ^= 0x08;
        kv.set(KEY, &flipped).unwrap();
        assert_eq!(read(&kv), 0);
    }
}
