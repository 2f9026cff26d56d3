//! The author commands end to end through the binary: keygen, package build (integrated and
//! URI), inspect, and verify with its exit codes and one-line reasons.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{shim, temp_dir, text};

/// `package build` of `source` (`--image F` or `--sim-firmware N`) signed with `key` into `out`.
fn build_with(key: &str, source: &[&str], out: &str) -> Output {
    let mut args = vec!["package", "build", "--key", key];
    args.extend_from_slice(source);
    args.extend_from_slice(&["--vendor-id", "a", "--class-id", "b", "--seq", "1"]);
    args.extend_from_slice(&["--version", "1.0.0", "-o", out]);
    shim(&args)
}

/// A fresh directory with a key pair `k.pem` / `k.pub.pem` from `keygen`, and a path helper.
fn with_key(tag: &str) -> (PathBuf, impl Fn(&str) -> String) {
    let d = temp_dir(tag);
    let base = d.clone();
    let p = move |n: &str| base.join(n).to_str().unwrap().to_string();
    let o = shim(&["keygen", "-o", &p("k.pem")]);
    assert!(o.status.success(), "{}", text(&o));
    (d, p)
}

#[test]
fn keygen_build_inspect_and_verify_work_together_and_failures_name_their_code() {
    let d = temp_dir("author");
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    std::fs::write(p("fw.bin"), vec![0x5au8; 3000]).unwrap();
    let o = shim(&["keygen", "-o", &p("key.pem")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(p("key.pem"))
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    assert!(std::fs::read_to_string(p("key.pub.pem"))
        .unwrap()
        .contains("BEGIN PUBLIC KEY"));
    let (key, fw, pubkey, suit) = (p("key.pem"), p("fw.bin"), p("key.pub.pem"), p("fw.suit"));
    let build = |seq: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "package",
            "build",
            "--key",
            &key,
            "--image",
            &fw,
            "--vendor-id",
            "example.com",
            "--class-id",
            "sensor-v2",
            "--seq",
            seq,
            "--version",
            "2.4.0",
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        shim(&args.iter().map(|s| s as &str).collect::<Vec<_>>())
    };
    let o = build("7", &["--integrated"], &p("fw.suit"));
    assert!(o.status.success(), "{}", text(&o));
    let o = shim(&["package", "inspect", &p("fw.suit")]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("sequence-number: 7") && t.contains("version:         2.4.0"),
        "{t}"
    );
    assert!(t.contains("payload:         #fw (3000 bytes)"), "{t}");

    let verify = |extra: &[&str]| {
        let mut args = vec!["package", "verify", "--pub", &pubkey, &suit];
        args.extend_from_slice(extra);
        shim(&args.iter().map(|s| s as &str).collect::<Vec<_>>())
    };
    let ids = ["--vendor-id", "example.com", "--class-id", "sensor-v2"];
    let o = verify(&[&ids[..], &["--min-seq", "6"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("valid: seq 7"));
    // Rollback, wrong class, wrong key: non-zero exit and one line with the Update Result.
    let o = verify(&[&ids[..], &["--min-seq", "7"]].concat());
    assert!(!o.status.success());
    assert!(
        text(&o).contains("rollback") && text(&o).contains("Update Result 6"),
        "{}",
        text(&o)
    );
    let o = verify(&["--vendor-id", "example.com", "--class-id", "other"]);
    assert!(
        !o.status.success() && text(&o).contains("class identifier"),
        "{}",
        text(&o)
    );
    assert_eq!(text(&o).lines().count(), 1, "{}", text(&o));
    let o = shim(&["keygen", "-o", &p("other.pem")]);
    assert!(o.status.success());
    let o = shim(&[
        "package",
        "verify",
        "--pub",
        &p("other.pub.pem"),
        &p("fw.suit"),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("Update Result 5"),
        "{}",
        text(&o)
    );
    // Rotation: either of two keys may sign.
    let o = shim(&[
        "package",
        "verify",
        "--pub",
        &p("other.pub.pem"),
        "--pub",
        &p("key.pub.pem"),
        &p("fw.suit"),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // URI package: verified against the image when given; a wrong image is refused.
    let o = build(
        "8",
        &["--uri", "coap://127.0.0.1:5683/fw.bin"],
        &p("uri.suit"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = shim(&[
        "package",
        "verify",
        "--pub",
        &p("key.pub.pem"),
        &p("uri.suit"),
        "--image",
        &p("fw.bin"),
    ]);
    assert!(
        o.status.success() && text(&o).contains("image verified"),
        "{}",
        text(&o)
    );
    std::fs::write(p("bad.bin"), vec![0x5bu8; 3000]).unwrap();
    let o = shim(&[
        "package",
        "verify",
        "--pub",
        &p("key.pub.pem"),
        &p("uri.suit"),
        "--image",
        &p("bad.bin"),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("image digest mismatch"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn two_image_packages_build_from_files_and_verify_both_images() {
    let (d, p) = with_key("two-image");
    let (app, radio) = (vec![0x11u8; 3000], vec![0x22u8; 1500]);
    std::fs::write(p("app.bin"), &app).unwrap();
    std::fs::write(p("radio.bin"), &radio).unwrap();
    let second = [
        "--second-image",
        &p("radio.bin"),
        "--second-version",
        "5.0.0",
    ];
    let o = build_with(
        &p("k.pem"),
        &[&["--image", &p("app.bin")][..], &second].concat(),
        &p("two.suit"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = shim(&["package", "inspect", &p("two.suit")]);
    let t = text(&o);
    assert!(
        t.contains("#fw (3000 bytes)") && t.contains("#fw1 (1500 bytes)"),
        "{t}"
    );
    // Authentic, both integrated payloads match their digests, and the device policy (the
    // streaming verifier) takes both images.
    let public = p("k.pub.pem");
    let verify = |file: &str, device: bool| {
        let mut args = vec!["package", "verify", "--pub", &public];
        if device {
            args.extend_from_slice(&["--vendor-id", "a", "--class-id", "b"]);
        }
        let file = p(file);
        args.push(&file);
        shim(&args)
    };
    for device in [false, true] {
        let o = verify("two.suit", device);
        assert!(o.status.success(), "{}", text(&o));
    }
    // One byte of the second image changed: refused either way, Update Result 5.
    let mut envelope = std::fs::read(p("two.suit")).unwrap();
    let at = envelope.windows(1500).position(|w| w == radio).unwrap();
    envelope[at + 700] ^= 1;
    std::fs::write(p("bad.suit"), &envelope).unwrap();
    for device in [false, true] {
        let o = verify("bad.suit", device);
        assert!(
            !o.status.success() && text(&o).contains("Update Result 5"),
            "{}",
            text(&o)
        );
    }
    // A second image needs its version; encryption does not combine with it.
    let o = build_with(
        &p("k.pem"),
        &["--image", &p("app.bin"), "--second-image", &p("radio.bin")],
        &p("x.suit"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--second-version"), "{}", text(&o));
    std::fs::write(p("k.kek"), [7u8; 16]).unwrap();
    let o = build_with(
        &p("k.pem"),
        &[
            &["--image", &p("app.bin"), "--kek", &p("k.kek")][..],
            &second,
        ]
        .concat(),
        &p("x.suit"),
    );
    assert!(!o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn two_fetched_images_are_verified_against_image_and_second_image() {
    let (d, p) = with_key("two-fetched");
    let (app, radio) = (vec![0x31u8; 2500], vec![0x42u8; 1200]);
    std::fs::write(p("app.bin"), &app).unwrap();
    std::fs::write(p("radio.bin"), &radio).unwrap();
    let mut bad = radio.clone();
    bad[600] ^= 1;
    std::fs::write(p("bad-radio.bin"), &bad).unwrap();
    let o = build_with(
        &p("k.pem"),
        &[
            "--image",
            &p("app.bin"),
            "--uri",
            "coap://127.0.0.1/app.bin",
            "--second-image",
            &p("radio.bin"),
            "--second-version",
            "5.0.0",
            "--second-uri",
            "coap://127.0.0.1/radio.bin",
        ],
        &p("two.suit"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let (public, suit) = (p("k.pub.pem"), p("two.suit"));
    let verify = |images: &[&str], device: bool| {
        let mut args = vec!["package", "verify", "--pub", &public];
        if device {
            args.extend_from_slice(&["--vendor-id", "a", "--class-id", "b"]);
        }
        args.extend_from_slice(images);
        args.push(&suit);
        shim(&args)
    };
    let (app_p, radio_p, bad_p) = (p("app.bin"), p("radio.bin"), p("bad-radio.bin"));
    // Without images: both digests are listed as needing the fetched bytes.
    let t = text(&verify(&[], false));
    assert!(
        t.contains("give --image") && t.contains("give --second-image"),
        "{t}"
    );
    // With both: both checked, by the author check and by the device's streaming verifier.
    let both = [
        "--image",
        app_p.as_str(),
        "--second-image",
        radio_p.as_str(),
    ];
    let o = verify(&both, false);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("image verified against --image")
            && t.contains("image verified against --second-image"),
        "{t}"
    );
    let o = verify(&both, true);
    assert!(
        o.status.success() && text(&o).contains("image verified"),
        "{}",
        text(&o)
    );
    // Only the first image: the device check cannot say the package is whole.
    let o = verify(&["--image", &app_p], true);
    assert!(
        o.status.success() && text(&o).contains("image not checked"),
        "{}",
        text(&o)
    );
    // A second image that differs by one bit: refused either way, Update Result 5.
    let wrong = ["--image", app_p.as_str(), "--second-image", bad_p.as_str()];
    for device in [false, true] {
        let o = verify(&wrong, device);
        assert!(
            !o.status.success() && text(&o).contains("Update Result 5"),
            "{}",
            text(&o)
        );
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn verify_refuses_an_envelope_followed_by_trailing_bytes_as_an_integrity_failure() {
    let d = std::env::temp_dir().join(format!("shim-author-trailing-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    std::fs::write(p("fw.bin"), vec![0x33u8; 700]).unwrap();
    assert!(shim(&["keygen", "-o", &p("key.pem")]).status.success());
    for (name, delivery) in [("int.suit", "--integrated"), ("uri.suit", "--uri")] {
        let mut args = vec![
            "package".to_string(),
            "build".into(),
            "--key".into(),
            p("key.pem"),
            "--image".into(),
            p("fw.bin"),
            "--vendor-id".into(),
            "example.com".into(),
            "--class-id".into(),
            "sensor".into(),
            "--seq".into(),
            "3".into(),
            "--version".into(),
            "1.0".into(),
            "-o".into(),
            p(name),
            delivery.into(),
        ];
        if delivery == "--uri" {
            args.push("coap://127.0.0.1/fw.bin".into());
        }
        let o = shim(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", text(&o));
        let good = std::fs::read(p(name)).unwrap();
        let long = p(&format!("long-{name}"));
        std::fs::write(&long, [good.as_slice(), &[0x00]].concat()).unwrap();
        let ids = ["--vendor-id", "example.com", "--class-id", "sensor"];
        for extra in [&[][..], &ids[..]] {
            let public = p("key.pub.pem");
            let mut args = vec!["package", "verify", "--pub", &public];
            args.extend_from_slice(extra);
            let file = p(name);
            let o = shim(&[&args[..], &[file.as_str()]].concat());
            assert!(o.status.success(), "{name} {extra:?}: {}", text(&o));
            let o = shim(&[&args[..], &[long.as_str()]].concat());
            assert!(!o.status.success(), "{name} {extra:?}: {}", text(&o));
            let t = text(&o);
            assert!(
                t.contains("bytes after the end of the envelope") && t.contains("Update Result 5"),
                "{name} {extra:?}: {t}"
            );
            assert_eq!(t.lines().count(), 1, "{t}");
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn ed25519_keys_sign_packages_that_verify_with_their_public_key_only() {
    let d = std::env::temp_dir().join(format!("shim-author-ed25519-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    std::fs::write(p("fw.bin"), vec![0x44u8; 1500]).unwrap();
    let o = shim(&["keygen", "--alg", "ed25519", "-o", &p("ed.pem")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(shim(&["keygen", "-o", &p("p256.pem")]).status.success());
    let (key, fw) = (p("ed.pem"), p("fw.bin"));
    for (extra, alg) in [(None, "Ed25519 (-19)"), (Some("--eddsa"), "EdDSA (-8)")] {
        let mut args = vec![
            "package",
            "build",
            "--key",
            &key,
            "--image",
            &fw,
            "--vendor-id",
            "example.com",
            "--class-id",
            "sensor",
            "--seq",
            "4",
            "--version",
            "1.1",
            "-o",
        ];
        let out = p("ed.suit");
        args.push(&out);
        args.extend(extra);
        let o = shim(&args);
        assert!(o.status.success(), "{}", text(&o));
        let o = shim(&["package", "inspect", &out, "--pub", &p("ed.pub.pem")]);
        let t = text(&o);
        assert!(
            t.contains(&format!("authentication:  COSE_Sign1 {alg}")),
            "{t}"
        );
        assert!(t.contains("authentic:       yes, with"), "{t}");
        let o = shim(&["package", "verify", "--pub", &p("ed.pub.pem"), &out]);
        assert!(
            o.status.success() && text(&o).contains("authentic: seq 4"),
            "{}",
            text(&o)
        );
        let ids = [
            "--vendor-id",
            "example.com",
            "--class-id",
            "sensor",
            "--min-seq",
            "3",
        ];
        let o = shim(
            &[
                &["package", "verify", "--pub", &p("ed.pub.pem"), &out][..],
                &ids,
            ]
            .concat(),
        );
        assert!(
            o.status.success() && text(&o).contains("valid: seq 4"),
            "{}",
            text(&o)
        );
        // The P-256 key did not sign it.
        let o = shim(&["package", "verify", "--pub", &p("p256.pub.pem"), &out]);
        assert!(
            !o.status.success() && text(&o).contains("Update Result 5"),
            "{}",
            text(&o)
        );
    }
    // An algorithm that does not go with the key is one clear line.
    let o = shim(&[
        "package",
        "build",
        "--key",
        &p("ed.pem"),
        "--image",
        &p("fw.bin"),
        "--vendor-id",
        "v",
        "--class-id",
        "c",
        "--seq",
        "1",
        "--version",
        "1",
        "-o",
        &p("x.suit"),
        "--es256",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("does not go with the key"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn encrypted_packages_build_verify_and_extract_for_a_device_key_or_a_kek() {
    let d = std::env::temp_dir().join(format!("shim-author-encrypted-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    let image: Vec<u8> = (0..7000u32).map(|i| (i * 3 % 256) as u8).collect();
    std::fs::write(p("fw.bin"), &image).unwrap();
    std::fs::write(p("kek.bin"), [0x33u8; 16]).unwrap();
    std::fs::write(p("other-kek.bin"), [0x34u8; 16]).unwrap();
    assert!(shim(&["keygen", "-o", &p("sign.pem")]).status.success());
    // The device's ECDH key pair is an ordinary P-256 key.
    assert!(shim(&["keygen", "-o", &p("dev.pem")]).status.success());
    assert!(shim(&["keygen", "-o", &p("other.pem")]).status.success());
    let (sign, fw, out) = (p("sign.pem"), p("fw.bin"), p("enc.suit"));
    let (dev_pub, dev, other) = (p("dev.pub.pem"), p("dev.pem"), p("other.pem"));
    let (kek, other_kek, plain) = (p("kek.bin"), p("other-kek.bin"), p("plain.bin"));
    let ids = ["--vendor-id", "example.com", "--class-id", "sensor"];
    for alg in ["a128gcm", "a128ctr"] {
        for (to, key, wrong) in [
            (
                ["--encrypt-for", &dev_pub],
                ["--decrypt-key", &dev],
                ["--decrypt-key", &other],
            ),
            (["--kek", &kek], ["--kek", &kek], ["--kek", &other_kek]),
        ] {
            let build = [
                &[
                    "package", "build", "--key", &sign, "--image", &fw, "--seq", "5",
                ][..],
                &["--version", "5", "-o", &out, "--content-alg", alg],
                &ids,
                &to,
            ]
            .concat();
            let o = shim(&build);
            assert!(o.status.success(), "{}", text(&o));
            let verify = ["package", "verify", "--pub", &p("sign.pub.pem"), &out];
            // Without a key: authentic, the encrypted image listed.
            let o = shim(&verify);
            assert!(o.status.success(), "{}", text(&o));
            assert!(
                text(&o).contains("give --decrypt-key or --kek"),
                "{}",
                text(&o)
            );
            // With the key: decrypted, digest checked, extracted.
            std::fs::remove_file(&plain).ok();
            let o = shim(&[&verify[..], &key, &["--extract", &plain]].concat());
            assert!(o.status.success(), "{alg} {to:?}: {}", text(&o));
            assert!(
                text(&o)
                    .contains("image-match (component 0): decrypted payload, 7000 bytes, matches"),
                "{}",
                text(&o)
            );
            assert_eq!(std::fs::read(&plain).unwrap(), image, "{alg} {to:?}");
            // Device policy with the key: the device's streaming verifier decrypts it.
            let o = shim(&[&verify[..], &key, &ids, &["--min-seq", "4"]].concat());
            assert!(
                o.status.success() && text(&o).contains("valid: seq 5"),
                "{}",
                text(&o)
            );
            // The wrong key: one line, Update Result 5, in both modes.
            for extra in [&[][..], &ids[..]] {
                let o = shim(&[&verify[..], &wrong, extra].concat());
                let t = text(&o);
                assert!(
                    !o.status.success() && t.contains("Update Result 5"),
                    "{alg} {to:?}: {t}"
                );
                assert_eq!(t.lines().count(), 1, "{t}");
            }
        }
    }
    // Encryption needs the image in the envelope.
    let o = shim(&[
        "package",
        "build",
        "--key",
        &sign,
        "--image",
        &fw,
        "--seq",
        "5",
        "--version",
        "5",
        "-o",
        &out,
        "--vendor-id",
        "v",
        "--class-id",
        "c",
        "--kek",
        &kek,
        "--uri",
        "coap://h/fw",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn keygen_refuses_to_overwrite_and_keeps_the_private_key_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let d = temp_dir("keygen");
    // A directory that does not exist yet, as README's keys/ on a fresh checkout.
    let key = d.join("keys").join("signing.pem");
    let public = d.join("keys").join("signing.pub.pem");
    let k = key.to_str().unwrap();
    let o = shim(&["keygen", "-o", k]);
    assert!(o.status.success(), "{}", text(&o));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "private key readable by its owner only");
    assert_eq!(
        mode(&d.join("keys")) & 0o077,
        0,
        "key directory private too"
    );
    let first = std::fs::read(&key).unwrap();
    let first_pub = std::fs::read(&public).unwrap();
    // Again without --force: refused in one line, both files untouched.
    let o = shim(&["keygen", "-o", k]);
    assert!(!o.status.success());
    let t = text(&o);
    assert_eq!(t.lines().count(), 1, "{t}");
    assert!(
        t.starts_with("error: ") && t.contains("signing.pem exists") && t.contains("--force"),
        "{t}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), first);
    assert_eq!(std::fs::read(&public).unwrap(), first_pub);
    // Only the public half exists (the private one moved away): still refused.
    std::fs::remove_file(&key).unwrap();
    let o = shim(&["keygen", "-o", k]);
    assert!(
        !o.status.success() && text(&o).contains("signing.pub.pem exists"),
        "{}",
        text(&o)
    );
    assert!(!key.exists());
    // --force replaces both, the new private key again 0600 (not the old file's mode).
    std::fs::write(&key, &first).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = shim(&["keygen", "--force", "-o", k]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(std::fs::read(&key).unwrap(), first);
    assert_ne!(std::fs::read(&public).unwrap(), first_pub);
    assert_eq!(mode(&key), 0o600);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn package_build_refuses_impossible_image_sizes_in_one_line() {
    let (d, p) = with_key("sizes");
    std::fs::write(p("empty.bin"), b"").unwrap();
    let build = |source: &[&str]| build_with(&p("k.pem"), source, &p("out.suit"));
    let empty = p("empty.bin");
    for (source, expect) in [
        (
            &["--sim-firmware", "99999999999"][..],
            "--sim-firmware 99999999999 bytes; images are at most 67108864 bytes",
        ),
        (
            &["--sim-firmware", "67108865"][..],
            "images are at most 67108864 bytes (64 MiB",
        ),
        (&["--image", &empty][..], "empty.bin: empty image"),
    ] {
        let o = build(source);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{source:?}: {t}");
        assert_eq!(t.lines().count(), 1, "{source:?}: {t}");
        assert!(
            t.starts_with("error: ") && t.contains(expect),
            "{source:?}: {t}"
        );
        assert!(!d.join("out.suit").exists(), "{source:?}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn verify_names_a_private_key_given_as_public() {
    let (d, p) = with_key("verify-priv");
    std::fs::write(p("fw.bin"), [7u8; 100]).unwrap();
    let o = build_with(&p("k.pem"), &["--image", &p("fw.bin")], &p("fw.suit"));
    assert!(o.status.success(), "{}", text(&o));
    let o = shim(&["package", "verify", "--pub", &p("k.pem"), &p("fw.suit")]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(t.lines().count(), 1, "{t}");
    assert!(
        t.contains("k.pem: a private key; --pub takes the public key")
            && t.contains("k.pub.pem")
            && !t.contains("not a P-256 key"),
        "{t}"
    );
    std::fs::remove_dir_all(&d).ok();
}
