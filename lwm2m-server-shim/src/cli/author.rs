//! `keygen` and `package build|inspect|verify`: the firmware author's commands. The signing,
//! encoding and checking live in `object5::author`; this module is files and flags.

use clap::{Args, Subcommand};
use object5::author::{
    self, AnchorKey, AuthorKey, CheckOptions, ContentEncryption, Delivery, Encryption, PackageSpec,
    Recipient, SignAlg, VerifyOptions,
};
use object5::manifest::{DecryptionKey, Software, TrustAnchor};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `keygen` arguments.
#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the PKCS#8 private key PEM (readable by its owner only); the public key
    /// goes to `<stem>.pub.pem`. A missing directory is created (owner only). Keep it out of
    /// version control: whoever has the key signs firmware the devices trust.
    #[arg(short, long, default_value = "key.pem")]
    out: PathBuf,
    /// Key type: p256 (ES256/ESP256) or ed25519 (Ed25519/EdDSA, SUIT MTI profile
    /// suit-sha256-ed25519-ecdh-a128ctr).
    #[arg(long, value_enum, default_value_t = KeygenAlg::P256)]
    alg: KeygenAlg,
    /// Replace existing key files. The old private key is lost: devices trusting only its
    /// public key accept no package signed with the new one.
    #[arg(long)]
    force: bool,
}

/// `package build --content-alg` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentAlgArg {
    /// AES-128-GCM (authenticated).
    A128gcm,
    /// AES-128-CTR (the manifest also carries the ciphertext digest).
    A128ctr,
}

/// `keygen --alg` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeygenAlg {
    /// ECDSA P-256.
    P256,
    /// Ed25519.
    Ed25519,
}

/// `package` subcommands.
#[derive(Subcommand)]
pub enum PackageCommand {
    /// Build and sign a SUIT envelope for one firmware image, or for two (--second-image:
    /// the device installs both together).
    Build(BuildArgs),
    /// Print a readable dump of an envelope, and whether and by which key it authenticates
    /// when keys are given.
    Inspect(InspectArgs),
    /// Verify an envelope. Without device options: authenticate it, check every digest it
    /// carries (severed members, integrated payloads, dependencies, --image) and list what only
    /// a device can check; exit 0 when authentic. With --vendor-id/--class-id or --min-seq: the
    /// full device policy. On failure one line with the reason and its Update Result code.
    Verify(VerifyArgs),
}

