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
