//! Package host: firmware packages kept as files in one directory, served over CoAP Block2
//! (ETag, Size2, 20-bit block numbers) and HTTP (Range), and stored by REST uploads. Devices
//! pull from here (Package URI, LwM2M core TS 1.1 Appendix E.6), which Leshan's demo lacks.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// Longest accepted package name.
pub const MAX_NAME_LEN: usize = 128;

/// Packages up to this size are kept in memory while their file is unchanged, so serving a
/// block costs one `stat` instead of an open, a read and a close (a 64 KiB package pulled by
/// 10 000 devices is 650 000 block requests). Larger packages are read from one file handle
/// kept open while the file is unchanged, so no request needs a descriptor of its own.
pub const MAX_CACHED_PACKAGE: u64 = 16 * 1024 * 1024;

/// Bound on the bytes of all packages kept in memory.
pub const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

/// How long a package's file is taken as unchanged after it was last checked (with `stat`):
/// a file replaced behind the host's back (not through [`PackageHost::store`], which takes
/// effect at once) is served, old bytes with the old ETag, for at most this long.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

/// Why a package operation failed.
#[derive(Debug)]
pub enum PackageHostError {
    /// The name is empty, hidden, or contains characters other than `A-Za-z0-9._-`.
    BadName,
    /// The name is longer than [`MAX_NAME_LEN`] bytes (its length).
    NameTooLong(usize),
    /// No package with that name.
    NotFound,
    /// The requested range lies outside the package.
    OutOfRange,
    /// The file system failed.
    Io(std::io::Error),
    /// The package directory cannot be created, or is not a directory.
    Dir(PathBuf, std::io::Error),
}

impl fmt::Display for PackageHostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName => {
                f.write_str("package names use only A-Za-z0-9._- and do not start with '.'")
            }
            Self::NameTooLong(len) => write!(
                f,
                "package name of {len} characters; names are at most {MAX_NAME_LEN}"
            ),
            Self::NotFound => f.write_str("no such package"),
            Self::OutOfRange => f.write_str("range outside the package"),
            Self::Io(e) => write!(f, "package store: {e}"),
            Self::Dir(dir, e) => write!(f, "package directory {}: {e}", dir.display()),
        }
    }
}

impl std::error::Error for PackageHostError {}

impl From<std::io::Error> for PackageHostError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound
        } else {
            Self::Io(e)
        }
    }
}

/// What the host knows about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// File name, also the last URI path segment.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag: the first 8 bytes of the content's SHA-256, so it changes with the content.
    pub etag: [u8; 8],
}

impl PackageInfo {
    /// The ETag as lower-case hex (HTTP form, without quotes).
    pub fn etag_hex(&self) -> String {
        self.etag.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Clone, Copy, PartialEq)]
struct Stamp {
    size: u64,
    modified: Option<SystemTime>,
    /// Inode: an atomic replace (rename) changes it even within one mtime tick.
    file_id: u64,
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> u64 {
    0
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        size: meta.len(),
        modified: meta.modified().ok(),
        file_id: file_id(meta),
    }
}

/// What the host remembers of one package file while it is unchanged.
struct Cached {
    stamp: Stamp,
    /// When the file was last seen with `stamp`.
    checked: Instant,
    etag: [u8; 8],
    /// The content, for packages small enough to keep.
    content: Option<Arc<[u8]>>,
    /// The open file of a package too large to keep: the version `stamp` describes.
    file: Option<Arc<File>>,
}

/// One version of a package: its size and ETag and, when the host keeps it in memory, the
/// bytes they describe (so blocks served from one snapshot never mix two versions).
#[derive(Clone)]
pub struct Snapshot {
    /// Size and ETag.
    pub info: PackageInfo,
    content: Option<Arc<[u8]>>,
    file: Option<Arc<File>>,
}

impl Snapshot {
    /// A representation held in memory under `name` (the shim's discovery documents), with the
    /// ETag a package of the same bytes would have.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Self {
        Self {
            info: PackageInfo {
                name: name.into(),
                size: bytes.len() as u64,
                etag: etag_of(Sha256::digest(bytes).as_slice()),
            },
            content: Some(Arc::from(bytes)),
            file: None,
        }
    }

    /// Reads `len` bytes at `offset` of this version (fewer at the end); a package too large
    /// to keep in memory is read from the file handle the snapshot holds.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, PackageHostError> {
        let Some(content) = &self.content else {
            let file = self.file.as_ref().ok_or(PackageHostError::NotFound)?;
            return read_file_at(file, self.info.size, offset, len);
        };
        let start = usize::try_from(offset).map_err(|_| PackageHostError::OutOfRange)?;
        let rest = content.get(start..).ok_or(PackageHostError::OutOfRange)?;
        Ok(rest.get(..len.min(rest.len())).unwrap_or_default().to_vec())
    }
}

