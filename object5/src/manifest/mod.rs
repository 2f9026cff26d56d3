//! SUIT manifest verifier (draft-ietf-suit-manifest-37): authenticates an envelope against the
//! device's trust anchors before reading any of the manifest, applies the device's policy, runs
//! command sequences through caller-implemented platform traits, and streams payloads through
//! SHA-256 so no image is ever held whole in RAM. `no_std`, no alloc, no panics on any input.
//!
//! Entry points:
//! - [`authenticate`]: a whole envelope in memory -> [`Authenticated`] (manifest, sequence
//!   number, component 0's image digest/size/URI, text facts).
//! - [`Policy::check`]: vendor/class/sequence-number policy on an [`Authenticated`] envelope.
//! - [`StreamVerifier`]: the same, pushed block by block, with the payload streamed through
//!   SHA-256 into a [`PayloadSink`] (integrated payload, or fetched after [`Finished::FetchRequired`]).
//! - [`Interpreter`]: runs command sequences against a caller's [`Platform`] (updater or
//!   bootloader).

mod auth;
pub(crate) mod cbor;
#[cfg(feature = "encryption")]
mod cose_encrypt;
pub mod crypto;
#[cfg(feature = "encryption")]
mod decrypt;
mod envelope;
mod error;
#[cfg(feature = "openssl")]
pub mod host_crypto;
mod interp;
#[allow(clippy::module_inception)]
mod manifest;
mod params;
mod policy;
mod stream;

pub use auth::{verify_wrapper, TrustAnchor};
#[cfg(feature = "encryption")]
pub use cose_encrypt::{ContentAlg, DecryptionKey, EncryptionInfo};
pub use crypto::{CryptoBackend, Sha256Hasher, Software, SoftwareSha256};
#[cfg(feature = "encryption")]
pub use decrypt::{Decryptor, GCM_TAG};
pub use envelope::{Envelope, IntegratedPayload};
pub use error::SuitError;
pub use interp::{DeviceIdentity, Interpreter, Platform, MAX_NESTING};
pub use manifest::{text_info, Manifest, Member, TextInfo, MAX_COMPONENTS};
pub use params::{static_params, GlobalParams, Params};
pub use policy::{Freshness, Policy};
pub use stream::{Finished, PayloadSink, StreamVerifier, Verified};

use manifest::{KEY_INSTALL, KEY_PAYLOAD_FETCH, KEY_TEXT};

// For the author side's static walk (crate::author::check), which shares the device's
// parameter handling and command numbers.
#[cfg(feature = "std")]
pub(crate) use auth::{parse_digest, sha256};
#[cfg(feature = "std")]
pub(crate) use cose_encrypt::{ecdh_kek, ALG_A128CTR, ALG_A128GCM};
#[cfg(feature = "std")]
pub(crate) use envelope::SEVERABLE_KEYS;
#[cfg(feature = "std")]
pub(crate) use interp::cmd;
#[cfg(feature = "std")]
pub(crate) use params::{apply, component_set};

/// The image a manifest describes for one component, as set before any command runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo<'e> {
    /// SHA-256 the image must hash to (image-digest).
    pub digest: Option<[u8; 32]>,
    /// Length of the image in bytes (image-size).
    pub size: Option<u64>,
    /// Where the image comes from (uri): absolute, or `#key` for an integrated payload.
    pub uri: Option<&'e [u8]>,
    /// Vendor identifier set for the component.
    pub vendor_id: Option<&'e [u8]>,
    /// Class identifier set for the component.
    pub class_id: Option<&'e [u8]>,
    /// The image arrives encrypted: the SUIT_Encryption_Info it is decrypted with (set on the
    /// component by the decrypting copy or write, firmware-encryption draft section 3).
    /// `uri` is then the encrypted source's.
    pub encryption_info: Option<&'e [u8]>,
    /// For an encrypted image copied from another component: that source's image-digest and
    /// image-size, i.e. of the ciphertext (the draft's "image match before decryption").
    pub ciphertext_digest: Option<[u8; 32]>,
    /// See [`ImageInfo::ciphertext_digest`].
    pub ciphertext_size: Option<u64>,
}

/// An envelope whose wrapper verified with a trust anchor and whose manifest matched the
/// signed digest. Everything in it is covered by the signature.
#[derive(Clone, Copy, Debug)]
pub struct Authenticated<'e> {
    /// Where the envelope's parts are.
    pub envelope: Envelope<'e>,
    /// The parsed manifest.
    pub manifest: Manifest<'e>,
    /// Index into the trust-anchor list of the key that verified.
    pub anchor: usize,
    /// The manifest's sequence number.
    pub sequence_number: u64,
    /// Component 0's image parameters (from the shared, payload-fetch and install sequences).
    pub image: ImageInfo<'e>,
    /// Component 0's text (PkgName / PkgVersion), when suit-text is available.
    pub text: TextInfo<'e>,
}

