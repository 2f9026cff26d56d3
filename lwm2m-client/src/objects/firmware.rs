//! Object 5, Firmware Update, object version 1.1 (urn:oma:lwm2m:oma:5:1.1): resources 0-3 and
//! 5-13, exactly those of that version, as announced at registration (`</5>;ver=1.1`).
//!
//! Automatic Upgrade at Download (/5/0/14) exists only from version 1.2 on, and is not exposed:
//! servers type a client's values by the announced object version, and the ones our users run
//! hold models for 1.0 and 1.1 (Leshan's server bundles Object 5 1.0 alone and users add the
//! registry's 1.1 file; Zephyr's and Anjay's clients implement 1.0/1.1 resources), so a 1.2
//! announcement would leave such a server without a model for the whole object, and a 1.1
//! announcement with resource 14 shows a resource the model lacks. (`object5`'s machine keeps
//! the behaviour for a board that enables it locally.)
//!
//! The rules (which operation is allowed in which State, what Update Result follows) are
//! `object5::machine`'s; the device side (stream a package in, verify it, install it, what
//! persists across a reboot) is a [`FirmwareBackend`]. This object is the glue between them
//! and the two transports: a Block1 push to /5/0/0 arrives block by block through the engine,
//! a pull from /5/0/1 is run by the application beside the engine ([`FirmwareUpdate::take_pull`],
//! [`PullSink`], [`FirmwareUpdate::pull_finished`]), so no package is ever held whole in RAM.
//!
//! [`FirmwareUpdate`] is a cheap handle: the engine owns one clone as its object, the
//! application keeps another to start pulls, install and report the boot outcome.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use object5::machine::{Effect, InstallOutcome, Machine, Protocol, Protocols, Refusal};
use object5::{State, UpdateResult};

use super::{int, only_instance, string};
use crate::codec::{Resource, ResourceType as T, ResourceValue, Value};
use crate::firmware_backend::{Finished, FirmwareBackend, ResumePoint, Stored};
use crate::object::{BlockChunk, Completion, ObjectHandler, OpError, Ops, ResourceDef};
use crate::pull::{PackageSink, PullError, SinkError};

const MODEL: &[ResourceDef] = &[
    ResourceDef::new(0, Ops::W, false, T::Opaque),
    ResourceDef::new(1, Ops::RW, false, T::String),
    ResourceDef::new(2, Ops::E, false, T::None),
    ResourceDef::new(3, Ops::R, false, T::Integer),
    ResourceDef::new(5, Ops::R, false, T::Integer),
    ResourceDef::new(6, Ops::R, false, T::String),
    ResourceDef::new(7, Ops::R, false, T::String),
    ResourceDef::new(8, Ops::R, true, T::Integer),
    ResourceDef::new(9, Ops::R, false, T::Integer),
    ResourceDef::new(10, Ops::E, false, T::None),
    ResourceDef::new(11, Ops::RW, false, T::Integer),
    ResourceDef::new(12, Ops::R, false, T::Time),
    ResourceDef::new(13, Ops::RW, false, T::Unsigned),
];

/// A pull the application should run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullJob {
    /// What to fetch.
    pub uri: String,
    /// Protocol the URI selects (all built in, checked when the URI was written).
    pub protocol: Protocol,
    /// Continue an interrupted download from here (after a reboot), if the server still
    /// has the same entity.
    pub resume: Option<ResumePoint>,
    /// The second stage of a two-stage pull: the image named by the manifest.
    pub image_stage: bool,
    /// Identifies this transfer; a sink of an older transfer is refused.
    generation: u32,
}

struct Core<B> {
    backend: B,
    machine: Machine,
    uri: String,
    pkg: (String, String),
    /// Push: where the next Block1 block must start.
    next_offset: u64,
    /// A pull for the application to start.
    pull: Option<PullJob>,
    /// The transfer the backend is receiving; bumped on every new download or reset.
    generation: u32,
    /// Execute accepted: the application reboots into the new image after the response.
    install_requested: bool,
    /// Deferred install time (seconds since the epoch).
    install_at: Option<u64>,
    /// Unix time (ms) at engine time 0, for Last State Change Time.
    epoch_ms: u64,
}

