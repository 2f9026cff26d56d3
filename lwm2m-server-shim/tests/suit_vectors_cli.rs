//! `package verify` and `package inspect` on every official example in
//! ../shared/vectors/suit/INDEX.md: each VALID envelope exits 0 with its key (and lists what
//! needs a device), each unsigned one exits non-zero with one line naming Update Result 5.

mod common;

use std::path::PathBuf;

use common::{shim, text};

fn vectors() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit"
    ))
}

/// `(file, key, valid)` for every row of INDEX.md's table.
fn rows() -> Vec<(String, String, bool)> {
    let index = std::fs::read_to_string(vectors().join("INDEX.md")).unwrap();
    let rows: Vec<_> = index
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() >= 7 && cells[1].ends_with(".cbor")).then(|| {
                (
                    cells[1].to_owned(),
                    cells[4].to_owned(),
                    cells[6].starts_with("VALID"),
                )
            })
        })
        .collect();
    assert!(rows.len() >= 28, "INDEX.md table not found");
    rows
}

/// The key option for an INDEX.md key name.
fn key_args(name: &str) -> [String; 2] {
    let k = |f: &str| vectors().join("keys").join(f).display().to_string();
    match name {
        "K1" => ["--pub".into(), k("K1_spec_p256_public.pem")],
        "K2" => ["--pub".into(), k("K2_encdep_p256_public.pem")],
        "K3" => ["--mac-key".into(), k("K3_hmac256.key")],
        other => panic!("unknown key {other}"),
    }
}

#[test]
fn every_valid_vector_verifies_with_its_key_and_every_unsigned_one_is_refused() {
    let (mut valid, mut unsigned) = (0, 0);
    for (file, key, is_valid) in rows() {
        let path = vectors().join(&file).display().to_string();
        let key = if is_valid { key } else { "K1".into() };
        let [opt, key_path] = key_args(&key);
        let o = shim(&["package", "verify", &opt, &key_path, &path]);
        let t = text(&o);
        if is_valid {
            valid += 1;
            assert!(o.status.success(), "{file}: {t}");
            assert!(t.starts_with("authentic: seq "), "{file}: {t}");
            assert!(t.contains(&format!("key #0 ({key_path})")), "{file}: {t}");
        } else {
            unsigned += 1;
            assert!(!o.status.success(), "{file}: {t}");
            assert!(
                t.contains("unsigned envelope") && t.contains("Update Result 5"),
                "{file}: {t}"
            );
            assert_eq!(t.lines().count(), 1, "{file}: {t}");
        }
    }
    assert_eq!((valid, unsigned), (22, 6));
}

