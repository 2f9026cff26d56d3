//! A package sink in memory for pull tests: keeps the bytes and where each transfer started,
//! and fails the test on a write that does not continue the bytes before it.

use lwm2m_client::pull::{PackageSink, SinkError};

/// Bytes pulled so far and every (re)start offset.
#[derive(Default, Debug)]
pub struct MemSink {
    /// The package bytes accepted.
    pub data: Vec<u8>,
    /// The `from` of every `start`.
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
