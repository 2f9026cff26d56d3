//! The SUIT command-sequence interpreter (section 6.4-6.6, 8.4.9, 8.4.10): conditions and
//! directives run against per-component parameters; every effect on storage, network or boot
//! goes through the caller's [`Platform`].

use super::cbor::{Reader, MAJOR_BSTR, MAJOR_SIMPLE};
use super::crypto::{ct_eq, CryptoBackend, Sha256Hasher};
use super::manifest::MAX_COMPONENTS;
use super::params::{apply, component_set, GlobalParams, Params};
use super::SuitError;

/// Deepest try-each / run-sequence nesting followed.
pub const MAX_NESTING: u8 = 4;

/// Command numbers (section 8.4.9, 8.4.10; trust domains section 6.5-6.6).
#[cfg_attr(not(feature = "std"), allow(dead_code))] // trust-domain commands: author check only
pub(crate) mod cmd {
    pub const VENDOR_ID: i64 = 1;
    pub const CLASS_ID: i64 = 2;
    pub const IMAGE_MATCH: i64 = 3;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const CHECK_CONTENT: i64 = 6;
    pub const SET_COMPONENT_INDEX: i64 = 12;
    pub const ABORT: i64 = 14;
    pub const TRY_EACH: i64 = 15;
    pub const WRITE: i64 = 18;
    pub const SET_PARAMETERS: i64 = 19;
    pub const OVERRIDE_PARAMETERS: i64 = 20;
    pub const FETCH: i64 = 21;
    pub const COPY: i64 = 22;
    pub const INVOKE: i64 = 23;
    pub const DEVICE_ID: i64 = 24;
    pub const SWAP: i64 = 31;
    pub const RUN_SEQUENCE: i64 = 32;
    /// draft-ietf-suit-trust-domains: suit-condition-dependency-integrity.
    pub const DEPENDENCY_INTEGRITY: i64 = 7;
    /// draft-ietf-suit-trust-domains: suit-condition-is-dependency.
    pub const IS_DEPENDENCY: i64 = 8;
    /// draft-ietf-suit-trust-domains: suit-directive-process-dependency.
    pub const PROCESS_DEPENDENCY: i64 = 11;
    /// draft-ietf-suit-trust-domains: suit-directive-unlink.
    pub const UNLINK: i64 = 33;
}

/// Who the device is: compared by the vendor, class and device identifier conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIdentity<'d> {
    /// Vendor UUID (16 bytes).
    pub vendor_id: &'d [u8],
    /// Class UUID (16 bytes).
    pub class_id: &'d [u8],
    /// Device UUID, if the device has one.
    pub device_id: Option<&'d [u8]>,
}

