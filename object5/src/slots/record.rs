//! One journal record: the whole persistent update state, fixed size, CRC-protected.
//!
//! Layout (little-endian): magic "O5S1", record sequence u32, phase, Object 5 State, Update
//! Result, active slot, anti-rollback floor u64, candidate sequence u64, download offset u32,
//! string lengths, Package URI, PkgName, PkgVersion, CRC-32 at [`CRC_AT`]; the commit word at
//! [`COMMIT_AT`] is written by a separate, later write.

use crate::status::{State, UpdateResult};

/// Bytes of one record in flash.
pub(crate) const RECORD_SIZE: usize = 512;
/// Payload bytes (written first); the rest is the commit region.
pub(crate) const PAYLOAD_SIZE: usize = 496;
/// Offset of the CRC over `[0, CRC_AT)`.
const CRC_AT: usize = PAYLOAD_SIZE - 4;
/// Offset of the commit word.
pub(crate) const COMMIT_AT: usize = PAYLOAD_SIZE;
/// The commit pattern, repeated over the commit write.
pub(crate) const COMMIT: [u8; 4] = *b"O5OK";

const MAGIC: [u8; 4] = *b"O5S1";
const URI_AT: usize = 40;

/// Longest Package URI stored (/5/0/1).
pub const MAX_URI: usize = 255;
/// Longest PkgName stored (/5/0/6).
pub const MAX_NAME: usize = 64;
/// Longest PkgVersion stored (/5/0/7).
pub const MAX_VERSION: usize = 64;

/// Where the update stands; decides what the bootloader does at the next reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Phase {
    /// The active image is confirmed; no candidate.
    Idle = 1,
    /// A candidate is being written; the offset says where to resume.
    Downloading = 2,
    /// A complete, verified candidate is stored and not installed.
    Downloaded = 3,
    /// Install requested: the bootloader verifies and activates at the next reset.
    Pending = 4,
    /// The bootloader is swapping or copying (resumes from the progress words).
    Installing = 5,
    /// The candidate runs unconfirmed; a reset before `confirm` reverts.
    Testing = 6,
    /// The bootloader is swapping the old image back.
    Reverting = 7,
    /// The running image failed verification at boot and the bootloader is copying (swap:
    /// swapping) the other slot's verified image into the primary slot; ends `Idle`.
    Restoring = 8,
    /// A download was requested (Package URI written, or a push began) and no package byte is
    /// stored yet: Object 5 State Downloading, the candidate slot unclaimed. Journaled so that
    /// a reset before the manifest arrives is not forgotten: the pull starts again, a push
    /// ends with Update Result 4. Bootloaders treat it as `Idle`.
    Requested = 9,
}

impl Phase {
    /// Decodes a stored byte; unknown values are `None` (the bootloader's safe action applies).
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Idle,
            2 => Self::Downloading,
            3 => Self::Downloaded,
            4 => Self::Pending,
            5 => Self::Installing,
            6 => Self::Testing,
            7 => Self::Reverting,
            8 => Self::Restoring,
            9 => Self::Requested,
            _ => return None,
        })
    }

    /// The Object 5 State this phase reports.
    pub const fn object5_state(self) -> State {
        match self {
            Self::Idle => State::Idle,
            Self::Requested | Self::Downloading => State::Downloading,
            Self::Downloaded => State::Downloaded,
            Self::Pending
            | Self::Installing
            | Self::Testing
            | Self::Reverting
            | Self::Restoring => State::Updating,
        }
    }
}

/// A short byte string with a fixed capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Field<N> {
    pub(crate) const EMPTY: Self = Self {
        len: 0,
        bytes: [0; N],
    };

    pub(crate) fn new(value: &[u8]) -> Option<Self> {
        let mut field = Self::EMPTY;
        field.bytes.get_mut(..value.len())?.copy_from_slice(value);
        field.len = u8::try_from(value.len()).ok()?;
        Some(field)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// The decoded state. `phase` is `None` when a committed record carries an unknown phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: u32,
    pub(crate) phase: Option<Phase>,
    pub(crate) result: Option<UpdateResult>,
    pub(crate) active: u8,
    pub(crate) floor: u64,
    pub(crate) candidate_seq: u64,
    pub(crate) offset: u32,
    pub(crate) uri: Field<MAX_URI>,
    pub(crate) name: Field<MAX_NAME>,
    pub(crate) version: Field<MAX_VERSION>,
}

impl Record {
    /// The state of a freshly provisioned device running slot 0.
    pub(crate) const fn factory(floor: u64) -> Self {
        Self {
            seq: 0,
            phase: Some(Phase::Idle),
            result: Some(UpdateResult::Initial),
            active: 0,
            floor,
            candidate_seq: 0,
            offset: 0,
            uri: Field::EMPTY,
            name: Field::EMPTY,
            version: Field::EMPTY,
        }
    }

