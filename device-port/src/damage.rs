//! What a boot found wrong in flash and worked around: the simulated bootloader's error log.
//! The device keeps running (the newest image that verifies, or its recovery state) and
//! reports these so the application can log them as one error.

use std::fmt;

use object5::slots::VerifyError;

/// One kind of damage found at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashDamage {
    /// The slot journal held no valid record on a provisioned device (erased, zeroed or
    /// garbled): the state was rebuilt from the slots that verify.
    JournalLost,
    /// The image the journal selected failed verification (`None`: an interrupted fallback
    /// was resumed); the other slot's image, which verifies, runs instead.
    ImageFailed(Option<VerifyError>),
    /// No slot holds an image that verifies: nothing runs, the device stays in recovery
    /// (it registers and accepts an update). Why each slot failed (`None`: it verifies but
    /// may not run, e.g. below the anti-rollback floor).
    NoImage([Option<VerifyError>; 2]),
    /// The journal's anti-rollback floor was below the copy kept beside it, and was raised.
    FloorRestored {
        /// Floor the journal held.
        journal: u64,
        /// Floor restored from the kept copy.
        kept: u64,
    },
}

impl fmt::Display for FlashDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JournalLost => {
                f.write_str("the slot journal held no valid record (state rebuilt from the slots)")
            }
            Self::ImageFailed(Some(why)) => write!(
                f,
                "the active image failed verification ({why}); the other slot's image runs"
            ),
            Self::ImageFailed(None) => {
                f.write_str("the active image had failed verification; the other slot's image runs")
            }
            Self::NoImage(why) => {
                f.write_str("no slot holds an image that verifies (")?;
                for (slot, why) in why.iter().enumerate() {
                    if slot > 0 {
                        f.write_str(", ")?;
                    }
                    match why {
                        Some(e) => write!(f, "slot {slot}: {e}")?,
                        None => write!(f, "slot {slot}: verifies but may not run")?,
                    }
                }
                f.write_str("); recovery: registers and waits for an update")
            }
            Self::FloorRestored { journal, kept } => write!(
                f,
                "the journal's anti-rollback floor {journal} was below the kept copy {kept} and was restored"
            ),
        }
    }
}

/// Everything one boot found, displayed as one line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootDamage(pub Vec<FlashDamage>);

impl BootDamage {
    /// Nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `d` was found.
    pub fn contains(&self, d: &FlashDamage) -> bool {
        self.0.contains(d)
    }
}

impl fmt::Display for BootDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("flash damaged: ")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
