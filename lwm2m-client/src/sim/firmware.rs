//! Object 5's backend on the simulated device: object5's SUIT verifier and slot manager on
//! device-port's SimFlash, as firmware on a board would use them.
//!
//! Like firmware, it owns one receive buffer for the manifest (lent to each download and
//! taken back after it) and one acceptance policy (trust anchors, vendor and class ids) for
//! its whole life; the anti-rollback floor is read from the slot journal at every download.
//! Resume data lives in the device's key-value store: the package offset where the payload
//! starts and the package's entity tag, written once when it begins, and the entity tag of
//! each image a two-stage pull fetches, by URI, written when its transfer begins. Encrypted
//! payloads are decrypted with the decryption keys of the device's key store as they stream
//! into the candidate slot (draft-ietf-suit-firmware-encryption-24).

use std::cell::RefCell;
use std::rc::Rc;

use device_port::auth::{decryption_keys, StoredDecryptionKey};
use device_port::board::{DecryptionKeys, KeyValue};
use device_port::SimDevice;
use object5::manifest::host_crypto::HostCrypto;
use object5::manifest::{DecryptionKey, DeviceIdentity, Freshness, Policy, TrustAnchor};
use object5::package::{Outcome, PackageError, PackageReceiver, PayloadStarts, ResumeAt};
use object5::slots::Phase;
use object5::UpdateResult;

use crate::firmware_backend::{Finished, FirmwareBackend, ResumePoint, Resumed, Stored};

/// Size of the manifest receive buffer: wrapper + manifest of any package we build.
const RECEIVE_BUFFER: usize = 4096;
/// Key-value entry holding the resume data of the download under way.
const RESUME_KEY: &str = "fw-resume";
/// Key-value entry holding the envelope offset (u64 BE) where an integrated second image's
/// payload began, so that a cut inside that image resumes there.
const RESUME_SECOND_KEY: &str = "fw-resume-second";
/// Key-value entry holding the entity tags of the images a two-stage pull fetched, by URI:
/// records of URI length (u16 BE), URI, entity tag length (u8), entity tag.
const RESUME_IMAGES_KEY: &str = "fw-resume-images";

/// The device shared between Object 5 and the application (confirm, reboot).
pub type SharedDevice = Rc<RefCell<SimDevice>>;

/// Which packages the device accepts.
#[derive(Clone, Debug)]
pub struct Acceptance {
    /// SEC1 P-256 keys that may sign firmware.
    pub trust_anchors: Vec<Vec<u8>>,
    /// This device's vendor UUID.
    pub vendor_id: [u8; 16],
    /// This device's class UUID.
    pub class_id: [u8; 16],
}

/// The policy parts, leaked once per process so that downloads can borrow them for 'static,
/// as firmware keeps them in static memory.
struct StaticPolicy {
    anchors: &'static [TrustAnchor<'static>],
    vendor_id: &'static [u8; 16],
    class_id: &'static [u8; 16],
    /// The key store's payload decryption keys, read once as firmware reads them at boot.
    decryption_keys: &'static [DecryptionKey<'static>],
}

enum Stage {
    Idle,
    Envelope(PackageReceiver<'static, 'static, HostCrypto>),
    /// Two-stage pull: the image named by the manifest is being fetched.
    Image(PackageReceiver<'static, 'static, HostCrypto>),
}

/// [`FirmwareBackend`] on a [`SimDevice`].
pub struct SimFirmware {
    device: SharedDevice,
    policy: StaticPolicy,
    buf: Option<&'static mut [u8]>,
    stage: Stage,
    /// Entity tag of the download being opened, saved with the resume data.
    pending_etag: Option<Vec<u8>>,
    /// The image a two-stage pull fetches now (its entity tag is saved by this URI).
    fetching: Option<String>,
    /// Bytes received and not yet given to the slot manager: the simulated device opens its
    /// slot journal per call, so it takes a sector's worth at a time (RAM a board would
    /// spend on a flash write buffer anyway).
    pending: Vec<u8>,
}

