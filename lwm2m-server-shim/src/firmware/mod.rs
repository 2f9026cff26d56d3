//! Firmware updates driven by the server: jobs, campaigns and conformance runs.

pub mod campaign;
pub mod conformance;
pub mod jobs;
