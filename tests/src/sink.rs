//! A [`PackageSink`] that keeps the pulled bytes in memory, for pulls tested without a device.

use lwm2m_client::pull::{PackageSink, SinkError};

/// Keeps what it is given and checks that writes are contiguous.
#[derive(Default)]
pub struct MemSink {
    /// The bytes stored so far.
    pub data: Vec<u8>,
    /// Where each transfer started (0, or a resume offset).
    pub starts: Vec<u64>,
}

impl PackageSink for MemSink {
    fn start(&mut self, from: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        self.data
            .truncate(usize::try_from(from).unwrap_or(usize::MAX));
        self.starts.push(from);
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        assert_eq!(offset, self.data.len() as u64, "non-contiguous write");
        self.data.extend_from_slice(bytes);
        Ok(())
    }
}
