//! Shared fixture for the sweep and wear tests: real signed packages and a device "life" that
//! runs one whole update (download, install, first boot, confirm or revert) through SimDevice,
//! rebooting after every power cut and checking the invariants after every boot.

#![allow(dead_code)]

use device_port::bootloader::Booted;
use device_port::device::{DeviceFlash, SECTOR_SIZE};
use device_port::image::ImageBuilder;
use device_port::sim_services::SimKv;
use device_port::{CutMode, DeviceError, FactoryImage, PowerCut, SimConfig, SimDevice};
use object5::author::{build_envelope, signing_key_from_pem, Delivery, PackageSpec, SignAlg};
use object5::slots::{BootPath, ManifestFacts, Phase, SlotManager, Strategy};
use object5::UpdateResult;
use sha2::{Digest, Sha256};

pub const IMAGE_LEN: usize = 64 * 1024;
const BLOCK: usize = 1024;

/// One signed package: image, envelope head (URI delivery) and the facts it proves.
pub struct Package {
    pub image: Vec<u8>,
    pub envelope: Vec<u8>,
    pub facts: ManifestFacts,
}

/// Keys, the factory image, a good and a self-test-failing update, and the factory flash.
pub struct Fixture {
    pub anchors: Vec<Vec<u8>>,
    pub old: Package,
    pub good: Package,
    pub bad: Package,
}

fn package(key_pem: &str, version: &str, seq: u64, fails: bool) -> Package {
    let image = ImageBuilder::new("sim-fw", version)
        .fails_self_test(fails)
        .total_len(IMAGE_LEN)
        .build();
    let spec = PackageSpec {
        vendor_id: [0x11; 16],
        class_id: [0x22; 16],
        sequence_number: seq,
        version: version.to_owned(),
        name: "sim-fw".to_owned(),
        image: &image,
        delivery: Delivery::Uri("coap://127.0.0.1/fw".to_owned()),
        alg: SignAlg::Esp256,
    };
    let key = signing_key_from_pem(key_pem).expect("test key");
    let envelope = build_envelope(&spec, &key).expect("sign");
    let facts = ManifestFacts {
        sequence: seq,
        size: image.len() as u32,
        digest: Sha256::digest(&image).into(),
        second: None,
    };
    Package {
        image,
        envelope,
        facts,
    }
}

impl Fixture {
    pub fn new() -> Self {
        let keys = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/suit/keys/"
        );
        let pem =
            std::fs::read_to_string(format!("{keys}K1_spec_p256_private.pem")).expect("K1 key");
        let public = object5::author::public_pem_from_private(&pem).expect("public key");
        let sec1 = object5::author::public_sec1_from_pem(&public).expect("sec1");
        Self {
            anchors: vec![sec1],
            old: package(&pem, "1.0.0", 1, false),
            good: package(&pem, "2.0.0", 2, false),
            bad: package(&pem, "2.0.1-broken", 2, true),
        }
    }

    pub fn config(&self, strategy: Strategy) -> SimConfig {
        let factory = FactoryImage {
            envelope: self.old.envelope.clone(),
            image: self.old.image.clone(),
            second: None,
        };
        let mut config = SimConfig::new(self.anchors.clone(), factory);
        config.strategy = strategy;
        config.image_capacity = IMAGE_LEN as u32;
        config
    }

    /// A freshly provisioned flash (factory image in slot 0, journal Idle).
    pub fn factory_flash(&self, strategy: Strategy) -> DeviceFlash {
        let device = SimDevice::in_memory(self.config(strategy)).expect("factory boot");
        let sectors = device.flash().capacity_sectors();
        let mut flash = DeviceFlash::new(sectors);
        flash.restore_from(device.flash()).expect("same size");
        flash
    }
}

/// Capacity helper on the device flash type.
pub trait Sectors {
    fn capacity_sectors(&self) -> usize;
}

impl Sectors for DeviceFlash {
    fn capacity_sectors(&self) -> usize {
        self.contents().len() / SECTOR_SIZE
    }
}

/// What went wrong in one run (all must stay zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub bricked: u32,
    pub mixed: u32,
    pub rollback: u32,
    pub spec: u32,
}

/// How one run ended.
#[derive(Debug)]
pub struct RunReport {
    pub faults: Faults,
    pub cuts: u32,
    pub torn: u32,
    pub erase: u32,
    pub final_version: String,
    pub final_result: UpdateResult,
    pub ops: u64,
    pub notes: Vec<String>,
    /// Erases per sector of the final flash (factory provisioning included).
    pub erase_counts: Vec<u32>,
}

