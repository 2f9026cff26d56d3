//! The firmware: object5's update path on QEMU's mps2-an385, across real system resets.
//!
//! Each boot is one step of a fixed script, kept with the measurements in `.uninit` RAM (QEMU
//! keeps it across a reset, as it keeps the NOR flash). For each slot strategy, swap then A/B:
//!
//! 1. factory: blank flash, factory image 1.0.0 provisioned; reset;
//! 2. the bootloader runs 1.0.0; the update 2.0.0 streams in 1 KiB blocks through the verifier
//!    into the candidate slot; the candidate is verified as the bootloader will (timed); Execute
//!    marks it pending; reset;
//! 3. the bootloader verifies and installs it (swap or flip); 2.0.0 runs on its test boot and
//!    confirms (Update Result 1); reset; 2.0.0 runs as the confirmed image;
//! 4. factory again, the same download and Execute, then a power cut half-way through the
//!    install boot's flash operations (half of that write or erase lands), a real reset;
//! 5. the bootloader resumes the install, 2.0.0 runs on its test boot and does not confirm (as
//!    an image that fails its self-test); reset: the bootloader reverts, 1.0.0 runs again
//!    (Update Result 8);
//! 6. the update arrives again with one bit of its signature flipped: refused before anything
//!    reaches flash (Update Result 5); reset: 1.0.0 still runs.
//!
//! Then it prints the summary line device-port/tests/cortex_m_qemu.rs parses and exits through
//! semihosting with status 0 (1 on any failure, after one `cortex-m: FAILED` line).

#![no_std]
#![no_main]

mod board;

use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use cortex_m_fw::nor::{PowerCut, RamNor};
use cortex_m_fw::packages::{
    IMAGE_LEN, NEW_DIGEST, NEW_PACKAGE, NEW_SIGNATURE_LAST, OLD_DIGEST, OLD_HEAD, OLD_IMAGE,
};
use cortex_m_fw::update::{self, Slots, BLOCK};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use object5::manifest::{CryptoBackend, Sha256Hasher, Software, SuitError};
use object5::package::PackageError;
use object5::slots::{Authenticate, BootPath, Phase, SlotManager, Strategy};
use object5::UpdateResult;

/// The machine, as the summary line names it.
const MACHINE: &str = "mps2-an385";
const STRATEGIES: [Strategy; 2] = [Strategy::Swap, Strategy::AB];
const MAGIC: u32 = 0x0B5E_C0DE;
const NO_CUT: u32 = u32::MAX;
/// Bits of `Persist::passed`, three per strategy.
const VERIFY_INSTALL: u32 = 0b001;
const REVERT: u32 = 0b010;
const BAD_SIGNATURE: u32 = 0b100;

/// One boot of the script (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Factory,
    Download,
    Install,
    Confirmed,
    FactoryAgain,
    DownloadAgain,
    CutInstall,
    Resumed,
    Reverted,
    Refused,
}

impl Step {
    /// What the bootloader must have done on this step's boot and which image must run.
    fn expected_boot(self) -> Option<(BootPath, Held, &'static str)> {
        use Step::*;
        match self {
            Factory | FactoryAgain | CutInstall => None,
            Download | DownloadAgain => Some((
                BootPath::Normal,
                Held::Factory,
                "the factory image does not run",
            )),
            Install => Some((
                BootPath::Test,
                Held::Update,
                "the update does not run on its test boot",
            )),
            Confirmed => Some((
                BootPath::Normal,
                Held::Update,
                "the confirmed update does not run after a reset",
            )),
            Resumed => Some((
                BootPath::Test,
                Held::Update,
                "the install did not complete after the power cut",
            )),
            Reverted => Some((
                BootPath::Reverted,
                Held::Factory,
                "the unconfirmed update was not reverted",
            )),
            Refused => Some((
                BootPath::Normal,
                Held::Factory,
                "the factory image does not run after the refused package",
            )),
        }
    }