/// The ETag of content whose SHA-256 is `digest`: its first 8 bytes.
fn etag_of(digest: &[u8]) -> [u8; 8] {
    let mut etag = [0u8; 8];
    etag.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    etag
}

/// Packages in one directory.
pub struct PackageHost {
    dir: PathBuf,
    cache: Mutex<HashMap<String, Cached>>,
}

/// Whether `name` is an acceptable package name (no path separators, no hidden files).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl PackageHost {
    /// Serves packages from `dir`, creating it when missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, PackageHostError> {
        let dir = dir.into();
        if dir.exists() && !dir.is_dir() {
            let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
            return Err(PackageHostError::Dir(dir, e));
        }
        std::fs::create_dir_all(&dir).map_err(|e| PackageHostError::Dir(dir.clone(), e))?;
        Ok(Self {
            dir,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The directory packages live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, PackageHostError> {
        if name.len() > MAX_NAME_LEN {
            Err(PackageHostError::NameTooLong(name.len()))
        } else if valid_name(name) {
            Ok(self.dir.join(name))
        } else {
            Err(PackageHostError::BadName)
        }
    }

    /// Stores (or replaces) a package atomically: readers see the old or the new file, never a
    /// half-written one.
    pub fn store(&self, name: &str, content: &[u8]) -> Result<PackageInfo, PackageHostError> {
        let path = self.path_of(name)?;
        let tmp = self
            .dir
            .join(format!(".upload-{name}-{}", std::process::id()));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(content)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        self.forget(name);
        self.info(name)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, name: &str) {
        self.lock_cache().remove(name);
    }

    /// Size and ETag of a package (cached until the file changes).
    pub fn info(&self, name: &str) -> Result<PackageInfo, PackageHostError> {
        Ok(self.snapshot(name)?.info)
    }

    /// The package as it is now: no system call while it was checked less than
    /// [`REVALIDATE_AFTER`] ago, one `stat` while the file is unchanged; the file is read (and
    /// hashed for the ETag) again when it changed.
    pub fn snapshot(&self, name: &str) -> Result<Snapshot, PackageHostError> {
        self.snapshot_at(name, Instant::now())
    }

    /// [`Self::snapshot`] at time `now` (an argument, so revalidation is tested with fake time).
    pub fn snapshot_at(&self, name: &str, now: Instant) -> Result<Snapshot, PackageHostError> {
        let path = self.path_of(name)?;
        let snapshot = |c: &Cached| Snapshot {
            info: PackageInfo {
                name: name.into(),
                size: c.content.as_ref().map_or(c.stamp.size, |b| b.len() as u64),
                etag: c.etag,
            },
            content: c.content.clone(),
            file: c.file.clone(),
        };
        let fresh = |c: &&mut Cached| now.saturating_duration_since(c.checked) < REVALIDATE_AFTER;
        if let Some(c) = self.lock_cache().get_mut(name).filter(fresh) {
            return Ok(snapshot(c));
        }
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            return Err(PackageHostError::NotFound);
        }
        let stamp = stamp_of(&meta);
        if let Some(c) = self.lock_cache().get_mut(name).filter(|c| c.stamp == stamp) {
            c.checked = now;
            return Ok(snapshot(c));
        }
        let mut f = File::open(&path)?;
        // The stamp of the file actually opened (it may have been replaced since the stat).
        let stamp = stamp_of(&f.metadata()?);
        let kept: usize = self
            .lock_cache()
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .filter_map(|(_, c)| c.content.as_ref().map(|b| b.len()))
            .sum();
        let keep = stamp.size <= MAX_CACHED_PACKAGE
            && kept.saturating_add(usize::try_from(stamp.size).unwrap_or(usize::MAX))
                <= MAX_CACHED_BYTES;
        let mut hasher = Sha256::new();
        let (content, file) = if keep {
            let mut all = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0));
            f.read_to_end(&mut all)?;
            hasher.update(&all);
            (Some(Arc::from(all)), None)
        } else {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(buf.get(..n).unwrap_or_default());
            }
            (None, Some(Arc::new(f)))
        };
        let etag = etag_of(hasher.finalize().as_slice());
        let c = Cached {
            stamp,
            checked: now,
            etag,
            content,
            file,
        };
        let s = snapshot(&c);
        self.lock_cache().insert(name.into(), c);
        Ok(s)
    }

    /// Every package, sorted by name.
    pub fn list(&self) -> Result<Vec<PackageInfo>, PackageHostError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if valid_name(&name) && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                out.push(self.info(&name)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the package).
    pub fn read_range(
        &self,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, PackageHostError> {
        let s = self.snapshot(name)?;
        s.read(offset, len)
    }

    /// Removes a package.
    pub fn remove(&self, name: &str) -> Result<(), PackageHostError> {
        std::fs::remove_file(self.path_of(name)?)?;
        self.forget(name);
        Ok(())
    }
}

