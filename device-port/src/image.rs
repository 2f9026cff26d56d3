//! The simulated firmware image format: what "running firmware" means in the simulation.
//!
//! A 64-byte header, then name, version and body:
//! magic "SIMFW1\0\0", flags u32 (bit 0: fails its self-test), name length u8, version length
//! u8, 2 reserved bytes, body length u32, 44 reserved bytes. The running name and version the
//! client reports come from here; an image built with [`ImageBuilder::fails_self_test`] never
//! confirms itself, which exercises the revert path end to end.

use std::fmt;

const MAGIC: [u8; 8] = *b"SIMFW1\0\0";
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Longest name or version.
pub const MAX_TEXT: usize = 64;
const FLAG_FAILS_SELF_TEST: u32 = 1;

/// What a simulated image says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Firmware name (PkgName, /3/0 model).
    pub name: String,
    /// Firmware version (PkgVersion, /3/0/3).
    pub version: String,
    /// Whether the image fails its self-test (never confirms).
    pub fails_self_test: bool,
    /// Body length in bytes.
    pub body_len: u32,
}

impl ImageInfo {
    /// Total image length: header, texts and body.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.name.len() + self.version.len() + self.body_len as usize
    }
}

/// Why bytes are not a simulated image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than its header says.
    Truncated,
    /// Unknown magic.
    BadMagic,
    /// Name or version is not UTF-8 or too long.
    BadText,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "image truncated",
            Self::BadMagic => "not a simulated firmware image",
            Self::BadText => "image name or version invalid",
        })
    }
}

impl std::error::Error for ImageError {}

/// Reads the header, name and version from the start of an image (`bytes` may be just the
/// first [`HEADER_LEN`] + 2 x [`MAX_TEXT`] bytes). Never panics.
pub fn parse(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let header = bytes.get(..HEADER_LEN).ok_or(ImageError::Truncated)?;
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err(ImageError::BadMagic);
    }
    let le32 = |at: usize| {
        header
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let flags = le32(8).ok_or(ImageError::Truncated)?;
    let name_len = usize::from(header[12]);
    let version_len = usize::from(header[13]);
    let body_len = le32(16).ok_or(ImageError::Truncated)?;
    if name_len > MAX_TEXT || version_len > MAX_TEXT {
        return Err(ImageError::BadText);
    }
    let text = |from: usize, len: usize| -> Result<String, ImageError> {
        let raw = bytes.get(from..from + len).ok_or(ImageError::Truncated)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| ImageError::BadText)
    };
    Ok(ImageInfo {
        name: text(HEADER_LEN, name_len)?,
        version: text(HEADER_LEN + name_len, version_len)?,
        fails_self_test: flags & FLAG_FAILS_SELF_TEST != 0,
        body_len,
    })
}

/// Builds simulated images: `ImageBuilder::new("demo", "2.0.0").total_len(65536).build()`.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    name: String,
    version: String,
    fails_self_test: bool,
    body_len: usize,
}

impl ImageBuilder {
    /// An image with a 1 KiB body that passes its self-test. Name and version are cut to
    /// [`MAX_TEXT`] bytes.
    pub fn new(name: &str, version: &str) -> Self {
        let cut = |s: &str| {
            let mut end = s.len().min(MAX_TEXT);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        };
        Self {
            name: cut(name),
            version: cut(version),
            fails_self_test: false,
            body_len: 1024,
        }
    }

    /// Marks the image as failing its self-test: it boots but never confirms.
    pub fn fails_self_test(mut self, fails: bool) -> Self {
        self.fails_self_test = fails;
        self
    }

    /// Sets the body length.
    pub fn body_len(mut self, len: usize) -> Self {
        self.body_len = len;
        self
    }

    /// Sets the body length so the whole image is `total` bytes (at least the header).
    pub fn total_len(mut self, total: usize) -> Self {
        self.body_len = total.saturating_sub(HEADER_LEN + self.name.len() + self.version.len());
        self
    }

    /// The image bytes; the body is a pattern derived from name and version, so two images
    /// differ in nearly every byte (a mix of them never passes for either).
    pub fn build(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + self.name.len() + self.version.len() + self.body_len);
        out.extend_from_slice(&MAGIC);
        let flags = if self.fails_self_test {
            FLAG_FAILS_SELF_TEST
        } else {
            0
        };
        out.extend_from_slice(&flags.to_le_bytes());
        out.push(self.name.len() as u8);
        out.push(self.version.len() as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(self.body_len as u32).to_le_bytes());
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(self.version.as_bytes());
        let mut x = self
            .name
            .bytes()
            .chain(self.version.bytes())
            .fold(0x811C_9DC5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        for _ in 0..self.body_len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            out.push(x as u8);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_back() {
        let image = ImageBuilder::new("demo", "2.0.0")
            .fails_self_test(true)
            .total_len(65536)
            .build();
        assert_eq!(image.len(), 65536);
        let info = parse(&image).unwrap();
        assert_eq!(info.name, "demo");
        assert_eq!(info.version, "2.0.0");
        assert!(info.fails_self_test);
        assert_eq!(info.total_len(), 65536);
        let good = ImageBuilder::new("demo", "2.0.0").build();
        assert!(!parse(&good).unwrap().fails_self_test);
    }

    #[test]
    fn rejects_foreign_or_truncated_bytes_without_panicking() {
        assert_eq!(parse(&[0xFF; 200]), Err(ImageError::BadMagic));
        let image = ImageBuilder::new("n", "v").build();
        assert_eq!(parse(&image[..HEADER_LEN]), Err(ImageError::Truncated));
        for len in 0..HEADER_LEN + 3 {
            let _ = parse(&image[..len]);
        }
    }
}
