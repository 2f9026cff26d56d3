//! Shared helpers for the workspace-level tests: where the shared reference folder is.

use std::path::PathBuf;

/// The `../shared` folder beside the checkout (design notes, SUIT vectors and keys).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}