/// How many received bytes [`SimFirmware`] collects before writing them to the slot.
const WRITE_BEHIND: usize = 4096;

fn slot_result(device: &SharedDevice, e: object5::slots::SlotError) -> UpdateResult {
    let d = device.borrow();
    if d.flash().is_powered_off() {
        // Power is gone: nothing more can be journaled; report what a reboot will show.
        return UpdateResult::UpdateFailed;
    }
    PackageError::Slot(e).update_result()
}

/// An entity tag as saved with the resume data: empty when the server sent none.
fn saved_etag(etag: Vec<u8>) -> Option<Vec<u8>> {
    (!etag.is_empty()).then_some(etag)
}

/// PkgName / PkgVersion as the slot manager stored them from the authenticated manifest.
fn downloaded(
    slots: &object5::slots::SlotManager<'_, &mut device_port::device::DeviceFlash>,
) -> Finished {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Finished::Downloaded {
        name: text(slots.package_name()),
        version: text(slots.package_version()),
    }
}

impl SimFirmware {
    /// A backend on `device` accepting what `acceptance` allows.
    pub fn new(device: SharedDevice, acceptance: Acceptance) -> Self {
        let keys: &'static [Vec<u8>] = Box::leak(acceptance.trust_anchors.into_boxed_slice());
        let anchors: Vec<TrustAnchor<'static>> =
            keys.iter().map(|k| TrustAnchor::P256(k)).collect();
        let stored: &'static [StoredDecryptionKey] = Box::leak(
            device
                .borrow()
                .decryption_keys()
                .to_vec()
                .into_boxed_slice(),
        );
        Self {
            device,
            policy: StaticPolicy {
                anchors: Box::leak(anchors.into_boxed_slice()),
                vendor_id: Box::leak(Box::new(acceptance.vendor_id)),
                class_id: Box::leak(Box::new(acceptance.class_id)),
                decryption_keys: Box::leak(decryption_keys(stored).into_boxed_slice()),
            },
            buf: Some(Box::leak(vec![0u8; RECEIVE_BUFFER].into_boxed_slice())),
            stage: Stage::Idle,
            pending_etag: None,
            fetching: None,
            pending: Vec::with_capacity(WRITE_BEHIND),
        }
    }

    /// A reset: whatever was in RAM (a download in progress) is gone; the flash keeps what
    /// was journaled, and the next boot resumes from it.
    pub fn power_cycle(&mut self) {
        self.close();
        self.pending_etag = None;
        self.fetching = None;
    }

    /// The shared device.
    pub fn device(&self) -> &SharedDevice {
        &self.device
    }

    fn policy(&self, floor: u64) -> Policy<'static> {
        Policy {
            anchors: self.policy.anchors,
            identity: DeviceIdentity {
                vendor_id: self.policy.vendor_id,
                class_id: self.policy.class_id,
                device_id: None,
            },
            freshness: Freshness::NewerThanInstalled(floor),
        }
    }

    /// A receiver for a new or resumed download: the installed sequence number as the
    /// rollback floor, the device's crypto backend and decryption keys, the receive buffer.
    fn new_receiver(
        &mut self,
    ) -> Result<PackageReceiver<'static, 'static, HostCrypto>, UpdateResult> {
        let (floor, crypto) = {
            let mut d = self.device.borrow_mut();
            let crypto = d.config().crypto;
            let slots = d.slots().map_err(|_| UpdateResult::UpdateFailed)?;
            (slots.status().floor, crypto)
        };
        let buf = self.buf.take().ok_or(UpdateResult::OutOfRam)?;
        Ok(PackageReceiver::new(buf, self.policy(floor), crypto)
            .with_decryption_keys(self.policy.decryption_keys))
    }

    /// Ends the current stage and takes the receive buffer back.
    fn close(&mut self) {
        self.pending.clear();
        match std::mem::replace(&mut self.stage, Stage::Idle) {
            Stage::Envelope(rx) | Stage::Image(rx) => self.buf = Some(rx.into_buffer()),
            Stage::Idle => {}
        }
    }

    fn fail(&mut self, result: UpdateResult) -> UpdateResult {
        self.close();
        self.discard(result);
        result
    }

    fn save_resume(&mut self, payload_start: u64, etag: Option<&[u8]>) {
        let mut v = payload_start.to_be_bytes().to_vec();
        v.extend_from_slice(etag.unwrap_or_default());
        self.save_kv(RESUME_KEY, &v);
    }

    /// Persists resume data under `key`; a failure only costs the resume, so it is logged.
    fn save_kv(&mut self, key: &str, value: &[u8]) {
        if let Err(e) = self.device.borrow_mut().kv_mut().set(key, value) {
            tracing::warn!(key, error = %e, "resume data not saved");
        }
    }

    fn load_resume(&self) -> Option<(u64, Vec<u8>)> {
        let v = self.device.borrow().kv().get(RESUME_KEY).ok()??;
        let (start, etag) = v.split_at_checked(8)?;
        Some((u64::from_be_bytes(start.try_into().ok()?), etag.to_vec()))
    }

    /// Where an integrated second image's payload began ([`RESUME_SECOND_KEY`]).
    fn load_second_start(&self) -> Option<u64> {
        let v = self.device.borrow().kv().get(RESUME_SECOND_KEY).ok()??;
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }

    /// The fetched images' entity tags as saved ([`RESUME_IMAGES_KEY`]).
    fn image_etags(&self) -> Vec<(String, Vec<u8>)> {
        let v = self.device.borrow().kv().get(RESUME_IMAGES_KEY);
        let mut rest = &v.ok().flatten().unwrap_or_default()[..];
        let mut out = Vec::new();
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let Some((uri, tail)) = tail.split_at_checked(usize::from(u16::from_be_bytes(*len)))
            else {
                break;
            };
            let Some((&n, tail)) = tail.split_first() else {
                break;
            };
            let Some((etag, tail)) = tail.split_at_checked(usize::from(n)) else {
                break;
            };
            out.push((String::from_utf8_lossy(uri).into_owned(), etag.to_vec()));
            rest = tail;
        }
        out
    }

    /// Saves `etag` as the entity tag of the image at `uri`.
    fn save_image_etag(&mut self, uri: &str, etag: &[u8]) {
        let mut records = self.image_etags();
        records.retain(|(u, _)| u != uri);
        records.push((uri.to_owned(), etag.to_vec()));
        let mut v = Vec::new();
        for (u, e) in &records {
            let (Ok(len), Ok(n)) = (u16::try_from(u.len()), u8::try_from(e.len())) else {
                continue;
            };
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(u.as_bytes());
            v.push(n);
            v.extend_from_slice(e);
        }
        self.save_kv(RESUME_IMAGES_KEY, &v);
    }

    /// Forgets all resume data (the download ended, or a new one begins).
    fn forget_resume(&mut self) {
        let mut d = self.device.borrow_mut();
        let _ = d.kv_mut().remove(RESUME_KEY);
        let _ = d.kv_mut().remove(RESUME_SECOND_KEY);
        let _ = d.kv_mut().remove(RESUME_IMAGES_KEY);
    }

    /// Gives the collected bytes to the receiver; saves the resume data once the payload's
    /// position in the package is known.
    fn flush_pending(&mut self) -> Result<(), UpdateResult> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let before = self.envelope_starts();
        let data = std::mem::take(&mut self.pending);
        let fed = self.feed(&data);
        self.pending = data;
        self.pending.clear();
        if let Err(e) = fed {
            let r = match e {
                PackageError::Slot(s) => slot_result(&self.device, s),
                other => other.update_result(),
            };
            return Err(self.fail(r));
        }
        let (Some(before), Some(after)) = (before, self.envelope_starts()) else {
            return Ok(());
        };
        if let (None, Some(start)) = (before.first, after.first) {
            let etag = self.pending_etag.take();
            self.save_resume(start, etag.as_deref());
        }
        if let (None, Some(second)) = (before.second, after.second) {
            self.save_kv(RESUME_SECOND_KEY, &second.to_be_bytes());
        }
        Ok(())
    }

    /// Where the package's payloads began, while the envelope streams in.
    fn envelope_starts(&self) -> Option<PayloadStarts> {
        match &self.stage {
            Stage::Envelope(rx) => Some(rx.payload_starts()),
            _ => None,
        }
    }

    /// Feeds `data` to the receiver of the current stage.
    fn feed(&mut self, data: &[u8]) -> Result<(), PackageError> {
        let mut d = self.device.borrow_mut();
        let mut slots = d.slots().map_err(|_| PackageError::Unexpected)?;
        match &mut self.stage {
            Stage::Envelope(rx) => rx.feed(&mut slots, data),
            Stage::Image(rx) => rx.feed_fetched(&mut slots, data),
            Stage::Idle => Err(PackageError::Unexpected),
        }
    }
}

