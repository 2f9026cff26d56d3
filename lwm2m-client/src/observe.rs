//! Write-Attributes (pmin, pmax, gt, lt, st) and the notification rule for observations
//! (OMA TS Core 1.1 section 5.1.2, RFC 7641).

use crate::codec::Path;
use alloc::vec::Vec;

/// Notification attributes attached to a path.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Attributes {
    /// Minimum period between notifications, seconds.
    pub pmin: Option<u32>,
    /// Maximum period without a notification, seconds.
    pub pmax: Option<u32>,
    /// Greater-than threshold.
    pub gt: Option<f64>,
    /// Less-than threshold.
    pub lt: Option<f64>,
    /// Minimum change (step).
    pub st: Option<f64>,
}

/// Why a Write-Attributes query was rejected (answered 4.00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAttribute;

impl core::fmt::Display for BadAttribute {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("bad notification attribute")
    }
}

impl Attributes {
    /// Applies Write-Attributes query parameters: `name=value` sets, a bare `name` clears.
    /// Unknown names are rejected; `lt < gt` with `st` must keep lt + 2*st < gt (spec rule).
    pub fn apply<'a>(
        &mut self,
        query: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BadAttribute> {
        let mut next = *self;
        for q in query {
            let (name, value) = match q.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (q, None),
            };
            let int = |v: Option<&str>| -> Result<Option<u32>, BadAttribute> {
                v.map(|v| v.parse::<u32>().map_err(|_| BadAttribute))
                    .transpose()
            };
            let float = |v: Option<&str>| -> Result<Option<f64>, BadAttribute> {
                v.map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or(BadAttribute)
                })
                .transpose()
            };
            match name {
                "pmin" => next.pmin = int(value)?,
                "pmax" => next.pmax = int(value)?,
                "gt" => next.gt = float(value)?,
                "lt" => next.lt = float(value)?,
                "st" => {
                    let st = float(value)?;
                    if st.is_some_and(|s| s < 0.0) {
                        return Err(BadAttribute);
                    }
                    next.st = st;
                }
                // epmin/epmax (1.1) are accepted and not acted on: evaluation periods are not used.
                "epmin" | "epmax" => {}
                _ => return Err(BadAttribute),
            }
        }
        if let (Some(pmin), Some(pmax)) = (next.pmin, next.pmax) {
            if pmax != 0 && pmax < pmin {
                return Err(BadAttribute);
            }
        }
        if let (Some(lt), Some(gt)) = (next.lt, next.gt) {
            if lt >= gt || next.st.is_some_and(|st| lt + 2.0 * st >= gt) {
                return Err(BadAttribute);
            }
        }
        *self = next;
        Ok(())
    }

    /// Fills unset values from `parent` (attributes are inherited object -> instance -> resource).
    pub fn inherit(self, parent: &Attributes) -> Attributes {
        Attributes {
            pmin: self.pmin.or(parent.pmin),
            pmax: self.pmax.or(parent.pmax),
            gt: self.gt.or(parent.gt),
            lt: self.lt.or(parent.lt),
            st: self.st.or(parent.st),
        }
    }

    /// Whether a changed numeric value passes the gt/lt/st conditions relative to the value
    /// last notified. Without any of them every change counts.
    pub fn value_passes(&self, last: Option<f64>, new: Option<f64>) -> bool {
        let (Some(new), Some(last)) = (new, last) else {
            return true;
        };
        if self.gt.is_none() && self.lt.is_none() && self.st.is_none() {
            return true;
        }
        let crossed = |t: Option<f64>| t.is_some_and(|t| (last <= t) != (new <= t));
        let stepped = self.st.is_some_and(|st| (new - last).abs() >= st);
        crossed(self.gt) || crossed(self.lt) || stepped
    }
}

/// Attributes stored per path by Write-Attributes.
#[derive(Debug, Default)]
pub struct AttributeStore {
    entries: Vec<(Path, Attributes)>,
}

