//! The binary's subcommands (`serve`, `update`, `demo`, `conformance`, `keygen`, `package`):
//! argument parsing, logging set-up, progress output and exit codes. Only `main.rs` uses this
//! module; everything a subcommand drives lives in the library.

pub mod author;
pub mod campaign_view;
pub mod conformance;
pub mod demo;
pub mod dtls_credentials;
pub mod serve;
pub mod update;
pub mod update_remote;

/// A file the user names, read no further than `limit` (a wrong path such as /dev/zero is
/// refused instead of read until memory runs out); the error is one line naming it.
pub fn read_file(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    object5::author::read_bounded(path, limit).map_err(|e| format!("{}: {e}", path.display()))
}
