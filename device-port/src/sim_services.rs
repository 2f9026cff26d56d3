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
/// limited to `[A-Za-z0-9._-]` so a key can never name a path outside the directory.
#[derive(Clone, Debug)]
pub struct FileKv {
    dir: PathBuf,
}

impl FileKv {
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
        match fs::read(self.path(key)?) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        let tmp = self.dir.join(format!(".{key}.tmp"));
        fs::write(&tmp, value)?;
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
