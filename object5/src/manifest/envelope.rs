//! The SUIT_Envelope (section 5.1, 8.2): where the wrapper, the manifest, severed members and
//! integrated payloads sit in the buffer. Nothing inside the manifest is read here.

use super::cbor::{Reader, MAJOR_MAP, MAJOR_TAG, MAJOR_TSTR, MAJOR_UINT};
use super::SuitError;

/// Envelope CBOR tag (section 8.2).
pub const TAG_ENVELOPE: u64 = 107;
/// Envelope key of the authentication wrapper.
pub const KEY_AUTH: u64 = 2;
/// Envelope (and manifest) key of the manifest.
pub const KEY_MANIFEST: u64 = 3;
/// Severable member keys: dependency-resolution, payload-fetch, install, text (and coswid 14).
pub const SEVERABLE_KEYS: [u64; 5] = [14, 15, 16, 20, 23];

/// A parsed envelope: slices into the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'e> {
    /// Content of the authentication-wrapper bstr (the encoded SUIT_Authentication array).
    pub auth: &'e [u8],
    /// The manifest bstr as encoded, header included: what the SUIT_Digest covers.
    pub manifest_item: &'e [u8],
    /// The manifest bstr's content (the encoded SUIT_Manifest map).
    pub manifest: &'e [u8],
    /// Severed members present, indexed like `SEVERABLE_KEYS`: whole bstr items, header included.
    pub severed: [Option<&'e [u8]>; 5],
    /// The encoded envelope map members after the manifest-related ones (payload walk).
    body: &'e [u8],
}

/// An integrated payload: the tstr key and the content of its bstr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntegratedPayload<'e> {
    /// The envelope key, e.g. `#fw`; manifests refer to it by a URI equal to it.
    pub key: &'e [u8],
    /// The payload bytes.
    pub bytes: &'e [u8],
}

impl<'e> Envelope<'e> {
    /// Splits a complete envelope (tag 107 optional). Refuses duplicate or unknown integer keys,
    /// a missing wrapper or manifest, and trailing bytes ([`SuitError::TrailingBytes`]).
    pub fn parse(buf: &'e [u8]) -> Result<Self, SuitError> {
        let mut r = Reader::new(buf);
        if r.peek_major()? == MAJOR_TAG && r.tag()? != TAG_ENVELOPE {
            return Err(SuitError::Malformed);
        }
        if r.peek_major()? != MAJOR_MAP {
            return Err(SuitError::Malformed);
        }
        let pairs = r.map()?;
        let body_start = r.position();
        let mut auth = None;
        let mut manifest = None;
        let mut severed = [None; 5];
        for _ in 0..pairs {
            match r.peek_major()? {
                MAJOR_UINT => {
                    let key = r.uint()?;
                    let slot = match key {
                        KEY_AUTH => &mut auth,
                        KEY_MANIFEST => &mut manifest,
                        k => match SEVERABLE_KEYS.iter().position(|s| *s == k) {
                            Some(i) => severed.get_mut(i).ok_or(SuitError::Malformed)?,
                            None => return Err(SuitError::Unsupported),
                        },
                    };
                    if slot.is_some() {
                        return Err(SuitError::Malformed);
                    }
                    *slot = Some(r.bytes_with_header()?);
                }
                MAJOR_TSTR => {
                    r.text()?;
                    r.bytes()?;
                }
                _ => return Err(SuitError::Malformed),
            }
        }
        if !r.is_empty() {
            // The signature covers the manifest, not the envelope's extent: refuse what follows.
            return Err(SuitError::TrailingBytes);
        }
        let (_, auth) = auth.ok_or(SuitError::Malformed)?;
        let (manifest_item, manifest) = manifest.ok_or(SuitError::Malformed)?;
        let mut sev = [None; 5];
        for (out, found) in sev.iter_mut().zip(severed) {
            *out = found.map(|(item, _)| item);
        }
        Ok(Self {
            auth,
            manifest_item,
            manifest,
            severed: sev,
            body: buf.get(body_start..).ok_or(SuitError::Malformed)?,
        })
    }

    /// An envelope assembled by the streaming processor from buffered members.
    pub(crate) fn from_parts(
        auth: &'e [u8],
        manifest_item: &'e [u8],
        manifest: &'e [u8],
        severed: [Option<&'e [u8]>; 5],
    ) -> Self {
        Self {
            auth,
            manifest_item,
            manifest,
            severed,
            body: &[],
        }
    }

    /// The severed member with envelope key `key`, as a whole bstr item.
    pub fn severed_member(&self, key: u64) -> Option<&'e [u8]> {
        let i = SEVERABLE_KEYS.iter().position(|s| *s == key)?;
        self.severed.get(i).copied().flatten()
    }

    /// The integrated payload stored under `key`, if any.
    pub fn payload(&self, key: &[u8]) -> Option<&'e [u8]> {
        self.payloads().find(|p| p.key == key).map(|p| p.bytes)
    }

    /// Iterates the integrated payloads in envelope order.
    pub fn payloads(&self) -> impl Iterator<Item = IntegratedPayload<'e>> + 'e {
        let mut r = Reader::new(self.body);
        core::iter::from_fn(move || loop {
            if r.is_empty() {
                return None;
            }
            // `parse` validated the structure, so errors cannot occur; stop cleanly if they do.
            match r.peek_major().ok()? {
                MAJOR_TSTR => {
                    let key = r.text().ok()?;
                    let bytes = r.bytes().ok()?;
                    return Some(IntegratedPayload { key, bytes });
                }
                _ => {
                    r.skip().ok()?;
                    r.skip().ok()?;
                }
            }
        })
    }
}
