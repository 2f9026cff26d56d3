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

#[cfg(feature = "encryption")]
mod aes_inverse;
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
pub use decrypt::{DecryptRun, Decryptor, GCM_TAG};
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

/// Most images one package installs through the streaming path: the slot manager keeps one
/// region per image (the application, component 0, and a second image).
pub const MAX_IMAGES: usize = 2;

/// An image a manifest installs into a component other than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentImage<'e> {
    /// The component index (set-component-index, section 8.4.10.1).
    pub component: usize,
    /// Its image parameters.
    pub image: ImageInfo<'e>,
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
    /// The second image of a multi-image package: the first component after 0 that receives
    /// an image of its own (fetched or integrated, directly or by copy from a component that
    /// only stages it, as component 1 of Example 4 does). `None` for one image.
    pub second: Option<ComponentImage<'e>>,
    /// The manifest installs more images than [`MAX_IMAGES`].
    pub more_images: bool,
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

/// The parts of an authenticated manifest the images are read from.
pub(crate) struct Sequences<'e> {
    /// The parsed manifest.
    pub(crate) manifest: Manifest<'e>,
    /// Shared, payload-fetch and install sequences (severed ones as delivered and checked).
    pub(crate) sequences: [Option<&'e [u8]>; 3],
    /// suit-text, when available.
    pub(crate) text: Option<&'e [u8]>,
}

impl<'e> Sequences<'e> {
    /// Parses the manifest of `env` and resolves its severable members (section 8.4.7).
    #[inline(never)]
    pub(crate) fn of<C: CryptoBackend>(env: &Envelope<'e>, crypto: &C) -> Result<Self, SuitError> {
        let manifest = Manifest::parse(env.manifest)?;
        let fetch = manifest.resolve(manifest.payload_fetch, KEY_PAYLOAD_FETCH, env, crypto)?;
        let install = manifest.resolve(manifest.install, KEY_INSTALL, env, crypto)?;
        let text = manifest.resolve(manifest.text, KEY_TEXT, env, crypto)?;
        Ok(Self {
            manifest,
            sequences: [manifest.shared_sequence, fetch, install],
            text,
        })
    }

    /// Component `component`'s image ([`image_info`]).
    pub(crate) fn image(&self, component: usize) -> Result<ImageInfo<'e>, SuitError> {
        image_info(&self.sequences, component, self.manifest.component_count)
    }

    /// The component of the second image, if any, and whether there are more images than
    /// [`MAX_IMAGES`] ([`Authenticated::second`]).
    pub(crate) fn second_image(&self) -> Result<(Option<usize>, bool), SuitError> {
        let count = self.manifest.component_count;
        let mut second = None;
        for component in 1..count {
            if !is_image_target(&self.sequences, component, count)? {
                continue;
            }
            if second.is_some() {
                return Ok((second, true));
            }
            second = Some(component);
        }
        Ok((second, false))
    }
}

/// Parses an envelope whose wrapper already verified with trust anchor `anchor`.
#[inline(never)]
fn describe<'e, C: CryptoBackend>(
    env: Envelope<'e>,
    anchor: usize,
    crypto: &C,
) -> Result<Authenticated<'e>, SuitError> {
    let s = Sequences::of(&env, crypto)?;
    let image = s.image(0)?;
    let (second, more_images) = s.second_image()?;
    let second = match second {
        Some(component) => Some(ComponentImage {
            component,
            image: s.image(component)?,
        }),
        None => None,
    };
    let text = match s.text {
        Some(t) => text_info(t, s.manifest.component_id(0))?,
        None => TextInfo::default(),
    };
    Ok(Authenticated {
        envelope: env,
        manifest: s.manifest,
        anchor,
        sequence_number: s.manifest.sequence_number,
        image,
        second,
        more_images,
        text,
    })
}

/// The image `component` receives, as the static parameters say before any command runs.
/// A component copied from another (source-component, section 8.4.8.10) takes its bytes from
/// there: the device streams the source's fetch straight into this component's storage. A
/// decrypting copy (draft-ietf-suit-firmware-encryption section 3.2) then carries the
/// ciphertext's digest and size; a plain copy must name the same digest as its source.
#[inline(never)]
fn image_info<'e>(
    sequences: &[Option<&'e [u8]>],
    component: usize,
    count: usize,
) -> Result<ImageInfo<'e>, SuitError> {
    let p = static_params(sequences, component, count)?;
    let source = match p.source_component {
        Some(s) => {
            let s = usize::try_from(s).map_err(|_| SuitError::BadComponent)?;
            if s == component {
                return Err(SuitError::BadComponent);
            }
            Some(source_image(sequences, s, count)?)
        }
        None => None,
    };
    if let (None, Some(s), Some(want)) = (p.encryption_info, source, p.image_digest) {
        if s.digest.is_some_and(|d| d != want) {
            return Err(SuitError::ImageDigestMismatch);
        }
    }
    let encrypted = source.filter(|_| p.encryption_info.is_some());
    Ok(ImageInfo {
        digest: p.image_digest,
        size: p.image_size,
        uri: source.map_or(p.uri, |s| s.uri),
        vendor_id: p.vendor_id,
        class_id: p.class_id,
        encryption_info: encrypted.and(p.encryption_info),
        ciphertext_digest: encrypted.and_then(|s| s.digest),
        ciphertext_size: encrypted.and_then(|s| s.size),
    })
}

/// What a copy takes from its source component: where the bytes come from and what they
/// hash to (in its own frame: the source's whole parameter set is not kept).
#[derive(Clone, Copy)]
struct Source<'e> {
    uri: Option<&'e [u8]>,
    digest: Option<[u8; 32]>,
    size: Option<u64>,
}

#[inline(never)]
fn source_image<'e>(
    sequences: &[Option<&'e [u8]>],
    component: usize,
    count: usize,
) -> Result<Source<'e>, SuitError> {
    let p = static_params(sequences, component, count)?;
    Ok(Source {
        uri: p.uri,
        digest: p.image_digest,
        size: p.image_size,
    })
}

/// Whether `component` receives an image of its own: it has an image digest and a URI (or
/// copies from a component that has one), and no other component copies from it (a
/// component that only stages the bytes of another is not an image to store).
fn is_image_target(
    sequences: &[Option<&[u8]>],
    component: usize,
    count: usize,
) -> Result<bool, SuitError> {
    let p = static_params(sequences, component, count)?;
    if p.image_digest.is_none() || (p.uri.is_none() && p.source_component.is_none()) {
        return Ok(false);
    }
    for other in (0..count).filter(|&o| o != component) {
        let source = static_params(sequences, other, count)?.source_component;
        if source == Some(component as u64) {
            return Ok(false);
        }
    }
    Ok(true)
}
