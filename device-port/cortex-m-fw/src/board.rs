//! mps2-an385 as QEMU models it: memory kept across resets, the reset itself, a timer that
//! counts instructions under `-icount shift=0`, stack painting, and the linker's figures.

use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};

use cortex_m_fw::update::{Slots, FLASH_BYTES, HEAD_BUFFER, WORK_BUFFER};

/// CMSDK APB timer 0 of the AN385 FPGA image, clocked by the 25 MHz system clock.
const TIMER0: *mut u32 = 0x4000_0000 as *mut u32;
/// Under `-icount shift=0` QEMU advances virtual time 1 ns per instruction; at 25 MHz one
/// timer tick is 40 ns, so 40 instructions.
const INSTRUCTIONS_PER_TICK: u32 = 40;
/// What unused stack holds after [`paint_stack`].
const PAINT: u32 = 0xA5C3_3C5A;

extern "C" {
    /// Top of the stack (end of RAM); cortex-m-rt.
    static _stack_start: u32;
    /// Lowest address the stack may reach: end of .data, .bss and .uninit; cortex-m-rt.
    static _stack_end: u32;
    /// Start of RAM; cortex-m-rt.
    static _ram_start: u32;
    /// Start of the flash image: the vector table (memory.x).
    static _sfirmware: u8;
    /// Start of the packages section, the end of vector table, code and constants (memory.x).
    static _spackages: u8;
    /// object5's share of the code and constants (memory.x).
    static _sobject5: u8;
    static _eobject5: u8;
}

/// Sizes the linker laid out, in bytes.
pub struct Figures {
    /// .data + .bss + .uninit: every static in RAM (the NOR flash has its own region).
    pub static_ram: u32,
    /// Vector table, code and constants (the packages excluded).
    pub text: u32,
    /// object5's part of `text`.
    pub object5: u32,
}

/// The linker's figures, from its symbols.
pub fn figures() -> Figures {
    let a = |p: *const u8| p as u32;
    Figures {
        static_ram: a(addr_of!(_stack_end).cast()) - a(addr_of!(_ram_start).cast()),
        text: a(addr_of!(_spackages)) - a(addr_of!(_sfirmware)),
        object5: a(addr_of!(_eobject5)) - a(addr_of!(_sobject5)),
    }
}

/// Fills the free stack below the current frame with [`PAINT`]; call first thing at reset.
#[inline(always)]
pub fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    // SAFETY: [_stack_end, sp - 64) is the unused part of the stack: nothing lives there yet.
    unsafe {
        let mut at = addr_of!(_stack_end) as usize;
        while at + 64 < sp {
            (at as *mut u32).write_volatile(PAINT);
            at += 4;
        }
    }
}

/// Deepest stack use since [`paint_stack`], in bytes from the top of the stack.
pub fn stack_peak() -> u32 {
    // SAFETY: reads the painted stack region word by word, below anything in use.
    unsafe {
        let top = addr_of!(_stack_start) as usize;
        let mut at = addr_of!(_stack_end) as usize;
        while at < top && (at as *const u32).read_volatile() == PAINT {
            at += 4;
        }
        (top - at) as u32
    }
}

/// A system reset of the core and its peripherals (AIRCR.SYSRESETREQ); RAM is kept.
pub fn system_reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// Starts timer 0 as a free-running 32-bit down-counter.
pub fn start_timer() {
    // SAFETY: the CMSDK timer's CTRL, VALUE and RELOAD registers (offsets 0, 4, 8).
    unsafe {
        TIMER0.write_volatile(0);
        TIMER0.add(2).write_volatile(u32::MAX);
        TIMER0.add(1).write_volatile(u32::MAX);
        TIMER0.write_volatile(1);
    }
}

fn timer_value() -> u32 {
    // SAFETY: reading the VALUE register has no side effect.
    unsafe { TIMER0.add(1).read_volatile() }
}

/// Counts guest instructions between [`Stopwatch::start`] and [`Stopwatch::instructions`].
pub struct Stopwatch(u32);

impl Stopwatch {
    /// Starts counting.
    pub fn start() -> Self {
        Self(timer_value())
    }

    /// Instructions since `start` (meaningful only under `-icount shift=0`); saturates after
    /// 4.29e9 (107 s of the 25 MHz timer).
    pub fn instructions(&self) -> u32 {
        self.0
            .wrapping_sub(timer_value())
            .saturating_mul(INSTRUCTIONS_PER_TICK)
    }
}

/// Instructions of a loop that executes exactly [`CALIBRATION`] of them, as the stopwatch
/// counts them: equal (to a few) when QEMU runs with `-icount shift=0`.
pub fn calibrate() -> u32 {
    let watch = Stopwatch::start();
    let mut n: u32 = CALIBRATION / 2;
    // SAFETY: a register-only countdown loop (two instructions per turn).
    unsafe {
        core::arch::asm!("2:", "subs {0}, {0}, #1", "bne 2b", inout(reg) n, options(nomem, nostack));
    }
    let _ = n;
    watch.instructions()
}

/// Instructions the calibration loop executes.
pub const CALIBRATION: u32 = 2_000_000;

/// RAM the firmware owns once: the flash cells, the two buffers of the update path, and the
/// room the slot manager lives in.
pub struct Memory {
    /// The NOR flash's cells (kept across resets).
    pub nor: &'static mut [u8; FLASH_BYTES],
    /// The slot manager's work buffer.
    pub work: &'static mut [u8; WORK_BUFFER],
    /// The verifier's envelope-head buffer.
    pub head: &'static mut [u8; HEAD_BUFFER],
    /// Where the slot manager lives for the whole boot: static RAM, not stack.
    pub slots: &'static mut MaybeUninit<Slots<'static>>,
}

#[link_section = ".nor"]
static mut NOR: MaybeUninit<[u8; FLASH_BYTES]> = MaybeUninit::uninit();
static mut WORK: [u8; WORK_BUFFER] = [0; WORK_BUFFER];
static mut HEAD: [u8; HEAD_BUFFER] = [0; HEAD_BUFFER];
static mut SLOTS: MaybeUninit<Slots<'static>> = MaybeUninit::uninit();

/// Hands out [`Memory`]; called once per boot, from `main`.
pub fn take_memory() -> Memory {
    // SAFETY: called once per boot, so the references are unique. The NOR cells are plain
    // bytes QEMU keeps across resets (zero at power-on); every bit pattern is a valid `u8`.
    unsafe {
        Memory {
            nor: (*addr_of_mut!(NOR)).assume_init_mut(),
            work: &mut *addr_of_mut!(WORK),
            head: &mut *addr_of_mut!(HEAD),
            slots: &mut *addr_of_mut!(SLOTS),
        }
    }
}
