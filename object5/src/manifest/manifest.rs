//! The SUIT_Manifest (section 5.3, 8.4) and SUIT_Common: only ever parsed after the
//! authentication wrapper verified (section 6.2).

use super::auth::{parse_digest, sha256};
use super::cbor::{Reader, MAJOR_ARRAY, MAJOR_BSTR, MAJOR_MAP, MAJOR_TSTR, MAJOR_UINT};
use super::crypto::{ct_eq, CryptoBackend};
use super::envelope::Envelope;
use super::SuitError;

/// Most components a manifest may declare; parameter storage is sized for this many.
pub const MAX_COMPONENTS: usize = 4;

/// Manifest keys (section 8.4).
pub(crate) const KEY_VERSION: u64 = 1;
pub(crate) const KEY_SEQUENCE: u64 = 2;
pub(crate) const KEY_COMMON: u64 = 3;
pub(crate) const KEY_REFERENCE_URI: u64 = 4;
pub(crate) const KEY_VALIDATE: u64 = 7;
pub(crate) const KEY_LOAD: u64 = 8;
pub(crate) const KEY_INVOKE: u64 = 9;
pub(crate) const KEY_PAYLOAD_FETCH: u64 = 16;
pub(crate) const KEY_INSTALL: u64 = 20;
pub(crate) const KEY_TEXT: u64 = 23;

/// A severable manifest member (payload-fetch, install, text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member<'m> {
    /// Not in the manifest.
    Absent,
    /// Present in the manifest: the content of its bstr.
    Present(&'m [u8]),
    /// Severed: the SHA-256 the envelope's copy must match.
    Severed([u8; 32]),
}

/// The parts of a manifest the processor uses; slices point into the envelope buffer.
#[derive(Clone, Copy, Debug)]
pub struct Manifest<'m> {
    /// suit-manifest-sequence-number: the anti-rollback counter.
    pub sequence_number: u64,
    /// Encoded SUIT_Components array (component identifiers), if declared.
    pub components: Option<&'m [u8]>,
    /// How many components the manifest declares (1 when the list is absent).
    pub component_count: usize,
    /// suit-shared-sequence, run before every other sequence.
    pub shared_sequence: Option<&'m [u8]>,
    /// suit-reference-uri.
    pub reference_uri: Option<&'m [u8]>,
    /// suit-validate.
    pub validate: Option<&'m [u8]>,
    /// suit-load.
    pub load: Option<&'m [u8]>,
    /// suit-invoke.
    pub invoke: Option<&'m [u8]>,
    /// suit-payload-fetch.
    pub payload_fetch: Member<'m>,
    /// suit-install.
    pub install: Member<'m>,
    /// suit-text.
    pub text: Member<'m>,
}

fn member<'m>(r: &mut Reader<'m>) -> Result<Member<'m>, SuitError> {
    match r.peek_major()? {
        MAJOR_BSTR => Ok(Member::Present(r.bytes()?)),
        MAJOR_ARRAY => Ok(Member::Severed(parse_digest(r.raw_item()?)?)),
        _ => Err(SuitError::Malformed),
    }
}

fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), SuitError> {
    if slot.replace(value).is_some() {
        return Err(SuitError::Malformed);
    }
    Ok(())
}

impl<'m> Manifest<'m> {
    /// Parses the manifest map (content of the envelope's key-3 bstr). Unknown keys are skipped
    /// (extensions from other drafts); duplicate keys and a version other than 1 are refused.
    #[inline(never)] // own stack frame: keeps peak stack the max, not the sum (README)
    pub fn parse(buf: &'m [u8]) -> Result<Self, SuitError> {
        let mut r = Reader::new(buf);
        let pairs = r.map()?;
        let (mut version, mut seq, mut common) = (None, None, None);
        let mut m = Self {
            sequence_number: 0,
            components: None,
            component_count: 1,
            shared_sequence: None,
            reference_uri: None,
            validate: None,
            load: None,
            invoke: None,
            payload_fetch: Member::Absent,
            install: Member::Absent,
            text: Member::Absent,
        };
        let mut last_key = None;
        for _ in 0..pairs {
            if r.peek_major()? != MAJOR_UINT {
                r.skip()?;
                r.skip()?;
                continue;
            }
            let key = r.uint()?;
            // Canonical CBOR: ascending keys, which also rules out duplicates.
            if last_key.is_some_and(|k| k >= key) {
                return Err(SuitError::Malformed);
            }
            last_key = Some(key);
            match key {
                KEY_VERSION => once(&mut version, r.uint()?)?,
                KEY_SEQUENCE => once(&mut seq, r.uint()?)?,
                KEY_COMMON => once(&mut common, r.bytes()?)?,
                KEY_REFERENCE_URI => m.reference_uri = Some(r.text()?),
                KEY_VALIDATE => m.validate = Some(r.bytes()?),
                KEY_LOAD => m.load = Some(r.bytes()?),
                KEY_INVOKE => m.invoke = Some(r.bytes()?),
                KEY_PAYLOAD_FETCH => m.payload_fetch = member(&mut r)?,
                KEY_INSTALL => m.install = member(&mut r)?,
                KEY_TEXT => m.text = member(&mut r)?,
                _ => r.skip()?,
            }
        }
        if !r.is_empty() {
            return Err(SuitError::Malformed);
        }
        if version.ok_or(SuitError::Malformed)? != 1 {
            return Err(SuitError::UnsupportedManifestVersion);
        }
        m.sequence_number = seq.ok_or(SuitError::Malformed)?;
        m.parse_common(common.ok_or(SuitError::Malformed)?)?;
        Ok(m)
    }

