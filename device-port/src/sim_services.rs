//! Host implementations of the small board services: clock and file-backed key-value store.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use crate::board::{Clock, KeyValue};

/// Monotonic clock from `std::time::Instant`.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    origin: Instant,
}

impl SimClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Key-value store in a directory: one file per key, replaced atomically by rename. Keys are
/// limited to `[A-Za-z0-9._-]` so a key can never name a path outside the directory. Values
/// may be secret (a bootstrapped configuration holds the server's key): files are the owner's
/// alone (0600), and none is read past [`FileKv::VALUE_LIMIT`] (a file on disk is untrusted).
#[derive(Clone, Debug)]
pub struct FileKv {
    dir: PathBuf,
}

impl FileKv {
    /// The largest value read back; a larger file is an error, not a read until memory ends.
    pub const VALUE_LIMIT: u64 = 1 << 20;

    /// A store in `dir` (created when missing).
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        let ok = !key.is_empty()
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "key must match [A-Za-z0-9._-]+",
            ));
        }
        Ok(self.dir.join(key))
    }
}

impl KeyValue for FileKv {
    type Error = io::Error;

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let file = match fs::File::open(self.path(key)?) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut v = Vec::new();
        file.take(Self::VALUE_LIMIT + 1).read_to_end(&mut v)?;
        if v.len() as u64 > Self::VALUE_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{key}: larger than {} bytes", Self::VALUE_LIMIT),
            ));
        }
        Ok(Some(v))
    }

    fn set(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(key)?;
        let tmp = self.dir.join(format!(".{key}.tmp"));
        // A temporary file an earlier run left may be another mode: start afresh.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(value)?;
        f.sync_all()?;
        fs::rename(tmp, path)
    }

    fn remove(&mut self, key: &str) -> io::Result<()> {
        match fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The simulated device's key-value store: files for a device with a state directory,
/// memory for an in-memory device (sweeps).
#[derive(Clone, Debug)]
pub enum SimKv {
    /// In memory; gone with the process.
    Memory(HashMap<String, Vec<u8>>),
    /// In a directory.
    Files(FileKv),
}

impl KeyValue for SimKv {
    type Error = io::Error;

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(map) => Ok(map.get(key).cloned()),
            Self::Files(kv) => kv.get(key),
        }
    }

    fn set(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        match self {
            Self::Memory(map) => {
                map.insert(key.to_owned(), value.to_vec());
                Ok(())
            }
            Self::Files(kv) => kv.set(key, value),
        }
    }

    fn remove(&mut self, key: &str) -> io::Result<()> {
        match self {
            Self::Memory(map) => {
                map.remove(key);
                Ok(())
            }
            Self::Files(kv) => kv.remove(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("filekv-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn values_are_the_owners_alone_and_replaced_whole() {
        let d = dir("mode");
        let mut kv = FileKv::open(d.clone()).unwrap();
        kv.set("secret", b"one").unwrap();
        kv.set("secret", b"two").unwrap();
        assert_eq!(kv.get("secret").unwrap().as_deref(), Some(&b"two"[..]));
        let mode = fs::metadata(d.join("secret")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(kv.set("../escape", b"x").is_err());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_value_file_larger_than_the_limit_is_an_error() {
        let d = dir("limit");
        let kv = FileKv::open(d.clone()).unwrap();
        let big = vec![0u8; FileKv::VALUE_LIMIT as usize + 1];
        fs::write(d.join("big"), big).unwrap();
        let e = kv.get("big").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(kv.get("absent").unwrap(), None);
        fs::remove_dir_all(d).unwrap();
    }
}
