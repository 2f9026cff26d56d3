//! The bootloader's decision at every reset: keep, activate, resume, revert or recover.
//!
//! | journal phase | swap | A/B | overwrite |
//! |---|---|---|---|
//! | Idle, Downloading, Downloaded | run slot 0 | run active | run slot 0 |
//! | Pending, candidate verifies | swap, then Testing | flip, Testing | copy, Testing |
//! | Pending, candidate fails | Idle, result 5, run old | same | same |
//! | Installing | resume swap, Testing | (never written) recover | resume copy, Testing |
//! | Testing (reset before confirm) | swap back, Idle, result 8 | flip back, Idle, result 8 | run slot 0 again (no old image) |
//! | Reverting | resume swap back, Idle, result 8 | recover | recover |
//! | none / unknown phase or selector | recover: boot the newest bootable slot that verifies, journal Idle | | |

use embedded_storage::nor_flash::NorFlash;

use super::copy;
use super::error::{Error, VerifyError};
use super::layout::Strategy;
use super::manager::SlotManager;
use super::record::Phase;
use super::Authenticate;
use crate::status::UpdateResult;

/// Why the bootloader runs the slot it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootPath {
    /// The confirmed image, nothing pending.
    Normal,
    /// A new image on its test boot: it must confirm after re-registering.
    Test,
    /// The test image was not confirmed before this reset: the old image is back (result 8).
    Reverted,
    /// The pending candidate failed verification and was dropped (result 5).
    Rejected(VerifyError),
    /// The journal held no known state; a slot that verifies was chosen and journaled.
    Recovered,
}

/// The slot to run and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootDecision {
    /// Slot index (0 or 1) whose image runs.
    pub slot: usize,
    /// How this boot came about.
    pub path: BootPath,
}

impl<F: NorFlash> SlotManager<'_, F> {
    /// Runs the bootloader's decision table (see the module docs) and returns what to run.
    /// Every flash step is journaled or progress-marked, so a cut anywhere resumes here.
    pub fn boot<A: Authenticate>(&mut self, auth: &mut A) -> Result<BootDecision, Error> {
        let strategy = self.layout.strategy;
        let phase = if self.known { self.record.phase } else { None };
        let Some(running) = self.running_slot() else {
            return self.recover(auth);
        };
        let decision = |slot, path| Ok(BootDecision { slot, path });
        match (phase, strategy) {
            (None, _)
            | (Some(Phase::Installing | Phase::Reverting), Strategy::AB)
            | (Some(Phase::Reverting), Strategy::Overwrite) => self.recover(auth),
            (Some(Phase::Idle | Phase::Downloading | Phase::Downloaded), _) => {
                decision(running, BootPath::Normal)
            }
            (Some(Phase::Pending), _) => {
                let candidate = 1 - running;
                let floor = self.record.floor;
                match self.verify_slot(candidate, auth)? {
                    Ok(facts) if facts.sequence > floor => {}
                    verdict => {
                        let why = verdict.err().unwrap_or(VerifyError::Rollback);
                        self.finish(UpdateResult::IntegrityFailure, running)?;
                        return decision(running, BootPath::Rejected(why));
                    }
                }
                if strategy == Strategy::AB {
                    let mut next = self.record;
                    next.phase = Some(Phase::Testing);
                    next.active = candidate as u8;
                    self.commit(next)?;
                    return decision(candidate, BootPath::Test);
                }
                copy::prepare(&mut self.flash, &self.layout)?;
                let mut next = self.record;
                next.phase = Some(Phase::Installing);
                if strategy == Strategy::Overwrite {
                    // The old image is about to be destroyed: nothing older may run again.
                    next.floor = next.floor.max(next.candidate_seq);
                }
                self.commit(next)?;
                self.install()
            }
            (Some(Phase::Installing), _) => self.install(),
            (Some(Phase::Testing), Strategy::AB) => {
                self.reverted(1 - running)?;
                decision(1 - running, BootPath::Reverted)
            }
            (Some(Phase::Testing), Strategy::Overwrite) => decision(0, BootPath::Test),
            (Some(Phase::Testing), Strategy::Swap) => {
                copy::prepare(&mut self.flash, &self.layout)?;
                let mut next = self.record;
                next.phase = Some(Phase::Reverting);
                self.commit(next)?;
                self.revert()
            }
            (Some(Phase::Reverting), Strategy::Swap) => self.revert(),
        }
    }

    /// Completes the swap or copy and starts the test boot.
    fn install(&mut self) -> Result<BootDecision, Error> {
        copy::run(&mut self.flash, &self.layout, self.buf)?;
        let mut next = self.record;
        next.phase = Some(Phase::Testing);
        self.commit(next)?;
        Ok(BootDecision {
            slot: 0,
            path: BootPath::Test,
        })
    }

    /// Completes the swap back and reports the failed update.
    fn revert(&mut self) -> Result<BootDecision, Error> {
        copy::run(&mut self.flash, &self.layout, self.buf)?;
        self.reverted(0)?;
        Ok(BootDecision {
            slot: 0,
            path: BootPath::Reverted,
        })
    }

    /// Journals the end of a failed test boot, running `slot`: the candidate is back in the
    /// candidate slot, verified and not installed, so Object 5 reports Downloaded with Update
    /// Result 8 (object text and OMA ETS 1.0-int-779), and survives further reboots as such.
    fn reverted(&mut self, slot: usize) -> Result<(), Error> {
        let mut next = self.record;
        next.phase = Some(Phase::Downloaded);
        next.result = Some(UpdateResult::UpdateFailed);
        next.active = slot as u8;
        self.commit(next)
    }

    /// Journals `Idle` with `result`, running `slot`.
    fn finish(&mut self, result: UpdateResult, slot: usize) -> Result<(), Error> {
        let mut next = self.record;
        next.phase = Some(Phase::Idle);
        next.result = Some(result);
        next.active = slot as u8;
        next.offset = 0;
        self.commit(next)
    }

    /// Safe action for an unknown state: of the bootable slots whose image verifies and is
    /// not older than the floor, run the newest; journal `Idle` so the next boot is ordinary.
    fn recover<A: Authenticate>(&mut self, auth: &mut A) -> Result<BootDecision, Error> {
        let bootable: &[usize] = match self.layout.strategy {
            Strategy::AB => &[0, 1],
            Strategy::Swap | Strategy::Overwrite => &[0],
        };
        let floor = if self.known { self.record.floor } else { 0 };
        let mut best: Option<(usize, u64)> = None;
        for &slot in bootable {
            if let Ok(facts) = self.verify_slot(slot, auth)? {
                if facts.sequence >= floor && best.is_none_or(|(_, seq)| facts.sequence > seq) {
                    best = Some((slot, facts.sequence));
                }
            }
        }
        let (slot, sequence) = best.ok_or(Error::NoBootableImage)?;
        let result = self.record.result.unwrap_or(UpdateResult::Initial);
        self.record.floor = floor.max(sequence);
        self.finish(result, slot)?;
        Ok(BootDecision {
            slot,
            path: BootPath::Recovered,
        })
    }
}
