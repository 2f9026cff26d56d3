//! One device's update as a sans-IO state machine, in the manner of quinn-proto and rustls:
//! [`UpdateMachine::step`] takes what happened (an answer, a reading, a re-registration or a
//! tick) and the time, and returns the one thing to do next. It never touches a socket or a
//! clock, so every path (success, each failing Update Result, timeouts, a lost Execute ACK, a
//! device that reboots early or late) is a unit test with fake time. The async shell
//! (behind [`super::run_update`]) only carries requests to the device and events and time to
//! the machine.
//!
//! The flow follows the Object 5 state machine (OMA LwM2M core TS 1.1, Appendix E.6, Firmware
//! Update object): reset a leftover download (an empty Package URI returns the device to
//! Idle), start the download (Package URI write or Block1 push), wait for State 2
//! (Downloaded), Execute /5/0/2, wait for the device to come back after its reboot, and read
//! the final State and Update Result. State and Update Result are followed by observation and
//! by polling, since notifications may be lost.

use std::time::{Duration, Instant};

use object5::status::{State, UpdateResult};

use super::{CampaignConfig, UpdateError};
use crate::firmware::jobs::{JobPhase, JobStatus, Method, Reading, ReadingStamps};
use crate::server::readings::ReadingStamp;
use crate::server::requests::DmError;

/// Operation names in errors.
const RESET: &str = "reset (write empty Package URI)";
const PUSH: &str = "push Package";
const WRITE_URI: &str = "write Package URI";
const EXECUTE: &str = "Execute Update";

/// How a request to the device ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A 2.xx response.
    Success,
    /// Another response code, as `c.dd`.
    Refused(String),
    /// No usable answer (no response at all is [`DmError::Exchange`]).
    Error(DmError),
}

/// What happened since the last request; the answer to it, or what ended a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The job leaves its queue.
    Begin,
    /// The package or its URI is ready ([`Request::Prepare`]).
    Prepared(Result<(), UpdateError>),
    /// State and Update Result observations were asked for ([`Request::Observe`]); a device
    /// that refused is polled instead.
    Observed,
    /// A poll's readings ([`Request::Poll`]), `None` where unreadable or not an Object 5 code.
    Polled {
        /// State (/5/0/3).
        state: Option<State>,
        /// Update Result (/5/0/5).
        result: Option<UpdateResult>,
        /// When the answers arrived.
        at: Instant,
        /// Whether the registration store shows a registration newer than the one followed
        /// (the device registered again, maybe before its REGISTRATION event is seen).
        re_registered: bool,
    },
    /// A notification of State or Update Result (during a wait).
    Notified {
        /// State, if this notified it.
        state: Option<Reading<State>>,
        /// Update Result, if this notified it.
        result: Option<Reading<UpdateResult>>,
    },
    /// The device registered again (during a wait).
    Registered,
    /// A wait ended without an event.
    Tick,
    /// The answer to [`Request::Reset`], [`Request::StartDownload`] or [`Request::Execute`].
    Answered(Answer),
    /// State read after an unanswered Package URI write ([`Request::ReadState`]).
    StateRead(Option<State>),
    /// The device handle follows the current registration ([`Request::Reconnect`]), or the
    /// device is not registered.
    Reconnected(Result<(), UpdateError>),
    /// Firmware version (/3/0/3) and package version (/5/0/7), where readable.
    Versions {
        /// /3/0/3.
        firmware: Option<String>,
        /// /5/0/7.
        package: Option<String>,
    },
}

/// What the shell does next; each has exactly one [`Input`] as its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Load the package (push) or work out its URI (pull): [`Input::Prepared`].
    Prepare,
    /// Observe /5/0/3 and /5/0/5: [`Input::Observed`].
    Observe,
    /// Read State and Update Result at the registration's current address: [`Input::Polled`].
    Poll,
    /// Write an empty Package URI: [`Input::Answered`].
    Reset,
    /// Write the Package URI (pull) or Block1-push the package (push): [`Input::Answered`].
    StartDownload,
    /// Read State only: [`Input::StateRead`].
    ReadState,
    /// Execute /5/0/2: [`Input::Answered`].
    Execute,
    /// Point the device handle at the current registration, and when `clear_events`, drop the
    /// events received but not read yet: [`Input::Reconnected`].
    Reconnect {
        /// Events queued before now no longer count.
        clear_events: bool,
    },
    /// Wait for a notification or a re-registration, until `until` at the latest:
    /// [`Input::Notified`], [`Input::Registered`] or [`Input::Tick`].
    Wait {
        /// When to give up waiting ([`Input::Tick`]).
        until: Instant,
    },
    /// Read the firmware and package versions: [`Input::Versions`].
    ReadVersions,
    /// The update ended; the job's final status is [`UpdateMachine::status`].
    Done(Result<(), UpdateError>),
}

/// What a wait for State and Update Result is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// State 2 (or a failure) after download attempt `attempt` (0-based) started.
    Download { attempt: u32 },
    /// The device back after Execute: re-registered, or finished without a reboot.
    Reboot,
    /// The final State and Update Result after the reboot.
    Verify,
}

impl Goal {
    fn phase(self) -> JobPhase {
        match self {
            Self::Download { .. } => JobPhase::Downloading,
            Self::Reboot => JobPhase::Rebooting,
            Self::Verify => JobPhase::Verifying,
        }
    }
}