impl FirmwareBackend for SimFirmware {
    fn stored(&mut self) -> Stored {
        // What the transfer asks for is settled by `resume`; here only whether there is one.
        let resume = self
            .load_resume()
            .or_else(|| self.image_etags().pop().map(|(_, etag)| (0, etag)));
        let mut d = self.device.borrow_mut();
        let Ok(slots) = d.slots() else {
            // The flash is gone (power cut): nothing can be read back.
            return Stored::nothing();
        };
        let status = slots.status();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let downloading = status.phase == Some(Phase::Downloading);
        Stored {
            state: status.state,
            result: status.result,
            uri: text(slots.package_uri()),
            name: text(slots.package_name()),
            version: text(slots.package_version()),
            resume: resume
                .filter(|_| downloading)
                .map(|(start, etag)| ResumePoint {
                    offset: start + u64::from(status.download_offset),
                    etag: saved_etag(etag),
                }),
        }
    }

    fn capacity(&self) -> Option<u32> {
        Some(self.device.borrow().config().layout().image_capacity())
    }

    fn download_requested(&mut self, uri: &str) -> Result<(), UpdateResult> {
        self.close();
        // The URI of a pull that lost its connection continues it: its resume data stays
        // (`discard` kept it), and `stored` offers the resume point.
        let retried = {
            let mut d = self.device.borrow_mut();
            let mut slots = d.slots().map_err(|_| UpdateResult::UpdateFailed)?;
            slots
                .retry_download(uri.as_bytes())
                .map_err(|e| PackageError::Slot(e).update_result())
        };
        if retried != Ok(true) {
            self.forget_resume();
        }
        retried.map(|_| ())
    }