/// Reads `len` bytes at `offset` of an open package file of `size` bytes (fewer at the end),
/// without moving a shared file position, so concurrent requests share one handle.
fn read_file_at(
    file: &File,
    size: u64,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, PackageHostError> {
    if offset > size {
        return Err(PackageHostError::OutOfRange);
    }
    let want = usize::try_from((size - offset).min(len as u64)).unwrap_or(len);
    let mut buf = vec![0u8; want];
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, offset)?;
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < want {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                buf.get_mut(done..).unwrap_or_default(),
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            done += n;
        }
    }
    Ok(buf)
}

/// An HTTP byte range resolved against a body of `size` bytes: inclusive start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

/// Parses a single-range `Range: bytes=...` header (RFC 9110 14.1.2). `Ok(None)` means the
/// header is not a byte range the host understands (serve the whole body); `Err` means the range
/// cannot be satisfied (416).
pub fn parse_range(header: &str, size: u64) -> Result<Option<ByteRange>, PackageHostError> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multipart ranges are allowed to be ignored; serve the whole body.
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(PackageHostError::OutOfRange);
        }
        ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        }
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            u64::MAX
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e,
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(PackageHostError::OutOfRange);
        }
        ByteRange {
            start,
            end: end.min(size - 1),
        }
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "shim-pkg-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "x\\y",
            &"a".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["fw.bin", "v1.2.3_signed-A", "a"] {
            assert!(valid_name(good), "{good:?}");
        }
    }

    #[test]
    fn store_read_and_etag_follow_content() {
        let dir = temp_dir("store");
        let host = PackageHost::new(&dir).expect("dir");
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let a = host.store("fw.bin", &data).expect("store");
        assert_eq!(a.size, 5000);
        assert_eq!(
            host.read_range("fw.bin", 4990, 100).expect("tail"),
            data[4990..].to_vec()
        );
        assert_eq!(
            host.read_range("fw.bin", 5000, 10).expect("end"),
            Vec::<u8>::new()
        );
        assert!(matches!(
            host.read_range("fw.bin", 5001, 1),
            Err(PackageHostError::OutOfRange)
        ));
        let mut changed = data.clone();
        changed[0] ^= 1;
        let b = host.store("fw.bin", &changed).expect("replace");
        assert_ne!(a.etag, b.etag);
        assert_eq!(
            host.read_range("fw.bin", 0, 1).expect("new"),
            vec![changed[0]]
        );
        // Replaced behind the host's back (as an operator copying a file in): requests see the
        // new content and ETag once REVALIDATE_AFTER has passed.
        let behind = dir.join(".tmp-behind");
        std::fs::write(&behind, &data[..100]).expect("write");
        std::fs::rename(&behind, dir.join("fw.bin")).expect("rename");
        let later = Instant::now() + REVALIDATE_AFTER + Duration::from_millis(50);
        let s = host.snapshot_at("fw.bin", later).expect("snapshot");
        assert_eq!(s.info.size, 100);
        assert_eq!(s.info.etag, host.info("fw.bin").expect("info").etag);
        assert_eq!(s.read(90, 50).expect("tail"), data[90..100].to_vec());
        let b = host.store("fw.bin", &changed).expect("replace again");
        assert_eq!(host.list().expect("list"), vec![b]);
        assert!(matches!(host.info("nope"), Err(PackageHostError::NotFound)));
        assert!(matches!(
            host.store("../evil", b"x"),
            Err(PackageHostError::BadName)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn range_header_forms() {
        let r = |h| parse_range(h, 100);
        assert_eq!(
            r("bytes=0-9").ok().flatten(),
            Some(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            r("bytes=90-").ok().flatten(),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=-10").ok().flatten(),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=50-500").ok().flatten(),
            Some(ByteRange { start: 50, end: 99 })
        );
        assert!(matches!(r("bytes=100-"), Err(PackageHostError::OutOfRange)));
        assert!(matches!(r("bytes=-0"), Err(PackageHostError::OutOfRange)));
        assert!(matches!(r("items=1-2"), Ok(None)));
        assert!(matches!(r("bytes=5-1"), Ok(None)));
        assert!(matches!(r("bytes=0-1,5-6"), Ok(None)));
    }
}