/// Where the machine is: which request is out and what comes after its answer.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    New,
    Preparing,
    /// The first Observe, then the first poll.
    StartObserving,
    StartPolling,
    Resetting {
        tries: u32,
    },
    PollingAfterReset,
    Writing {
        attempt: u32,
        tries: u32,
    },
    /// A Package URI write failed; State tells whether it arrived anyway.
    CheckingArrival {
        attempt: u32,
        tries: u32,
        error: UpdateError,
        unanswered: bool,
    },
    /// Following State and Update Result until `goal` or `deadline`.
    Following {
        goal: Goal,
        deadline: Instant,
    },
    /// The device registered again during a wait: reconnect, observe, poll, go on.
    Rejoining {
        goal: Goal,
        deadline: Instant,
    },
    Reobserving {
        goal: Goal,
        deadline: Instant,
    },
    Executing,
    /// Execute was refused with 4.05; a poll tells whether it ran before (see `step`).
    CheckingRefusal {
        code: String,
    },
    /// After the reboot: reconnect, then observe, then verify.
    VerifyReconnecting,
    VerifyObserving,
    ReadingVersions {
        state: State,
        result: UpdateResult,
    },
    Done,
}

/// Whether State and Update Result after an Execute show the device finished without
/// re-registering (e.g. install refused: Downloaded, Update Result 8). Success counts only
/// with State Idle, as Object 5 reports it: Update Result 1 next to State 2 is a new result
/// merged with a State read before the reboot (the State read failed since), so the
/// re-registration must be waited for.
pub fn finished_without_reboot(state: Option<State>, result: Option<UpdateResult>) -> bool {
    match (state, result) {
        (Some(s), Some(UpdateResult::Success)) => s == State::Idle,
        (Some(s), Some(r)) => s != State::Updating && r != UpdateResult::Initial,
        _ => false,
    }
}

/// The final State and Update Result after an Execute, once both are known and final (not
/// Updating, not the initial result).
pub fn final_reading(
    state: Option<State>,
    result: Option<UpdateResult>,
) -> Option<(State, UpdateResult)> {
    match (state, result) {
        (Some(s), Some(r)) if s != State::Updating && r != UpdateResult::Initial => Some((s, r)),
        _ => None,
    }
}

/// Whether State shows that a Package URI write (after a reset to Idle) reached the device.
pub fn write_arrived(state: Option<State>) -> bool {
    matches!(state, Some(State::Downloading | State::Downloaded))
}

/// One device's update (see the module docs).
#[derive(Debug)]
pub struct UpdateMachine {
    cfg: CampaignConfig,
    method: Method,
    status: JobStatus,
    /// When the State and Update Result in `status` were taken.
    stamps: ReadingStamps,
    stage: Stage,
    /// The request last returned, repeated for an input that does not answer it.
    pending: Request,
    /// Every status the job went through since the last [`Self::take_changes`].
    changes: Vec<JobStatus>,
}

impl UpdateMachine {
    /// The machine for `job` (in phase QUEUED), delivered by `method`.
    pub fn new(job: JobStatus, method: Method, cfg: CampaignConfig) -> Self {
        Self {
            cfg,
            method,
            status: job,
            stamps: ReadingStamps::default(),
            stage: Stage::New,
            pending: Request::Prepare,
            changes: Vec::new(),
        }
    }

    /// The job as it stands.
    pub fn status(&self) -> &JobStatus {
        &self.status
    }

    /// The statuses the job went through since the last call, in order (each is published
    /// as a FIRMWARE event).
    pub fn take_changes(&mut self) -> Vec<JobStatus> {
        std::mem::take(&mut self.changes)
    }

    /// Ends the job with `error` before it started (e.g. the device is not registered).
    pub fn fail(&mut self, error: UpdateError) -> Request {
        self.finish(Err(error))
    }

    fn set(&mut self, f: impl FnOnce(&mut JobStatus)) {
        let before = self.status.clone();
        f(&mut self.status);
        if before != self.status {
            self.changes.push(self.status.clone());
        }
    }

    /// Reports whether the next request waits for the sleeping queue-mode device (the
    /// shell's report; nothing is decided from it).
    pub fn waiting_for_wake_up(&mut self, waiting: bool) {
        self.set(|s| s.waiting_for_wake_up = waiting);
    }

    fn phase(&mut self, p: JobPhase) {
        self.set(|s| s.phase = p);
    }

    fn observed(&mut self, state: Option<Reading<State>>, result: Option<Reading<UpdateResult>>) {
        let mut stamps = self.stamps;
        self.set(|s| stamps.merge(s, state, result));
        self.stamps = stamps;
    }

    fn polled(&mut self, state: Option<State>, result: Option<UpdateResult>, at: Instant) {
        let stamp = ReadingStamp::polled_at(at);
        self.observed(state.map(|v| (v, stamp)), result.map(|v| (v, stamp)));
    }

    /// Forgets State and Update Result as of `now` (the device rebooted: what it said before
    /// no longer holds), so only values read or notified from now on decide.
    fn forget(&mut self, now: Instant) {
        let mut stamps = self.stamps;
        self.set(|s| stamps.forget(s, now));
        self.stamps = stamps;
    }

    fn go(&mut self, stage: Stage, request: Request) -> Request {
        self.stage = stage;
        self.pending = request.clone();
        request
    }

