//! SUIT parameters (section 8.4.8): per-component storage filled by override-parameters, and a
//! static look-up of what an image's parameters will be before any command runs.

use super::auth::parse_digest;
use super::cbor::{Reader, MAJOR_ARRAY, MAJOR_SIMPLE, MAJOR_TAG, MAJOR_UINT};
use super::SuitError;

/// Parameter keys (section 8.4.8, Table 6).
pub(crate) mod key {
    pub const VENDOR_ID: i64 = 1;
    pub const CLASS_ID: i64 = 2;
    pub const IMAGE_DIGEST: i64 = 3;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const STRICT_ORDER: i64 = 12;
    pub const SOFT_FAILURE: i64 = 13;
    pub const IMAGE_SIZE: i64 = 14;
    pub const CONTENT: i64 = 18;
    pub const ENCRYPTION_INFO: i64 = 19;
    pub const URI: i64 = 21;
    pub const SOURCE_COMPONENT: i64 = 22;
    pub const INVOKE_ARGS: i64 = 23;
    pub const DEVICE_ID: i64 = 24;
    pub const FETCH_ARGS: i64 = 25;
}

/// The parameters of one component; byte strings point into the authenticated manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'m> {
    /// Vendor identifier (16-byte UUID, or the content of a tag-112 PEN).
    pub vendor_id: Option<&'m [u8]>,
    /// Class identifier (16-byte UUID).
    pub class_id: Option<&'m [u8]>,
    /// Device identifier (16-byte UUID).
    pub device_id: Option<&'m [u8]>,
    /// SHA-256 the image must hash to.
    pub image_digest: Option<[u8; 32]>,
    /// Length the image must have.
    pub image_size: Option<u64>,
    /// Slot the component is written to or run from.
    pub component_slot: Option<u64>,
    /// Where to fetch the image (absolute URI, or `#key` of an integrated payload).
    pub uri: Option<&'m [u8]>,
    /// Bytes for the write directive and the check-content condition.
    pub content: Option<&'m [u8]>,
    /// Source component index for copy and swap.
    pub source_component: Option<u64>,
    /// Arguments for invoke.
    pub invoke_args: Option<&'m [u8]>,
    /// Arguments for fetch.
    pub fetch_args: Option<&'m [u8]>,
    /// suit-parameter-encryption-info: the encoded COSE_Encrypt / COSE_Encrypt0 the payload
    /// is encrypted with (draft-ietf-suit-firmware-encryption section 5).
    pub encryption_info: Option<&'m [u8]>,
}

impl<'m> Params<'m> {
    /// set-parameters: takes from `new` only what is not set yet (trust domains, section 6.3).
    pub(crate) fn fill_unset(&mut self, new: &Params<'m>) {
        self.vendor_id = self.vendor_id.or(new.vendor_id);
        self.class_id = self.class_id.or(new.class_id);
        self.device_id = self.device_id.or(new.device_id);
        self.image_digest = self.image_digest.or(new.image_digest);
        self.image_size = self.image_size.or(new.image_size);
        self.component_slot = self.component_slot.or(new.component_slot);
        self.uri = self.uri.or(new.uri);
        self.content = self.content.or(new.content);
        self.source_component = self.source_component.or(new.source_component);
        self.invoke_args = self.invoke_args.or(new.invoke_args);
        self.fetch_args = self.fetch_args.or(new.fetch_args);
        self.encryption_info = self.encryption_info.or(new.encryption_info);
    }
}

/// Settings that apply to all components (section 8.4.8.15, 8.4.8.14).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalParams {
    /// soft-failure: a failed condition ends the current try-each branch instead of aborting.
    pub soft_failure: Option<bool>,
    /// strict-order: parallel processing is not allowed (always the case here).
    pub strict_order: Option<bool>,
}

