//! LwM2M paths `/o`, `/o/i`, `/o/i/r`, `/o/i/r/ri` (OMA TS Core 1.1, section 6.1).

use super::CodecError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::fmt::Write as _;

/// Identifier 65535 is reserved (MAX_ID) by the spec and never names an entity.
pub const RESERVED_ID: u16 = 65535;

/// An LwM2M path; the root path `/` has no object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    ids: [u16; 4],
    len: u8,
}

impl Path {
    /// The root `/`.
    pub const ROOT: Self = Self {
        ids: [0; 4],
        len: 0,
    };

    /// `/o`.
    pub const fn object(o: u16) -> Self {
        Self {
            ids: [o, 0, 0, 0],
            len: 1,
        }
    }
    /// `/o/i`.
    pub const fn instance(o: u16, i: u16) -> Self {
        Self {
            ids: [o, i, 0, 0],
            len: 2,
        }
    }
    /// `/o/i/r`.
    pub const fn resource(o: u16, i: u16, r: u16) -> Self {
        Self {
            ids: [o, i, r, 0],
            len: 3,
        }
    }
    /// `/o/i/r/ri`.
    pub const fn resource_instance(o: u16, i: u16, r: u16, ri: u16) -> Self {
        Self {
            ids: [o, i, r, ri],
            len: 4,
        }
    }

    /// Builds a path from 0-4 identifiers.
    pub fn from_ids(ids: &[u16]) -> Result<Self, CodecError> {
        if ids.len() > 4 || ids.contains(&RESERVED_ID) {
            return Err(CodecError::BadPath);
        }
        let mut p = Self::ROOT;
        for (slot, id) in p.ids.iter_mut().zip(ids) {
            *slot = *id;
        }
        p.len = ids.len() as u8;
        Ok(p)
    }

    /// Parses `/3/0/1` (a leading slash is optional, a trailing one is tolerated).
    pub fn parse(s: &str) -> Result<Self, CodecError> {
        let s = s.strip_prefix('/').unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.is_empty() {
            return Ok(Self::ROOT);
        }
        Self::from_segments(s.split('/'))
    }

    /// Builds a path from CoAP Uri-Path segments (each a decimal identifier).
    pub fn from_segments<'a>(segs: impl IntoIterator<Item = &'a str>) -> Result<Self, CodecError> {
        let mut ids = [0u16; 4];
        let mut n = 0usize;
        for seg in segs {
            let slot = ids.get_mut(n).ok_or(CodecError::BadPath)?;
            *slot = parse_id(seg)?;
            n += 1;
        }
        Self::from_ids(ids.get(..n).ok_or(CodecError::BadPath)?)
    }

    /// The identifiers present (0-4 of them).
    pub fn ids(&self) -> &[u16] {
        self.ids.get(..usize::from(self.len)).unwrap_or(&[])
    }
    /// Number of identifiers (0 for the root).
    pub const fn depth(&self) -> usize {
        self.len as usize
    }
    /// Object id, if any.
    pub fn object_id(&self) -> Option<u16> {
        self.ids().first().copied()
    }
    /// Object instance id, if any.
    pub fn instance_id(&self) -> Option<u16> {
        self.ids().get(1).copied()
    }
    /// Resource id, if any.
    pub fn resource_id(&self) -> Option<u16> {
        self.ids().get(2).copied()
    }
    /// Resource instance id, if any.
    pub fn resource_instance_id(&self) -> Option<u16> {
        self.ids().get(3).copied()
    }
    /// This path with one more identifier; `None` at depth 4.
    pub fn child(&self, id: u16) -> Option<Self> {
        if self.len >= 4 || id == RESERVED_ID {
            return None;
        }
        let mut p = *self;
        *p.ids.get_mut(usize::from(self.len))? = id;
        p.len += 1;
        Some(p)
    }
    /// The enclosing path; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let len = self.len.checked_sub(1)?;
        let mut p = *self;
        *p.ids.get_mut(usize::from(len))? = 0;
        p.len = len;
        Some(p)
    }
    /// True when `self` equals `other` or lies below it.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.ids().starts_with(other.ids())
    }
    /// The path as CoAP Uri-Path segments.
    pub fn segments(&self) -> Vec<String> {
        self.ids()
            .iter()
            .map(|id| {
                let mut s = String::new();
                let _ = write!(s, "{id}");
                s
            })
            .collect()
    }
}

fn parse_id(seg: &str) -> Result<u16, CodecError> {
    // Decimal digits only: no sign, no whitespace, no leading '+'.
    if seg.is_empty() || seg.len() > 5 || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodecError::BadPath);
    }
    let v: u32 = seg.parse().map_err(|_| CodecError::BadPath)?;
    u16::try_from(v)
        .ok()
        .filter(|v| *v != RESERVED_ID)
        .ok_or(CodecError::BadPath)
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("/");
        }
        for id in self.ids() {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl core::str::FromStr for Path {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_and_prints() {
        let p = Path::parse("/5/0/1").unwrap();
        assert_eq!(p, Path::resource(5, 0, 1));
        assert_eq!(p.to_string(), "/5/0/1");
        assert_eq!(Path::parse("/").unwrap(), Path::ROOT);
        assert_eq!(Path::parse("3/0/").unwrap(), Path::instance(3, 0));
        assert_eq!(
            Path::parse("/3/0/6/1").unwrap().resource_instance_id(),
            Some(1)
        );
        assert!(Path::parse("/3/0/6/1/2").is_err());
        assert!(Path::parse("/65535").is_err());
        assert!(Path::parse("/-1").is_err());
        assert!(Path::parse("/3//1").is_err());
        assert!(Path::parse("/+3").is_err());
        assert_eq!(Path::instance(3, 0).child(1), Some(Path::resource(3, 0, 1)));
        assert_eq!(Path::resource(3, 0, 1).parent(), Some(Path::instance(3, 0)));
        assert!(Path::resource(3, 0, 1).starts_with(&Path::object(3)));
        assert!(!Path::object(3).starts_with(&Path::resource(3, 0, 1)));
    }
}