/// `package build` arguments.
#[derive(Args)]
pub struct BuildArgs {
    /// PKCS#8 P-256 or Ed25519 private key PEM (from `keygen`).
    #[arg(long)]
    key: PathBuf,
    /// Firmware image (opaque bytes, not empty, at most 64 MiB).
    #[arg(long, required_unless_present = "sim_firmware")]
    image: Option<PathBuf>,
    /// Instead of --image: an image in the simulated device's format (device_port::image)
    /// reporting --version, of this many bytes (at most 64 MiB), so `lwm2m-client` can boot it.
    #[arg(long, conflicts_with = "image", value_name = "BYTES")]
    sim_firmware: Option<u64>,
    /// With --sim-firmware: the image fails its self-test after installation, so the device
    /// reverts it (Update Result 8).
    #[arg(long, requires = "sim_firmware")]
    fails_self_test: bool,
    /// Vendor: a UUID, or a domain name turned into UUID5(DNS, name) (draft section 8.4.8.2).
    #[arg(long)]
    vendor_id: String,
    /// Class: a UUID, or a name turned into UUID5(vendor-id, name).
    #[arg(long)]
    class_id: String,
    /// Sequence number; devices refuse anything not newer than what they run.
    #[arg(long)]
    seq: u64,
    /// Version text, reported by the device as PkgVersion (suit-text component-version).
    #[arg(long)]
    version: String,
    /// Package name, reported as PkgName (suit-text component-description); default: image file name.
    #[arg(long)]
    name: Option<String>,
    /// Image URI for a two-stage pull (the device fetches it after the manifest).
    #[arg(long, conflicts_with = "integrated")]
    uri: Option<String>,
    /// Carry the image inside the envelope (key "#fw"); the default when no --uri is given.
    #[arg(long)]
    integrated: bool,
    /// Sign with ES256 (-7) instead of ESP256 (-9), for peers that predate ESP256 (P-256 keys).
    #[arg(long, conflicts_with = "eddsa")]
    es256: bool,
    /// Sign with EdDSA (-8) instead of Ed25519 (-19), for peers that predate -19 (Ed25519 keys).
    #[arg(long)]
    eddsa: bool,
    /// Encrypt the image for the device holding this P-256 key (its SPKI public key PEM):
    /// ECDH-ES+A128KW (draft-ietf-suit-firmware-encryption section 4.2).
    #[arg(long, value_name = "RECIPIENT_PUB_PEM", conflicts_with_all = ["kek", "uri"])]
    encrypt_for: Option<PathBuf>,
    /// Encrypt the image with a content key wrapped under this 16-byte A128KW key-encryption
    /// key shared with the devices (raw bytes; section 4.1).
    #[arg(long, value_name = "KEK_FILE", conflicts_with = "uri")]
    kek: Option<PathBuf>,
    /// Content encryption with --encrypt-for or --kek.
    #[arg(long, value_enum, default_value_t = ContentAlgArg::A128gcm)]
    content_alg: ContentAlgArg,
    /// A second image in the same package (component 1, beside the image in component 0):
    /// the device installs both together or neither (SUIT set-component-index). Not with
    /// encryption.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["second_sim_firmware", "encrypt_for", "kek"])]
    second_image: Option<PathBuf>,
    /// Instead of --second-image: a second image in the simulated device's format
    /// ("sim-radio", reporting --second-version) of this many bytes.
    #[arg(long, value_name = "BYTES", conflicts_with_all = ["encrypt_for", "kek"])]
    second_sim_firmware: Option<u64>,
    /// Version text of the second image (suit-text of component 1).
    #[arg(long, value_name = "VERSION")]
    second_version: Option<String>,
    /// Name of the second image; default: its file name (or "sim-radio").
    #[arg(long, value_name = "NAME", requires = "second_version")]
    second_name: Option<String>,
    /// URI the device fetches the second image from; default: carried in the envelope
    /// (key "#fw1").
    #[arg(long, value_name = "URI", requires = "second_version")]
    second_uri: Option<String>,
    /// Output file.
    #[arg(short, long)]
    out: PathBuf,
}

/// Keys an envelope may authenticate with.
#[derive(Args)]
pub struct KeyArgs {
    /// Trusted public key PEM (SPKI); repeat to trust several keys (rotation).
    #[arg(long = "pub", alias = "key")]
    keys: Vec<PathBuf>,
    /// HMAC-256 shared secret (raw bytes) for COSE_Mac0 envelopes; repeatable.
    #[arg(long = "mac-key")]
    mac_keys: Vec<PathBuf>,
}

/// `package inspect` arguments.
#[derive(Args)]
pub struct InspectArgs {
    /// The envelope file.
    file: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
}

/// `package verify` arguments.
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// The envelope file.
    file: PathBuf,
    /// Image to check a --uri package against.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Second image to check a package against whose second image is fetched (`package
    /// build --second-uri`); with --image.
    #[arg(long, requires = "image", value_name = "FILE")]
    second_image: Option<PathBuf>,
    /// Device vendor id (UUID or name); with --class-id.
    #[arg(long, requires = "class_id")]
    vendor_id: Option<String>,
    /// Device class id (UUID or name under the vendor).
    #[arg(long, requires = "vendor_id")]
    class_id: Option<String>,
    /// Sequence number the device runs; the package must be newer.
    #[arg(long)]
    min_seq: Option<u64>,
    /// The device's P-256 private key PEM (PKCS#8) that decrypts ECDH-ES+A128KW payloads.
    #[arg(long, value_name = "PEM")]
    decrypt_key: Vec<PathBuf>,
    /// A 16-byte A128KW key-encryption key (raw bytes) that decrypts AES-KW payloads.
    #[arg(long, value_name = "FILE")]
    kek: Vec<PathBuf>,
    /// Write component 0's payload (decrypted when encrypted) to this file.
    #[arg(long, value_name = "OUT")]
    extract: Option<PathBuf>,
}

