//! When a reading of a device resource was taken: a poll's answer or a notification, stamped
//! so that readings can be put in order whatever order they are processed in (RFC 7641
//! section 3.4).

use std::time::{Duration, Instant};

/// The Observe sequence number of a notification (RFC 7641 section 3.4) within its
/// observation: numbers of different observations do not compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserveSequence {
    /// The observation (its token as a number).
    pub observation: u64,
    /// The Observe option value (24 bits).
    pub number: u32,
}

/// RFC 7641 section 3.4: after this long a notification is newer whatever its number says.
const OBSERVE_FRESHNESS: Duration = Duration::from_secs(128);

/// When a reading of a device resource (State, Update Result) was taken, so readings can be
/// put in order whatever order they are processed in: a poll's answer or a notification by
/// when it reached the shim; two notifications of one observation by their Observe numbers,
/// which also survive datagrams reordered on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingStamp {
    /// When the answer or notification arrived.
    pub received: Instant,
    /// The notification's sequence number; `None` for a poll.
    pub observe: Option<ObserveSequence>,
}

impl ReadingStamp {
    /// A poll answered now.
    pub fn polled_now() -> Self {
        Self::polled_at(Instant::now())
    }

    /// A poll answered at `received`.
    pub fn polled_at(received: Instant) -> Self {
        Self {
            received,
            observe: None,
        }
    }

    /// Whether a reading stamped `self` is newer than one stamped `kept` and may replace it.
    pub fn is_newer_than(&self, kept: &Self) -> bool {
        match (kept.observe, self.observe) {
            (Some(v1), Some(v2)) if v1.observation == v2.observation => {
                let (a, b) = (v1.number & 0xFF_FFFF, v2.number & 0xFF_FFFF);
                (a < b && b - a < 1 << 23)
                    || (a > b && a - b > 1 << 23)
                    || self.received > kept.received + OBSERVE_FRESHNESS
            }
            _ => self.received >= kept.received,
        }
    }
}
