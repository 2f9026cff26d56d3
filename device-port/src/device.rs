//! `SimDevice`: the simulated device a client binary runs on.
//!
//! Opening it boots through the simulated bootloader; it then exposes the booted image, the
//! slot manager for downloads, `confirm` and `reboot`. A device opened on a state directory
//! keeps its flash in `flash.bin` there, so a new process is a reboot. When the flash reports a
//! power cut every call fails with [`DeviceError::PowerLost`]; a binary should then exit at
//! once with [`POWER_CUT_EXIT_CODE`], like firmware losing power.
//!
//! Factory provisioning (the factory image into slot 0) is a separate step,
//! [`SimDevice::provision`], run once on a new device and recorded outside the flash image
//! ([`PROVISIONED_KEY`] in the key-value store), as a factory records it: a provisioned device
//! whose flash is later erased, zeroed or garbled is never provisioned again. It boots the
//! newest image that verifies, or stays in recovery ([`DeviceError::NoImage`]: it runs no
//! image, registers and takes an update), keeps its anti-rollback floor (a second copy lives
//! in the key-value store, see [`crate::floor`]) and reports what it found
//! ([`SimDevice::damage`]).

use std::fmt;
use std::path::Path;

use object5::manifest::host_crypto::HostCrypto;
use object5::manifest::DeviceIdentity;
use object5::slots::{Layout, SlotManager, Strategy, SuitAuthenticator};

use crate::auth::{trust_anchors, StoredDecryptionKey};
use crate::board::{Board, DecryptionKeys, KeyValue, Reset, TrustAnchors};
use crate::bootloader::{self, BootError, Booted};
use crate::damage::{BootDamage, FlashDamage};
use crate::floor;
use crate::sim_flash::{PowerCut, SimFlash, SimFlashError};
use crate::sim_services::{FileKv, SimClock, SimKv};
use object5::manifest::TrustAnchor;
use object5::slots::{Authenticate, BootPath};

/// Sector size of the simulated device flash.
pub const SECTOR_SIZE: usize = 4096;
/// Write size of the simulated device flash.
pub const WRITE_SIZE: usize = 4;
/// The simulated device's flash type.
pub type DeviceFlash = SimFlash<SECTOR_SIZE, WRITE_SIZE>;
/// Exit code of a simulated device process whose power was cut (EX_TEMPFAIL).
pub const POWER_CUT_EXIT_CODE: i32 = 75;
/// Work buffer: one sector holds any stored envelope head.
const WORK_BUFFER: usize = SECTOR_SIZE;
/// Key-value entry the factory step writes once the factory image is in flash. Only a device
/// without it is ever provisioned.
pub const PROVISIONED_KEY: &str = "factory-provisioned";

/// The image the factory flashes: a signed envelope and the images it describes.
#[derive(Clone, Debug)]
pub struct FactoryImage {
    /// SUIT envelope (wrapper + manifest) signed by one of the trust anchors.
    pub envelope: Vec<u8>,
    /// The image bytes (component 0, the firmware that runs).
    pub image: Vec<u8>,
    /// The second image of a two-image factory package (component 1), if any.
    pub second: Option<Vec<u8>>,
}

/// How to build a simulated device.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Activation strategy.
    pub strategy: Strategy,
    /// Largest image a slot holds (rounded up to sectors).
    pub image_capacity: u32,
    /// SEC1 P-256 keys that authorise firmware.
    pub trust_anchors: Vec<Vec<u8>>,
    /// Ed25519 public keys that authorise firmware (none by default).
    pub ed25519_anchors: Vec<[u8; 32]>,
    /// Keys that decrypt encrypted payloads (none by default).
    pub decryption_keys: Vec<StoredDecryptionKey>,
    /// Installed by the factory step ([`SimDevice::provision`]).
    pub factory: FactoryImage,
    /// Power cut to inject, counted from this power-on.
    pub power_cut: Option<PowerCut>,
    /// Vendor and class UUIDs the bootloader requires of a candidate's manifest; `None`
    /// checks signature, digest and sequence number only.
    pub identity: Option<([u8; 16], [u8; 16])>,
    /// Signature checks of the bootloader and the download path: the portable software
    /// backend by default, OpenSSL to simulate a device with a P-256 accelerator (fleets).
    pub crypto: HostCrypto,
}