/// Applies an encoded `{+ SUIT_Parameters}` map to `p` (override semantics: later wins).
pub(crate) fn apply<'m>(
    r: &mut Reader<'m>,
    p: &mut Params<'m>,
    g: Option<&mut GlobalParams>,
) -> Result<(), SuitError> {
    let pairs = r.map()?;
    let mut global = GlobalParams::default();
    for _ in 0..pairs {
        match r.int()? {
            key::VENDOR_ID => {
                if r.peek_major()? == MAJOR_TAG && r.tag()? != 112 {
                    return Err(SuitError::Malformed);
                }
                p.vendor_id = Some(r.bytes()?);
            }
            key::CLASS_ID => p.class_id = Some(r.bytes()?),
            key::DEVICE_ID => p.device_id = Some(r.bytes()?),
            key::IMAGE_DIGEST => p.image_digest = Some(parse_digest(r.bytes()?)?),
            key::IMAGE_SIZE => p.image_size = Some(r.uint()?),
            key::COMPONENT_SLOT => p.component_slot = Some(r.uint()?),
            key::URI => p.uri = Some(r.text()?),
            key::CONTENT => p.content = Some(r.bytes()?),
            key::SOURCE_COMPONENT => p.source_component = Some(r.uint()?),
            key::INVOKE_ARGS => p.invoke_args = Some(r.bytes()?),
            key::FETCH_ARGS => p.fetch_args = Some(r.bytes()?),
            key::ENCRYPTION_INFO => p.encryption_info = Some(r.bytes()?),
            key::SOFT_FAILURE => global.soft_failure = Some(r.boolean()?),
            key::STRICT_ORDER => global.strict_order = Some(r.boolean()?),
            k if k < 0 => r.skip()?, // custom parameters: carried, not interpreted
            _ => return Err(SuitError::Unsupported),
        }
    }
    if let Some(g) = g {
        if global.soft_failure.is_some() {
            g.soft_failure = global.soft_failure;
        }
        if global.strict_order.is_some() {
            g.strict_order = global.strict_order;
        }
    }
    Ok(())
}

/// Reads a set-component-index argument (uint, `true`, or array of uint) as a bit set over
/// `count` components. Indices at or beyond `count` are refused when `strict`, and dropped
/// otherwise (trust-domains manifests also index dependencies, which the static look-up skips).
pub(crate) fn component_set(
    r: &mut Reader<'_>,
    count: usize,
    strict: bool,
) -> Result<u32, SuitError> {
    let all = if count >= 32 {
        u32::MAX
    } else {
        (1u32 << count) - 1
    };
    let bit = |i: u64| -> Result<u32, SuitError> {
        match i {
            i if i < count as u64 && i < 32 => Ok(1u32 << i),
            _ if strict => Err(SuitError::BadComponent),
            _ => Ok(0),
        }
    };
    match r.peek_major()? {
        MAJOR_UINT => bit(r.uint()?),
        MAJOR_SIMPLE => {
            if r.boolean()? {
                Ok(all)
            } else {
                Err(SuitError::Malformed)
            }
        }
        MAJOR_ARRAY => {
            let n = r.array()?;
            if n == 0 {
                return Err(SuitError::Malformed);
            }
            let mut set = 0;
            for _ in 0..n {
                set |= bit(r.uint()?)?;
            }
            Ok(set)
        }
        _ => Err(SuitError::Malformed),
    }
}

/// Walks the top level of `sequences` in order and returns the parameters they set for
/// `component`, without running anything. try-each and run-sequence bodies are not entered,
/// so parameters set only inside them (A/B slot selection) are not seen.
#[inline(never)] // own stack frame: keeps peak stack the max, not the sum (README)
pub fn static_params<'m>(
    sequences: &[Option<&'m [u8]>],
    component: usize,
    count: usize,
) -> Result<Params<'m>, SuitError> {
    if component >= count {
        return Err(SuitError::BadComponent);
    }
    let mut p = Params::default();
    for seq in sequences.iter().flatten() {
        let mut r = Reader::new(seq);
        let n = r.array()?;
        if n % 2 != 0 {
            return Err(SuitError::Malformed);
        }
        let mut selected = 1u32; // index 0 at the start of each sequence
        for _ in 0..n / 2 {
            match r.int()? {
                12 => selected = component_set(&mut r, count, false)?,
                20 | 19 => {
                    if selected & (1u32 << component) != 0 {
                        apply(&mut r, &mut p, None)?;
                    } else {
                        r.skip()?;
                    }
                }
                _ => r.skip()?,
            }
        }
        if !r.is_empty() {
            return Err(SuitError::Malformed);
        }
    }
    Ok(p)
}
