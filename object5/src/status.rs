//! The values Object 5 reports: State (/5/0/3) and Update Result (/5/0/5).
//!
//! They live in one place because the state machine, the verifier's error mapping and the
//! persistent slot state all speak them; each has exactly one wire encoding (its integer).

use core::fmt;

/// Object 5 State (/5/0/3), OMA LwM2M Firmware Update object, resource 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// 0: no package, or the previous update finished.
    Idle = 0,
    /// 1: a package is being written or fetched.
    Downloading = 1,
    /// 2: a complete, verified package is stored and not installed.
    Downloaded = 2,
    /// 3: the package is being installed.
    Updating = 3,
}

impl State {
    /// The integer carried on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Decodes a stored or received integer; anything else is `None` so that the caller picks
    /// a defined safe action instead of guessing.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Idle),
            1 => Some(Self::Downloading),
            2 => Some(Self::Downloaded),
            3 => Some(Self::Updating),
            _ => None,
        }
    }
}

/// Object 5 Update Result (/5/0/5), values 0-11 of object version 1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UpdateResult {
    /// 0: initial value; reset when a download or an update starts.
    Initial = 0,
    /// 1: firmware updated successfully.
    Success = 1,
    /// 2: not enough flash memory for the new package.
    NotEnoughFlash = 2,
    /// 3: out of RAM during the download.
    OutOfRam = 3,
    /// 4: connection lost during the download.
    ConnectionLost = 4,
    /// 5: integrity check failure for the new downloaded package.
    IntegrityFailure = 5,
    /// 6: unsupported package type.
    UnsupportedPackage = 6,
    /// 7: invalid URI.
    InvalidUri = 7,
    /// 8: firmware update failed.
    UpdateFailed = 8,
    /// 9: unsupported protocol.
    UnsupportedProtocol = 9,
    /// 10: firmware update cancelled.
    Cancelled = 10,
    /// 11: firmware update deferred.
    Deferred = 11,
}

impl UpdateResult {
    /// The integer carried on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Decodes a stored or received integer; unknown values are `None`.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Initial,
            1 => Self::Success,
            2 => Self::NotEnoughFlash,
            3 => Self::OutOfRam,
            4 => Self::ConnectionLost,
            5 => Self::IntegrityFailure,
            6 => Self::UnsupportedPackage,
            7 => Self::InvalidUri,
            8 => Self::UpdateFailed,
            9 => Self::UnsupportedProtocol,
            10 => Self::Cancelled,
            11 => Self::Deferred,
            _ => return None,
        })
    }
}

impl State {
    /// The state's name in the object definition.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Downloading => "Downloading",
            Self::Downloaded => "Downloaded",
            Self::Updating => "Updating",
        }
    }
}

impl UpdateResult {
    /// What the value means, as the object definition describes it.
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::Initial => "initial value",
            Self::Success => "firmware updated successfully",
            Self::NotEnoughFlash => "not enough flash memory",
            Self::OutOfRam => "out of RAM during download",
            Self::ConnectionLost => "connection lost during download",
            Self::IntegrityFailure => "integrity check failure",
            Self::UnsupportedPackage => "unsupported package type",
            Self::InvalidUri => "invalid URI",
            Self::UpdateFailed => "firmware update failed",
            Self::UnsupportedProtocol => "unsupported protocol",
            Self::Cancelled => "firmware update cancelled",
            Self::Deferred => "firmware update deferred",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

impl fmt::Display for UpdateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_values_decode_to_none() {
        for code in 0..=255u8 {
            match State::from_code(code) {
                Some(s) => assert_eq!(s.code(), code),
                None => assert!(code > 3),
            }
            match UpdateResult::from_code(code) {
                Some(r) => assert_eq!(r.code(), code),
                None => assert!(code > 11),
            }
        }
    }
}