    /// What the journal must hold after this step's boot: (phase, Update Result, floor).
    fn expected_journal(self) -> Option<((Phase, UpdateResult, u64), &'static str)> {
        use Step::*;
        let (idle, testing) = (Phase::Idle, Phase::Testing);
        match self {
            Factory | FactoryAgain | CutInstall => None,
            Download | DownloadAgain => Some((
                (idle, UpdateResult::Initial, 1),
                "the factory state is not Idle, Update Result 0, floor 1",
            )),
            Install | Resumed => Some((
                (testing, UpdateResult::Initial, 1),
                "the test boot is not journaled as Testing, floor 1",
            )),
            Confirmed => Some((
                (idle, UpdateResult::Success, 2),
                "Idle, Update Result 1, floor 2 lost across the reset",
            )),
            Reverted => Some((
                (Phase::Downloaded, UpdateResult::UpdateFailed, 1),
                "revert did not journal Downloaded, Update Result 8, floor 1",
            )),
            Refused => Some((
                (idle, UpdateResult::IntegrityFailure, 1),
                "Idle, Update Result 5, floor 1 lost across the reset",
            )),
        }
    }

    fn from_u32(v: u32) -> Option<Self> {
        use Step::*;
        [
            Factory,
            Download,
            Install,
            Confirmed,
            FactoryAgain,
            DownloadAgain,
            CutInstall,
            Resumed,
            Reverted,
            Refused,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// What survives a reset: where the script is and what it measured so far.
#[repr(C)]
struct Persist {
    magic: u32,
    step: u32,
    strategy: u32,
    /// Mutating flash operations of the clean install boot of this strategy.
    install_ops: u32,
    /// Operation the armed power cut interrupts, or [`NO_CUT`].
    cut_at: u32,
    cut_fired: u32,
    stack_peak: u32,
    /// Deepest stack during a download (from the top of the stack, main's frame included).
    stack_download: u32,
    /// Deepest stack during the bootloader's decision (verify + install, resume, revert).
    stack_boot: u32,
    /// Bit 0: verify+install, bit 1: revert, bit 2: bad signature; per strategy, 3 bits each.
    passed: u32,
    calibration: u32,
    verify: u32,
    authenticate: u32,
    download: u32,
}

#[link_section = ".uninit.persist"]
static mut PERSIST: MaybeUninit<Persist> = MaybeUninit::uninit();

fn persist() -> &'static mut Persist {
    // SAFETY: one core, no interrupts; every bit pattern of these integers is valid, and the
    // magic word tells a power-on (QEMU's RAM starts zeroed) from a reset.
    unsafe { (*addr_of_mut!(PERSIST)).assume_init_mut() }
}

/// Why the script stopped.
struct Failure {
    step: Step,
    strategy: Strategy,
    what: Why,
}

enum Why {
    Expected(&'static str),
    Slots(object5::slots::SlotError),
    Package(PackageError),
    Provision(update::ProvisionError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} step {:?}: ", self.strategy.name(), self.step)?;
        match &self.what {
            Why::Expected(what) => f.write_str(what),
            Why::Slots(e) => write!(f, "{e}"),
            Why::Package(e) => write!(f, "{e}"),
            Why::Provision(e) => write!(f, "{e}"),
        }
    }
}

enum Next {
    Reset,
    Done,
}

/// Which image a slot holds, by the SHA-256 of its image bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    Factory,
    Update,
    Neither,
}

/// Reports a panic without its message or location: reading `info` at all keeps every panic
/// site's message, location and the `core::fmt` code to print them (about 11 KB of text,
/// measured); with the handler ignoring it, LTO drops them. The checks themselves stay.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    hprintln!("cortex-m: FAILED: panic"); // a literal: written as is, no formatting
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

#[entry]
fn main() -> ! {
    board::paint_stack();
    board::start_timer();
    let p = persist();
    if p.magic != MAGIC {
        power_on(p);
    }
    let next = boot(p, board::take_memory());
    finish(p, next)
}

/// The first boot after QEMU started: a fresh record (and the stopwatch's calibration).
#[inline(never)] // own stack frame: main's stays small
fn power_on(p: &mut Persist) {
    *p = Persist {
        magic: MAGIC,
        step: Step::Factory as u32,
        strategy: 0,
        install_ops: 0,
        cut_at: NO_CUT,
        cut_fired: 0,
        stack_peak: 0,
        stack_download: 0,
        stack_boot: 0,
        passed: 0,
        calibration: board::calibrate(),
        verify: 0,
        authenticate: 0,
        download: 0,
    };
}

/// Resets for the next step, or reports and ends the run.
#[inline(never)] // own stack frame: main's stays small
fn finish(p: &mut Persist, next: Result<Next, Failure>) -> ! {
    match next {
        Ok(Next::Reset) => reset(),
        Ok(Next::Done) => debug::exit(if report(p) {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        }),
        Err(failure) => {
            hprintln!("cortex-m: FAILED: {}", failure);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    halt()
}

/// Where the core stays if semihosting did not end QEMU (it was started without it).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

/// Keeps the stack figure, then resets the core.
fn reset() -> ! {
    let p = persist();
    p.stack_peak = p.stack_peak.max(board::stack_peak());
    board::system_reset()
}

/// The armed power cut: half of the interrupted operation has landed (src/nor.rs).
fn power_cut() -> ! {
    let p = persist();
    p.cut_fired = 1;
    p.step = Step::Resumed as u32;
    reset()
}

/// One boot: the bootloader's decision, then what the running image does in this step.
#[inline(never)] // own stack frame: main's stays small
fn boot(p: &mut Persist, memory: board::Memory) -> Result<Next, Failure> {
    let step = Step::from_u32(p.step).unwrap_or(Step::Factory);
    let strategy = STRATEGIES[p.strategy as usize % STRATEGIES.len()];
    let fail = |what| Failure {
        step,
        strategy,
        what,
    };
    let cut = (step == Step::CutInstall).then_some(PowerCut {
        at: p.cut_at,
        then: power_cut,
    });
    let factory = matches!(step, Step::Factory | Step::FactoryAgain);
    let slots = open_slots(memory, cut, update::layout(strategy), factory)
        .map_err(|e| fail(Why::Slots(e)))?;
    let mut run = Run {
        p,
        slots: slots.0,
        head: slots.1,
        step,
        strategy,
    };
    if factory {
        return run.factory();
    }
    let booted = run.bootloader()?;
    if let Some((path, running, what)) = step.expected_boot() {
        run.expect(booted.path == path && booted.running == running, what)?;
    }
    if let Some((journal, what)) = step.expected_journal() {
        run.expect_journal(journal, what)?;
    }
    match step {
        Step::Factory | Step::FactoryAgain | Step::CutInstall => {
            Err(run.fail("the install ended before the power cut"))
        }
        Step::Download | Step::DownloadAgain => run.download(),
        Step::Install => run.install(booted),
        Step::Confirmed => run.confirmed(),
        Step::Resumed => run.resumed(),
        Step::Reverted => run.reverted(),
        Step::Refused => run.refused(),
    }
}

/// Opens the slot manager on the flash (erased first when `blank`), in its static home.
#[inline(never)] // own stack frame: the journal scan's temporaries are not under the download
fn open_slots(
    memory: board::Memory,
    cut: Option<PowerCut>,
    layout: object5::slots::Layout,
    blank: bool,
) -> Result<
    (
        &'static mut Slots<'static>,
        &'static mut [u8; update::HEAD_BUFFER],
    ),
    object5::slots::SlotError,
> {
    let mut nor = RamNor::new(memory.nor, cut);
    if blank {
        nor.erase_all();
    }
    let slots = SlotManager::open(nor, layout, memory.work)?;
    Ok((memory.slots.write(slots), memory.head))
}

/// What the bootloader decided and what runs.
#[derive(Clone, Copy)]
struct Booted {
    path: BootPath,
    running: Held,
    /// Mutating flash operations the bootloader performed.
    ops: u32,
}

/// One boot's state: the persistent record, the slot manager and the head buffer.
struct Run<'r> {
    p: &'r mut Persist,
    slots: &'static mut Slots<'static>,
    head: &'static mut [u8; update::HEAD_BUFFER],
    step: Step,
    strategy: Strategy,
}

impl Run<'_> {
    fn fail(&self, what: &'static str) -> Failure {
        self.failure(Why::Expected(what))
    }

    fn failure(&self, what: Why) -> Failure {
        Failure {
            step: self.step,
            strategy: self.strategy,
            what,
        }
    }

    fn expect(&self, ok: bool, what: &'static str) -> Result<(), Failure> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(what))
        }
    }