    /// Encodes the payload (`PAYLOAD_SIZE` bytes) into `out`.
    pub(crate) fn encode(&self, out: &mut [u8; PAYLOAD_SIZE]) {
        out.fill(0xFF);
        out[0..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8] = self.phase.map_or(0, |p| p as u8);
        out[9] = self.phase.map_or(0xFF, |p| p.object5_state().code());
        out[10] = self.result.map_or(0xFF, UpdateResult::code);
        out[11] = self.active;
        out[12..20].copy_from_slice(&self.floor.to_le_bytes());
        out[20..28].copy_from_slice(&self.candidate_seq.to_le_bytes());
        out[28..32].copy_from_slice(&self.offset.to_le_bytes());
        out[32] = self.uri.len;
        out[33] = self.name.len;
        out[34] = self.version.len;
        let name_at = URI_AT + MAX_URI;
        let version_at = name_at + MAX_NAME;
        out[URI_AT..name_at].copy_from_slice(&self.uri.bytes);
        out[name_at..version_at].copy_from_slice(&self.name.bytes);
        out[version_at..version_at + MAX_VERSION].copy_from_slice(&self.version.bytes);
        let crc = super::crc::crc32(&out[..CRC_AT]);
        out[CRC_AT..PAYLOAD_SIZE].copy_from_slice(&crc.to_le_bytes());
    }

    /// The sequence number of what looks like a committed record (magic and commit mark),
    /// before its CRC is checked: lets a scan skip decoding records it would not keep.
    pub(crate) fn committed_seq(raw: &[u8]) -> Option<u32> {
        let raw: &[u8; RECORD_SIZE] = raw.get(..RECORD_SIZE)?.try_into().ok()?;
        if raw[COMMIT_AT..COMMIT_AT + 4] != COMMIT || raw[0..4] != MAGIC {
            return None;
        }
        Some(u32::from_le_bytes(raw[4..8].try_into().ok()?))
    }

    /// Decodes a whole record (payload + commit region); `None` unless it is committed, its
    /// CRC matches and every length is in range. Never panics on any bytes.
    pub(crate) fn decode(raw: &[u8]) -> Option<Self> {
        let seq = Self::committed_seq(raw)?;
        let raw: &[u8; RECORD_SIZE] = raw.get(..RECORD_SIZE)?.try_into().ok()?;
        let stored = u32::from_le_bytes(raw[CRC_AT..PAYLOAD_SIZE].try_into().ok()?);
        if super::crc::crc32(&raw[..CRC_AT]) != stored {
            return None;
        }
        let u64_at = |at: usize| {
            raw.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let phase = Phase::from_code(raw[8]);
        // A State byte that disagrees with the phase makes the phase unknown: safe action.
        let phase = phase.filter(|p| p.object5_state().code() == raw[9]);
        let name_at = URI_AT + MAX_URI;
        let version_at = name_at + MAX_NAME;
        Some(Self {
            seq,
            phase,
            result: UpdateResult::from_code(raw[10]),
            active: raw[11],
            floor: u64_at(12)?,
            candidate_seq: u64_at(20)?,
            offset: u32::from_le_bytes(raw[28..32].try_into().ok()?),
            uri: Field::new(raw.get(URI_AT..URI_AT + usize::from(raw[32]))?)?,
            name: Field::new(raw.get(name_at..name_at + usize::from(raw[33]))?)?,
            version: Field::new(raw.get(version_at..version_at + usize::from(raw[34]))?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(record: &Record) -> [u8; RECORD_SIZE] {
        let mut payload = [0; PAYLOAD_SIZE];
        record.encode(&mut payload);
        let mut raw = [0xFF; RECORD_SIZE];
        raw[..PAYLOAD_SIZE].copy_from_slice(&payload);
        raw[COMMIT_AT..COMMIT_AT + 4].copy_from_slice(&COMMIT);
        raw
    }

    #[test]
    fn round_trips_and_rejects_uncommitted_or_corrupt_records() {
        let mut r = Record::factory(7);
        r.seq = 42;
        r.phase = Some(Phase::Downloading);
        r.offset = 8192;
        r.uri = Field::new(b"coap://127.0.0.1/fw").unwrap();
        r.version = Field::new(b"2.0.0").unwrap();
        let raw = committed(&r);
        assert_eq!(Record::decode(&raw), Some(r));

        let mut uncommitted = raw;
        uncommitted[COMMIT_AT..].fill(0xFF);
        assert_eq!(Record::decode(&uncommitted), None);

        for i in 0..PAYLOAD_SIZE {
            let mut flipped = raw;
            flipped[i] ^= 0x01;
            assert_eq!(Record::decode(&flipped), None, "bit flip at {i} accepted");
        }
    }

    #[test]
    fn unknown_phase_or_result_decodes_to_none_fields_not_a_guess() {
        let mut r = Record::factory(0);
        r.phase = None;
        r.result = None;
        let decoded = Record::decode(&committed(&r)).unwrap();
        assert_eq!(decoded.phase, None);
        assert_eq!(decoded.result, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut raw = [0u8; RECORD_SIZE];
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            for b in raw.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            raw[0..4].copy_from_slice(&MAGIC);
            raw[COMMIT_AT..COMMIT_AT + 4].copy_from_slice(&COMMIT);
            let _ = Record::decode(&raw);
        }
        assert_eq!(Record::decode(&raw[..10]), None);
    }
}