impl<B: FirmwareBackend> Core<B> {
    fn now_s(&self, now_ms: u64) -> u64 {
        (self.epoch_ms + now_ms) / 1000
    }

    /// Carries out what the state machine asked for.
    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::None | Effect::StartPush => {}
            Effect::StartPull(protocol) => self.pull_package(protocol),
            Effect::DiscardPackage => {
                self.generation = self.generation.wrapping_add(1);
                self.pull = None;
                self.install_at = None;
                self.pkg = Default::default();
                let result = self.machine.result();
                self.backend.discard(result);
            }
            Effect::Install => self.install(),
            Effect::InstallAt(t) => self.install_at = Some(t),
        }
    }

    /// Queues a pull of the package at the Package URI from its start, replacing any transfer
    /// under way.
    fn pull_package(&mut self, protocol: Protocol) {
        self.generation = self.generation.wrapping_add(1);
        self.pull = Some(PullJob {
            uri: self.uri.clone(),
            protocol,
            resume: None,
            image_stage: false,
            generation: self.generation,
        });
    }

    fn install(&mut self) {
        match self.backend.install() {
            Ok(()) => self.install_requested = true,
            Err(_) => {
                // The package could not even be marked: the update failed before any reboot
                // and the package stays stored (State Downloaded, result 8).
                let now = self.now_s(0);
                self.machine.install_finished(InstallOutcome::Reverted, now);
            }
        }
    }

    fn download_failed(&mut self, result: UpdateResult, now_ms: u64) {
        self.generation = self.generation.wrapping_add(1);
        self.pull = None;
        self.backend.discard(result);
        let now = self.now_s(now_ms);
        self.machine.download_failed(result, now);
    }

    fn finished(&mut self, now_ms: u64) -> Result<(), UpdateResult> {
        match self.backend.finish()? {
            Finished::Downloaded { name, version } => {
                self.pkg = (name, version);
                let now = self.now_s(now_ms);
                let effect = self.machine.download_finished(now);
                self.apply(effect);
            }
            Finished::FetchImage(uri) => {
                let protocol = object5::machine::check_uri(&uri, self.machine.protocols)
                    .map_err(|e| e.update_result())?;
                self.pull = Some(PullJob {
                    uri,
                    protocol,
                    resume: None,
                    image_stage: true,
                    generation: self.generation,
                });
            }
        }
        Ok(())
    }
}

/// Object 5 instance 0 over a [`FirmwareBackend`]; clones share one object.
pub struct FirmwareUpdate<B> {
    core: Rc<RefCell<Core<B>>>,
}

impl<B> Clone for FirmwareUpdate<B> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

fn refusal(r: Refusal) -> OpError {
    match r {
        Refusal::MethodNotAllowed => OpError::MethodNotAllowed,
        Refusal::BadRequest => OpError::BadRequest,
    }
}

impl<B: FirmwareBackend> FirmwareUpdate<B> {
    /// A push-only object (no pull protocol built in, /5/0/9 = 1) with its clock at the epoch.
    pub fn new(backend: B) -> Self {
        Self::with_pull(backend, Protocols::NONE, 0)
    }

    /// The object after a boot: State and Update Result restored from what the backend
    /// persisted (Downloaded when a verified package is stored; a pull interrupted by the
    /// reboot resumes where it can, else starts again; an interrupted push ends with 4).
    /// `protocols` are the pull protocols built in (/5/0/8); `epoch_ms` is the Unix time at
    /// engine time 0.
    pub fn with_pull(mut backend: B, protocols: Protocols, epoch_ms: u64) -> Self {
        let stored: Stored = backend.stored();
        let is_pull = !stored.uri.is_empty();
        let mut machine = Machine::restore(
            Some(stored.state),
            Some(stored.result),
            stored.state == State::Downloaded,
            is_pull,
            protocols,
        );
        let mut pull = None;
        if machine.state() == State::Downloading {
            match object5::machine::check_uri(&stored.uri, protocols) {
                Ok(protocol) => {
                    pull = Some(PullJob {
                        uri: stored.uri.clone(),
                        protocol,
                        resume: stored.resume.clone(),
                        image_stage: false,
                        generation: 1,
                    })
                }
                Err(e) => machine.download_failed(e.update_result(), epoch_ms / 1000),
            }
        }
        if stored.state == State::Downloading && pull.is_none() {
            // Interrupted and not resumable: the partial package goes, the result says why.
            backend.discard(machine.result());
        }
        Self {
            core: Rc::new(RefCell::new(Core {
                backend,
                machine,
                uri: stored.uri,
                pkg: (stored.name, stored.version),
                next_offset: 0,
                pull,
                generation: 1,
                install_requested: false,
                install_at: None,
                epoch_ms,
            })),
        }
    }

