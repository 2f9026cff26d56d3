//! The packages the firmware installs, built and signed by `build.rs` with the project's author
//! code and the committed test key (see there).
//!
//! On the target the package bytes sit in their own `.packages` section (memory.x), so the
//! text figure counts code and constants, not the test inputs a real device would receive.

include!(concat!(env!("OUT_DIR"), "/packages.rs"));

/// The factory image 1.0.0 (what slot 0 holds before the update).
#[cfg_attr(target_os = "none", link_section = ".packages")]
pub static OLD_IMAGE: [u8; IMAGE_LEN] = *include_bytes!(concat!(env!("OUT_DIR"), "/old.img"));

/// The update: image 2.0.0, sequence 2, in one signed SUIT envelope with the image integrated.
#[cfg_attr(target_os = "none", link_section = ".packages")]
pub static NEW_PACKAGE: [u8; NEW_PACKAGE_LEN] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/new.suit"));