    fn finish(&mut self, outcome: Result<(), UpdateError>) -> Request {
        match &outcome {
            Ok(()) => self.phase(JobPhase::Succeeded),
            Err(e) => {
                let error = e.to_string();
                self.set(|s| {
                    s.phase = JobPhase::Failed;
                    s.error = Some(error);
                });
            }
        }
        self.go(Stage::Done, Request::Done(outcome))
    }

    fn begin_download(&mut self, attempt: u32) -> Request {
        self.phase(JobPhase::Downloading);
        self.go(Stage::Writing { attempt, tries: 0 }, Request::StartDownload)
    }

    /// Starts following State and Update Result with a first poll.
    fn follow(&mut self, goal: Goal, limit: Duration, now: Instant) -> Request {
        let deadline = now + limit;
        self.go(Stage::Following { goal, deadline }, Request::Poll)
    }

    fn enter_reboot(&mut self, now: Instant, observing: bool) -> Request {
        self.phase(JobPhase::Rebooting);
        let deadline = now + self.cfg.timeouts.update;
        self.stage = Stage::Following {
            goal: Goal::Reboot,
            deadline,
        };
        self.decide(Goal::Reboot, deadline, now, observing)
    }

    fn enter_verify(&mut self, rebooted: bool, now: Instant) -> Request {
        self.phase(JobPhase::Verifying);
        if rebooted {
            // State and Update Result from before the reboot (and events queued before the
            // new registration) must not mix with the new ones: e.g. State 2 read before the
            // reboot and Update Result 1 after it would read as a failure.
            self.go(
                Stage::VerifyReconnecting,
                Request::Reconnect { clear_events: true },
            )
        } else {
            self.follow(Goal::Verify, self.cfg.timeouts.verify, now)
        }
    }

    /// The download ended with State 2 (`Ok`) or Idle and this Update Result (`Err`).
    fn download_outcome(&self) -> Option<Result<(), UpdateResult>> {
        match (self.status.state, self.status.result) {
            (Some(State::Downloaded), _) => Some(Ok(())),
            (Some(State::Idle), Some(r)) if r != UpdateResult::Initial => Some(Err(r)),
            _ => None,
        }
    }

    /// Decides a wait from the readings, or waits on: until the next poll (sooner while
    /// State or Update Result is not observed) or the deadline.
    fn decide(&mut self, goal: Goal, deadline: Instant, now: Instant, observing: bool) -> Request {
        match goal {
            Goal::Download { attempt } => match self.download_outcome() {
                Some(Ok(())) => {
                    self.phase(JobPhase::Downloaded);
                    self.phase(JobPhase::Updating);
                    return self.go(Stage::Executing, Request::Execute);
                }
                Some(Err(UpdateResult::ConnectionLost)) if attempt < self.cfg.retries => {
                    return self.begin_download(attempt + 1);
                }
                Some(Err(result)) => {
                    return self.finish(Err(UpdateError::Failed {
                        state: State::Idle,
                        result,
                    }))
                }
                None => {}
            },
            Goal::Reboot => {
                if finished_without_reboot(self.status.state, self.status.result) {
                    return self.enter_verify(false, now);
                }
            }
            Goal::Verify => {
                if let Some((state, result)) = final_reading(self.status.state, self.status.result)
                {
                    return self.go(
                        Stage::ReadingVersions { state, result },
                        Request::ReadVersions,
                    );
                }
            }
        }
        if now >= deadline {
            return self.finish(Err(UpdateError::Timeout(goal.phase())));
        }
        let interval = if observing {
            self.cfg.observed_poll_interval
        } else {
            self.cfg.poll_interval
        };
        let until = (now + interval).min(deadline);
        self.go(Stage::Following { goal, deadline }, Request::Wait { until })
    }

    /// The device registered again during a wait.
    fn registered(&mut self, goal: Goal, deadline: Instant, now: Instant) -> Request {
        match goal {
            Goal::Reboot => self.enter_verify(true, now),
            // Rebooted again (e.g. a self-test failure resets into the old image): the
            // observations went with the old registration, and so did what the device said.
            Goal::Download { .. } | Goal::Verify => self.go(
                Stage::Rejoining { goal, deadline },
                Request::Reconnect {
                    clear_events: false,
                },
            ),
        }
    }