impl AttributeStore {
    /// Attributes set directly on `path`.
    pub fn get(&self, path: &Path) -> Attributes {
        self.entries
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, a)| *a)
            .unwrap_or_default()
    }
    /// Replaces the attributes on `path` (an all-empty set removes the entry).
    pub fn set(&mut self, path: Path, a: Attributes) {
        self.entries.retain(|(p, _)| *p != path);
        if a != Attributes::default() {
            self.entries.push((path, a));
        }
    }
    /// Effective attributes for `path`: its own, then its ancestors', then the server defaults.
    pub fn effective(&self, path: &Path, defaults: &Attributes) -> Attributes {
        let mut a = self.get(path);
        let mut p = *path;
        while let Some(parent) = p.parent() {
            a = a.inherit(&self.get(&parent));
            p = parent;
        }
        a.inherit(defaults)
    }
}

/// One observation registered by a server.
#[derive(Debug, Clone)]
pub struct Observation<P> {
    /// Who observes.
    pub peer: P,
    /// The token notifications carry.
    pub token: Vec<u8>,
    /// The observed path.
    pub path: Path,
    /// Content format of notifications.
    pub format: crate::codec::ContentFormat,
    /// Observe sequence number of the last notification.
    pub seq: u32,
    /// When the last notification (or the initial response) was sent.
    pub last_sent_ms: u64,
    /// Hash of the last payload sent, to detect change.
    pub last_hash: u64,
    /// Last numeric value sent (single numeric resources), for gt/lt/st.
    pub last_value: Option<f64>,
    /// A change was signalled since the last notification.
    pub dirty: bool,
    /// Message id of an unacknowledged confirmable notification.
    pub in_flight: Option<u16>,
}

/// FNV-1a, to remember payloads by a fixed-size fingerprint instead of a copy.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_and_validates_attributes() {
        let mut a = Attributes::default();
        a.apply(["pmin=2", "pmax=10"]).unwrap();
        assert_eq!((a.pmin, a.pmax), (Some(2), Some(10)));
        a.apply(["pmin"]).unwrap();
        assert_eq!(a.pmin, None);
        assert!(a.apply(["pmin=20"]).is_err(), "pmax < pmin");
        assert!(a.apply(["bogus=1"]).is_err());
        assert!(a.apply(["gt=5", "lt=6"]).is_err());
        assert!(a.apply(["gt=10", "lt=1", "st=5"]).is_err());
        a.apply(["gt=10", "lt=1", "st=2"]).unwrap();
        assert_eq!(a.pmax, Some(10), "a rejected query changes nothing");
    }

    #[test]
    fn thresholds_and_steps() {
        let a = Attributes {
            gt: Some(10.0),
            ..Default::default()
        };
        assert!(!a.value_passes(Some(1.0), Some(5.0)));
        assert!(a.value_passes(Some(5.0), Some(11.0)));
        assert!(a.value_passes(Some(11.0), Some(9.0)));
        let s = Attributes {
            st: Some(2.0),
            ..Default::default()
        };
        assert!(!s.value_passes(Some(1.0), Some(2.5)));
        assert!(s.value_passes(Some(1.0), Some(3.0)));
        assert!(Attributes::default().value_passes(Some(1.0), Some(1.5)));
    }

    #[test]
    fn inherits_from_ancestors_and_defaults() {
        let mut s = AttributeStore::default();
        s.set(
            Path::instance(5, 0),
            Attributes {
                pmin: Some(2),
                pmax: Some(10),
                ..Default::default()
            },
        );
        s.set(
            Path::resource(5, 0, 3),
            Attributes {
                pmin: Some(1),
                ..Default::default()
            },
        );
        let d = Attributes {
            pmin: Some(0),
            pmax: Some(60),
            ..Default::default()
        };
        let e = s.effective(&Path::resource(5, 0, 3), &d);
        assert_eq!((e.pmin, e.pmax), (Some(1), Some(10)));
        let e = s.effective(&Path::resource(3, 0, 3), &d);
        assert_eq!((e.pmin, e.pmax), (Some(0), Some(60)));
    }
}
