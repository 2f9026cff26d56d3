//! The command interpreter on the official examples and on sequences exercising every
//! implemented command, against an in-memory platform (components x slots of bytes).

#[path = "suit/common.rs"]
mod common;

use common::{key, read};
use object5::author::{self, Delivery, PackageSpec, SignAlg, Value};
use object5::manifest::{
    authenticate, DeviceIdentity, Interpreter, Params, Platform, Software, SuitError, TrustAnchor,
};
use std::collections::HashMap;

const ARM: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
const SUIT: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x25, 0x69, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x2d, 0x51, 0xf2, 0xab, 0x45,
];

fn identity() -> DeviceIdentity<'static> {
    DeviceIdentity {
        vendor_id: &ARM,
        class_id: &SUIT,
        device_id: None,
    }
}

/// Storage per (component, slot), a URI -> bytes "network", and a log of effects.
#[derive(Default)]
struct Sim {
    network: HashMap<Vec<u8>, Vec<u8>>,
    store: HashMap<(usize, u64), Vec<u8>>,
    writable_slot: u64,
    log: Vec<String>,
}

impl Platform for Sim {
    fn fetch(&mut self, c: usize, p: &Params<'_>) -> Result<(), SuitError> {
        let uri = p.uri.unwrap();
        self.log
            .push(format!("fetch {c} {}", String::from_utf8_lossy(uri)));
        let bytes = self
            .network
            .get(uri)
            .cloned()
            .ok_or(SuitError::Platform(object5::UpdateResult::InvalidUri))?;
        self.store.insert((c, p.component_slot.unwrap_or(0)), bytes);
        Ok(())
    }
    fn write(&mut self, c: usize, content: &[u8], p: &Params<'_>) -> Result<(), SuitError> {
        self.log.push(format!("write {c}"));
        self.store
            .insert((c, p.component_slot.unwrap_or(0)), content.to_vec());
        Ok(())
    }
    fn copy(&mut self, c: usize, src: usize, p: &Params<'_>) -> Result<(), SuitError> {
        self.log.push(format!("copy {src}->{c}"));
        let bytes = self.store.get(&(src, 0)).cloned().unwrap_or_default();
        self.store.insert((c, p.component_slot.unwrap_or(0)), bytes);
        Ok(())
    }
    fn swap(&mut self, c: usize, src: usize, _: &Params<'_>) -> Result<(), SuitError> {
        self.log.push(format!("swap {src}<->{c}"));
        let a = self.store.remove(&(c, 0)).unwrap_or_default();
        let b = self.store.remove(&(src, 0)).unwrap_or_default();
        self.store.insert((c, 0), b);
        self.store.insert((src, 0), a);
        Ok(())
    }
    fn invoke(&mut self, c: usize, _: &Params<'_>) -> Result<(), SuitError> {
        self.log.push(format!("invoke {c}"));
        Ok(())
    }
    fn slot_matches(&mut self, _: usize, slot: u64) -> bool {
        slot == self.writable_slot
    }
    fn read_image(
        &mut self,
        c: usize,
        p: &Params<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, SuitError> {
        let bytes = self
            .store
            .get(&(c, p.component_slot.unwrap_or(0)))
            .cloned()
            .unwrap_or_default();
        for chunk in bytes.chunks(100) {
            sink(chunk);
        }
        Ok(bytes.len() as u64)
    }
}

/// A P-256 signing key for tool-built packages and its SEC1 public key.
fn signer() -> (p256::ecdsa::SigningKey, Vec<u8>) {
    let signer = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let public = signer
        .verifying_key()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    (signer, public)
}

fn seq(items: Vec<Value>) -> Vec<u8> {
    Value::Array(items).encode()
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

#[test]
fn example_1_fetches_its_uri_and_checks_the_image_against_size_and_digest() {
    let k1 = key("K1");
    let env = read("ms37_ex1_signed.cbor");
    let a = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    let mut vm = Interpreter::new(a.manifest.component_count, identity(), Software).unwrap();
    let mut sim = Sim::default();
    vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
        .unwrap();
    let install = a.install(&Software).unwrap().unwrap();
    sim.network
        .insert(b"http://example.com/file.bin".to_vec(), vec![0; 100]);
    assert_eq!(vm.run(install, &mut sim), Err(SuitError::ImageSizeMismatch));
    // The right size but (the example's digest is a sample pattern) not the right bytes.
    let mut vm = Interpreter::new(1, identity(), Software).unwrap();
    sim.network
        .insert(b"http://example.com/file.bin".to_vec(), vec![0; 34768]);
    vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
        .unwrap();
    assert_eq!(
        vm.run(install, &mut sim),
        Err(SuitError::ImageDigestMismatch)
    );
    assert_eq!(
        sim.log,
        [
            "fetch 0 http://example.com/file.bin",
            "fetch 0 http://example.com/file.bin"
        ]
    );
}

#[test]
fn example_0_shared_sequence_checks_vendor_and_class() {
    let k1 = key("K1");
    let env = read("ms37_ex0_signed.cbor");
    let a = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    let shared = a.manifest.shared_sequence.unwrap();
    let mut sim = Sim::default();
    Interpreter::new(1, identity(), Software)
        .unwrap()
        .run(shared, &mut sim)
        .unwrap();
    let other = DeviceIdentity {
        vendor_id: &SUIT,
        class_id: &SUIT,
        device_id: None,
    };
    let r = Interpreter::new(1, other, Software)
        .unwrap()
        .run(shared, &mut sim);
    assert_eq!(r, Err(SuitError::VendorMismatch));
    let other = DeviceIdentity {
        vendor_id: &ARM,
        class_id: &ARM,
        device_id: None,
    };
    let r = Interpreter::new(1, other, Software)
        .unwrap()
        .run(shared, &mut sim);
    assert_eq!(r, Err(SuitError::ClassMismatch));
}

#[test]
fn example_3_try_each_picks_the_digest_and_uri_of_the_writable_slot() {
    let k1 = key("K1");
    let env = read("ms37_ex3_signed.cbor");
    let a = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    for (slot, digest_start, file) in [(0u64, 0x00u8, "file1"), (1, 0x01, "file2")] {
        let mut sim = Sim {
            writable_slot: slot,
            ..Sim::default()
        };
        sim.network.insert(
            format!("http://example.com/{file}.bin").into_bytes(),
            vec![1; 10],
        );
        let mut vm = Interpreter::new(1, identity(), Software).unwrap();
        vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
            .unwrap();
        assert_eq!(vm.params(0).unwrap().image_digest.unwrap()[0], digest_start);
        let r = vm.run(a.install(&Software).unwrap().unwrap(), &mut sim);
        assert!(
            matches!(
                r,
                Err(SuitError::ImageSizeMismatch | SuitError::ImageDigestMismatch)
            ),
            "{r:?}"
        );
        assert_eq!(sim.log, [format!("fetch 0 http://example.com/{file}.bin")]);
    }
}

#[test]
fn example_5_addresses_two_components_with_set_component_index() {
    let k1 = key("K1");
    let env = read("ms37_ex5_signed.cbor");
    let a = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    assert_eq!(a.manifest.component_count, 2);
    let mut vm = Interpreter::new(2, identity(), Software).unwrap();
    let mut sim = Sim::default();
    vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
        .unwrap();
    assert_eq!(vm.params(0).unwrap().image_size, Some(34768));
    assert_eq!(vm.params(1).unwrap().image_size, Some(76834));
    assert_eq!(vm.params(1).unwrap().vendor_id, None);
}

#[test]
fn a_tool_built_two_image_package_installs_both_components() {
    let (signer, public) = signer();
    let app: Vec<u8> = (0..3000u32).map(|x| x as u8).collect();
    let radio: Vec<u8> = (0..1200u32).map(|x| (x * 3) as u8).collect();
    let spec = PackageSpec {
        vendor_id: ARM,
        class_id: SUIT,
        sequence_number: 1,
        version: "2".into(),
        name: "app".into(),
        image: &app,
        delivery: Delivery::Integrated,
        alg: SignAlg::Esp256,
    };
    let second = author::SecondImage {
        image: &radio,
        name: "radio".into(),
        version: "7".into(),
        delivery: Delivery::Integrated,
    };
    let env = author::build_envelope_two(&spec, &second, &author::AuthorKey::P256(signer)).unwrap();
    let a = authenticate(&env, &[TrustAnchor::P256(&public)], &Software).unwrap();
    let mut sim = Sim::default();
    for k in [&b"#fw"[..], b"#fw1"] {
        sim.network
            .insert(k.to_vec(), a.envelope.payload(k).unwrap().to_vec());
    }
    let mut vm = Interpreter::new(2, identity(), Software).unwrap();
    vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
        .unwrap();
    vm.run(a.install(&Software).unwrap().unwrap(), &mut sim)
        .unwrap();
    vm.run(a.manifest.validate.unwrap(), &mut sim).unwrap();
    assert_eq!(sim.log, ["fetch 0 #fw", "fetch 1 #fw1"]);
    assert_eq!((&sim.store[&(0, 0)], &sim.store[&(1, 0)]), (&app, &radio));
    // The second image with one byte changed fails validate on component 1.
    sim.store.get_mut(&(1, 0)).unwrap()[5] ^= 1;
    assert_eq!(
        vm.run(a.manifest.validate.unwrap(), &mut sim),
        Err(SuitError::ImageDigestMismatch)
    );
}

#[test]
fn example_4_fetches_into_the_staging_component_and_checks_it_there() {
    let k1 = key("K1");
    let env = read("ms37_ex4_signed.cbor");
    let a = authenticate(&env, &[TrustAnchor::P256(&k1)], &Software).unwrap();
    assert_eq!(a.manifest.component_count, 3);
    let mut vm = Interpreter::new(3, identity(), Software).unwrap();
    let mut sim = Sim::default();
    vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
        .unwrap();
    assert_eq!(vm.params(0).unwrap().image_size, Some(34768));
    sim.network
        .insert(b"http://example.com/file.bin".to_vec(), vec![0; 34768]);
    // payload-fetch: component 1 (external storage) receives the image and must match the
    // (sample) digest before install would copy it into component 0.
    let fetch = a.payload_fetch(&Software).unwrap().unwrap();
    assert_eq!(vm.run(fetch, &mut sim), Err(SuitError::ImageDigestMismatch));
    assert_eq!(sim.log, ["fetch 1 http://example.com/file.bin"]);
    assert_eq!(
        vm.params(1).unwrap().uri,
        Some(&b"http://example.com/file.bin"[..])
    );
}

#[test]
fn a_tool_built_package_runs_install_validate_and_invoke_end_to_end() {
    let (signer, public) = signer();
    let img: Vec<u8> = (0..5000u32).map(|x| x as u8).collect();
    let spec = PackageSpec {
        vendor_id: ARM,
        class_id: SUIT,
        sequence_number: 1,
        version: "1".into(),
        name: "n".into(),
        image: &img,
        delivery: Delivery::Integrated,
        alg: SignAlg::Esp256,
    };
    let env = author::build_envelope(&spec, &signer).unwrap();
    let a = authenticate(&env, &[TrustAnchor::P256(&public)], &Software).unwrap();
    let mut sim = Sim::default();
    sim.network.insert(
        b"#fw".to_vec(),
        a.envelope.payload(b"#fw").unwrap().to_vec(),
    );
    let mut vm = Interpreter::new(1, identity(), Software).unwrap();
    vm.run(a.manifest.shared_sequence.unwrap(), &mut sim)
        .unwrap();
    vm.run(a.install(&Software).unwrap().unwrap(), &mut sim)
        .unwrap();
    vm.run(a.manifest.validate.unwrap(), &mut sim).unwrap();
    assert_eq!(sim.store[&(0, 0)], img);
    assert_eq!(a.text.version, Some(&b"1"[..]));
}

#[test]
fn write_copy_swap_check_content_try_each_run_sequence_and_soft_failure() {
    let content = b"hello".to_vec();
    let digest = author::suit_digest(&content);
    // Component 0: write content; try-each whose first branch fails softly (slot 7), second
    // passes; copy 0 -> 1 and check its digest; run-sequence with check-content; swap; invoke.
    let branch_bad = seq(vec![i(20), Value::Map(vec![(i(5), i(7))]), i(5), i(15)]);
    let branch_ok = seq(vec![i(20), Value::Map(vec![(i(5), i(0))]), i(5), i(15)]);
    let inner = seq(vec![i(6), i(15)]);
    let program = seq(vec![
        i(12),
        i(0),
        i(20),
        Value::Map(vec![(i(18), Value::Bytes(content.clone()))]),
        i(18),
        i(15),
        i(15),
        Value::Array(vec![
            Value::Bytes(branch_bad.clone()),
            Value::Bytes(branch_ok),
        ]),
        i(12),
        i(1),
        i(20),
        Value::Map(vec![
            (i(3), Value::Bytes(digest)),
            (i(14), i(5)),
            (i(22), i(0)),
        ]),
        i(22),
        i(15),
        i(3),
        i(15),
        i(12),
        i(0),
        i(32),
        Value::Bytes(inner),
        i(12),
        i(1),
        i(31),
        i(15),
        i(12),
        Value::Array(vec![i(0), i(1)]),
        i(23),
        i(15),
    ]);
    let mut sim = Sim::default();
    let mut vm = Interpreter::new(2, identity(), Software).unwrap();
    vm.run(&program, &mut sim).unwrap();
    assert_eq!(
        sim.log,
        ["write 0", "copy 0->1", "swap 0<->1", "invoke 0", "invoke 1"]
    );

    // A failed condition outside try-each aborts; a try-each with only failing branches fails,
    // unless it ends with nil.
    let abort = seq(vec![i(14), i(15)]);
    let all_bad = seq(vec![
        i(15),
        Value::Array(vec![
            Value::Bytes(branch_bad.clone()),
            Value::Bytes(branch_bad.clone()),
        ]),
    ]);
    let nil_tail = seq(vec![
        i(15),
        Value::Array(vec![
            Value::Bytes(branch_bad.clone()),
            Value::Bytes(branch_bad),
            Value::Null,
        ]),
    ]);
    // soft-failure may not be set outside try-each / run-sequence.
    let soft_top = seq(vec![i(20), Value::Map(vec![(i(13), Value::Bool(true))])]);
    let bad_index = seq(vec![i(12), i(1)]);
    let unknown = seq(vec![i(99), i(15)]);
    let mut nested = seq(vec![i(14), i(15)]);
    for _ in 0..6 {
        nested = seq(vec![i(32), Value::Bytes(nested)]);
    }
    let mut vm = Interpreter::new(1, identity(), Software).unwrap();
    assert_eq!(vm.run(&abort, &mut sim), Err(SuitError::ConditionFailed));
    assert_eq!(vm.run(&all_bad, &mut sim), Err(SuitError::ConditionFailed));
    vm.run(&nil_tail, &mut sim).unwrap();
    assert!(vm.run(&soft_top, &mut sim).is_err());
    // Index out of range, unknown commands, and unbounded nesting are refused.
    assert_eq!(vm.run(&bad_index, &mut sim), Err(SuitError::BadComponent));
    assert_eq!(vm.run(&unknown, &mut sim), Err(SuitError::Unsupported));
    assert_eq!(vm.run(&nested, &mut sim), Err(SuitError::TooDeep));
}