    fn begin(&mut self, etag: Option<&[u8]>) -> Result<(), UpdateResult> {
        self.close();
        self.forget_resume();
        self.stage = Stage::Envelope(self.new_receiver()?);
        let etag = etag.map(<[u8]>::to_vec);
        // Remember the entity for a resume; the image offset comes from the slot journal.
        self.pending_etag = etag;
        Ok(())
    }

    fn resume(&mut self) -> Result<Resumed, UpdateResult> {
        self.close();
        let envelope = self.load_resume();
        let starts = PayloadStarts {
            first: envelope.as_ref().map(|e| e.0),
            second: self.load_second_start(),
        };
        let mut rx = self.new_receiver()?;
        let resumed = {
            let mut d = self.device.borrow_mut();
            match d.slots() {
                Ok(mut slots) => rx.resume_from(&mut slots, starts),
                Err(_) => Err(PackageError::Unexpected),
            }
        };
        match resumed {
            Ok(ResumeAt::Package(offset)) => {
                self.stage = Stage::Envelope(rx);
                Ok(Resumed {
                    point: ResumePoint {
                        offset,
                        etag: envelope.and_then(|(_, e)| saved_etag(e)),
                    },
                    image_uri: None,
                })
            }
            Ok(ResumeAt::Image(offset)) => {
                let uri = rx
                    .fetch_uri()
                    .map(|u| String::from_utf8_lossy(u).into_owned());
                self.stage = Stage::Image(rx);
                let uri = uri.ok_or_else(|| self.fail(UpdateResult::ConnectionLost))?;
                let saved = self.image_etags().into_iter().find(|(u, _)| *u == uri);
                self.fetching = Some(uri.clone());
                Ok(Resumed {
                    point: ResumePoint {
                        offset,
                        etag: saved.and_then(|(_, e)| saved_etag(e)),
                    },
                    image_uri: Some(uri),
                })
            }
            Err(e) => {
                self.stage = Stage::Envelope(rx);
                Err(self.fail(e.update_result()))
            }
        }
    }

