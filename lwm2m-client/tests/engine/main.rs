//! Engine behaviour with fake time, one module per operation: registration, the CoAP message
//! layer, reads and writes, observe, block-wise transfer and bootstrap, checked against RFC
//! 7252/7641/7959 and OMA TS Core 1.1. The scripted server is `tests/common`, shared with the
//! other test files; `support` holds what several operations' tests use.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod blockwise;
mod bootstrap;
mod messages;
mod observe;
mod queue_mode;
mod read_write;
mod registration;
mod saved_config;
