//! A file mapped into memory (`mmap`, `MAP_SHARED`) for [`crate::SimFlash`]'s write-through.
//!
//! A store into the mapping is in the file's page cache at once, so another process reading
//! the file, or a new process after this one was killed at any point, sees exactly the bytes
//! stored so far, as with one `pwrite` per flash operation, but without a system call per
//! operation: on current kernels a small `pwrite` into a file cached in large folios costs
//! several microseconds (the simulated device issues six per 4 KiB sector it downloads).
//!
//! The file must keep its length while mapped (a shorter file would fault on access); the
//! simulator sizes it before mapping and nothing else truncates it while the device runs.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

/// The whole of one file, mapped read-write and shared.
pub(crate) struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
    /// Kept open for the mapping's lifetime (not required by `mmap`, but documents the owner).
    _file: File,
}

// SAFETY: the mapping is owned memory reachable only through `&mut self` (writes) or `&self`
// (reads), like a `Vec<u8>`; moving it to another thread moves that ownership.
unsafe impl Send for MappedFile {}
// SAFETY: `&self` gives only reads of the mapping.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps the first `len` bytes of `file`, which must be at least that long and opened for
    /// reading and writing. `len` must not be 0.
    pub(crate) fn new(file: File, len: usize) -> io::Result<Self> {
        if len == 0 || file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file shorter than the mapping",
            ));
        }
        // SAFETY: a fresh mapping of a descriptor we own; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            ptr,
            len,
            _file: file,
        })
    }

    /// Copies `bytes` into the file at `offset`; out of range is an error, nothing is written.
    pub(crate) fn write_at(&mut self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(bytes.len())
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "beyond the mapping"))?;
        // SAFETY: `ptr..ptr+len` is a live mapping exclusively owned through `&mut self`, and
        // `offset..end` lies inside it.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) };
        dst[offset..end].copy_from_slice(bytes);
        Ok(())
    }

    /// The mapped bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: a live mapping of `len` bytes; `&self` excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`, which nothing uses afterwards.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn stores_are_in_the_file_at_once_and_bounds_are_checked() {
        let path = std::env::temp_dir().join(format!("mapped-{}.bin", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(8192).unwrap();
        let mut m = MappedFile::new(file, 8192).unwrap();
        m.write_at(4094, &[1, 2, 3, 4]).unwrap();
        // Another reader of the file (a new process after a kill) sees the store at once.
        let seen = std::fs::read(&path).unwrap();
        assert_eq!(&seen[4094..4098], &[1, 2, 3, 4]);
        assert_eq!(&m.bytes()[4094..4098], &[1, 2, 3, 4]);
        assert!(m.write_at(8190, &[0; 3]).is_err());
        assert!(m.write_at(usize::MAX, &[0]).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            seen,
            "a refused write changes nothing"
        );
        drop(m);
        let short = File::open(&path).unwrap();
        assert!(MappedFile::new(short, 16384).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