    /// Records that `check` passed for this strategy.
    fn pass(&mut self, check: u32) {
        self.p.passed |= check << (3 * self.p.strategy);
    }

    /// The journal holds `(phase, result, floor)` now.
    fn expect_journal(
        &self,
        (phase, result, floor): (Phase, UpdateResult, u64),
        what: &'static str,
    ) -> Result<(), Failure> {
        let s = self.slots.status();
        self.expect(
            s.phase == Some(phase) && s.result == result && s.floor == floor,
            what,
        )
    }

    fn checked<T>(&self, r: Result<T, object5::slots::SlotError>) -> Result<T, Failure> {
        r.map_err(|e| self.failure(Why::Slots(e)))
    }

    /// Blank flash, factory image in slot 0; the next boot runs it.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn factory(&mut self) -> Result<Next, Failure> {
        update::provision(self.slots, &OLD_HEAD, &OLD_IMAGE)
            .map_err(|e| self.failure(Why::Provision(e)))?;
        self.p.step = self.step as u32 + 1;
        Ok(Next::Reset)
    }

    /// The bootloader: object5's decision table on the journal (verify, swap or flip, resume,
    /// revert), then which image the chosen slot holds.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn bootloader(&mut self) -> Result<Booted, Failure> {
        let decision = self.slots.boot(&mut update::authenticator());
        self.p.stack_boot = self.p.stack_boot.max(board::stack_peak());
        let decision = self.checked(decision)?;
        Ok(Booted {
            path: decision.path,
            running: held(self.slots, decision.slot),
            ops: self.slots.flash_mut().ops(),
        })
    }

    /// The factory image runs; the update streams in; Execute.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn download(&mut self) -> Result<Next, Failure> {
        let (r, download) = self.stream(None);
        r.map_err(|e| self.failure(Why::Package(e)))?;
        self.expect(
            self.slots.status().phase == Some(Phase::Downloaded),
            "not Downloaded after the download",
        )?;
        if self.step == Step::Download {
            self.p.download = download;
            self.measure_verify()?;
        } else {
            self.p.cut_at = self.p.install_ops / 2;
            self.p.cut_fired = 0;
        }
        let r = execute(self.slots);
        self.checked(r)?;
        self.p.step = self.step as u32 + 1;
        Ok(Next::Reset)
    }

    /// The update over the link (`flip`: see [`link`]) through the download path, with its
    /// peak stack and its instruction count.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn stream(&mut self, flip: Option<usize>) -> (Result<(), PackageError>, u32) {
        board::paint_stack();
        let watch = board::Stopwatch::start();
        let r = update::download(self.slots, self.head, &mut link(flip));
        let instructions = watch.instructions();
        self.p.stack_download = self.p.stack_download.max(board::stack_peak());
        (r, instructions)
    }

    /// What the bootloader will run on the candidate, timed: stored head re-read, P-256
    /// signature, policy, SHA-256 over the 64 KiB image in flash; and the authentication of an
    /// envelope head alone.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn measure_verify(&mut self) -> Result<(), Failure> {
        let mut auth = update::authenticator();
        let candidate = self.slots.candidate_slot().unwrap_or(1);
        let watch = board::Stopwatch::start();
        let verdict = self.slots.verify_slot(candidate, &mut auth);
        self.p.verify = watch.instructions();
        let verdict = self.checked(verdict)?;
        self.expect(verdict.is_ok(), "the stored candidate does not verify")?;
        let watch = board::Stopwatch::start();
        let facts = auth.authenticate(&OLD_HEAD);
        self.p.authenticate = watch.instructions();
        self.expect(facts.is_ok(), "the factory head does not authenticate")
    }

    /// The test boot of the update: it confirms.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn install(&mut self, booted: Booted) -> Result<Next, Failure> {
        self.p.install_ops = booted.ops;
        let r = self.slots.confirm();
        self.checked(r)?;
        self.expect_journal(
            (Phase::Idle, UpdateResult::Success, 2),
            "confirm did not journal Idle, Update Result 1, floor 2",
        )?;
        self.p.step = Step::Confirmed as u32;
        Ok(Next::Reset)
    }

    /// The confirmed update runs after a reset.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn confirmed(&mut self) -> Result<Next, Failure> {
        self.pass(VERIFY_INSTALL);
        self.p.step = Step::FactoryAgain as u32;
        Ok(Next::Reset)
    }

    /// After the power cut: the install completed; the update fails its self-test (no confirm).
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn resumed(&mut self) -> Result<Next, Failure> {
        self.expect(self.p.cut_fired == 1, "no power cut happened")?;
        self.p.step = Step::Reverted as u32;
        Ok(Next::Reset)
    }

    /// The factory image is back (revert); then the update with a flipped signature bit.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn reverted(&mut self) -> Result<Next, Failure> {
        self.pass(REVERT);
        let candidate = self.slots.candidate_slot().unwrap_or(1);
        let before = slot_digest(self.slots, candidate);
        let (refused, _) = self.stream(Some(NEW_SIGNATURE_LAST));
        self.expect(
            refused == Err(PackageError::Suit(SuitError::BadSignature)),
            "the bad signature was not refused as such",
        )?;
        let after = slot_digest(self.slots, candidate);
        self.expect(
            after == before,
            "the refused package changed the candidate slot",
        )?;
        self.expect_journal(
            (Phase::Idle, UpdateResult::IntegrityFailure, 1),
            "the refusal was not journaled as Idle, Update Result 5, floor 1",
        )?;
        self.p.step = Step::Refused as u32;
        Ok(Next::Reset)
    }

    /// The factory image still runs after the refused package; next strategy or done.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum
    fn refused(&mut self) -> Result<Next, Failure> {
        self.pass(BAD_SIGNATURE);
        hprintln!(
            "cortex-m: {}: verify+install ok (install boot: {} flash writes/erases), revert ok (reset at operation {}), bad-signature refused (Update Result 5)",
            self.strategy.name(),
            self.p.install_ops,
            self.p.cut_at
        );
        self.p.strategy += 1;
        self.p.step = Step::Factory as u32;
        Ok(if self.p.strategy as usize == STRATEGIES.len() {
            Next::Done
        } else {
            Next::Reset
        })
    }
}