/// What a device does when a manifest tells it to: implemented by the updater (network +
/// candidate slot) or the bootloader (flash + jump). Components are manifest indices.
pub trait Platform {
    /// Fetches `p.uri` into the component's storage (streamed, never held whole in RAM).
    fn fetch(&mut self, component: usize, p: &Params<'_>) -> Result<(), SuitError>;
    /// Writes `content` into the component's storage.
    fn write(&mut self, component: usize, content: &[u8], p: &Params<'_>) -> Result<(), SuitError>;
    /// Copies component `source` into `component`.
    fn copy(&mut self, component: usize, source: usize, p: &Params<'_>) -> Result<(), SuitError>;
    /// Swaps the contents of `component` and `source`.
    fn swap(&mut self, component: usize, source: usize, p: &Params<'_>) -> Result<(), SuitError>;
    /// Hands control to the component (a bootloader jumps; it does not return on success).
    fn invoke(&mut self, component: usize, p: &Params<'_>) -> Result<(), SuitError>;
    /// Whether the component's slot `slot` is the one this condition should select.
    fn slot_matches(&mut self, component: usize, slot: u64) -> bool;
    /// Feeds the component's stored image (at `p.component_slot`, up to `p.image_size` bytes
    /// when set) into `sink` in chunks and returns how many bytes it fed.
    fn read_image(
        &mut self,
        component: usize,
        p: &Params<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, SuitError>;
}

/// Runs command sequences of one authenticated manifest.
pub struct Interpreter<'m, 'd, C: CryptoBackend> {
    params: [Params<'m>; MAX_COMPONENTS],
    global: GlobalParams,
    count: usize,
    identity: DeviceIdentity<'d>,
    crypto: C,
}

/// Failures a condition reports; soft-failure turns them into "this try-each branch failed".
fn is_condition_failure(e: SuitError) -> bool {
    matches!(
        e,
        SuitError::VendorMismatch
            | SuitError::ClassMismatch
            | SuitError::DeviceMismatch
            | SuitError::ImageDigestMismatch
            | SuitError::ImageSizeMismatch
            | SuitError::ConditionFailed
    )
}

impl<'m, 'd, C: CryptoBackend> Interpreter<'m, 'd, C> {
    /// An interpreter for a manifest with `component_count` components and cleared parameters
    /// (section 6.4: parameters are cleared after the setup checks).
    pub fn new(
        component_count: usize,
        identity: DeviceIdentity<'d>,
        crypto: C,
    ) -> Result<Self, SuitError> {
        if component_count == 0 || component_count > MAX_COMPONENTS {
            return Err(SuitError::BadComponent);
        }
        Ok(Self {
            params: [Params::default(); MAX_COMPONENTS],
            global: GlobalParams::default(),
            count: component_count,
            identity,
            crypto,
        })
    }

    /// The parameters component `i` holds now.
    pub fn params(&self, i: usize) -> Option<&Params<'m>> {
        self.params.get(..self.count)?.get(i)
    }

    /// Runs one encoded SUIT_Command_Sequence (shared, payload-fetch, install, validate, load
    /// or invoke) from component index 0.
    pub fn run(
        &mut self,
        sequence: &'m [u8],
        platform: &mut dyn Platform,
    ) -> Result<(), SuitError> {
        self.run_nested(sequence, platform, MAX_NESTING, false)
    }

    fn run_nested(
        &mut self,
        sequence: &'m [u8],
        platform: &mut dyn Platform,
        depth: u8,
        soft: bool,
    ) -> Result<(), SuitError> {
        let depth = depth.checked_sub(1).ok_or(SuitError::TooDeep)?;
        let mut r = Reader::new(sequence);
        let n = r.array()?;
        if n == 0 || n % 2 != 0 {
            return Err(SuitError::Malformed);
        }
        let mut selected = 1u32;
        let saved_soft = self.global.soft_failure;
        self.global.soft_failure = None;
        let result = (|| {
            for _ in 0..n / 2 {
                let command = r.int()?;
                if command == cmd::SET_COMPONENT_INDEX {
                    selected = component_set(&mut r, self.count, true)?;
                    continue;
                }
                match self.command(command, &mut r, selected, platform, depth) {
                    Err(e)
                        if is_condition_failure(e) && self.global.soft_failure.unwrap_or(soft) =>
                    {
                        // Soft failure ends this sequence (a try-each branch) without aborting.
                        return Err(SuitError::ConditionFailed);
                    }
                    other => other?,
                }
            }
            if r.is_empty() {
                Ok(())
            } else {
                Err(SuitError::Malformed)
            }
        })();
        self.global.soft_failure = saved_soft;
        result
    }

    fn each(
        &mut self,
        selected: u32,
        mut f: impl FnMut(&mut Self, usize) -> Result<(), SuitError>,
    ) -> Result<(), SuitError> {
        for i in 0..self.count {
            if selected & (1u32 << i) != 0 {
                f(self, i)?;
            }
        }
        Ok(())
    }

    fn param(&self, i: usize) -> Result<Params<'m>, SuitError> {
        self.params.get(i).copied().ok_or(SuitError::BadComponent)
    }

    fn command(
        &mut self,
        command: i64,
        r: &mut Reader<'m>,
        selected: u32,
        platform: &mut dyn Platform,
        depth: u8,
    ) -> Result<(), SuitError> {
        match command {
            cmd::OVERRIDE_PARAMETERS | cmd::SET_PARAMETERS => {
                let start = r.clone();
                r.skip()?;
                let mut global = self.global;
                for i in 0..self.count {
                    if selected & (1u32 << i) == 0 {
                        continue;
                    }
                    let mut rr = start.clone();
                    let p = self.params.get_mut(i).ok_or(SuitError::BadComponent)?;
                    if command == cmd::OVERRIDE_PARAMETERS {
                        apply(&mut rr, p, Some(&mut global))?;
                    } else {
                        // set-parameters keeps values already set (trust domains, section 6.3).
                        let mut fresh = Params::default();
                        apply(&mut rr, &mut fresh, Some(&mut global))?;
                        p.fill_unset(&fresh);
                    }
                }
                if global.soft_failure.is_some() && depth + 1 >= MAX_NESTING {
                    // Soft-failure outside try-each / run-sequence: abort (section 8.4.8.15).
                    return Err(SuitError::Malformed);
                }
                self.global = global;
                Ok(())
            }
            cmd::TRY_EACH => self.try_each(r, platform, depth),
            cmd::RUN_SEQUENCE => {
                let body = r.bytes()?;
                self.run_nested(body, platform, depth, false)
            }
            _ => {
                // Everything else takes a reporting policy.
                if r.peek_major()? == MAJOR_SIMPLE || r.peek_major()? == MAJOR_BSTR {
                    return Err(SuitError::Malformed);
                }
                let _policy = r.uint()?;
                self.each(selected, |me, i| me.simple(command, i, platform))
            }
        }
    }

    fn try_each(
        &mut self,
        r: &mut Reader<'m>,
        platform: &mut dyn Platform,
        depth: u8,
    ) -> Result<(), SuitError> {
        let n = r.array()?;
        if n < 2 {
            return Err(SuitError::Malformed);
        }
        let mut done = false;
        for k in 0..n {
            if k + 1 == n && r.null()? {
                // A trailing nil makes the whole try-each succeed when no branch did.
                done = true;
                break;
            }
            let body = r.bytes()?;
            if done {
                continue; // skip the remaining branches, but keep the reader in step
            }
            match self.run_nested(body, platform, depth, true) {
                Ok(()) => done = true,
                Err(SuitError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
        if done {
            Ok(())
        } else {
            Err(SuitError::ConditionFailed)
        }
    }

    fn simple(
        &mut self,
        command: i64,
        i: usize,
        platform: &mut dyn Platform,
    ) -> Result<(), SuitError> {
        let p = self.param(i)?;
        match command {
            cmd::VENDOR_ID => {
                let id = p.vendor_id.ok_or(SuitError::MissingParameter)?;
                ok_or(
                    ct_eq(id, self.identity.vendor_id),
                    SuitError::VendorMismatch,
                )
            }
            cmd::CLASS_ID => {
                let id = p.class_id.ok_or(SuitError::MissingParameter)?;
                ok_or(ct_eq(id, self.identity.class_id), SuitError::ClassMismatch)
            }
            cmd::DEVICE_ID => {
                let id = p.device_id.ok_or(SuitError::MissingParameter)?;
                let mine = self.identity.device_id.ok_or(SuitError::DeviceMismatch)?;
                ok_or(ct_eq(id, mine), SuitError::DeviceMismatch)
            }
            cmd::IMAGE_MATCH => {
                let want = p.image_digest.ok_or(SuitError::MissingParameter)?;
                let mut h = self.crypto.sha256();
                let len = platform.read_image(i, &p, &mut |d| h.update(d))?;
                if p.image_size.is_some_and(|s| s != len) {
                    return Err(SuitError::ImageSizeMismatch);
                }
                ok_or(ct_eq(&h.finish(), &want), SuitError::ImageDigestMismatch)
            }
            cmd::COMPONENT_SLOT => {
                let slot = p.component_slot.ok_or(SuitError::MissingParameter)?;
                ok_or(platform.slot_matches(i, slot), SuitError::ConditionFailed)
            }
            cmd::CHECK_CONTENT => {
                let want = p.content.ok_or(SuitError::MissingParameter)?;
                let (mut off, mut diff) = (0usize, 0u8);
                let len = platform.read_image(i, &p, &mut |d| {
                    for b in d {
                        diff |= want.get(off).map_or(1, |w| w ^ b);
                        off = off.saturating_add(1);
                    }
                })?;
                ok_or(
                    diff == 0 && len == want.len() as u64,
                    SuitError::ConditionFailed,
                )
            }
            cmd::ABORT => Err(SuitError::ConditionFailed),
            cmd::FETCH => {
                if p.uri.is_none() {
                    return Err(SuitError::MissingParameter);
                }
                if p.encryption_info.is_some() {
                    return Err(SuitError::Unsupported);
                }
                platform.fetch(i, &p)
            }
            cmd::WRITE => {
                let content = p.content.ok_or(SuitError::MissingParameter)?;
                if p.encryption_info.is_some() {
                    return Err(SuitError::Unsupported);
                }
                platform.write(i, content, &p)
            }
            cmd::COPY | cmd::SWAP => {
                let src = p.source_component.ok_or(SuitError::MissingParameter)?;
                let src = usize::try_from(src).map_err(|_| SuitError::BadComponent)?;
                if src >= self.count || src == i {
                    return Err(SuitError::BadComponent);
                }
                if p.encryption_info.is_some() {
                    return Err(SuitError::Unsupported);
                }
                if command == cmd::COPY {
                    platform.copy(i, src, &p)
                } else {
                    platform.swap(i, src, &p)
                }
            }
            cmd::INVOKE => platform.invoke(i, &p),
            _ => Err(SuitError::Unsupported),
        }
    }
}

fn ok_or(ok: bool, e: SuitError) -> Result<(), SuitError> {
    if ok {
        Ok(())
    } else {
        Err(e)
    }
}
