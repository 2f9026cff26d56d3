//! Author side (host, `std` feature): P-256 and Ed25519 keys, and building, signing, inspecting and
//! verifying SUIT envelopes for one firmware image. The device side never links this.
//!
//! Package layout (documented in README.md): component 0 = `[h'00']`; the shared sequence sets
//! vendor-id, class-id, image-digest and image-size and checks vendor and class; install sets
//! the uri (absolute, or `#fw` for the integrated payload), fetches and checks image-match;
//! validate checks image-match; suit-text (in the manifest, not severed) carries the version
//! as component-version (6) and the name as component-description (5).

mod cbor_out;
mod check;
mod encrypt;
mod inspect;
mod keys;
mod uuid;
mod verify;

pub use cbor_out::Value;
pub use check::{check_package, CheckOptions, CheckReport};
pub use encrypt::{encrypt_image, ContentEncryption, Encrypted, Encryption, Recipient};
pub use inspect::{authentication_blocks, diagnostic, summary};
pub use keys::{
    create_pem_file, ed25519_public_from_pem, generate_key_pem, generate_key_pem_for,
    open_to_others, p256_private_from_pem, public_pem_from_private, public_sec1_from_pem,
    read_bounded, restrict_key_file, signing_key_from_pem, AnchorKey, AuthorKey, KeyAlg, KeyError,
    CERT_FILE_LIMIT, KEY_FILE_LIMIT,
};
pub use uuid::{class_id, format_uuid, parse_uuid, uuid5, vendor_id, NAMESPACE_DNS};
pub use verify::{verify_package, VerifyOptions, VerifyReport};

use crate::manifest::crypto::{CryptoBackend, Sha256Hasher, Software};
use p256::ecdsa::SigningKey;
use std::boxed::Box;
use std::string::String;
use std::vec;
use std::vec::Vec;

/// Envelope key of the integrated payload the tool writes.
pub const INTEGRATED_KEY: &str = "#fw";

/// Envelope key of the second image's integrated payload in a two-image package.
pub const SECOND_INTEGRATED_KEY: &str = "#fw1";

/// COSE signature algorithm for the wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignAlg {
    /// ESP256 (-9): ECDSA P-256 + SHA-256, the MTI profile (default).
    Esp256,
    /// ES256 (-7): the same math, older registration (draft Appendix B examples).
    Es256,
    /// Ed25519 (-19, RFC 9864): profile suit-sha256-ed25519-ecdh-a128ctr (Ed25519 keys).
    Ed25519,
    /// EdDSA (-8, RFC 9053): Ed25519 under the older, polymorphic registration.
    EdDsa,
}

impl SignAlg {
    /// The COSE algorithm identifier.
    pub fn id(self) -> i64 {
        match self {
            Self::Esp256 => -9,
            Self::Es256 => -7,
            Self::Ed25519 => -19,
            Self::EdDsa => -8,
        }
    }
}

/// Where the device gets the image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In the envelope under [`INTEGRATED_KEY`].
    Integrated,
    /// Fetched by the device from this URI (two-stage pull).
    Uri(String),
}

impl Delivery {
    /// The URI the manifest names: `key` of the integrated payload, or the given URI.
    fn uri(&self, key: &str) -> String {
        match self {
            Delivery::Integrated => key.into(),
            Delivery::Uri(u) => u.clone(),
        }
    }
}

/// What a package says.
#[derive(Clone, Debug)]
pub struct PackageSpec<'a> {
    /// Vendor UUID.
    pub vendor_id: [u8; 16],
    /// Class UUID.
    pub class_id: [u8; 16],
    /// Sequence number (anti-rollback).
    pub sequence_number: u64,
    /// Version text reported as PkgVersion.
    pub version: String,
    /// Name reported as PkgName.
    pub name: String,
    /// The firmware image (opaque bytes).
    pub image: &'a [u8],
    /// Integrated or by URI.
    pub delivery: Delivery,
    /// Signature algorithm.
    pub alg: SignAlg,
}

/// The second image of a two-image package (component 1 `[h'01']`, beside the application
/// in component 0): selected with set-component-index (SUIT section 8.4.10.1), with its own
/// digest, size, URI and suit-text.
#[derive(Clone, Debug)]
pub struct SecondImage<'a> {
    /// The image bytes.
    pub image: &'a [u8],
    /// Its name (suit-text component-description).
    pub name: String,
    /// Its version (suit-text component-version).
    pub version: String,
    /// In the envelope under [`SECOND_INTEGRATED_KEY`], or fetched from a URI.
    pub delivery: Delivery,
}

fn int(v: i64) -> Value {
    Value::Int(v)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Software.sha256();
    h.update(data);
    h.finish()
}

/// The encoded SUIT_Digest `[-16, h'...']` of `data`.
pub fn suit_digest(data: &[u8]) -> Vec<u8> {
    Value::Array(vec![int(-16), Value::Bytes(sha256(data).to_vec())]).encode()
}

