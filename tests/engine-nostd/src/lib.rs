//! lwm2m-client's engine core as a `#![no_std]` + `alloc` static library (see Cargo.toml).
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::panic::PanicInfo;

use lwm2m_client::objects::{Device, DeviceInfo, DiscardBackend, FirmwareUpdate, Security, Server};
use lwm2m_client::{Config, Engine, ObjectHandler};

/// Heap of the measurement: a bump allocator over a static arena (it never frees).
const ARENA: usize = 16 * 1024;

struct Bump {
    arena: UnsafeCell<[u8; ARENA]>,
    next: UnsafeCell<usize>,
}

// SAFETY: the library is single-threaded (no_std, no interrupts use the heap).
unsafe impl Sync for Bump {}

// SAFETY: hands out disjoint, aligned ranges of the arena, or null when it is used up.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let next = &mut *self.next.get();
        let start = (*next + layout.align() - 1) & !(layout.align() - 1);
        if start + layout.size() > ARENA {
            return core::ptr::null_mut();
        }
        *next = start + layout.size();
        self.arena.get().cast::<u8>().add(start)
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static HEAP: Bump = Bump {
    arena: UnsafeCell::new([0; ARENA]),
    next: UnsafeCell::new(0),
};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// One engine with a device's objects: registers, handles one datagram and a timeout, and
/// drains what it sends and reports, so all of that code is linked.
///
/// # Safety
/// `data` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn engine_nostd_check(data: *const u8, len: usize, now: u64) -> usize {
    let info = DeviceInfo {
        manufacturer: "Acme".into(),
        model: "M1".into(),
        serial: "1".into(),
        firmware_version: "1.0.0".into(),
    };
    let objects: Vec<Box<dyn ObjectHandler>> = vec![
        Box::new(Security::no_sec("coap://127.0.0.1:5683")),
        Box::new(Server::new(300)),
        Box::new(Device::new(info)),
        Box::new(FirmwareUpdate::new(DiscardBackend::default())),
    ];
    let mut engine = Engine::new(Config::new("ep"), "server", objects);
    engine.start(now);
    // SAFETY: the caller's contract.
    let data = unsafe { core::slice::from_raw_parts(data, len) };
    engine.handle_datagram(now, "server", data);
    engine.handle_timeout(now);
    let mut n = 0;
    while let Some(t) = engine.poll_transmit() {
        n += t.data.len();
    }
    while engine.poll_event().is_some() {
        n += 1;
    }
    n
}