#[test]
fn verify_lists_what_needs_the_device_and_checks_what_the_envelope_carries() {
    let v = |f: &str| vectors().join(f).display().to_string();
    let [opt, k1] = key_args("K1");
    let o = shim(&["package", "verify", &opt, &k1, &v("ms37_ex2_signed.cbor")]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for line in [
        "checked: severed install: matches its signed digest",
        "needs the device: vendor-id fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe: not checked, give --vendor-id",
        "needs the device: class-id 1492af14-2569-5e48-bf42-9b2d51f2ab45: not checked, give --class-id",
        "needs the device: image-match (component 0): needs the image the device fetches from http://example.com/very/long/path/to/file/file.bin, give --image",
        "needs the device: sequence number 2: not compared with the device's, give --min-seq",
    ] {
        assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
    }
    // With device options the device policy applies: the examples' sample digests and
    // vendor ids are then what they are.
    let o = shim(&[
        "package",
        "verify",
        &opt,
        &k1,
        &v("ms37_ex2_signed.cbor"),
        "--vendor-id",
        "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        "--class-id",
        "00000000-0000-0000-0000-000000000000",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("class identifier"),
        "{}",
        text(&o)
    );
    // The outer envelope of the dependency example is signed with K2, its dependency with K1.
    let [_, k2] = key_args("K2");
    let dep = v("enc24_es_ecdh_dependency.cbor");
    let o = shim(&["package", "verify", "--pub", &k2, &dep]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("dependency 1: signed by a key not given"),
        "{}",
        text(&o)
    );
    let o = shim(&["package", "verify", "--pub", &k2, "--pub", &k1, &dep]);
    assert!(
        text(&o).contains("checked: dependency 1: authentic, key #1"),
        "{}",
        text(&o)
    );
}

#[test]
fn inspect_says_whether_and_by_which_key_an_envelope_authenticates() {
    let v = |f: &str| vectors().join(f).display().to_string();
    let [_, k1] = key_args("K1");
    let [_, k2] = key_args("K2");
    let file = v("ms188_ex1_signed.cbor");
    let o = shim(&["package", "inspect", &file]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("authentication:  COSE_Sign1 ESP256 (-9)"), "{t}");
    assert!(
        t.contains("authentic:       not checked (give --pub or --mac-key)"),
        "{t}"
    );
    let o = shim(&["package", "inspect", &file, "--pub", &k2, "--pub", &k1]);
    assert!(
        text(&o).contains(&format!("authentic:       yes, with {k1}")),
        "{}",
        text(&o)
    );
    let o = shim(&["package", "inspect", &file, "--pub", &k2]);
    assert!(
        text(&o).contains("authentic:       no: signature does not verify with any trust anchor"),
        "{}",
        text(&o)
    );
    let [opt, k3] = key_args("K3");
    let o = shim(&["package", "inspect", &v("enc24_aes_kw.cbor"), &opt, &k3]);
    let t = text(&o);
    assert!(
        t.contains("authentication:  COSE_Mac0 HMAC 256/256 (5)"),
        "{t}"
    );
    assert!(
        t.contains(&format!("authentic:       yes, with {k3}")),
        "{t}"
    );
    let o = shim(&[
        "package",
        "inspect",
        &v("ms37_ex0_unsigned.cbor"),
        "--pub",
        &k1,
    ]);
    let t = text(&o);
    assert!(
        t.contains("authentication:  none: the wrapper holds only the digest"),
        "{t}"
    );
    assert!(t.contains("authentic:       no: unsigned envelope"), "{t}");
}

#[test]
fn the_enc24_vectors_extract_to_the_raw_image_with_k4_and_the_kek() {
    let v = |f: &str| vectors().join(f).display().to_string();
    let raw = std::fs::read(vectors().join("payloads/raw_image.bin")).unwrap();
    let dir = std::env::temp_dir().join(format!("shim-enc24-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("plain.bin").display().to_string();
    let [_, k1] = key_args("K1");
    let [_, k2] = key_args("K2");
    let [_, k3] = key_args("K3");
    let k4 = v("keys/K4_kid-2_ecdh_receiver_p256_private.pem");
    let kek = v("keys/KEK_kid-1_a128kw.key");
    let fetched = v("payloads/encrypted-payload-aes-kw-aes-gcm.bin");
    let cases: [(&str, Vec<&str>); 5] = [
        (
            "enc24_es_ecdh_content.cbor",
            vec!["--pub", &k1, "--decrypt-key", &k4],
        ),
        (
            "enc24_aes_kw_content.cbor",
            vec!["--mac-key", &k3, "--kek", &kek],
        ),
        (
            "enc24_aes_kw.cbor",
            vec!["--mac-key", &k3, "--kek", &kek, "--image", &fetched],
        ),
        (
            "enc24_aes_kw_slot.cbor",
            vec!["--mac-key", &k3, "--kek", &kek, "--image", &fetched],
        ),
        (
            "enc24_es_ecdh_dependency.cbor",
            vec!["--pub", &k2, "--pub", &k1, "--decrypt-key", &k4],
        ),
    ];
    for (file, keys) in cases {
        std::fs::remove_file(&out).ok();
        let path = v(file);
        let args = [
            &["package", "verify"][..],
            &keys,
            &[path.as_str(), "--extract", &out],
        ]
        .concat();
        let o = shim(&args);
        let t = text(&o);
        assert!(o.status.success(), "{file}: {t}");
        assert!(
            t.contains("decrypted (A128GCM, tag verified), 30 bytes"),
            "{file}: {t}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), raw, "{file}: {t}");
    }
    // K4 cannot open an A128KW recipient, nor the KEK an ECDH one: Update Result 5.
    let o = shim(&[
        "package",
        "verify",
        "--pub",
        &k1,
        "--kek",
        &kek,
        &v("enc24_es_ecdh_content.cbor"),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no decryption key") && text(&o).contains("Update Result 5"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}