impl SimConfig {
    /// Swap strategy, 64 KiB slots, no power cut, no vendor/class check.
    pub fn new(trust_anchors: Vec<Vec<u8>>, factory: FactoryImage) -> Self {
        Self {
            strategy: Strategy::Swap,
            image_capacity: 64 * 1024,
            trust_anchors,
            ed25519_anchors: Vec::new(),
            decryption_keys: Vec::new(),
            factory,
            power_cut: None,
            identity: None,
            crypto: HostCrypto::Software,
        }
    }

    /// Takes the power cut from `SIM_POWER_CUT_AFTER` / `SIM_POWER_CUT_MODE` when set.
    pub fn with_power_cut_from_env(mut self) -> Result<Self, DeviceError> {
        if let Some(cut) = PowerCut::from_env().map_err(DeviceError::Flash)? {
            self.power_cut = Some(cut);
        }
        Ok(self)
    }

    /// The flash layout this configuration implies.
    pub fn layout(&self) -> Layout {
        Layout::packed(self.strategy, SECTOR_SIZE as u32, self.image_capacity)
    }
}

/// Why a device operation failed.
#[derive(Debug)]
pub enum DeviceError {
    /// Power was cut: the process should end (see [`POWER_CUT_EXIT_CODE`]).
    PowerLost,
    /// The flash or its backing file failed.
    Flash(SimFlashError),
    /// The slot manager refused or failed.
    Slots(object5::slots::SlotError),
    /// The bootloader failed (flash error, or a verified slot holding no simulated image).
    Boot(BootError),
    /// No slot holds an image that verifies: the device runs no image and stays in its
    /// recovery state (it registers and accepts an update); [`SimDevice::damage`] says more.
    NoImage,
    /// The factory envelope does not verify with the trust anchors.
    Factory(object5::slots::VerifyError),
    /// The running image fails its self-test and so cannot confirm itself.
    SelfTestFailed,
    /// The state directory could not be used.
    Io(std::io::Error),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PowerLost => f.write_str("power lost"),
            Self::Flash(e) => write!(f, "flash: {e}"),
            Self::Slots(e) => write!(f, "slots: {e}"),
            Self::Boot(e) => write!(f, "{e}"),
            Self::NoImage => f.write_str("no slot holds an image that verifies (recovery)"),
            Self::Factory(e) => write!(f, "factory image: {e}"),
            Self::SelfTestFailed => f.write_str("running image failed its self-test"),
            Self::Io(e) => write!(f, "state directory: {e}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// A simulated device: flash, bootloader, booted image, key-value store, clock.
pub struct SimDevice {
    flash: DeviceFlash,
    layout: Layout,
    config: SimConfig,
    buf: Vec<u8>,
    booted: Option<Booted>,
    kv: SimKv,
    clock: SimClock,
    damage: BootDamage,
}

impl SimDevice {
    /// Opens (or creates) the device state in `state_dir` and boots it. A state directory the
    /// factory never provisioned is provisioned first. A device with no image that verifies
    /// opens in recovery ([`SimDevice::booted`] is `None`, [`SimDevice::damage`] says why).
    pub fn open(state_dir: &Path, config: SimConfig) -> Result<Self, DeviceError> {
        std::fs::create_dir_all(state_dir).map_err(DeviceError::Io)?;
        let layout = config.layout();
        let sectors = layout.end() as usize / SECTOR_SIZE;
        let path = state_dir.join("flash.bin");
        let had_flash = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        let flash = DeviceFlash::open_file(&path, sectors).map_err(DeviceError::Flash)?;
        let kv = SimKv::Files(FileKv::open(state_dir.join("kv")).map_err(DeviceError::Io)?);
        let mut device = Self::with_flash(flash, config, kv);
        if !device.is_provisioned()? {
            // A state directory from before the marker existed: a journal proves the factory
            // step ran there.
            let journaled = had_flash && device.slots()?.has_record();
            if journaled {
                device.mark_provisioned()?;
            } else {
                device.provision()?;
            }
        }
        device.start()
    }

    /// A device on an in-memory flash, factory-provisioned and booted.
    pub fn in_memory(config: SimConfig) -> Result<Self, DeviceError> {
        let sectors = config.layout().end() as usize / SECTOR_SIZE;
        let mut device = Self::with_flash(
            DeviceFlash::new(sectors),
            config,
            SimKv::Memory(Default::default()),
        );
        device.provision()?;
        device.start()
    }

    /// A device on `flash` as it is, not booted yet (sweeps restore a snapshot, then boot).
    /// Nothing is provisioned.
    pub fn with_flash(mut flash: DeviceFlash, config: SimConfig, kv: SimKv) -> Self {
        flash.arm(config.power_cut);
        Self {
            flash,
            layout: config.layout(),
            config,
            buf: vec![0; WORK_BUFFER],
            booted: None,
            kv,
            clock: SimClock::new(),
            damage: BootDamage::default(),
        }
    }

    /// Boots at power-on; recovery is a state the device runs in, not a failure.
    fn start(mut self) -> Result<Self, DeviceError> {
        match self.boot() {
            Ok(_) | Err(DeviceError::NoImage) => Ok(self),
            Err(e) => Err(e),
        }
    }

    /// Whether the factory step ran on this device.
    pub fn is_provisioned(&self) -> Result<bool, DeviceError> {
        Ok(self
            .kv
            .get(PROVISIONED_KEY)
            .map_err(DeviceError::Io)?
            .is_some())
    }

    fn mark_provisioned(&mut self) -> Result<(), DeviceError> {
        self.kv
            .set(PROVISIONED_KEY, b"factory image installed")
            .map_err(DeviceError::Io)
    }

    /// The factory step: writes the factory image into slot 0, journals `Idle` with its
    /// sequence number as the anti-rollback floor, keeps the floor's second copy and records
    /// that the device is provisioned. Not power-fail safe (a factory reruns an interrupted
    /// step: the record is written last).
    pub fn provision(&mut self) -> Result<(), DeviceError> {
        let anchors = trust_anchors(&self.config.trust_anchors, &self.config.ed25519_anchors);
        let mut auth = authenticator(&anchors, &self.config);
        let factory = &self.config.factory;
        let facts = auth
            .authenticate(&factory.envelope)
            .map_err(DeviceError::Factory)?;
        let done =
            SlotManager::open(&mut self.flash, self.layout, &mut self.buf).and_then(|mut slots| {
                slots.provision_images(
                    &facts,
                    &factory.envelope,
                    &factory.image,
                    factory.second.as_deref(),
                )
            });
        done.map_err(|e| self.check(e))?;
        floor::write(&mut self.kv, facts.sequence).map_err(DeviceError::Io)?;
        self.mark_provisioned()
    }

    /// Power-on: the bootloader runs. It verifies the image it is about to run and falls
    /// back to the other slot's, or to recovery ([`DeviceError::NoImage`]) when nothing
    /// verifies; restores the anti-rollback floor from its kept copy when the journal's is
    /// lower. What it found is in [`SimDevice::damage`]. Never provisions.
    pub fn boot(&mut self) -> Result<&Booted, DeviceError> {
        self.booted = None;
        self.damage = BootDamage::default();
        let kept = floor::read(&self.kv);
        let anchors = trust_anchors(&self.config.trust_anchors, &self.config.ed25519_anchors);
        let mut auth = authenticator(&anchors, &self.config);
        let mut damage = Vec::new();
        let outcome = SlotManager::open(&mut self.flash, self.layout, &mut self.buf)
            .map_err(BootError::Slots)
            .and_then(|mut slots| bootload(&mut slots, &mut auth, kept, &mut damage));
        self.damage = BootDamage(damage);
        let (booted, journal_floor) = outcome.map_err(|e| {
            if self.flash.is_powered_off() {
                DeviceError::PowerLost
            } else {
                DeviceError::Boot(e)
            }
        })?;
        if journal_floor > kept {
            floor::write(&mut self.kv, journal_floor).map_err(DeviceError::Io)?;
        }
        match booted {
            Some(b) => Ok(self.booted.insert(b)),
            None => Err(DeviceError::NoImage),
        }
    }

    /// What the last boot found wrong in flash and worked around (empty when nothing).
    pub fn damage(&self) -> &BootDamage {
        &self.damage
    }

    /// Reset: power comes back (any cut is over) and the bootloader runs again
    /// ([`SimDevice::boot`]).
    pub fn reboot(&mut self) -> Result<&Booted, DeviceError> {
        self.flash.power_on();
        self.boot()
    }

    /// What runs now (`None` after a failed boot).
    pub fn booted(&self) -> Option<&Booted> {
        self.booted.as_ref()
    }

    /// The slot manager, for downloads, install requests and Object 5 state.
    pub fn slots(&mut self) -> Result<SlotManager<'_, &mut DeviceFlash>, DeviceError> {
        if self.flash.is_powered_off() {
            return Err(DeviceError::PowerLost);
        }
        SlotManager::open(&mut self.flash, self.layout, &mut self.buf).map_err(DeviceError::Slots)
    }

    /// Maps a slot error to `PowerLost` when the flash lost power.
    pub fn check(&self, e: object5::slots::SlotError) -> DeviceError {
        if self.flash.is_powered_off() {
            DeviceError::PowerLost
        } else {
            DeviceError::Slots(e)
        }
    }

    /// The running image confirms itself (after re-registering). An image built to fail its
    /// self-test refuses, so the next reset reverts it.
    pub fn confirm(&mut self) -> Result<(), DeviceError> {
        if self
            .booted
            .as_ref()
            .is_some_and(|b| b.image.fails_self_test)
        {
            return Err(DeviceError::SelfTestFailed);
        }
        let floor = {
            let mut slots = self.slots()?;
            slots.confirm().map(|()| slots.status().floor)
        };
        let floor = floor.map_err(|e| self.check(e))?;
        if floor > floor::read(&self.kv) {
            floor::write(&mut self.kv, floor).map_err(DeviceError::Io)?;
        }
        Ok(())
    }

    /// The flash (wear counters, contents).
    pub fn flash(&self) -> &DeviceFlash {
        &self.flash
    }

    /// The flash, mutable (re-arming power cuts in tests).
    pub fn flash_mut(&mut self) -> &mut DeviceFlash {
        &mut self.flash
    }

    /// The persistent key-value store (resume data, registration state).
    pub fn kv(&self) -> &SimKv {
        &self.kv
    }

    /// The persistent key-value store, mutable.
    pub fn kv_mut(&mut self) -> &mut SimKv {
        &mut self.kv
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }
}

/// The bootloader's authenticator: the board's trust anchors, and the device's vendor and
/// class when it has them.
fn authenticator<'a>(
    anchors: &'a [TrustAnchor<'a>],
    config: &'a SimConfig,
) -> SuitAuthenticator<'a, HostCrypto> {
    let auth = SuitAuthenticator::new(anchors, config.crypto);
    match &config.identity {
        Some((vendor_id, class_id)) => auth.with_identity(DeviceIdentity {
            vendor_id,
            class_id,
            device_id: None,
        }),
        None => auth,
    }
}