    /// The backend back, once the engine's clone is gone (the device resets and a new object
    /// is built from what persisted). Fails while another clone exists.
    pub fn into_backend(self) -> Result<B, Self> {
        match Rc::try_unwrap(self.core) {
            Ok(core) => Ok(core.into_inner().backend),
            Err(core) => Err(Self { core }),
        }
    }

    /// State (/5/0/3).
    pub fn state(&self) -> State {
        self.core.borrow().machine.state()
    }

    /// Update Result (/5/0/5).
    pub fn result(&self) -> UpdateResult {
        self.core.borrow().machine.result()
    }

    /// Lets the application run the backend directly (e.g. the simulated device's reset).
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        f(&mut self.core.borrow_mut().backend)
    }

    /// Simulated user: defer the next Execute Update (Update Result 11) if /5/0/13 allows.
    pub fn set_defer_next_update(&self, defer: bool) {
        self.core.borrow_mut().machine.defer_next_update = defer;
    }

    /// The pull the application must start now, if any.
    pub fn take_pull(&self) -> Option<PullJob> {
        let mut c = self.core.borrow_mut();
        let mut job = c.pull.take()?;
        if job.resume.take().is_some() {
            // Re-open the interrupted download; the offset may be earlier than persisted, and
            // a two-stage pull goes on with its image. Otherwise the package starts again.
            let protocols = c.machine.protocols;
            if let Ok(resumed) = c.backend.resume() {
                match resumed.image_uri {
                    None => job.resume = Some(resumed.point),
                    Some(uri) => {
                        // An image URI no built-in protocol takes: the package starts again.
                        if let Ok(protocol) = object5::machine::check_uri(&uri, protocols) {
                            job.uri = uri;
                            job.protocol = protocol;
                            job.image_stage = true;
                            job.resume = Some(resumed.point);
                        }
                    }
                }
            }
        }
        Some(job)
    }

    /// The sink a pull of `job` writes into.
    pub fn pull_sink(&self, job: &PullJob) -> PullSink<B> {
        PullSink {
            core: self.core.clone(),
            generation: job.generation,
            image_stage: job.image_stage,
            resume_offset: job.resume.as_ref().map(|r| r.offset),
            skip: 0,
        }
    }

    /// A pull ended: verify and store, or report its error as the Update Result. Returns
    /// true when State or Update Result changed (observers should be told).
    pub fn pull_finished(
        &self,
        job: &PullJob,
        outcome: Result<(), PullError>,
        now_ms: u64,
    ) -> bool {
        let mut c = self.core.borrow_mut();
        if job.generation != c.generation || c.machine.state() != State::Downloading {
            return false; // cancelled or replaced meanwhile
        }
        let before = (c.machine.state(), c.machine.result());
        match outcome {
            Ok(()) => {
                if let Err(r) = c.finished(now_ms) {
                    c.download_failed(r, now_ms);
                }
            }
            Err(e) => c.download_failed(e.update_result(), now_ms),
        }
        before != (c.machine.state(), c.machine.result())
    }

    /// Whether Execute Update was accepted and the device should now reset into the package
    /// (after the response has been sent). Cleared by reading it.
    pub fn take_install_request(&self) -> bool {
        core::mem::take(&mut self.core.borrow_mut().install_requested)
    }

    /// When a deferred update installs by itself (Unix seconds), if one is deferred.
    pub fn deferred_until(&self) -> Option<u64> {
        self.core.borrow().install_at
    }

    /// A deferred update whose time has come installs now; true if it did.
    pub fn poll_deferred(&self, now_ms: u64) -> bool {
        let mut c = self.core.borrow_mut();
        let now = c.now_s(now_ms);
        if c.install_at.is_some_and(|t| t <= now) {
            c.install_at = None;
            let effect = c.machine.defer_expired(now);
            c.apply(effect);
            return true;
        }
        false
    }

    /// The boot after an install: the new image confirmed itself (`Success`) or the old one
    /// runs again (`Reverted`), or the bootloader refused the package (`IntegrityFailure`).
    /// The backend has persisted the result already; this updates what the object reports.
    pub fn install_finished(&self, outcome: InstallOutcome, now_ms: u64) {
        let mut c = self.core.borrow_mut();
        let now = c.now_s(now_ms);
        c.machine.install_finished(outcome, now);
        if outcome == InstallOutcome::Success {
            let stored = c.backend.stored();
            c.pkg = (stored.name, stored.version);
        }
    }
}