/// Execute (/5/0/2): the verified candidate is marked for the bootloader.
#[inline(never)] // own stack frame: its journal record is not under the download's frames
fn execute(slots: &mut Slots<'_>) -> Result<(), object5::slots::SlotError> {
    slots.request_install()
}

/// The transport: the update's bytes in [`BLOCK`]-sized pieces, optionally with the byte at
/// `flip` damaged (its lowest bit inverted).
fn link(flip: Option<usize>) -> impl FnMut(&mut [u8; BLOCK]) -> usize {
    let mut at = 0usize;
    move |block| {
        let rest = &NEW_PACKAGE[at.min(NEW_PACKAGE.len())..];
        let n = rest.len().min(BLOCK);
        block[..n].copy_from_slice(&rest[..n]);
        if let Some(i) = flip.and_then(|f| f.checked_sub(at)).filter(|&i| i < n) {
            block[i] ^= 0x01;
        }
        at += n;
        n
    }
}

/// SHA-256 of the image bytes in `slot` (flash is memory-mapped).
fn slot_digest(slots: &mut Slots<'_>, slot: usize) -> [u8; 32] {
    let at = slots.image_address(slot).unwrap_or(0) as usize;
    let mapped = slots.flash_mut().mapped();
    let mut h = Software.sha256();
    h.update(mapped.get(at..at + IMAGE_LEN).unwrap_or(&[]));
    h.finish()
}