    fn parse_common(&mut self, buf: &'m [u8]) -> Result<(), SuitError> {
        let mut r = Reader::new(buf);
        let pairs = r.map()?;
        for _ in 0..pairs {
            match r.int()? {
                2 => {
                    let item = r.raw_item()?;
                    self.component_count = count_components(item)?;
                    self.components = Some(item);
                }
                4 => self.shared_sequence = Some(r.bytes()?),
                _ => r.skip()?, // dependencies (trust domains) and extensions
            }
        }
        if !r.is_empty() {
            return Err(SuitError::Malformed);
        }
        Ok(())
    }

    /// The content of a severable member: from the manifest, or from the envelope after its
    /// digest matched. `Ok(None)` when absent or severed and not delivered.
    pub fn resolve<C: CryptoBackend>(
        &self,
        which: Member<'m>,
        key: u64,
        envelope: &Envelope<'m>,
        crypto: &C,
    ) -> Result<Option<&'m [u8]>, SuitError> {
        match which {
            Member::Absent => Ok(None),
            Member::Present(bytes) => Ok(Some(bytes)),
            Member::Severed(digest) => match envelope.severed_member(key) {
                None => Ok(None),
                Some(item) => {
                    if !ct_eq(&sha256(crypto, item), &digest) {
                        return Err(SuitError::SeverableDigestMismatch);
                    }
                    Reader::new(item).bytes().map(Some)
                }
            },
        }
    }

    /// Identifier of component `index`: the encoded array of bstr.
    pub fn component_id(&self, index: usize) -> Option<&'m [u8]> {
        let mut r = Reader::new(self.components?);
        let n = r.array().ok()?;
        if index as u64 >= n {
            return None;
        }
        for _ in 0..index {
            r.skip().ok()?;
        }
        r.raw_item().ok()
    }
}

fn count_components(item: &[u8]) -> Result<usize, SuitError> {
    let mut r = Reader::new(item);
    let n = r.array()?;
    if n == 0 {
        return Err(SuitError::Malformed);
    }
    if n > MAX_COMPONENTS as u64 {
        return Err(SuitError::BadComponent);
    }
    for _ in 0..n {
        let parts = r.array()?;
        for _ in 0..parts {
            r.bytes()?;
        }
    }
    usize::try_from(n).map_err(|_| SuitError::BadComponent)
}

/// Human-readable package facts from suit-text for one component (section 8.4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextInfo<'m> {
    /// suit-text-component-version (6): reported as PkgVersion (/5/0/7).
    pub version: Option<&'m [u8]>,
    /// suit-text-component-description (5): reported as PkgName (/5/0/6).
    pub name: Option<&'m [u8]>,
    /// suit-text-manifest-description (1).
    pub description: Option<&'m [u8]>,
}

/// Reads the first language's text for the component `component_id` (encoded identifier).
#[inline(never)] // own stack frame: keeps peak stack the max, not the sum (README)
pub fn text_info<'m>(
    text: &'m [u8],
    component_id: Option<&[u8]>,
) -> Result<TextInfo<'m>, SuitError> {
    let mut info = TextInfo::default();
    let mut r = Reader::new(text);
    let langs = r.map()?;
    if langs == 0 {
        return Ok(info);
    }
    r.text()?;
    let pairs = r.map()?;
    for _ in 0..pairs {
        match r.peek_major()? {
            MAJOR_UINT => {
                let key = r.uint()?;
                if key == 1 && r.peek_major()? == MAJOR_TSTR {
                    info.description = Some(r.text()?);
                } else {
                    r.skip()?;
                }
            }
            MAJOR_ARRAY => {
                let id = r.raw_item()?;
                if r.peek_major()? != MAJOR_MAP {
                    return Err(SuitError::Malformed);
                }
                if component_id.is_some_and(|c| c != id) {
                    r.skip()?;
                    continue;
                }
                let n = r.map()?;
                for _ in 0..n {
                    match (r.int()?, r.peek_major()?) {
                        (5, MAJOR_TSTR) => info.name = Some(r.text()?),
                        (6, MAJOR_TSTR) => info.version = Some(r.text()?),
                        _ => r.skip()?,
                    }
                }
            }
            _ => {
                r.skip()?;
                r.skip()?;
            }
        }
    }
    Ok(info)
}