/// Runs one whole update of `pkg` on a copy of `base`, injecting `cuts` one after another
/// (each counted from the previous power-on).
pub fn run_update(
    fx: &Fixture,
    strategy: Strategy,
    base: &DeviceFlash,
    pkg: &Package,
    cuts: &[PowerCut],
) -> RunReport {
    let mut flash = DeviceFlash::new(base.capacity_sectors());
    flash.restore_from(base).expect("same size");
    let mut config = fx.config(strategy);
    config.power_cut = cuts.first().copied();
    let mut device = SimDevice::with_flash(flash, config, SimKv::Memory(Default::default()));
    let mut report = RunReport {
        faults: Faults::default(),
        cuts: 0,
        torn: 0,
        erase: 0,
        final_version: String::new(),
        final_result: UpdateResult::Initial,
        ops: 0,
        notes: Vec::new(),
        erase_counts: Vec::new(),
    };
    let mut next_cut = 1;
    let mut floor = 0u64;
    let mut last_result = UpdateResult::Initial;
    let mut confirming = false;
    let mut total_ops = 0u64;
    for _boot in 0..40 {
        let booted = match device.boot() {
            Ok(b) => b.clone(),
            Err(DeviceError::PowerLost) => {
                power_cycle(
                    &mut device,
                    &mut report,
                    cuts,
                    &mut next_cut,
                    &mut total_ops,
                );
                continue;
            }
            Err(e) => {
                report.faults.bricked += 1;
                report.notes.push(format!("boot failed: {e}"));
                break;
            }
        };
        let status = match device.slots() {
            Ok(s) => s.status(),
            Err(DeviceError::PowerLost) => {
                power_cycle(
                    &mut device,
                    &mut report,
                    cuts,
                    &mut next_cut,
                    &mut total_ops,
                );
                continue;
            }
            Err(e) => {
                report.faults.bricked += 1;
                report.notes.push(format!("slots: {e}"));
                break;
            }
        };
        check_boot(fx, &mut device, &booted, pkg, &mut report, &mut floor);
        // The Update Result keeps its value across a reboot, except what this boot did
        // (revert: 8, rejected candidate: 5) or what the interrupted confirm committed.
        let expected_ok = match booted.path {
            BootPath::Reverted => status.result == UpdateResult::UpdateFailed,
            BootPath::Rejected(_) => false,
            _ => {
                status.result == last_result
                    || (confirming && status.result == UpdateResult::Success)
            }
        };
        if !expected_ok {
            report.faults.spec += 1;
            report.notes.push(format!(
                "result {:?} after {:?}, was {:?}",
                status.result, booted.path, last_result
            ));
        }
        last_result = status.result;
        confirming = false;
        if status.state
            != status
                .phase
                .map_or(object5::State::Idle, Phase::object5_state)
        {
            report.faults.spec += 1;
        }
        match app_step(
            &mut device,
            &booted,
            pkg,
            status.phase,
            status.result,
            &mut confirming,
        ) {
            Ok(AppStep::Done) => {
                let status = device.slots().map(|s| s.status());
                report.final_result = status.map(|s| s.result).unwrap_or(UpdateResult::Initial);
                report.final_version = booted.image.version.clone();
                if let Ok(s) = device.slots().map(|s| s.status()) {
                    if s.floor < floor {
                        report.faults.rollback += 1;
                    }
                }
                total_ops += device.flash().ops();
                report.ops = total_ops;
                report.erase_counts = device.flash().erase_counts().to_vec();
                return report;
            }
            Ok(AppStep::Reset) => {
                // A watchdog reset or the Execute reboot: same power, next boot.
                if let Ok(s) = device.slots().map(|s| s.status()) {
                    last_result = s.result;
                }
            }
            Err(DeviceError::PowerLost) => power_cycle(
                &mut device,
                &mut report,
                cuts,
                &mut next_cut,
                &mut total_ops,
            ),
            Err(e) => {
                report.faults.bricked += 1;
                report.notes.push(format!("app: {e}"));
                break;
            }
        }
    }
    report.faults.bricked += 1;
    report.notes.push("did not settle".to_owned());
    report
}

fn power_cycle(
    device: &mut SimDevice,
    report: &mut RunReport,
    cuts: &[PowerCut],
    next_cut: &mut usize,
    total_ops: &mut u64,
) {
    let flash = device.flash_mut();
    report.cuts += 1;
    if cuts
        .get(report.cuts as usize - 1)
        .is_some_and(|c| c.mode == CutMode::Partial)
    {
        match flash.last_cut() {
            Some(device_port::sim_flash::CutOperation::Write) => report.torn += 1,
            Some(device_port::sim_flash::CutOperation::Erase) => report.erase += 1,
            None => {}
        }
    }
    *total_ops += flash.ops();
    flash.power_on();
    flash.arm(cuts.get(*next_cut).copied());
    *next_cut += 1;
}