    fn begin_image(&mut self, etag: Option<&[u8]>) -> Result<(), UpdateResult> {
        // Saved before any byte of the image reaches the slot, so a journaled offset in it
        // always finds its entity.
        if let Some(uri) = self.fetching.clone() {
            self.save_image_etag(&uri, etag.unwrap_or_default());
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<(), UpdateResult> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= WRITE_BEHIND {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Finished, UpdateResult> {
        self.flush_pending()?;
        let device = self.device.clone();
        let mut d = device.borrow_mut();
        let mut slots = d.slots().map_err(|_| UpdateResult::UpdateFailed)?;
        // The envelope ended, or a fetched image did (a two-image package may name one more).
        let finished = match &mut self.stage {
            Stage::Envelope(rx) => Some((rx.finish(&mut slots), rx)),
            Stage::Image(rx) => Some((rx.finish_fetched(&mut slots), rx)),
            Stage::Idle => None,
        };
        let result = match finished {
            None => Err(UpdateResult::UpdateFailed),
            Some((Ok(Outcome::Downloaded), _)) => Ok(downloaded(&slots)),
            Some((Ok(Outcome::FetchImage), rx)) => {
                let uri = rx
                    .fetch_uri()
                    .map(|u| String::from_utf8_lossy(u).into_owned());
                match uri {
                    Some(uri) => Ok(Finished::FetchImage(uri)),
                    None => Err(UpdateResult::UnsupportedPackage),
                }
            }
            Some((Err(e), _)) => Err(e.update_result()),
        };
        // The slot manager borrows the device; `close`/`fail` below borrow it again.
        drop(d);
        match result {
            Ok(Finished::FetchImage(uri)) => {
                // The next image is fetched with the same receiver (a two-image package
                // asks twice).
                self.stage = match std::mem::replace(&mut self.stage, Stage::Idle) {
                    Stage::Envelope(rx) | Stage::Image(rx) => Stage::Image(rx),
                    Stage::Idle => Stage::Idle,
                };
                self.fetching = Some(uri.clone());
                Ok(Finished::FetchImage(uri))
            }
            Ok(done) => {
                self.close();
                self.forget_resume();
                Ok(done)
            }
            Err(r) => Err(self.fail(r)),
        }
    }

    fn discard(&mut self, result: UpdateResult) {
        self.close();
        // A lost connection keeps what a retry of the same URI resumes from (see
        // `download_requested`); a new download forgets it.
        if result != UpdateResult::ConnectionLost {
            self.forget_resume();
        }
        let mut d = self.device.borrow_mut();
        if let Ok(mut slots) = d.slots() {
            if let Err(e) = slots.abort_download(result) {
                tracing::debug!(error = %e, "nothing to discard");
            }
        }
    }

    fn install(&mut self) -> Result<(), UpdateResult> {
        let mut d = self.device.borrow_mut();
        let mut slots = d.slots().map_err(|_| UpdateResult::UpdateFailed)?;
        slots
            .request_install()
            .map_err(|e| PackageError::Slot(e).update_result())
    }
}
