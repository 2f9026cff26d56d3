//! Links object5 into a `#![no_std]` artifact with no allocator (see Cargo.toml).
#![no_std]

use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// Keeps object5's code reachable so the linker cannot drop it.
#[no_mangle]
pub extern "C" fn object5_nostd_check() -> usize {
    core::mem::size_of::<usize>()
}
