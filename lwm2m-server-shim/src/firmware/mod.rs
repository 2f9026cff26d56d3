//! Firmware updates driven by the server: jobs and campaigns.

pub mod campaign;
pub mod jobs;