/// Largest image `package build` takes: the largest slot of the simulated device
/// (`lwm2m-client --slot-kib` 65536) and the largest package the shim's REST API uploads.
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an image size cannot be built into a package, if it cannot.
fn oversized(bytes: u64) -> Option<String> {
    (bytes > MAX_IMAGE_BYTES).then(|| {
        format!("{bytes} bytes; images are at most {MAX_IMAGE_BYTES} bytes (64 MiB, the largest slot of the simulated device)")
    })
}

/// Reads a firmware image, refusing an empty or oversized one before a package is signed.
fn read_image(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if let Some(why) = oversized(len) {
        return Err(format!("{}: {why}", path.display()));
    }
    let image = read(path)?;
    if image.is_empty() {
        return Err(format!(
            "{}: empty image; a package carries firmware bytes",
            path.display()
        ));
    }
    Ok(image)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => crate::fail(line),
    }
}

/// The public key path written next to `out`: `key.pem` -> `key.pub.pem`.
pub fn public_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.pub.pem"))
}

/// The refusal to overwrite a key file.
fn exists(path: &Path) -> String {
    format!(
        "{} exists; pass --force to replace it (the key in it is then lost)",
        path.display()
    )
}

/// Creates the key file `path` ([`author::create_pem_file`]: O_EXCL, 0600 when `private`),
/// its refusal in one line.
fn create_new(path: &Path, pem: &str, private: bool) -> Result<(), String> {
    author::create_pem_file(path, pem.as_bytes(), private).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists(path),
        _ => format!("{}: {e}", path.display()),
    })
}

/// Creates the directory a key goes to when missing, readable by its owner only.
fn key_dir(out: &Path) -> Result<(), String> {
    let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Runs `keygen`.
pub fn keygen(args: KeygenArgs) -> ExitCode {
    finish((|| {
        let alg = match args.alg {
            KeygenAlg::P256 => author::KeyAlg::P256,
            KeygenAlg::Ed25519 => author::KeyAlg::Ed25519,
        };
        let pub_path = public_path(&args.out);
        key_dir(&args.out)?;
        for path in [&args.out, &pub_path] {
            if args.force {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(format!("{}: {e}", path.display()))
                    }
                    _ => {}
                }
            } else if path.exists() {
                return Err(exists(path));
            }
        }
        let (private, public) = author::generate_key_pem_for(alg).map_err(|e| e.to_string())?;
        create_new(&args.out, &private, true)?;
        create_new(&pub_path, &public, false)?;
        tracing::info!(private = %args.out.display(), public = %pub_path.display(), alg = ?args.alg, "key written");
        println!("{}\n{}", args.out.display(), pub_path.display());
        Ok(())
    })())
}

/// Runs a `package` subcommand.
pub fn package(cmd: PackageCommand) -> ExitCode {
    match cmd {
        PackageCommand::Build(a) => finish(build(a)),
        PackageCommand::Inspect(a) => finish(inspect(a)),
        PackageCommand::Verify(a) => finish(verify(a)),
    }
}