/// Where a pull writes: forwards to the backend while the transfer is still the current one.
pub struct PullSink<B> {
    core: Rc<RefCell<Core<B>>>,
    generation: u32,
    image_stage: bool,
    resume_offset: Option<u64>,
    /// Bytes the transport repeats before the resume point (it restarts at a block boundary).
    skip: u64,
}

impl<B: FirmwareBackend> PackageSink for PullSink<B> {
    fn start(
        &mut self,
        from: u64,
        etag: Option<&[u8]>,
        total: Option<u64>,
    ) -> Result<(), SinkError> {
        let mut c = self.core.borrow_mut();
        if c.generation != self.generation {
            return Err(SinkError(UpdateResult::Cancelled));
        }
        let capacity = c.backend.capacity().map(u64::from);
        if self.image_stage {
            match self.resume_offset {
                // A block-wise transport resumes at the block holding the resume point.
                Some(at) if from > 0 && from <= at => {
                    self.skip = at - from;
                    return Ok(());
                }
                // The image changed under a resume: the stored part belongs to another
                // entity, and the manifest that named the image may have changed with it, so
                // the package starts again from the Package URI (this transfer is replaced).
                Some(at) if at > 0 && from == 0 => {
                    let protocols = c.machine.protocols;
                    let protocol = object5::machine::check_uri(&c.uri, protocols)
                        .map_err(|e| SinkError(e.update_result()))?;
                    c.pull_package(protocol);
                    return Err(SinkError(UpdateResult::Cancelled));
                }
                // A transfer that went astray.
                _ if from != 0 => return Err(SinkError(UpdateResult::ConnectionLost)),
                _ => {}
            }
            // The envelope itself is small; the image must fit the slot.
            if total.zip(capacity).is_some_and(|(t, cap)| t > cap) {
                return Err(SinkError(UpdateResult::NotEnoughFlash));
            }
            return c.backend.begin_image(etag).map_err(SinkError);
        }
        match self.resume_offset {
            // A block-wise transport resumes at the block holding the resume point.
            Some(at) if from > 0 && from <= at => self.skip = at - from,
            _ if from == 0 => {
                // New transfer, or the server's entity changed: start over.
                self.skip = 0;
                c.backend.begin(etag).map_err(SinkError)?;
            }
            _ => return Err(SinkError(UpdateResult::ConnectionLost)),
        }
        Ok(())
    }

    fn write(&mut self, _offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        let mut c = self.core.borrow_mut();
        if c.generation != self.generation {
            return Err(SinkError(UpdateResult::Cancelled));
        }
        let skip = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.skip -= skip as u64;
        match bytes.get(skip..) {
            Some(rest) if !rest.is_empty() => c.backend.write(rest).map_err(SinkError),
            _ => Ok(()),
        }
    }
}