    /// Takes `input` (the answer to the last request, or what ended a wait) at `now`;
    /// `observing` says whether State and Update Result are both observed, which sets how
    /// often they are polled. Returns the next request.
    pub fn step(&mut self, now: Instant, observing: bool, input: Input) -> Request {
        let cfg = self.cfg;
        match (self.stage.clone(), input) {
            (Stage::New, Input::Begin) => {
                self.phase(JobPhase::Starting);
                self.go(Stage::Preparing, Request::Prepare)
            }
            (Stage::Preparing, Input::Prepared(Err(e))) => self.finish(Err(e)),
            (Stage::Preparing, Input::Prepared(Ok(()))) => {
                self.go(Stage::StartObserving, Request::Observe)
            }
            (Stage::StartObserving, Input::Observed) => self.go(Stage::StartPolling, Request::Poll),
            (
                Stage::StartPolling,
                Input::Polled {
                    state, result, at, ..
                },
            ) => {
                self.polled(state, result, at);
                if self.status.state == Some(State::Updating) {
                    return self.finish(Err(UpdateError::Busy));
                }
                if self.status.state == Some(State::Idle)
                    && self.status.result == Some(UpdateResult::Initial)
                {
                    return self.begin_download(0);
                }
                // A stale result or a leftover download must not be mistaken for this
                // update's outcome: an empty Package URI returns to Idle, Update Result 0.
                self.go(Stage::Resetting { tries: 0 }, Request::Reset)
            }
            (Stage::Resetting { tries }, Input::Answered(a)) => match a {
                Answer::Success => self.go(Stage::PollingAfterReset, Request::Poll),
                Answer::Refused(code) => self.finish(Err(UpdateError::Rejected(RESET, code))),
                Answer::Error(DmError::Exchange(_)) if tries < cfg.retries => {
                    self.go(Stage::Resetting { tries: tries + 1 }, Request::Reset)
                }
                Answer::Error(e) => self.finish(Err(UpdateError::Device(RESET, e))),
            },
            (
                Stage::PollingAfterReset,
                Input::Polled {
                    state, result, at, ..
                },
            ) => {
                self.polled(state, result, at);
                self.begin_download(0)
            }
            (Stage::Writing { attempt, tries }, Input::Answered(a)) => {
                let op = match self.method {
                    Method::Push => PUSH,
                    Method::Pull => WRITE_URI,
                };
                let (error, unanswered) = match a {
                    Answer::Success => {
                        return self.follow(Goal::Download { attempt }, cfg.timeouts.download, now)
                    }
                    Answer::Refused(code) => (UpdateError::Rejected(op, code), false),
                    Answer::Error(e) => {
                        let unanswered = matches!(e, DmError::Exchange(_));
                        (UpdateError::Device(op, e), unanswered)
                    }
                };
                match self.method {
                    Method::Push if unanswered && tries < cfg.retries => self.go(
                        Stage::Writing {
                            attempt,
                            tries: tries + 1,
                        },
                        Request::StartDownload,
                    ),
                    Method::Push => self.finish(Err(error)),
                    // An unanswered write may have arrived, and after one, a refusal may be
                    // the device busy with it: State tells (a second write is refused
                    // with 4.00 while the download is under way).
                    Method::Pull if unanswered || tries > 0 => self.go(
                        Stage::CheckingArrival {
                            attempt,
                            tries,
                            error,
                            unanswered,
                        },
                        Request::ReadState,
                    ),
                    Method::Pull => self.finish(Err(error)),
                }
            }
            (
                Stage::CheckingArrival {
                    attempt,
                    tries,
                    error,
                    unanswered,
                },
                Input::StateRead(state),
            ) => {
                if write_arrived(state) {
                    self.follow(Goal::Download { attempt }, cfg.timeouts.download, now)
                } else if !unanswered || tries >= cfg.retries {
                    self.finish(Err(error))
                } else {
                    self.go(
                        Stage::Writing {
                            attempt,
                            tries: tries + 1,
                        },
                        Request::StartDownload,
                    )
                }
            }
            (
                Stage::Following { goal, deadline },
                Input::Polled {
                    state,
                    result,
                    at,
                    re_registered,
                },
            ) => {
                self.polled(state, result, at);
                if re_registered {
                    // A poll goes to the address in the store, which is the rebooted
                    // device's once it registered, even before its REGISTRATION event.
                    self.registered(goal, deadline, now)
                } else {
                    self.decide(goal, deadline, now, observing)
                }
            }
            (Stage::Following { goal, deadline }, Input::Notified { state, result }) => {
                self.observed(state, result);
                self.decide(goal, deadline, now, observing)
            }
            (Stage::Following { goal, deadline }, Input::Tick) => {
                self.go(Stage::Following { goal, deadline }, Request::Poll)
            }
            (Stage::Following { goal, deadline }, Input::Registered) => {
                self.registered(goal, deadline, now)
            }
            (Stage::Rejoining { goal, deadline }, Input::Reconnected(_)) => {
                // A device gone again is found by the next re-registration or poll.
                self.forget(now);
                self.go(Stage::Reobserving { goal, deadline }, Request::Observe)
            }
            (Stage::Reobserving { goal, deadline }, Input::Observed) => {
                self.go(Stage::Following { goal, deadline }, Request::Poll)
            }
            (Stage::Executing, Input::Answered(a)) => match a {
                Answer::Success => self.enter_reboot(now, observing),
                // The device may reboot before its answer gets through; coming back decides.
                Answer::Error(DmError::Exchange(_)) => self.enter_reboot(now, observing),
                // 4.05 can be the answer to a retransmitted Execute from a device that
                // already ran the first one and rebooted (its new session has no record of
                // the message). A device still in Downloaded refused for real.
                Answer::Refused(code) if code.starts_with("4.05") => {
                    self.go(Stage::CheckingRefusal { code }, Request::Poll)
                }
                Answer::Refused(code) => self.finish(Err(UpdateError::Rejected(EXECUTE, code))),
                Answer::Error(e) => self.finish(Err(UpdateError::Device(EXECUTE, e))),
            },
            (
                Stage::CheckingRefusal { code },
                Input::Polled {
                    state, result, at, ..
                },
            ) => {
                self.polled(state, result, at);
                if self.status.state == Some(State::Downloaded) {
                    self.finish(Err(UpdateError::Rejected(EXECUTE, code)))
                } else {
                    self.enter_reboot(now, observing)
                }
            }
            (Stage::VerifyReconnecting, Input::Reconnected(Err(e))) => self.finish(Err(e)),
            (Stage::VerifyReconnecting, Input::Reconnected(Ok(()))) => {
                self.forget(now);
                self.go(Stage::VerifyObserving, Request::Observe)
            }
            (Stage::VerifyObserving, Input::Observed) => {
                self.follow(Goal::Verify, cfg.timeouts.verify, now)
            }
            (Stage::ReadingVersions { state, result }, Input::Versions { firmware, package }) => {
                self.set(|s| {
                    s.firmware_version = firmware;
                    s.pkg_version = package;
                });
                if state == State::Idle && result == UpdateResult::Success {
                    self.finish(Ok(()))
                } else {
                    self.finish(Err(UpdateError::Failed { state, result }))
                }
            }
            // Not an answer to the request out (the shell gives only those): it stays out.
            _ => self.pending.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::endpoint::ExchangeError;
    use crate::firmware::campaign::PhaseTimeouts;
    use crate::server::readings::ObserveSequence;

    use object5::status::{State as S, UpdateResult as R};

    const RETRIES: u32 = 2;

    fn cfg() -> CampaignConfig {
        CampaignConfig {
            timeouts: PhaseTimeouts {
                request: Duration::from_secs(5),
                download: Duration::from_secs(300),
                update: Duration::from_secs(120),
                verify: Duration::from_secs(60),
            },
            poll_interval: Duration::from_secs(1),
            observed_poll_interval: Duration::from_secs(8),
            retries: RETRIES,
        }
    }

    fn lost() -> Answer {
        Answer::Error(DmError::Exchange(ExchangeError::Timeout))
    }

    fn refused(code: &str) -> Answer {
        Answer::Refused(code.into())
    }

    /// A machine and a fake clock, driven step by step: each `then` gives an input some
    /// milliseconds after the previous one and checks the request that comes back.
    struct Run {
        m: UpdateMachine,
        t0: Instant,
        now: Instant,
        observing: bool,
    }

    impl Run {
        fn new(method: Method) -> Self {
            let job = JobStatus::new(1, "dev", "p.suit", method);
            let t0 = Instant::now();
            Self {
                m: UpdateMachine::new(job, method, cfg()),
                t0,
                now: t0,
                observing: true,
            }
        }

        /// A run whose download finished: the next request out is Execute.
        fn at_execute(method: Method) -> Self {
            let mut r = Self::new(method);
            r.reach_download();
            r.reach_execute();
            r
        }

        /// A run whose download was asked for: the next request out is StartDownload.
        fn at_download(method: Method) -> Self {
            let mut r = Self::new(method);
            r.reach_download();
            r
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// Feeds `input` at `ms` after the start.
        fn at_ms(&mut self, ms: u64, input: Input) -> Request {
            self.now = self.at(ms);
            self.m.step(self.now, self.observing, input)
        }

        /// Feeds `input` 10 ms after the previous step.
        fn then(&mut self, input: Input) -> Request {
            let ms = u64::try_from((self.now - self.t0).as_millis()).expect("ms") + 10;
            self.at_ms(ms, input)
        }

        fn polled(&mut self, state: Option<S>, result: Option<R>) -> Request {
            self.polled_after(state, result, false)
        }

        fn polled_after(&mut self, state: Option<S>, result: Option<R>, re: bool) -> Request {
            let at = self.now + Duration::from_millis(5);
            self.then(Input::Polled {
                state,
                result,
                at,
                re_registered: re,
            })
        }

        fn notified_state(&mut self, s: S, number: u32) -> Request {
            let received = self.now + Duration::from_millis(5);
            let stamp = ReadingStamp {
                received,
                observe: Some(ObserveSequence {
                    observation: 3,
                    number,
                }),
            };
            self.then(Input::Notified {
                state: Some((s, stamp)),
                result: None,
            })
        }

        /// Begin, prepared, observed, first poll of an Idle device with no result: the
        /// download starts.
        fn reach_download(&mut self) {
            assert_eq!(self.at_ms(0, Input::Begin), Request::Prepare);
            assert_eq!(self.then(Input::Prepared(Ok(()))), Request::Observe);
            assert_eq!(self.then(Input::Observed), Request::Poll);
            assert_eq!(
                self.polled(Some(S::Idle), Some(R::Initial)),
                Request::StartDownload
            );
        }

        /// From a started download to Execute: written, Downloading, then Downloaded.
        fn reach_execute(&mut self) {
            assert_eq!(self.then(Input::Answered(Answer::Success)), Request::Poll);
            assert!(matches!(
                self.polled(Some(S::Downloading), Some(R::Initial)),
                Request::Wait { .. }
            ));
            assert!(matches!(
                self.notified_state(S::Downloaded, 1),
                Request::Execute
            ));
        }

        /// `came_back` (a REGISTRATION event, or a poll that found the new registration)
        /// starts the verification: reconnect with old events dropped, then success.
        fn back_and_verified(&mut self, came_back: Request) {
            assert_eq!(came_back, Request::Reconnect { clear_events: true });
            assert_eq!(r_phase(self), Verifying);
            assert_eq!(self.then(Input::Reconnected(Ok(()))), Request::Observe);
            // The reboot wiped what the device said before.
            assert_eq!(
                (self.m.status().state, self.m.status().result),
                (None, None)
            );
            assert_eq!(self.verify_success(), Request::Done(Ok(())));
        }

        /// After the reboot: reconnect, observe, poll Idle / Success, versions: success.
        fn verify_success(&mut self) -> Request {
            assert_eq!(self.then(Input::Observed), Request::Poll);
            assert_eq!(
                self.polled(Some(S::Idle), Some(R::Success)),
                Request::ReadVersions
            );
            self.then(Input::Versions {
                firmware: Some("2.0.0".into()),
                package: Some("2.0.0".into()),
            })
        }

        fn phases(&mut self) -> Vec<JobPhase> {
            let mut out: Vec<JobPhase> = Vec::new();
            for s in self.m.take_changes() {
                if out.last() != Some(&s.phase) {
                    out.push(s.phase);
                }
            }
            out
        }
    }

    use JobPhase::*;

    fn r_phase(r: &Run) -> JobPhase {
        r.m.status().phase
    }

    #[test]
    fn a_pull_succeeds_through_every_phase() {
        let mut r = Run::at_execute(Method::Pull);
        assert!(matches!(
            r.then(Input::Answered(Answer::Success)),
            Request::Wait { .. }
        ));
        let back = r.then(Input::Registered);
        r.back_and_verified(back);
        let s = r.m.status();
        assert_eq!(
            (s.state, s.result, s.firmware_version.as_deref()),
            (Some(S::Idle), Some(R::Success), Some("2.0.0"))
        );
        assert_eq!(
            r.phases(),
            [
                Starting,
                Downloading,
                Downloaded,
                Updating,
                Rebooting,
                Verifying,
                Succeeded
            ]
        );
    }

    #[test]
    fn each_failing_update_result_of_a_download_fails_the_job_with_it() {
        for code in 2..=11u8 {
            let result = R::from_code(code).expect("defined");
            let mut r = Run::at_download(Method::Push);
            assert_eq!(r.then(Input::Answered(Answer::Success)), Request::Poll);
            let next = r.polled(Some(S::Idle), Some(result));
            if result == R::ConnectionLost {
                // Worth another attempt (see the retry test).
                assert_eq!(next, Request::StartDownload);
                continue;
            }
            assert_eq!(
                next,
                Request::Done(Err(UpdateError::Failed {
                    state: S::Idle,
                    result
                }))
            );
            let s = r.m.status();
            assert_eq!(s.phase, Failed);
            assert!(
                s.error
                    .as_deref()
                    .is_some_and(|e| e.contains(&format!("Update Result {code} ("))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_failing_install_reports_its_result_with_or_without_a_reboot() {
        // Refused at install: no reboot comes, Downloaded with Update Result 8.
        let mut r = Run::at_execute(Method::Pull);
        assert!(matches!(
            r.then(Input::Answered(Answer::Success)),
            Request::Wait { .. }
        ));
        assert_eq!(r.then(Input::Tick), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Downloaded), Some(R::UpdateFailed)),
            Request::Poll,
            "verified with a fresh poll, without waiting for a reboot"
        );
        assert_eq!(
            r.polled(Some(S::Downloaded), Some(R::UpdateFailed)),
            Request::ReadVersions
        );
        assert_eq!(
            r.then(Input::Versions {
                firmware: Some("1.0.0".into()),
                package: None
            }),
            Request::Done(Err(UpdateError::Failed {
                state: S::Downloaded,
                result: R::UpdateFailed
            }))
        );
        // A self-test failure after the reboot: the old image reverts, Update Result 8.
        let mut r = Run::at_execute(Method::Pull);
        r.then(Input::Answered(Answer::Success));
        r.then(Input::Registered);
        r.then(Input::Reconnected(Ok(())));
        assert_eq!(r.then(Input::Observed), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Idle), Some(R::UpdateFailed)),
            Request::ReadVersions
        );
        assert!(matches!(
            r.then(Input::Versions {
                firmware: None,
                package: None
            }),
            Request::Done(Err(UpdateError::Failed {
                state: S::Idle,
                result: R::UpdateFailed
            }))
        ));
    }

    #[test]
    fn a_lost_connection_is_retried_then_reported() {
        let mut r = Run::at_download(Method::Pull);
        for _ in 0..RETRIES {
            assert_eq!(r.then(Input::Answered(Answer::Success)), Request::Poll);
            assert_eq!(
                r.polled(Some(S::Idle), Some(R::ConnectionLost)),
                Request::StartDownload
            );
        }
        assert_eq!(r.then(Input::Answered(Answer::Success)), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Idle), Some(R::ConnectionLost)),
            Request::Done(Err(UpdateError::Failed {
                state: S::Idle,
                result: R::ConnectionLost
            }))
        );
    }

    /// Milliseconds of `t` after the run's start.
    fn ms(r: &Run, t: Instant) -> u64 {
        u64::try_from((t - r.t0).as_millis()).expect("ms")
    }

    #[test]
    fn downloading_polls_between_notifications_and_times_out_at_its_limit() {
        let limit = cfg().timeouts.download;
        let mut r = Run::new(Method::Pull);
        r.observing = false;
        r.reach_download();
        assert_eq!(r.then(Input::Answered(Answer::Success)), Request::Poll);
        let deadline = r.now + limit;
        // Not observed: polled every second.
        let w = r.polled(Some(S::Downloading), None);
        assert_eq!(
            w,
            Request::Wait {
                until: r.now + Duration::from_secs(1)
            }
        );
        // Observed: the poll is only the fallback, after 8 s without a notification.
        r.observing = true;
        let w = r.notified_state(S::Downloading, 2);
        assert_eq!(
            w,
            Request::Wait {
                until: r.now + Duration::from_secs(8)
            }
        );
        // Near the limit the wait ends at the limit, and the poll after it decides.
        let near = ms(&r, deadline) - 3000;
        assert_eq!(r.at_ms(near, Input::Tick), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Downloading), None),
            Request::Wait { until: deadline }
        );
        assert_eq!(r.at_ms(ms(&r, deadline), Input::Tick), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Downloading), None),
            Request::Done(Err(UpdateError::Timeout(Downloading)))
        );
    }

    #[test]
    fn rebooting_times_out_when_the_device_never_comes_back() {
        let limit = cfg().timeouts.update;
        let mut r = Run::new(Method::Push);
        r.observing = false;
        r.reach_download();
        r.reach_execute();
        let w = r.then(Input::Answered(Answer::Success));
        let executed = r.now;
        assert_eq!(
            w,
            Request::Wait {
                until: executed + Duration::from_secs(1)
            }
        );
        for s in 1.. {
            assert_eq!(
                r.at_ms(ms(&r, executed) + s * 1000, Input::Tick),
                Request::Poll
            );
            match r.polled(None, None) {
                Request::Wait { until } => assert!(until <= executed + limit),
                Request::Done(e) => {
                    assert_eq!(e, Err(UpdateError::Timeout(Rebooting)));
                    assert!(r.now >= executed + limit && s <= 121, "{s}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn verifying_times_out_without_a_final_result() {
        let limit = cfg().timeouts.verify;
        let mut r = Run::at_execute(Method::Push);
        r.then(Input::Answered(Answer::Success));
        r.then(Input::Registered);
        r.then(Input::Reconnected(Ok(())));
        assert_eq!(r.then(Input::Observed), Request::Poll);
        let deadline = r.now + limit;
        assert!(matches!(
            r.polled(Some(S::Updating), Some(R::Initial)),
            Request::Wait { .. }
        ));
        assert_eq!(r.at_ms(ms(&r, deadline), Input::Tick), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Updating), Some(R::Initial)),
            Request::Done(Err(UpdateError::Timeout(Verifying)))
        );
    }

    #[test]
    fn a_lost_execute_ack_waits_for_the_device_to_come_back() {
        let mut r = Run::at_execute(Method::Pull);
        // No answer to Execute: the device rebooted before its ACK got out.
        assert!(matches!(
            r.then(Input::Answered(lost())),
            Request::Wait { .. }
        ));
        assert_eq!(r.m.status().phase, Rebooting);
        let back = r.then(Input::Registered);
        r.back_and_verified(back);
    }

    #[test]
    fn a_retransmitted_execute_refused_after_it_ran_is_no_failure() {
        // The device ran the first Execute and rebooted; the retransmission meets its new
        // session and gets 4.05, while State no longer says Downloaded.
        let mut r = Run::at_execute(Method::Pull);
        assert_eq!(r.then(Input::Answered(refused("4.05"))), Request::Poll);
        assert!(matches!(
            r.polled(Some(S::Updating), None),
            Request::Wait { .. }
        ));
        let back = r.then(Input::Registered);
        r.back_and_verified(back);
        // Still Downloaded: the device refused Execute for real.
        let mut r = Run::at_execute(Method::Pull);
        assert_eq!(r.then(Input::Answered(refused("4.05"))), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Downloaded), Some(R::Initial)),
            Request::Done(Err(UpdateError::Rejected(EXECUTE, "4.05".into())))
        );
        // Any other refusal fails at once.
        let mut r = Run::at_execute(Method::Pull);
        assert_eq!(
            r.then(Input::Answered(refused("4.04"))),
            Request::Done(Err(UpdateError::Rejected(EXECUTE, "4.04".into())))
        );
    }

    #[test]
    fn a_device_that_reboots_early_is_seen_in_the_store_before_its_event() {
        // The device re-registered while Execute was still waiting for its answer; the first
        // poll already reaches the new registration and says so.
        let mut r = Run::at_execute(Method::Pull);
        assert!(matches!(
            r.then(Input::Answered(lost())),
            Request::Wait { .. }
        ));
        assert_eq!(r.then(Input::Tick), Request::Poll);
        // Update Result 1 next to a stale State is not taken as the verdict: the reboot
        // wipes it, and only readings from now on count.
        let back = r.polled_after(None, Some(R::Success), true);
        r.back_and_verified(back);
    }

    #[test]
    fn a_device_that_reboots_late_is_waited_for_within_the_limit() {
        let mut r = Run::new(Method::Pull);
        r.observing = false;
        r.reach_download();
        r.reach_execute();
        assert!(matches!(
            r.then(Input::Answered(Answer::Success)),
            Request::Wait { .. }
        ));
        // Offline for 100 s (limit 120 s), polled every second without an answer.
        for s in 1..=100u64 {
            assert_eq!(r.at_ms(s * 1000, Input::Tick), Request::Poll);
            assert!(matches!(r.polled(None, None), Request::Wait { .. }));
        }
        assert_eq!(r.m.status().phase, Rebooting);
        let back = r.at_ms(101_000, Input::Registered);
        r.back_and_verified(back);
    }

    #[test]
    fn a_device_that_reboots_again_while_verifying_is_followed_anew() {
        let mut r = Run::at_execute(Method::Push);
        r.then(Input::Answered(Answer::Success));
        r.then(Input::Registered);
        r.then(Input::Reconnected(Ok(())));
        assert_eq!(r.then(Input::Observed), Request::Poll);
        assert!(matches!(
            r.polled(Some(S::Updating), Some(R::Initial)),
            Request::Wait { .. }
        ));
        // A self-test reset: registered again; observations and readings start over.
        assert_eq!(
            r.then(Input::Registered),
            Request::Reconnect {
                clear_events: false
            }
        );
        assert_eq!(r.then(Input::Reconnected(Ok(()))), Request::Observe);
        assert_eq!(r.m.status().state, None);
        assert_eq!(r.verify_success(), Request::Done(Ok(())));
    }

    #[test]
    fn a_device_gone_after_its_reboot_fails_the_job() {
        let mut r = Run::at_execute(Method::Push);
        r.then(Input::Answered(Answer::Success));
        r.then(Input::Registered);
        assert_eq!(
            r.then(Input::Reconnected(Err(UpdateError::NotRegistered))),
            Request::Done(Err(UpdateError::NotRegistered))
        );
    }

    #[test]
    fn a_device_busy_updating_is_left_alone() {
        let mut r = Run::new(Method::Pull);
        r.at_ms(0, Input::Begin);
        r.then(Input::Prepared(Ok(())));
        r.then(Input::Observed);
        assert_eq!(
            r.polled(Some(S::Updating), None),
            Request::Done(Err(UpdateError::Busy))
        );
        assert_eq!(r.phases(), [Starting, Failed]);
    }

    #[test]
    fn a_leftover_download_is_reset_first_retrying_an_unanswered_reset() {
        let mut r = Run::new(Method::Push);
        r.at_ms(0, Input::Begin);
        r.then(Input::Prepared(Ok(())));
        r.then(Input::Observed);
        assert_eq!(
            r.polled(Some(S::Downloaded), Some(R::Initial)),
            Request::Reset
        );
        assert_eq!(r.then(Input::Answered(lost())), Request::Reset);
        assert_eq!(r.then(Input::Answered(Answer::Success)), Request::Poll);
        assert_eq!(
            r.polled(Some(S::Idle), Some(R::Initial)),
            Request::StartDownload
        );
        // Refused, or never answered: the job fails naming the reset.
        let mut r = Run::new(Method::Push);
        r.at_ms(0, Input::Begin);
        r.then(Input::Prepared(Ok(())));
        r.then(Input::Observed);
        r.polled(Some(S::Idle), Some(R::IntegrityFailure));
        for _ in 0..RETRIES {
            assert_eq!(r.then(Input::Answered(lost())), Request::Reset);
        }
        assert!(matches!(
            r.then(Input::Answered(lost())),
            Request::Done(Err(UpdateError::Device(RESET, _)))
        ));
    }

    #[test]
    fn an_unanswered_uri_write_that_arrived_is_not_sent_again() {
        let mut r = Run::at_download(Method::Pull);
        assert_eq!(r.then(Input::Answered(lost())), Request::ReadState);
        assert_eq!(
            r.then(Input::StateRead(Some(S::Downloading))),
            Request::Poll
        );
        // It did not arrive: written again, up to the retries, then the error.
        let mut r = Run::at_download(Method::Pull);
        for _ in 0..RETRIES {
            assert_eq!(r.then(Input::Answered(lost())), Request::ReadState);
            assert_eq!(
                r.then(Input::StateRead(Some(S::Idle))),
                Request::StartDownload
            );
        }
        assert_eq!(r.then(Input::Answered(lost())), Request::ReadState);
        assert!(matches!(
            r.then(Input::StateRead(None)),
            Request::Done(Err(UpdateError::Device(WRITE_URI, _)))
        ));
        // After an unanswered write, a refusal may be the device busy with the first one.
        let mut r = Run::at_download(Method::Pull);
        r.then(Input::Answered(lost()));
        r.then(Input::StateRead(Some(S::Idle)));
        assert_eq!(r.then(Input::Answered(refused("4.00"))), Request::ReadState);
        assert_eq!(r.then(Input::StateRead(Some(S::Downloaded))), Request::Poll);
        // A first refusal is final.
        let mut r = Run::at_download(Method::Pull);
        assert_eq!(
            r.then(Input::Answered(refused("4.00"))),
            Request::Done(Err(UpdateError::Rejected(WRITE_URI, "4.00".into())))
        );
    }

    #[test]
    fn a_push_is_resent_when_unanswered_and_fails_when_refused() {
        let mut r = Run::at_download(Method::Push);
        assert_eq!(r.then(Input::Answered(lost())), Request::StartDownload);
        assert_eq!(
            r.then(Input::Answered(refused("4.13"))),
            Request::Done(Err(UpdateError::Rejected(PUSH, "4.13".into())))
        );
        assert_eq!(
            r.m.status().error.as_deref(),
            Some("push Package refused with 4.13")
        );
    }

    #[test]
    fn a_package_that_cannot_be_prepared_fails_while_starting() {
        let mut r = Run::new(Method::Pull);
        r.at_ms(0, Input::Begin);
        assert_eq!(
            r.then(Input::Prepared(Err(UpdateError::NoPackageHost))),
            Request::Done(Err(UpdateError::NoPackageHost))
        );
        assert_eq!(r.phases(), [Starting, Failed]);
    }

    #[test]
    fn an_input_that_answers_nothing_out_changes_nothing() {
        let mut r = Run::at_download(Method::Pull);
        let before = r.m.status().clone();
        assert_eq!(r.then(Input::Tick), Request::StartDownload);
        assert_eq!(r.then(Input::Registered), Request::StartDownload);
        assert_eq!(r.m.status(), &before);
    }
}