fn build(a: BuildArgs) -> Result<(), String> {
    let key = AuthorKey::from_pem(&read_text(&a.key)?).map_err(|e| e.to_string())?;
    let (image, default_name) = match (&a.image, a.sim_firmware) {
        (Some(path), _) => (
            read_image(path)?,
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        (None, Some(len)) => (
            sim_image(
                "--sim-firmware",
                "sim-fw",
                &a.version,
                len,
                a.fails_self_test,
            )?,
            "sim-fw".to_owned(),
        ),
        (None, None) => return Err("--image or --sim-firmware is required".into()),
    };
    let vendor = author::vendor_id(&a.vendor_id);
    let class = author::class_id(&a.class_id, &vendor);
    let name = a.name.unwrap_or(default_name);
    let spec = PackageSpec {
        vendor_id: vendor,
        class_id: class,
        sequence_number: a.seq,
        version: a.version,
        name,
        image: &image,
        delivery: match a.uri {
            Some(uri) => Delivery::Uri(uri),
            None => Delivery::Integrated,
        },
        alg: match (a.es256, a.eddsa) {
            (true, _) => SignAlg::Es256,
            (_, true) => SignAlg::EdDsa,
            _ => key.default_alg(),
        },
    };
    let encryption = match (&a.encrypt_for, &a.kek) {
        (Some(p), _) => Some(Recipient::EcdhP256(
            author::public_sec1_from_pem(&read_text(p)?)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        (None, Some(p)) => Some(Recipient::Aes128Kw(read_kek(p)?)),
        (None, None) => None,
    }
    .map(|recipient| Encryption {
        recipient,
        content: match a.content_alg {
            ContentAlgArg::A128gcm => ContentEncryption::A128Gcm,
            ContentAlgArg::A128ctr => ContentEncryption::A128Ctr,
        },
    });
    let second = second_image(&a.second_image, a.second_sim_firmware, &a.second_version)?;
    let env = match (&encryption, &second) {
        (Some(enc), _) => author::build_envelope_encrypted(&spec, &key, enc).map(|(env, _)| env),
        (None, Some((bytes, default_name))) => {
            let second = author::SecondImage {
                image: bytes,
                name: a.second_name.clone().unwrap_or(default_name.clone()),
                version: a.second_version.clone().unwrap_or_default(),
                delivery: match &a.second_uri {
                    Some(uri) => Delivery::Uri(uri.clone()),
                    None => Delivery::Integrated,
                },
            };
            author::build_envelope_two(&spec, &second, &key)
        }
        (None, None) => author::build_envelope_with(&spec, &key),
    }
    .map_err(|e| e.to_string())?;
    write(&a.out, &env)?;
    tracing::info!(out = %a.out.display(), bytes = env.len(), seq = spec.sequence_number, "package signed");
    println!(
        "{}: {} bytes, seq {}, vendor {}, class {}",
        a.out.display(),
        env.len(),
        spec.sequence_number,
        author::format_uuid(&vendor),
        author::format_uuid(&class)
    );
    Ok(())
}

/// An image in the simulated device's format (`device_port::image`) named `name`, reporting
/// `version`, of `len` bytes; `flag` names the option in the refusal of an impossible size.
fn sim_image(
    flag: &str,
    name: &str,
    version: &str,
    len: u64,
    fails_self_test: bool,
) -> Result<Vec<u8>, String> {
    if let Some(why) = oversized(len) {
        return Err(format!("{flag} {why}"));
    }
    Ok(device_port::image::ImageBuilder::new(name, version)
        .fails_self_test(fails_self_test)
        .total_len(usize::try_from(len).map_err(|e| e.to_string())?)
        .build())
}

/// The second image of `package build` and its default name, when one was given: a file
/// or a simulated image; its version is required.
fn second_image(
    file: &Option<PathBuf>,
    sim_firmware: Option<u64>,
    version: &Option<String>,
) -> Result<Option<(Vec<u8>, String)>, String> {
    let version = match (file, sim_firmware, version) {
        (None, None, None) => return Ok(None),
        (None, None, Some(_)) => {
            return Err("--second-version needs --second-image or --second-sim-firmware".into())
        }
        (_, _, None) => return Err("a second image needs --second-version".into()),
        (_, _, Some(v)) => v,
    };
    match (file, sim_firmware) {
        (Some(path), _) => Ok(Some((
            read_image(path)?,
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ))),
        (None, Some(len)) => Ok(Some((
            sim_image("--second-sim-firmware", "sim-radio", version, len, false)?,
            "sim-radio".to_owned(),
        ))),
        (None, None) => Ok(None),
    }
}

/// The trusted keys, each with the file it came from.
fn load_keys(a: &KeyArgs) -> Result<Vec<(AnchorKey, &Path)>, String> {
    let mut keys = Vec::new();
    for k in &a.keys {
        let pem = read_text(k)?;
        if pem.contains("PRIVATE KEY-----") {
            return Err(format!(
                "{}: a private key; --pub takes the public key (keygen wrote it as {})",
                k.display(),
                public_path(k).display()
            ));
        }
        let key = AnchorKey::from_public_pem(&pem).map_err(|e| format!("{}: {e}", k.display()))?;
        keys.push((key, k.as_path()));
    }
    for k in &a.mac_keys {
        keys.push((AnchorKey::Hmac256(read(k)?), k.as_path()));
    }
    Ok(keys)
}

/// A 16-byte A128KW key-encryption key file.
fn read_kek(path: &Path) -> Result<[u8; 16], String> {
    read(path)?
        .try_into()
        .map_err(|_| format!("{}: an A128KW key is exactly 16 bytes", path.display()))
}

fn inspect(a: InspectArgs) -> Result<(), String> {
    let env = read(&a.file)?;
    let summary = author::summary(&env).map_err(|e| e.to_string())?;
    let diag = author::diagnostic(&env).map_err(|e| e.to_string())?;
    let keys = load_keys(&a.keys)?;
    let anchors: Vec<TrustAnchor> = keys.iter().map(|(k, _)| k.anchor()).collect();
    let blocks = author::authentication_blocks(&env).map_err(|e| e.to_string())?;
    let verdict = if keys.is_empty() {
        "not checked (give --pub or --mac-key)".to_owned()
    } else {
        match object5::manifest::authenticate(&env, &anchors, &Software) {
            Ok(auth) => format!("yes, with {}", keys[auth.anchor].1.display()),
            Err(e) => format!("no: {e}"),
        }
    };
    println!(
        "{summary}authentication:  {}\nauthentic:       {verdict}\n\n{diag}",
        blocks.join(", ")
    );
    Ok(())
}

fn verify(a: VerifyArgs) -> Result<(), String> {
    let keys = load_keys(&a.keys)?;
    if keys.is_empty() {
        return Err("give at least one --pub or --mac-key".into());
    }
    let anchors: Vec<TrustAnchor> = keys.iter().map(|(k, _)| k.anchor()).collect();
    let env = read(&a.file)?;
    let image = a.image.as_deref().map(read).transpose()?;
    let second_image = a.second_image.as_deref().map(read).transpose()?;
    let mut privates = Vec::new();
    for p in &a.decrypt_key {
        privates.push(
            author::p256_private_from_pem(&read_text(p)?)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        );
    }
    let keks = a
        .kek
        .iter()
        .map(|p| read_kek(p))
        .collect::<Result<Vec<_>, _>>()?;
    let decryption_keys: Vec<DecryptionKey> = privates
        .iter()
        .map(|private| DecryptionKey::EcdhP256 { kid: None, private })
        .chain(
            keks.iter()
                .map(|kek| DecryptionKey::Aes128Kw { kid: None, kek }),
        )
        .collect();
    if a.vendor_id.is_none() && a.min_seq.is_none() {
        // No device described: what the envelope itself proves, and what needs a device.
        let report = author::check_package(
            &env,
            &anchors,
            &CheckOptions {
                image: image.as_deref(),
                second_image: second_image.as_deref(),
                decryption_keys: &decryption_keys,
            },
        )
        .map_err(|e| format!("invalid: {e}"))?;
        if let Some(out) = &a.extract {
            let payload = report.component0.as_deref().ok_or(
                "--extract: component 0's payload is not in this envelope (give --image, and the decryption key when encrypted)",
            )?;
            write(out, payload)?;
        }
        println!(
            "authentic: seq {}, key #{} ({})",
            report.sequence_number,
            report.anchor,
            keys[report.anchor].1.display()
        );
        for line in &report.checked {
            println!("checked: {line}");
        }
        for line in &report.needs_device {
            println!("needs the device: {line}");
        }
        if let Some(out) = &a.extract {
            println!("extracted: component 0 to {}", out.display());
        }
        return Ok(());
    }
    if a.extract.is_some() {
        return Err("--extract goes without device options".into());
    }
    let identity = match (a.vendor_id, a.class_id) {
        (Some(v), Some(c)) => {
            let v = author::vendor_id(&v);
            Some((v, author::class_id(&c, &v)))
        }
        _ => None,
    };
    let opts = VerifyOptions {
        identity,
        installed_sequence: a.min_seq,
        image: image.as_deref(),
        second_image: second_image.as_deref(),
        decryption_keys: &decryption_keys,
    };
    let report =
        author::verify_package(&env, &anchors, &opts).map_err(|e| format!("invalid: {e}"))?;
    println!(
        "valid: seq {}, key #{}, image {}{}",
        report.sequence_number,
        report.anchor,
        if report.image_checked {
            "verified"
        } else {
            "not checked"
        },
        report.uri.map(|u| format!(", uri {u}")).unwrap_or_default()
    );
    Ok(())
}