/// Builds the encoded SUIT_Manifest for `spec`.
pub fn build_manifest(spec: &PackageSpec<'_>) -> Vec<u8> {
    manifest_for(spec, None, None)
}

/// The manifest, for a plain image or (with `encrypted`) for an encrypted one: then component
/// 1 `[h'01']` receives the ciphertext (fetch, and for A128CTR image-match on the ciphertext's
/// digest) and a decrypting copy (draft-ietf-suit-firmware-encryption section 3.2) puts the
/// plaintext into component 0, whose image-digest and image-size are the plaintext's.
///
/// With `second`, component 1 `[h'01']` holds a second image: set-component-index 1 sets its
/// digest and size in the shared sequence, and its URI, fetch and image-match in install;
/// validate checks both images (the layout of draft Example 5, B.6).
fn manifest_for(
    spec: &PackageSpec<'_>,
    encrypted: Option<(&Encrypted, ContentEncryption)>,
    second: Option<&SecondImage<'_>>,
) -> Vec<u8> {
    let component = Value::Array(vec![Value::Bytes(vec![0])]);
    let component1 = Value::Array(vec![Value::Bytes(vec![1])]);
    let mut shared = vec![
        int(20),
        Value::Map(vec![
            (int(1), Value::Bytes(spec.vendor_id.to_vec())),
            (int(2), Value::Bytes(spec.class_id.to_vec())),
            (int(3), Value::Bytes(suit_digest(spec.image))),
            (int(14), int(spec.image.len() as i64)),
        ]),
        int(1),
        int(15),
        int(2),
        int(15),
    ];
    let mut components = vec![component.clone()];
    if let Some(second) = second {
        components.push(component1.clone());
        shared.extend([
            int(12),
            int(1),
            int(20),
            Value::Map(vec![
                (int(3), Value::Bytes(suit_digest(second.image))),
                (int(14), int(second.image.len() as i64)),
            ]),
        ]);
    }
    let shared = Value::Array(shared);
    let uri = spec.delivery.uri(INTEGRATED_KEY);
    // Set the URI, fetch, check image-match (of the component selected).
    let fetch_and_check = |uri: String| {
        [
            int(20),
            Value::Map(vec![(int(21), Value::Text(uri))]),
            int(21),
            int(2),
            int(3),
            int(15),
        ]
    };
    let install = match encrypted {
        None => {
            let mut seq = fetch_and_check(uri).to_vec();
            if let Some(second) = second {
                seq.extend([int(12), int(1)]);
                seq.extend(fetch_and_check(second.delivery.uri(SECOND_INTEGRATED_KEY)));
            }
            Value::Array(seq)
        }
        Some((enc, alg)) => {
            components.push(Value::Array(vec![Value::Bytes(vec![1])]));
            let mut source = vec![
                (int(14), int(enc.ciphertext.len() as i64)),
                (int(21), Value::Text(uri)),
            ];
            let mut seq = vec![int(12), int(1), int(20)];
            if alg == ContentEncryption::A128Ctr {
                // No tag: the ciphertext's digest is checked too (section 6.1.2).
                source.insert(0, (int(3), Value::Bytes(suit_digest(&enc.ciphertext))));
                seq.extend([Value::Map(source), int(21), int(2), int(3), int(15)]);
            } else {
                seq.extend([Value::Map(source), int(21), int(2)]);
            }
            seq.extend([
                int(12),
                int(0),
                int(20),
                Value::Map(vec![
                    (int(19), Value::Bytes(enc.info.clone())),
                    (int(22), int(1)),
                ]),
                int(22),
                int(2),
                int(3),
                int(15),
            ]);
            Value::Array(seq)
        }
    };
    let common = Value::Map(vec![
        (int(2), Value::Array(components)),
        (int(4), Value::wrap(&shared)),
    ]);
    let mut validate = vec![int(3), int(15)];
    let mut texts = vec![(
        component,
        Value::Map(vec![
            (int(5), Value::Text(spec.name.clone())),
            (int(6), Value::Text(spec.version.clone())),
        ]),
    )];
    if let Some(second) = second {
        validate.extend([int(12), int(1), int(3), int(15)]);
        texts.push((
            component1,
            Value::Map(vec![
                (int(5), Value::Text(second.name.clone())),
                (int(6), Value::Text(second.version.clone())),
            ]),
        ));
    }
    let validate = Value::Array(validate);
    let text = Value::Map(vec![(Value::Text("en".into()), Value::Map(texts))]);
    Value::Map(vec![
        (int(1), int(1)),
        (int(2), int(spec.sequence_number as i64)),
        (int(3), Value::wrap(&common)),
        (int(7), Value::wrap(&validate)),
        (int(20), Value::wrap(&install)),
        (int(23), Value::wrap(&text)),
    ])
    .encode()
}

/// The COSE Sig_structure bytes for a detached payload.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(vec![]),
        Value::Bytes(payload.to_vec()),
    ])
    .encode()
}

/// Builds and signs a complete envelope (tag 107) with a P-256 key.
pub fn build_envelope(spec: &PackageSpec<'_>, key: &SigningKey) -> Result<Vec<u8>, KeyError> {
    build_envelope_with(spec, &AuthorKey::P256(key.clone()))
}

