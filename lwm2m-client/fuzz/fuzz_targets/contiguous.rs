//! The sink of the pull fuzz targets: takes any bytes and fails the run on a write that does
//! not continue the bytes before it (since the last start).

use lwm2m_client::pull::{PackageSink, SinkError};

/// Where the next write must start.
pub struct Contiguous(pub u64);

impl PackageSink for Contiguous {
    fn start(&mut self, from: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        self.0 = from;
        Ok(())
    }
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        assert_eq!(offset, self.0, "non-contiguous write");
        self.0 += bytes.len() as u64;
        Ok(())
    }
}