/// After every boot: the running slot holds exactly the old or the new image (header sector
/// with its envelope, and image bytes), never a mix, and the floor never decreases.
fn check_boot(
    fx: &Fixture,
    device: &mut SimDevice,
    booted: &Booted,
    pkg: &Package,
    report: &mut RunReport,
    floor: &mut u64,
) {
    let Ok(mut slots) = device.slots() else {
        return;
    };
    let status = slots.status();
    if status.floor < *floor {
        report.faults.rollback += 1;
    }
    *floor = status.floor;
    let running = if booted.image.version == fx.old.image_version() {
        &fx.old
    } else if booted.image.version == pkg.image_version() {
        pkg
    } else {
        report.faults.mixed += 1;
        return;
    };
    if running.facts.sequence < status.floor {
        report.faults.rollback += 1;
    }
    // Object 5 State Downloaded after a reboot means a valid package is stored, not installed.
    if status.phase == Some(Phase::Downloaded) {
        let candidate = slots.candidate_slot().unwrap_or(1);
        if !slot_holds(&mut slots, candidate, pkg) {
            report.faults.spec += 1;
            report
                .notes
                .push("Downloaded without the package in the candidate slot".to_owned());
        }
    }
    if !slot_holds(&mut slots, booted.slot, running) {
        report.faults.mixed += 1;
        report.notes.push(format!(
            "slot {} is not exactly {}",
            booted.slot,
            running.image_version()
        ));
    }
}

/// Whether `slot` holds `pkg` exactly: stored envelope and every image byte.
pub fn slot_holds(
    slots: &mut SlotManager<'_, &mut DeviceFlash>,
    slot: usize,
    pkg: &Package,
) -> bool {
    let Some(addr) = slots.image_address(slot) else {
        return false;
    };
    let header = addr - SECTOR_SIZE as u32;
    let flash = slots.flash_mut();
    let contents = flash.contents();
    let image_ok =
        contents.get(addr as usize..addr as usize + pkg.image.len()) == Some(&pkg.image[..]);
    let env_at = header as usize + 64;
    let env_ok = contents.get(env_at..env_at + pkg.envelope.len()) == Some(&pkg.envelope[..]);
    image_ok && env_ok
}

impl Package {
    pub fn image_version(&self) -> String {
        device_port::image::parse(&self.image)
            .map(|i| i.version)
            .unwrap_or_default()
    }
}

enum AppStep {
    Done,
    Reset,
}

/// What the firmware (client) does after a boot, as a real client would.
fn app_step(
    device: &mut SimDevice,
    booted: &Booted,
    pkg: &Package,
    phase: Option<Phase>,
    result: UpdateResult,
    confirming: &mut bool,
) -> Result<AppStep, DeviceError> {
    match phase {
        Some(Phase::Testing) => {
            if booted.image.fails_self_test {
                return Ok(AppStep::Reset);
            }
            *confirming = true;
            device.confirm()?;
            *confirming = false;
            Ok(AppStep::Done)
        }
        Some(Phase::Idle) if result != UpdateResult::Initial => Ok(AppStep::Done),
        // A reverted package stays Downloaded (result 8): retrying is the server's call.
        Some(Phase::Downloaded) if result == UpdateResult::UpdateFailed => Ok(AppStep::Done),
        Some(Phase::Idle | Phase::Requested | Phase::Downloading | Phase::Downloaded) => {
            let outcome = {
                let mut slots = device.slots()?;
                download_and_install(&mut slots, pkg, phase)
            };
            outcome.map_err(|e| device.check(e))?;
            Ok(AppStep::Reset)
        }
        other => Err(DeviceError::Slots(object5::slots::SlotError::Busy(
            other.unwrap_or(Phase::Idle),
        ))),
    }
}

fn download_and_install(
    slots: &mut SlotManager<'_, &mut DeviceFlash>,
    pkg: &Package,
    phase: Option<Phase>,
) -> Result<(), object5::slots::SlotError> {
    if phase != Some(Phase::Downloaded) {
        if phase == Some(Phase::Idle) {
            // As Object 5 does when the Package URI is written: a cut from here on still
            // shows the download, which the next boot starts again (Requested) or resumes.
            slots.request_download(b"coap://127.0.0.1/fw/2.0.0")?;
        }
        let mut writer = if phase == Some(Phase::Downloading) {
            slots.resume_download()?
        } else {
            slots.begin_download(&pkg.facts, &pkg.envelope)?
        };
        let start = writer.offset() as usize;
        for block in pkg.image[start..].chunks(BLOCK) {
            writer.write(block)?;
        }
        writer.finish()?;
    }
    slots.request_install()
}

/// Downloads `pkg` into the candidate slot in one go and requests its install (Execute).
pub fn download(device: &mut SimDevice, pkg: &Package) -> Result<(), object5::slots::SlotError> {
    let mut slots = device.slots().expect("slots");
    let mut w = slots.begin_download(&pkg.facts, &pkg.envelope)?;
    for block in pkg.image.chunks(1000) {
        w.write(block)?;
    }
    w.finish()?;
    slots.request_install()
}

/// Operations of one uninterrupted update.
pub fn clean_ops(fx: &Fixture, strategy: Strategy, base: &DeviceFlash, pkg: &Package) -> u64 {
    let report = run_update(fx, strategy, base, pkg, &[]);
    assert_eq!(report.faults, Faults::default(), "{:?}", report.notes);
    report.ops
}
