//! The bootloader's decision at every reset: keep, activate, resume, revert or recover, then
//! validate what it is about to run.
//!
//! | journal phase | swap | A/B | overwrite |
//! |---|---|---|---|
//! | Idle, Requested, Downloading, Downloaded | run slot 0 | run active | run slot 0 |
//! | Pending, candidate verifies | swap, then Testing | flip, Testing | copy, Testing |
//! | Pending, candidate fails | Idle, result 5, run old | same | same |
//! | Installing | resume swap, Testing | (never written) recover | resume copy, Testing |
//! | Testing (reset before confirm) | swap back, Idle, result 8 | flip back, Idle, result 8 | run slot 0 again (no old image) |
//! | Reverting | resume swap back, Idle, result 8 | recover | recover |
//! | Restoring | resume the swap, Idle | recover | resume the copy, Idle |
//! | none / unknown phase or selector | recover: boot the newest bootable slot that verifies, journal Idle | | |
//!
//! Then, like MCUboot's validate-primary-slot, the image chosen is verified (signature of its
//! stored manifest and digest of its bytes, [`SlotManager::verify_installed`]) before it runs,
//! on every boot. When it fails and
//! the other slot's image verifies, that one runs instead (A/B: selected; swap: swapped into
//! the primary slot, the `Restoring` phase; overwrite: copied over it), journaled `Idle`. When
//! nothing verifies, nothing runs: [`SlotError::NoBootableImage`], with the journal left in a
//! state that accepts a download, so a recovery firmware can take an update.

use embedded_storage::nor_flash::NorFlash;

