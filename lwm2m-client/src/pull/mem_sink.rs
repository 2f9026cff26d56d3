//! Test support: a [`PackageSink`] in memory for the pull tests of this crate and the
//! workspace (with the `sim` feature), so every pull test checks the same contract.

use alloc::vec::Vec;

use super::{PackageSink, SinkError};

/// Keeps the pulled bytes and where each transfer (re)started, and panics on a write that does
/// not continue the bytes before it: [`PackageSink::write`] promises contiguous offsets, and a
/// pull that breaks the promise fails its test here. Not for devices: it holds the whole
/// package in RAM.
#[derive(Default, Debug)]
pub struct MemSink {
    /// The package bytes accepted.
    pub data: Vec<u8>,
    /// The `from` of every [`PackageSink::start`].
    pub starts: Vec<u64>,
}

impl PackageSink for MemSink {
    fn start(&mut self, from: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        self.data.truncate(from as usize);
        self.starts.push(from);
        Ok(())
    }
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        assert_eq!(offset, self.data.len() as u64, "non-contiguous write");
        self.data.extend_from_slice(bytes);
        Ok(())
    }
}
