//! The slot header sector: the manifest envelope head stored with its image.
//!
//! Layout: magic "O5H1", sequence u64, size u32, digest [32], envelope length u32, CRC-32 over
//! the fixed fields and the envelope, padding to 64 bytes, then the envelope. A slot holding
//! a second image has magic "O5H2" and 128 fixed bytes: after the envelope length, the second
//! image's size u32 and digest [32], then the CRC. The envelope is written before the fixed
//! fields, so the magic lands last.

use embedded_storage::nor_flash::NorFlash;

use super::crc::Crc32;
use super::error::{flash_err, SlotError, VerifyError};
use super::{ImageFacts, ManifestFacts};

const MAGIC: [u8; 4] = *b"O5H1";
/// Magic of a header whose slot holds a second image.
const MAGIC_TWO: [u8; 4] = *b"O5H2";
/// Bytes before the envelope (one image; [`FIXED_TWO`] with a second image).
pub(crate) const FIXED: usize = 64;
const FIXED_TWO: usize = 128;
const CRC_AT: usize = 52;
const CRC_AT_TWO: usize = 88;

/// (fixed bytes, CRC offset) of a header for `facts`.
fn format(facts: &ManifestFacts) -> (usize, usize) {
    if facts.second.is_some() {
        (FIXED_TWO, CRC_AT_TWO)
    } else {
        (FIXED, CRC_AT)
    }
}

/// Largest envelope a header sector of `sector` bytes holds next to `facts`.
pub(crate) fn max_envelope(sector: u32, facts: &ManifestFacts) -> usize {
    (sector as usize).saturating_sub(format(facts).0)
}

fn fixed_fields(facts: &ManifestFacts, env_len: u32) -> [u8; FIXED_TWO] {
    let mut fixed = [0xFF; FIXED_TWO];
    let magic = if facts.second.is_some() {
        MAGIC_TWO
    } else {
        MAGIC
    };
    fixed[0..4].copy_from_slice(&magic);
    fixed[4..12].copy_from_slice(&facts.sequence.to_le_bytes());
    fixed[12..16].copy_from_slice(&facts.size.to_le_bytes());
    fixed[16..48].copy_from_slice(&facts.digest);
    fixed[48..52].copy_from_slice(&env_len.to_le_bytes());
    if let Some(second) = facts.second {
        fixed[52..56].copy_from_slice(&second.size.to_le_bytes());
        fixed[56..88].copy_from_slice(&second.digest);
    }
    fixed
}

/// Erases the header sector of the slot at `slot` and writes `facts` and `envelope` there.
pub(crate) fn write<F: NorFlash>(
    flash: &mut F,
    slot: u32,
    sector: u32,
    facts: &ManifestFacts,
    envelope: &[u8],
) -> Result<(), SlotError> {
    if envelope.len() > max_envelope(sector, facts) {
        return Err(SlotError::EnvelopeTooLarge);
    }
    let env_len = u32::try_from(envelope.len()).map_err(|_| SlotError::EnvelopeTooLarge)?;
    let (fixed_len, crc_at) = format(facts);
    let mut fixed = fixed_fields(facts, env_len);
    let mut crc = Crc32::new();
    crc.update(&fixed[..crc_at]);
    crc.update(envelope);
    fixed[crc_at..crc_at + 4].copy_from_slice(&crc.finish().to_le_bytes());

    flash.erase(slot, slot + sector).map_err(flash_err)?;
    let body = slot + fixed_len as u32;
    let aligned = envelope.len() - envelope.len() % F::WRITE_SIZE;
    let (head, tail) = envelope.split_at(aligned);
    if !head.is_empty() {
        flash.write(body, head).map_err(flash_err)?;
    }
    if !tail.is_empty() {
        let mut pad = [0xFF; 16];
        pad.get_mut(..tail.len())
            .ok_or(SlotError::BufferTooSmall)?
            .copy_from_slice(tail);
        let last = pad.get(..F::WRITE_SIZE).ok_or(SlotError::BufferTooSmall)?;
        flash
            .write(body + aligned as u32, last)
            .map_err(flash_err)?;
    }
    flash
        .write(
            slot,
            fixed.get(..fixed_len).ok_or(SlotError::BufferTooSmall)?,
        )
        .map_err(flash_err)
}

/// Reads the header of the slot at `slot`; on success the envelope is in `buf[..len]`.
/// The inner `Err` says the header is not valid (blank, torn, unknown).
pub(crate) fn read<F: NorFlash>(
    flash: &mut F,
    slot: u32,
    sector: u32,
    buf: &mut [u8],
) -> Result<Result<(ManifestFacts, usize), VerifyError>, SlotError> {
    let mut fixed = [0u8; FIXED_TWO];
    flash.read(slot, &mut fixed[..FIXED]).map_err(flash_err)?;
    let (fixed_len, crc_at) = match fixed[0..4].try_into() {
        Ok(MAGIC) => (FIXED, CRC_AT),
        Ok(MAGIC_TWO) => (FIXED_TWO, CRC_AT_TWO),
        _ => return Ok(Err(VerifyError::NoHeader)),
    };
    if fixed_len > FIXED {
        flash
            .read(slot + FIXED as u32, &mut fixed[FIXED..])
            .map_err(flash_err)?;
    }
    let le32 = |at: usize| {
        fixed
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(u32::MAX)
    };
    let env_len = le32(48) as usize;
    // Whatever this manager wrote fits its buffer (begin_download checks), so a longer
    // length is damage, not a configuration error.
    let Some(envelope) = buf
        .get_mut(..env_len)
        .filter(|_| env_len <= (sector as usize).saturating_sub(fixed_len))
    else {
        return Ok(Err(VerifyError::NoHeader));
    };
    flash
        .read(slot + fixed_len as u32, envelope)
        .map_err(flash_err)?;
    let mut crc = Crc32::new();
    crc.update(&fixed[..crc_at]);
    crc.update(envelope);
    if crc.finish() != le32(crc_at) {
        return Ok(Err(VerifyError::NoHeader));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&fixed[16..48]);
    let sequence = fixed
        .get(4..12)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let second = (fixed_len == FIXED_TWO).then(|| {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&fixed[56..88]);
        ImageFacts {
            size: le32(52),
            digest,
        }
    });
    Ok(Ok((
        ManifestFacts {
            sequence,
            size: le32(12),
            digest,
            second,
        },
        env_len,
    )))
}