use super::copy;
use super::error::{SlotError, VerifyError};
use super::layout::Strategy;
use super::manager::SlotManager;
use super::record::{Phase, Record};
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
    /// The image the journal selected failed verification (why; `None` when an interrupted
    /// fallback copy was resumed): the other slot's image, which verifies, runs instead. The
    /// anti-rollback floor stays where it was, so the image running may be older than it.
    Fallback(Option<VerifyError>),
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
    /// Runs the bootloader's decision table (see the module docs), verifies the image chosen
    /// and returns what to run; [`SlotError::NoBootableImage`] when no slot holds an image that
    /// verifies. Every flash step is journaled or progress-marked, so a cut anywhere resumes
    /// here.
    pub fn boot<A: Authenticate>(&mut self, auth: &mut A) -> Result<BootDecision, SlotError> {
        let decision = self.decide(auth)?;
        if matches!(
            decision.path,
            BootPath::Recovered | BootPath::Fallback(Some(_))
        ) {
            return Ok(decision); // chosen because it verified, just now
        }
        match self.verify_installed(decision.slot, auth)? {
            Ok(_) => Ok(decision),
            Err(why) => self.fall_back(decision.slot, why, auth),
        }
    }

    /// The decision table alone.
    fn decide<A: Authenticate>(&mut self, auth: &mut A) -> Result<BootDecision, SlotError> {
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
            (Some(Phase::Idle | Phase::Requested | Phase::Downloading | Phase::Downloaded), _) => {
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
                    self.journal(|next| {
                        next.phase = Some(Phase::Testing);
                        next.active = candidate as u8;
                    })?;
                    return decision(candidate, BootPath::Test);
                }
                copy::prepare(&mut self.flash, &self.layout)?;
                self.journal(|next| {
                    next.phase = Some(Phase::Installing);
                    if strategy == Strategy::Overwrite {
                        // The old image is about to be destroyed: nothing older may run again.
                        next.floor = next.floor.max(next.candidate_seq);
                    }
                })?;
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
                self.journal(|next| next.phase = Some(Phase::Reverting))?;
                self.revert()
            }
            (Some(Phase::Reverting), Strategy::Swap) => self.revert(),
            (Some(Phase::Restoring), Strategy::AB) => self.recover(auth),
            (Some(Phase::Restoring), Strategy::Swap | Strategy::Overwrite) => {
                self.restore()?;
                decision(0, BootPath::Fallback(None))
            }
        }
    }

    /// The image in `failed` did not verify (`why`): run the other slot's image if it
    /// verifies, else journal a state that takes a download and report that nothing runs.
    fn fall_back<A: Authenticate>(
        &mut self,
        failed: usize,
        why: VerifyError,
        auth: &mut A,
    ) -> Result<BootDecision, SlotError> {
        // An installed candidate that no longer verifies is a failed update; otherwise the
        // result of the last update stands.
        let result = match self.record.phase {
            Some(Phase::Testing) => UpdateResult::IntegrityFailure,
            _ => self.record.result.unwrap_or(UpdateResult::Initial),
        };
        let other = 1 - failed;
        if self.verify_installed(other, auth)?.is_err() {
            return self.no_image(failed, result);
        }
        let slot = match self.layout.strategy {
            Strategy::AB => {
                self.finish(result, other)?;
                other
            }
            Strategy::Swap | Strategy::Overwrite => {
                copy::prepare(&mut self.flash, &self.layout)?;
                self.journal(|next| {
                    next.phase = Some(Phase::Restoring);
                    next.result = Some(result);
                })?;
                self.restore()?;
                0
            }
        };
        Ok(BootDecision {
            slot,
            path: BootPath::Fallback(Some(why)),
        })
    }

    /// Completes the fallback swap or copy into the primary slot and journals `Idle`.
    fn restore(&mut self) -> Result<(), SlotError> {
        copy::run(&mut self.flash, &self.layout, self.buf)?;
        let result = self.record.result.unwrap_or(UpdateResult::Initial);
        self.finish(result, 0)
    }

    /// Nothing verifies, so nothing runs. The journal is left in a state that takes a
    /// download into the candidate slot (`Idle`, or a `Downloading` that can resume), with
    /// `slot` as the running one, so a recovery firmware can install an update.
    fn no_image(&mut self, slot: usize, result: UpdateResult) -> Result<BootDecision, SlotError> {
        let ready = self.known
            && matches!(
                self.record.phase,
                Some(Phase::Idle | Phase::Requested | Phase::Downloading)
            )
            && self.running_slot() == Some(slot);
        if !ready {
            self.finish(result, slot)?;
        }
        Err(SlotError::NoBootableImage)
    }

    /// Completes the swap or copy and starts the test boot.
    fn install(&mut self) -> Result<BootDecision, SlotError> {
        copy::run(&mut self.flash, &self.layout, self.buf)?;
        self.journal(|next| next.phase = Some(Phase::Testing))?;
        Ok(BootDecision {
            slot: 0,
            path: BootPath::Test,
        })
    }

    /// Completes the swap back and reports the failed update.
    fn revert(&mut self) -> Result<BootDecision, SlotError> {
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
    fn reverted(&mut self, slot: usize) -> Result<(), SlotError> {
        self.journal(|next| {
            next.phase = Some(Phase::Downloaded);
            next.result = Some(UpdateResult::UpdateFailed);
            next.active = slot as u8;
        })
    }

    /// Journals `Idle` with `result`, running `slot`.
    fn finish(&mut self, result: UpdateResult, slot: usize) -> Result<(), SlotError> {
        self.journal(|next| {
            next.phase = Some(Phase::Idle);
            next.result = Some(result);
            next.active = slot as u8;
            next.offset = 0;
        })
    }

    /// Journals the current record as changed by `edit`. Never inlined: the copy of the
    /// record (about 400 bytes with its URI, name and version fields) then lives only in this
    /// short frame, and the boot decision's frame, under which the verifier's P-256 frames run
    /// (twice when the chosen image fails and the other slot's is checked), holds none.
    #[inline(never)]
    fn journal(&mut self, edit: impl FnOnce(&mut Record)) -> Result<(), SlotError> {
        let mut next = self.record;
        edit(&mut next);
        self.commit(next)
    }

    /// Safe action for an unknown state: of the bootable slots whose image verifies and is
    /// not older than the floor, run the newest; journal `Idle` so the next boot is ordinary.
    fn recover<A: Authenticate>(&mut self, auth: &mut A) -> Result<BootDecision, SlotError> {
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
        let result = self.record.result.unwrap_or(UpdateResult::Initial);
        let Some((slot, sequence)) = best else {
            self.record.floor = floor;
            return self.no_image(self.running_slot().unwrap_or(0), result);
        };
        self.record.floor = floor.max(sequence);
        self.finish(result, slot)?;
        Ok(BootDecision {
            slot,
            path: BootPath::Recovered,
        })
    }
}