impl<'e> Authenticated<'e> {
    /// The encoded SUIT_Manifest map (content of the envelope's manifest bstr).
    pub fn manifest_bytes(&self) -> &'e [u8] {
        self.envelope.manifest
    }

    /// The install sequence (from the manifest, or severed and delivered in the envelope).
    pub fn install<C: CryptoBackend>(&self, crypto: &C) -> Result<Option<&'e [u8]>, SuitError> {
        let m = &self.manifest;
        m.resolve(m.install, KEY_INSTALL, &self.envelope, crypto)
    }

    /// The payload-fetch sequence (from the manifest, or severed and delivered).
    pub fn payload_fetch<C: CryptoBackend>(
        &self,
        crypto: &C,
    ) -> Result<Option<&'e [u8]>, SuitError> {
        let m = &self.manifest;
        m.resolve(m.payload_fetch, KEY_PAYLOAD_FETCH, &self.envelope, crypto)
    }
}

/// Authenticates a complete envelope held in memory.
///
/// Order (section 6.2): split the envelope, verify a COSE_Sign1 (ES256/ESP256) or COSE_Mac0
/// (HMAC-256) block over the SUIT_Digest with any of `anchors`, check the digest against the
/// manifest bstr (header included), and only then parse the manifest. Severed members present
/// in the envelope are checked against their digests.
pub fn authenticate<'e, C: CryptoBackend>(
    envelope: &'e [u8],
    anchors: &[TrustAnchor<'_>],
    crypto: &C,
) -> Result<Authenticated<'e>, SuitError> {
    let env = Envelope::parse(envelope)?;
    authenticate_parts(env, anchors, crypto)
}

/// [`authenticate`] for an envelope already split (the streaming processor's path).
pub(crate) fn authenticate_parts<'e, C: CryptoBackend>(
    env: Envelope<'e>,
    anchors: &[TrustAnchor<'_>],
    crypto: &C,
) -> Result<Authenticated<'e>, SuitError> {
    // Two calls in sequence, not nested: the deep signature check returns before the parse
    // results are laid out, so peak stack is the larger of the two (README).
    let anchor = verify_wrapper(env.auth, env.manifest_item, anchors, crypto)?;
    describe(env, anchor, crypto)
}

/// Parses an envelope whose wrapper already verified with trust anchor `anchor`.
#[inline(never)]
fn describe<'e, C: CryptoBackend>(
    env: Envelope<'e>,
    anchor: usize,
    crypto: &C,
) -> Result<Authenticated<'e>, SuitError> {
    let manifest = Manifest::parse(env.manifest)?;
    let fetch = manifest.resolve(manifest.payload_fetch, KEY_PAYLOAD_FETCH, &env, crypto)?;
    let install = manifest.resolve(manifest.install, KEY_INSTALL, &env, crypto)?;
    let text = manifest.resolve(manifest.text, KEY_TEXT, &env, crypto)?;
    let sequences = [manifest.shared_sequence, fetch, install];
    let p = static_params(&sequences, 0, manifest.component_count)?;
    // A decrypting copy (draft-ietf-suit-firmware-encryption section 3.2): the encrypted
    // image is fetched into the source component and decrypted into component 0. The device
    // streams the fetch through the decryption straight into component 0's slot.
    let source = match (p.encryption_info, p.source_component) {
        (Some(_), Some(s)) => {
            let s = usize::try_from(s).map_err(|_| SuitError::BadComponent)?;
            if s == 0 {
                return Err(SuitError::BadComponent);
            }
            Some(static_params(&sequences, s, manifest.component_count)?)
        }
        _ => None,
    };
    let text = match text {
        Some(t) => text_info(t, manifest.component_id(0))?,
        None => TextInfo::default(),
    };
    Ok(Authenticated {
        envelope: env,
        manifest,
        anchor,
        sequence_number: manifest.sequence_number,
        image: ImageInfo {
            digest: p.image_digest,
            size: p.image_size,
            uri: source.map_or(p.uri, |s| s.uri),
            vendor_id: p.vendor_id,
            class_id: p.class_id,
            encryption_info: source.and(p.encryption_info),
            ciphertext_digest: source.and_then(|s| s.image_digest),
            ciphertext_size: source.and_then(|s| s.image_size),
        },
        text,
    })
}