fn held(slots: &mut Slots<'_>, slot: usize) -> Held {
    match slot_digest(slots, slot) {
        d if d == OLD_DIGEST => Held::Factory,
        d if d == NEW_DIGEST => Held::Update,
        _ => Held::Neither,
    }
}

/// The instruction counts and the summary line; false unless every check passed.
fn report(p: &mut Persist) -> bool {
    p.stack_peak = p.stack_peak.max(board::stack_peak());
    let all = (1u32 << (3 * STRATEGIES.len())) - 1;
    let bit = |b: u32| (0..STRATEGIES.len()).all(|s| p.passed & (b << (3 * s)) != 0);
    let f = board::figures();
    hprintln!(
        "cortex-m: instructions: calibration {} of {}; verify of a 64 KiB image {} (P-256 authenticate {}); download of the 64 KiB package {}",
        p.calibration,
        board::CALIBRATION,
        p.verify,
        p.authenticate,
        p.download
    );
    hprintln!(
        "cortex-m: stack: download {} B, bootloader {} B",
        p.stack_download,
        p.stack_boot
    );
    if p.passed != all {
        hprintln!("cortex-m: FAILED: passed bits {:#b}", p.passed);
        return false;
    }
    hprintln!(
        "cortex-m: {}: {}, {}, {}; stack {} B, static {} B, text {} B (object5 {} B)",
        MACHINE,
        if bit(VERIFY_INSTALL) {
            "verify+install ok"
        } else {
            "verify+install FAILED"
        },
        if bit(REVERT) {
            "revert ok"
        } else {
            "revert FAILED"
        },
        if bit(BAD_SIGNATURE) {
            "bad-signature refused"
        } else {
            "bad-signature accepted"
        },
        p.stack_peak,
        f.static_ram,
        f.text,
        f.object5
    );
    true
}