/// One run of the simulated bootloader, then the floor check: the image to run (`None`: none
/// verifies) and the journal's floor afterwards, raised to `kept` when it was lower. Damage
/// found goes to `damage`.
fn bootload<A: Authenticate>(
    slots: &mut SlotManager<'_, &mut DeviceFlash>,
    auth: &mut A,
    kept: u64,
    damage: &mut Vec<FlashDamage>,
) -> Result<(Option<Booted>, u64), BootError> {
    if !slots.has_record() {
        damage.push(FlashDamage::JournalLost);
    }
    let booted = match bootloader::boot(slots, auth) {
        Ok(b) => {
            if let BootPath::Fallback(why) = b.path {
                damage.push(FlashDamage::ImageFailed(why));
            }
            Some(b)
        }
        Err(BootError::Slots(object5::slots::SlotError::NoBootableImage)) => {
            // For the log: why each slot fails (reads only, and only in recovery).
            let mut why = [None; 2];
            for (slot, why) in why.iter_mut().enumerate() {
                *why = slots
                    .verify_installed(slot, auth)
                    .map_err(BootError::Slots)?
                    .err();
            }
            damage.push(FlashDamage::NoImage(why));
            None
        }
        Err(e) => return Err(e),
    };
    let journal = slots.status().floor;
    if journal < kept {
        slots.raise_floor(kept).map_err(BootError::Slots)?;
        damage.push(FlashDamage::FloorRestored { journal, kept });
    }
    Ok((booted, journal.max(kept)))
}

impl Reset for SimDevice {
    type Error = DeviceError;

    fn reset(&mut self) -> Result<(), DeviceError> {
        self.reboot().map(|_| ())
    }
}

impl TrustAnchors for SimDevice {
    fn p256_keys(&self) -> &[Vec<u8>] {
        &self.config.trust_anchors
    }
    fn ed25519_keys(&self) -> &[[u8; 32]] {
        &self.config.ed25519_anchors
    }
}

impl DecryptionKeys for SimDevice {
    fn decryption_keys(&self) -> &[StoredDecryptionKey] {
        &self.config.decryption_keys
    }
}

impl Board for SimDevice {
    type Flash = DeviceFlash;
    type Clock = SimClock;
    type KeyValue = SimKv;

    fn flash(&mut self) -> &mut DeviceFlash {
        &mut self.flash
    }

    fn clock(&self) -> &SimClock {
        &self.clock
    }

    fn key_value(&mut self) -> &mut SimKv {
        &mut self.kv
    }
}
