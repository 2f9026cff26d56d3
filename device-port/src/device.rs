//! `SimDevice`: the simulated device a client binary runs on.
//!
//! Opening it boots through the simulated bootloader (installing the factory image on the
//! first run); it then exposes the booted image, the slot manager for downloads, `confirm` and
//! `reboot`. A device opened on a state directory keeps its flash in `flash.bin` there, so a
//! new process is a reboot. When the flash reports a power cut every call fails with
//! [`DeviceError::PowerLost`]; a binary should then exit at once with
//! [`POWER_CUT_EXIT_CODE`], like firmware losing power.

use std::fmt;
use std::path::Path;

use object5::manifest::host_crypto::HostCrypto;
use object5::manifest::DeviceIdentity;
use object5::slots::{Layout, SlotManager, Strategy, SuitAuthenticator};

use crate::auth::{trust_anchors, StoredDecryptionKey};
use crate::board::{Board, DecryptionKeys, Reset, TrustAnchors};
use crate::bootloader::{self, BootError, Booted};
use crate::sim_flash::{PowerCut, SimFlash, SimFlashError};
use crate::sim_services::{FileKv, SimClock, SimKv};
use object5::slots::Authenticate;

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

/// The image the factory flashes: a signed envelope and the image it describes.
#[derive(Clone, Debug)]
pub struct FactoryImage {
    /// SUIT envelope (wrapper + manifest) signed by one of the trust anchors.
    pub envelope: Vec<u8>,
    /// The image bytes.
    pub image: Vec<u8>,
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
    /// Installed on the first boot of an empty flash.
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
    Slots(object5::slots::Error),
    /// Nothing bootable.
    Boot(BootError),
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
}

impl SimDevice {
    /// Opens (or creates) the device state in `state_dir` and boots it.
    pub fn open(state_dir: &Path, config: SimConfig) -> Result<Self, DeviceError> {
        std::fs::create_dir_all(state_dir).map_err(DeviceError::Io)?;
        let layout = config.layout();
        let sectors = layout.end() as usize / SECTOR_SIZE;
        let flash = DeviceFlash::open_file(&state_dir.join("flash.bin"), sectors)
            .map_err(DeviceError::Flash)?;
        let kv = SimKv::Files(FileKv::open(state_dir.join("kv")).map_err(DeviceError::Io)?);
        let mut device = Self::with_flash(flash, config, kv);
        device.boot()?;
        Ok(device)
    }

    /// A device on an in-memory flash, booted (factory image installed).
    pub fn in_memory(config: SimConfig) -> Result<Self, DeviceError> {
        let sectors = config.layout().end() as usize / SECTOR_SIZE;
        let mut device = Self::with_flash(
            DeviceFlash::new(sectors),
            config,
            SimKv::Memory(Default::default()),
        );
        device.boot()?;
        Ok(device)
    }

    /// A device on `flash` as it is, not booted yet (sweeps restore a snapshot, then boot).
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
        }
    }

    /// Power-on: the bootloader runs (installing the factory image on an empty flash).
    pub fn boot(&mut self) -> Result<&Booted, DeviceError> {
        self.booted = None;
        let anchors = trust_anchors(&self.config.trust_anchors, &self.config.ed25519_anchors);
        let mut auth = SuitAuthenticator::new(&anchors, self.config.crypto);
        if let Some((vendor_id, class_id)) = &self.config.identity {
            auth = auth.with_identity(DeviceIdentity {
                vendor_id,
                class_id,
                device_id: None,
            });
        }
        let powered_off = |flash: &DeviceFlash| flash.is_powered_off();
        let mut slots = SlotManager::open(&mut self.flash, self.layout, &mut self.buf)
            .map_err(DeviceError::Slots);
        if let Ok(mgr) = slots.as_mut() {
            if !mgr.has_record() && !matches!(mgr.verify_slot(0, &mut auth), Ok(Ok(_))) {
                let facts = auth
                    .authenticate(&self.config.factory.envelope)
                    .map_err(DeviceError::Factory)?;
                mgr.provision(
                    &facts,
                    &self.config.factory.envelope,
                    &self.config.factory.image,
                )
                .map_err(DeviceError::Slots)?;
            }
        }
        let booted = slots
            .and_then(|mut mgr| bootloader::boot(&mut mgr, &mut auth).map_err(DeviceError::Boot));
        let booted = booted.map_err(|e| {
            if powered_off(&self.flash) {
                DeviceError::PowerLost
            } else {
                e
            }
        })?;
        Ok(self.booted.insert(booted))
    }

    /// Reset: power comes back (any cut is over) and the bootloader runs again.
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
    pub fn check(&self, e: object5::slots::Error) -> DeviceError {
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
        let result = self.slots()?.confirm();
        result.map_err(|e| self.check(e))
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