impl<B: FirmwareBackend> ObjectHandler for FirmwareUpdate<B> {
    fn id(&self) -> u16 {
        5
    }
    fn version(&self) -> Option<&'static str> {
        Some("1.1")
    }
    fn model(&self) -> &'static [ResourceDef] {
        MODEL
    }
    fn instances(&self) -> Vec<u16> {
        alloc::vec![0]
    }
    fn read(&mut self, _now: u64, instance: u16, resource: u16) -> Result<ResourceValue, OpError> {
        only_instance(instance)?;
        let c = self.core.borrow();
        let m = &c.machine;
        Ok(match resource {
            1 => string(&c.uri),
            3 => int(i64::from(m.state().code())),
            5 => int(i64::from(m.result().code())),
            6 => string(&c.pkg.0),
            7 => string(&c.pkg.1),
            8 => ResourceValue::Multiple(
                m.protocols
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i as u16, Value::Integer(p as i64)))
                    .collect(),
            ),
            // Push always; pull when a protocol is built in.
            9 => int(if m.protocols == Protocols::NONE { 1 } else { 2 }),
            11 => int(i64::from(m.severity)),
            12 => ResourceValue::Single(Value::Time(
                i64::try_from(m.last_state_change()).unwrap_or(i64::MAX),
            )),
            13 => ResourceValue::Single(Value::Unsigned(u64::from(m.max_defer_period))),
            0 | 2 | 10 => return Err(OpError::MethodNotAllowed),
            _ => return Err(OpError::NotFound),
        })
    }
    fn write(&mut self, now: u64, instance: u16, r: &Resource) -> Result<Completion, OpError> {
        only_instance(instance)?;
        match (r.id, &r.value) {
            (0, ResourceValue::Single(Value::Opaque(bytes))) => {
                let chunk = BlockChunk {
                    first: true,
                    offset: 0,
                    data: bytes,
                    last: true,
                    total: u32::try_from(bytes.len()).ok(),
                };
                self.write_block(now, instance, 0, &chunk)
            }
            (1, ResourceValue::Single(Value::String(uri))) => {
                let mut c = self.core.borrow_mut();
                let t = c.now_s(now);
                let effect = c.machine.write_package_uri(uri, t).map_err(refusal)?;
                c.uri = uri.clone();
                let mut requested = false;
                match effect {
                    // Best effort: a URI too long to persist only ends as 4 after a reset.
                    Effect::StartPull(_) => {
                        requested = c.backend.download_requested(uri).is_ok();
                    }
                    // An unusable URI already failed (7 or 9): persisted like any failure.
                    Effect::None => {
                        let result = c.machine.result();
                        c.backend.discard(result);
                    }
                    _ => {}
                }
                c.apply(effect);
                if requested {
                    // The same URI written again after its pull lost the connection: the
                    // backend may go on from where that download stands.
                    let resume = c.backend.stored().resume;
                    if let Some(job) = c.pull.as_mut() {
                        job.resume = resume;
                    }
                }
                Ok(Completion::Done)
            }
            (11, ResourceValue::Single(Value::Integer(v))) if (0..=2).contains(v) => {
                self.core.borrow_mut().machine.severity = *v as u8;
                Ok(Completion::Done)
            }
            (13, ResourceValue::Single(Value::Unsigned(v))) => {
                self.core.borrow_mut().machine.max_defer_period =
                    u32::try_from(*v).map_err(|_| OpError::BadRequest)?;
                Ok(Completion::Done)
            }
            (13, ResourceValue::Single(Value::Integer(v))) if *v >= 0 => {
                self.core.borrow_mut().machine.max_defer_period =
                    u32::try_from(*v).map_err(|_| OpError::BadRequest)?;
                Ok(Completion::Done)
            }
            (0 | 1 | 11 | 13, _) => Err(OpError::BadRequest),
            _ => Err(OpError::MethodNotAllowed),
        }
    }
    fn write_block(
        &mut self,
        now: u64,
        instance: u16,
        resource: u16,
        chunk: &BlockChunk<'_>,
    ) -> Result<Completion, OpError> {
        only_instance(instance)?;
        if resource != 0 {
            return Err(OpError::MethodNotAllowed);
        }
        let mut c = self.core.borrow_mut();
        let t = c.now_s(now);
        if chunk.first {
            // A single NUL byte as the whole package resets (an empty one too).
            let reset = chunk.last && (chunk.data == [0] || chunk.data.is_empty());
            let effect = c.machine.package_write_started(reset, t).map_err(refusal)?;
            c.apply(effect);
            if reset {
                return Ok(Completion::Done);
            }
            c.generation = c.generation.wrapping_add(1);
            c.pull = None;
            c.next_offset = 0;
            // A push has no Package URI: a reset cannot turn it into a pull of an older one.
            c.uri.clear();
            if let Err(r) = c.backend.download_requested("") {
                c.download_failed(r, now);
                return Err(OpError::BadRequest);
            }
            let cap = c.backend.capacity();
            if chunk.total.zip(cap).is_some_and(|(total, cap)| total > cap) {
                c.download_failed(UpdateResult::NotEnoughFlash, now);
                return Err(OpError::TooLarge { size1: cap });
            }
            if let Err(r) = c.backend.begin(None) {
                c.download_failed(r, now);
                return Err(OpError::BadRequest);
            }
        } else if c.machine.state() != State::Downloading || chunk.offset != c.next_offset {
            return Err(OpError::Incomplete);
        }
        if let Err(r) = c.backend.write(chunk.data) {
            c.download_failed(r, now);
            return Err(match r {
                UpdateResult::NotEnoughFlash => OpError::TooLarge {
                    size1: c.backend.capacity(),
                },
                // Errors are reported through Update Result; the block itself was understood.
                _ => OpError::BadRequest,
            });
        }
        c.next_offset = chunk.offset + chunk.data.len() as u64;
        if chunk.last {
            if let Err(r) = c.finished(now) {
                c.download_failed(r, now);
            }
        }
        Ok(Completion::Done)
    }
    /// A push whose framing broke is a failed download (Object 5 State rules: Downloading
    /// -> Idle with an Update Result): the bytes received are not the package sent, so the
    /// result is 5, integrity check failure. A malformed first block starts the download it
    /// fails, as any first block does, so the server reads the same Idle / 5 whichever block
    /// broke; in Downloaded or Updating the push itself is refused as a well-formed one is,
    /// and a later block of a push no longer under way (cancelled) is out of sequence.
    fn abort_block_write(
        &mut self,
        now: u64,
        instance: u16,
        resource: u16,
        first: bool,
    ) -> Result<(), OpError> {
        only_instance(instance)?;
        if resource != 0 {
            return Err(OpError::MethodNotAllowed);
        }
        let mut c = self.core.borrow_mut();
        if c.machine.state() != State::Downloading {
            if !first {
                return Err(OpError::Incomplete);
            }
            let t = c.now_s(now);
            let effect = c.machine.package_write_started(false, t).map_err(refusal)?;
            c.apply(effect);
        }
        c.download_failed(UpdateResult::IntegrityFailure, now);
        Ok(())
    }
    fn execute(
        &mut self,
        now: u64,
        instance: u16,
        resource: u16,
        args: &[u8],
    ) -> Result<Completion, OpError> {
        only_instance(instance)?;
        let mut c = self.core.borrow_mut();
        let t = c.now_s(now);
        let effect = match resource {
            2 if !args.is_empty() => return Err(OpError::BadRequest),
            2 => c.machine.execute_update(t),
            10 => c.machine.cancel(t),
            _ => return Err(OpError::MethodNotAllowed),
        }
        .map_err(refusal)?;
        c.apply(effect);
        Ok(Completion::Done)
    }
}

/// A backend with no storage that accepts any bytes: measures the engine's own memory and
/// behaviour during a download (tests, fuzzing). It never installs.
#[derive(Clone, Debug, Default)]
pub struct DiscardBackend {
    /// Bytes received for the current package.
    pub received: u64,
    /// A package was completely received and not discarded.
    pub complete: bool,
}

impl FirmwareBackend for DiscardBackend {
    fn begin(&mut self, _etag: Option<&[u8]>) -> Result<(), UpdateResult> {
        self.received = 0;
        self.complete = false;
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), UpdateResult> {
        self.received += data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<Finished, UpdateResult> {
        self.complete = true;
        Ok(Finished::Downloaded {
            name: String::new(),
            version: String::new(),
        })
    }
    fn discard(&mut self, _result: UpdateResult) {
        self.received = 0;
        self.complete = false;
    }
}
