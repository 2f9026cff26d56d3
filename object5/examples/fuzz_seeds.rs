//! Writes seed envelopes for the envelope fuzz target (object5/fuzz) that the official vectors
//! do not provide: packages the target's trust anchor (the draft's K1) authenticates whose
//! payloads stream through the verifier, so mutations of their payload bytes reach the
//! streamed decryption and the multi-image path: encrypted integrated images (A128GCM to the
//! draft's ECDH receiver K4, A128CTR under its KEK), and two-image packages integrated,
//! fetched and mixed.
//!
//!     cargo run -p object5 --features std --example fuzz_seeds -- object5/fuzz/corpus/envelope

use object5::author::{
    self, AuthorKey, ContentEncryption, Delivery, Encryption, PackageSpec, Recipient, SecondImage,
    SignAlg,
};
use std::path::PathBuf;

/// The vendor and class of the draft's examples, which the fuzz target's policy expects.
const VENDOR: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
const CLASS: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x25, 0x69, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x2d, 0x51, 0xf2, 0xab, 0x45,
];

fn keys_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit/keys"
    ))
}

fn read(name: &str) -> Result<String, String> {
    std::fs::read_to_string(keys_dir().join(name)).map_err(|e| format!("{name}: {e}"))
}

fn main() -> Result<(), String> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: fuzz_seeds OUT_DIR")?);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key = AuthorKey::from_pem(&read("K1_spec_p256_private.pem")?).map_err(|e| e.to_string())?;
    let k4 = author::public_sec1_from_pem(&read("K4_kid-2_ecdh_receiver_p256_public.pem")?)
        .map_err(|e| e.to_string())?;
    let image: Vec<u8> = (0..700u32).map(|i| (i * 31 + 7) as u8).collect();
    let second: Vec<u8> = (0..300u32).map(|i| (i * 17 + 3) as u8).collect();
    let spec = |delivery: Delivery| PackageSpec {
        vendor_id: VENDOR,
        class_id: CLASS,
        sequence_number: 1,
        version: "1.0.0".into(),
        name: "fuzz".into(),
        image: &image,
        delivery,
        alg: SignAlg::Esp256,
    };
    let two = |d0: Delivery, d1: Delivery| {
        let component = SecondImage {
            image: &second,
            name: "second".into(),
            version: "1.0.0".into(),
            delivery: d1,
        };
        author::build_envelope_two(&spec(d0), &component, &key).map_err(|e| e.to_string())
    };
    let encrypted = |recipient: Recipient, content: ContentEncryption| {
        let enc = Encryption { recipient, content };
        author::build_envelope_encrypted(&spec(Delivery::Integrated), &key, &enc)
            .map(|(envelope, _)| envelope)
            .map_err(|e| e.to_string())
    };
    let uri = |name: &str| Delivery::Uri(format!("coap://[::1]/{name}"));
    let seeds = [
        (
            "plain-integrated",
            author::build_envelope_with(&spec(Delivery::Integrated), &key)
                .map_err(|e| e.to_string())?,
        ),
        (
            "gcm-ecdh-k4",
            encrypted(Recipient::EcdhP256(k4), ContentEncryption::A128Gcm)?,
        ),
        (
            "ctr-kek",
            encrypted(Recipient::Aes128Kw([b'a'; 16]), ContentEncryption::A128Ctr)?,
        ),
        (
            "two-integrated",
            two(Delivery::Integrated, Delivery::Integrated)?,
        ),
        ("two-fetched", two(uri("a.bin"), uri("b.bin"))?),
        ("two-mixed", two(Delivery::Integrated, uri("b.bin"))?),
    ];
    for (name, bytes) in seeds {
        let path = out.join(format!("seed-{name}.suit"));
        std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}: {} bytes", path.display(), bytes.len());
    }
    Ok(())
}
