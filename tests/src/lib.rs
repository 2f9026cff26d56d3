//! Shared helpers for the workspace-level tests: where the shared reference folder is, and a
//! fault-injecting UDP relay for loopback network tests.

use std::path::PathBuf;

pub mod e2e;
pub mod relay;

/// The `../shared` folder beside the checkout (design notes, SUIT vectors and keys).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}
