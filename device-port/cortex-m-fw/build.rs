//! Builds and signs the firmware's test packages with the project's own author code (the
//! library behind `lwm2m-server-shim package build`) and the committed test key, and links the
//! binary with cortex-m-rt's script and this crate's memory map.
//!
//! Output (`$OUT_DIR/packages.rs`, included by `src/packages.rs`): the factory image 1.0.0
//! (sequence 1) with its envelope head, the update 2.0.0 (sequence 2) as one integrated SUIT
//! envelope, where that envelope's signature ends, the trust anchor and the device's vendor
//! and class ids. ECDSA signing is deterministic (RFC 6979), so the bytes are reproducible.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use object5::author::{
    build_envelope, class_id, public_pem_from_private, public_sec1_from_pem, signing_key_from_pem,
    vendor_id, Delivery, PackageSpec, SignAlg,
};
use object5::manifest::{authenticate, Software, SuitError, TrustAnchor};

/// Image size: the 64 KiB the figures are for (one slot's capacity).
const IMAGE_LEN: usize = 64 * 1024;
const KEY: &str = "keys/test-signing-key.pem";
const VENDOR: &str = "qemu.example";
const CLASS: &str = "mps2-an385";

/// A 64 KiB image: a readable name and version, then a pattern that differs in nearly every
/// byte between versions (a mix of two images never passes for either).
fn image(version: &str) -> Vec<u8> {
    let mut out = format!("cortex-m-fw {version}\0").into_bytes();
    let mut x = version.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    while out.len() < IMAGE_LEN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
    out
}

/// Offset one past the last byte of the authentication wrapper's bstr: the COSE_Sign1
/// signature is the wrapper's last item, so its last byte sits just before this offset.
/// Envelope layout from `object5::author::assemble`: tag 107, map header, key 2, bstr.
fn wrapper_end(envelope: &[u8]) -> usize {
    assert_eq!(&envelope[..4], &[0xd8, 0x6b, 0xa3, 0x02], "envelope layout");
    let (len, header) = match envelope[4] {
        n @ 0x40..=0x57 => (usize::from(n - 0x40), 1),
        0x58 => (usize::from(envelope[5]), 2),
        0x59 => (
            usize::from(u16::from_be_bytes([envelope[5], envelope[6]])),
            3,
        ),
        other => panic!("unexpected wrapper header {other:#x}"),
    };
    4 + header + len
}

fn rust_bytes(doc: &str, name: &str, bytes: &[u8], out: &mut String) {
    write!(
        out,
        "/// {doc}\npub const {name}: [u8; {}] = [",
        bytes.len()
    )
    .unwrap();
    for b in bytes {
        write!(out, "{b},").unwrap();
    }
    out.push_str("];\n");
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    packages(&manifest_dir, &out);

    std::fs::copy(manifest_dir.join("memory.x"), out.join("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    }
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed={KEY}");
    println!("cargo:rerun-if-changed=build.rs");
}

fn packages(manifest_dir: &Path, out: &Path) {
    let pem = std::fs::read_to_string(manifest_dir.join(KEY)).expect("test key");
    let key = signing_key_from_pem(&pem).expect("PKCS#8 P-256 key");
    let anchor = public_sec1_from_pem(&public_pem_from_private(&pem).expect("public key"))
        .expect("SEC1 public key");
    let vendor = vendor_id(VENDOR);
    let class = class_id(CLASS, &vendor);
    let spec = |version: &str, seq: u64, img: &'static [u8], delivery| PackageSpec {
        vendor_id: vendor,
        class_id: class,
        sequence_number: seq,
        version: version.to_owned(),
        name: "cortex-m-fw".to_owned(),
        image: img,
        delivery,
        alg: SignAlg::Esp256,
    };
    let old_image: &'static [u8] = Box::leak(image("1.0.0").into_boxed_slice());
    let new_image: &'static [u8] = Box::leak(image("2.0.0").into_boxed_slice());
    // The factory image's envelope names a URI: only its head (wrapper + manifest) is stored.
    let old_head = build_envelope(
        &spec(
            "1.0.0",
            1,
            old_image,
            Delivery::Uri("coap://factory/fw".to_owned()),
        ),
        &key,
    )
    .expect("sign factory package");
    let new_package =
        build_envelope(&spec("2.0.0", 2, new_image, Delivery::Integrated), &key).expect("sign");

    // The firmware refuses a copy whose signature's last byte is flipped: check here that
    // such a copy fails exactly on the signature, so the on-target check means that.
    let anchors = [TrustAnchor::P256(&anchor)];
    let end = wrapper_end(&new_package);
    let mut tampered = new_package.clone();
    tampered[end - 1] ^= 0x01;
    assert!(authenticate(&new_package, &anchors, &Software).is_ok());
    assert_eq!(
        authenticate(&tampered, &anchors, &Software).err(),
        Some(SuitError::BadSignature)
    );

    std::fs::write(out.join("old.img"), old_image).expect("write");
    std::fs::write(out.join("new.suit"), &new_package).expect("write");
    let digest = |img: &[u8]| -> [u8; 32] {
        use object5::manifest::{CryptoBackend, Sha256Hasher};
        let mut h = Software.sha256();
        h.update(img);
        h.finish()
    };
    let mut rs = String::new();
    let anchor_doc = "The trust anchor: SEC1 P-256 public key of keys/test-signing-key.pem.";
    rust_bytes(anchor_doc, "TRUST_ANCHOR", &anchor, &mut rs);
    let vendor_doc = format!("This device's vendor id: UUID5(DNS, \"{VENDOR}\").");
    rust_bytes(&vendor_doc, "VENDOR_ID", &vendor, &mut rs);
    let class_doc = format!("This device's class id: UUID5(vendor, \"{CLASS}\").");
    rust_bytes(&class_doc, "CLASS_ID", &class, &mut rs);
    let head_doc =
        "Signed envelope head (wrapper + manifest) of the factory image 1.0.0, sequence 1.";
    rust_bytes(head_doc, "OLD_HEAD", &old_head, &mut rs);
    rust_bytes(
        "SHA-256 of the factory image.",
        "OLD_DIGEST",
        &digest(old_image),
        &mut rs,
    );
    rust_bytes(
        "SHA-256 of the update's image 2.0.0.",
        "NEW_DIGEST",
        &digest(new_image),
        &mut rs,
    );
    writeln!(
        rs,
        "/// Bytes of either image.\npub const IMAGE_LEN: usize = {IMAGE_LEN};"
    )
    .unwrap();
    let len = new_package.len();
    writeln!(
        rs,
        "/// Bytes of the update's integrated envelope.\npub const NEW_PACKAGE_LEN: usize = {len};"
    )
    .unwrap();
    let last = end - 1;
    writeln!(rs, "/// Offset of the last byte of the update's COSE_Sign1 signature.\npub const NEW_SIGNATURE_LAST: usize = {last};").unwrap();
    std::fs::write(out.join("packages.rs"), rs).expect("write packages.rs");
}