/// Builds and signs a complete envelope (tag 107) with a key of either kind; `spec.alg` must
/// go with it.
pub fn build_envelope_with(spec: &PackageSpec<'_>, key: &AuthorKey) -> Result<Vec<u8>, KeyError> {
    let manifest = build_manifest(spec);
    let manifest_bstr = Value::Bytes(manifest).encode();
    let digest = suit_digest(&manifest_bstr);
    let block = sign1_block(&digest, spec.alg, key)?;
    Ok(assemble(&digest, &[block], &manifest_bstr, spec))
}

/// Builds and signs an envelope whose image is encrypted as `encryption` says; the envelope
/// (or, for [`Delivery::Uri`], the server) carries the ciphertext, returned second.
pub fn build_envelope_encrypted(
    spec: &PackageSpec<'_>,
    key: &AuthorKey,
    encryption: &Encryption,
) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let enc = encrypt_image(spec.image, encryption)?;
    let manifest = manifest_for(spec, Some((&enc, encryption.content)), None);
    let manifest_bstr = Value::Bytes(manifest).encode();
    let digest = suit_digest(&manifest_bstr);
    let block = sign1_block(&digest, spec.alg, key)?;
    let integrated = (spec.delivery == Delivery::Integrated).then_some(enc.ciphertext.as_slice());
    let payloads: Vec<(&str, &[u8])> = integrated
        .map(|p| (INTEGRATED_KEY, p))
        .into_iter()
        .collect();
    let envelope = assemble_payload(&digest, &[block], &manifest_bstr, &payloads);
    Ok((envelope, enc.ciphertext))
}

/// Builds and signs a two-image package: `spec`'s image in component 0 and `second` in
/// component 1, each integrated or by URI as its delivery says.
pub fn build_envelope_two(
    spec: &PackageSpec<'_>,
    second: &SecondImage<'_>,
    key: &AuthorKey,
) -> Result<Vec<u8>, KeyError> {
    let manifest = manifest_for(spec, None, Some(second));
    let manifest_bstr = Value::Bytes(manifest).encode();
    let digest = suit_digest(&manifest_bstr);
    let block = sign1_block(&digest, spec.alg, key)?;
    let mut payloads = Vec::new();
    if spec.delivery == Delivery::Integrated {
        payloads.push((INTEGRATED_KEY, spec.image));
    }
    if second.delivery == Delivery::Integrated {
        payloads.push((SECOND_INTEGRATED_KEY, second.image));
    }
    Ok(assemble_payload(
        &digest,
        &[block],
        &manifest_bstr,
        &payloads,
    ))
}

/// An encoded COSE_Sign1 over `digest` (detached payload, section 8.3).
pub fn sign1_block(digest: &[u8], alg: SignAlg, key: &AuthorKey) -> Result<Vec<u8>, KeyError> {
    let protected = Value::Map(vec![(int(1), int(alg.id()))]).encode();
    let sig = key.sign(alg, &sig_structure(&protected, digest))?;
    Ok(Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![]),
            Value::Null,
            Value::Bytes(sig),
        ])),
    )
    .encode())
}

/// Puts an envelope together from an encoded digest, encoded COSE blocks and the manifest
/// bstr (used by [`build_envelope`] and by tests that sign with another implementation).
pub fn assemble(
    digest: &[u8],
    blocks: &[Vec<u8>],
    manifest_bstr: &[u8],
    spec: &PackageSpec<'_>,
) -> Vec<u8> {
    let payloads: Vec<(&str, &[u8])> = match spec.delivery {
        Delivery::Integrated => vec![(INTEGRATED_KEY, spec.image)],
        Delivery::Uri(_) => Vec::new(),
    };
    assemble_payload(digest, blocks, manifest_bstr, &payloads)
}

/// [`assemble`] with the integrated payloads given directly as (key, bytes), in order.
fn assemble_payload(
    digest: &[u8],
    blocks: &[Vec<u8>],
    manifest_bstr: &[u8],
    payloads: &[(&str, &[u8])],
) -> Vec<u8> {
    let mut auth = vec![Value::Bytes(digest.to_vec())];
    auth.extend(blocks.iter().map(|b| Value::Bytes(b.clone())));
    let auth = Value::Array(auth).encode();
    let payload_bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();
    let mut out = Vec::with_capacity(manifest_bstr.len() + payload_bytes + 256);
    out.extend_from_slice(&[0xd8, 0x6b]); // tag 107
    out.push(0xa2 + payloads.len() as u8); // map(2 + payloads); at most a few
    out.push(0x02);
    out.extend_from_slice(&Value::Bytes(auth).encode());
    out.push(0x03);
    out.extend_from_slice(manifest_bstr);
    for (key, payload) in payloads {
        out.extend_from_slice(&Value::Text((*key).into()).encode());
        out.extend_from_slice(&Value::Bytes(payload.to_vec()).encode());
    }
    out
}
