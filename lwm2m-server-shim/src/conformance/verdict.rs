//! Verdicts and case reports, and how a case's steps turn into them: what the device did wrong
//! is a FAIL, a device that stopped answering is INCONCLUSIVE with the timeout named, a feature
//! the device does not announce is N/A with the reason.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::coap::endpoint::ExchangeError;
use crate::server::requests::DmError;

/// A case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The device behaved as the specification expects.
    Pass,
    /// It did not; the evidence says how.
    Fail,
    /// The case does not apply to this device (the reason says why, e.g. "device lists no push
    /// in /5/0/9").
    NotApplicable(String),
    /// The runner could not decide: the device stopped answering (the timeout is named) or the
    /// situation cannot be provoked from a server.
    Inconclusive(String),
}

impl Verdict {
    /// `PASS`, `FAIL`, `N/A` or `INCONCLUSIVE`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::NotApplicable(_) => "N/A",
            Self::Inconclusive(_) => "INCONCLUSIVE",
        }
    }

    /// Why the case was not applicable or inconclusive.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::NotApplicable(r) | Self::Inconclusive(r) => Some(r),
            Self::Pass | Self::Fail => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{}({r})", self.label()),
            None => f.write_str(self.label()),
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    /// Case id: the ETS id where the ETS has one (`1.0-int-770`, `1.1-int-301`), else a
    /// `core-...` id.
    pub id: &'static str,
    /// The variant when a case runs once per protocol (`coap`, `http`, ...).
    pub variant: Option<String>,
    /// Title.
    pub title: &'static str,
    /// Group (`fw`, `reg`, `dm`, `ir`, `send`).
    pub group: &'static str,
    /// Verdict.
    pub verdict: Verdict,
    /// What was observed: codes, values, States, Update Results, times.
    pub evidence: String,
    /// When the case started.
    pub started: SystemTime,
    /// How long it ran.
    pub duration: Duration,
}

impl CaseReport {
    /// `id` or `id[variant]`.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}[{v}]", self.id),
            None => self.id.to_string(),
        }
    }
}

/// What a case decided: a verdict and the evidence behind it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub verdict: Verdict,
    pub evidence: String,
}

impl Decision {
    /// PASS when `ok`, else FAIL, with `evidence` either way.
    pub fn judge(ok: bool, evidence: impl Into<String>) -> Self {
        Self {
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            evidence: evidence.into(),
        }
    }

    /// FAIL.
    pub fn fail(evidence: impl Into<String>) -> Self {
        Self::judge(false, evidence)
    }

    /// N/A with `reason`.
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            evidence: reason.clone(),
            verdict: Verdict::NotApplicable(reason),
        }
    }

    /// INCONCLUSIVE with `reason`.
    pub fn inconclusive(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            evidence: reason.clone(),
            verdict: Verdict::Inconclusive(reason),
        }
    }
}

/// Why a case stopped before it could judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Abort {
    /// The device did not answer in time (INCONCLUSIVE; the message names the timeout).
    Silent(String),
    /// The device broke the protocol (a Reset, a broken block-wise transfer, an undecodable
    /// answer): FAIL with this evidence.
    Broken(String),
    /// The runner itself could not go on (a package could not be hosted, a socket failed).
    Runner(String),
}

impl Abort {
    /// The verdict this abort stands for.
    pub fn decision(self) -> Decision {
        match self {
            Self::Silent(why) => Decision::inconclusive(why),
            Self::Broken(e) => Decision::fail(e),
            Self::Runner(e) => Decision::inconclusive(format!("runner: {e}")),
        }
    }

    /// Classifies a failed device-management exchange `op` made with a per-exchange `timeout`.
    pub fn from_dm(op: &str, timeout: Duration, e: DmError) -> Self {
        match e {
            DmError::Exchange(ExchangeError::Timeout) => Self::Silent(format!(
                "no answer to {op} within the request timeout ({} s)",
                timeout.as_secs_f32()
            )),
            DmError::Exchange(ExchangeError::Reset) => {
                Self::Broken(format!("{op}: the device answered with a CoAP Reset"))
            }
            DmError::Exchange(e) => Self::Runner(format!("{op}: {e}")),
            e @ (DmError::Blockwise(_) | DmError::BodyTooLarge) => {
                Self::Broken(format!("{op}: {e}"))
            }
        }
    }
}

/// A case step: its value, or why the case stopped.
pub(crate) type Step<T> = Result<T, Abort>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_device_is_inconclusive_naming_the_timeout() {
        let a = Abort::from_dm(
            "Read /3/0",
            Duration::from_secs(5),
            DmError::Exchange(ExchangeError::Timeout),
        );
        let d = a.decision();
        assert_eq!(d.verdict.label(), "INCONCLUSIVE");
        assert!(
            d.evidence.contains("Read /3/0") && d.evidence.contains("5 s"),
            "{}",
            d.evidence
        );
        let reset = Abort::from_dm(
            "Write /1/0/3",
            Duration::from_secs(5),
            DmError::Exchange(ExchangeError::Reset),
        );
        assert_eq!(reset.decision().verdict, Verdict::Fail);
        assert_eq!(
            Decision::not_applicable("no push").verdict.to_string(),
            "N/A(no push)"
        );
    }
}
