//! The simulated device: the `lwm2m-client` binary's whole behaviour as a library, so tests
//! and benchmarks can run a device in-process ([`super::InThreadDevice`]; its resets are
//! in-process too).
//!
//! Its flash, slots and bootloader are device-port's `SimDevice` kept in `--state-dir`: the
//! first run on a new directory installs a factory image (signed with a factory key created
//! there; never again, whatever later happens to the flash), and /3/0/3 reports the version of
//! the image actually booted. The bootloader verifies that image on every boot; damage it
//! works around (an image that fails, a lost journal, a restored floor) is logged as one
//! error, and with no image that verifies the device runs in recovery: it registers as model
//! "recovery" with no firmware version and takes an update. SIGINT (Ctrl-C) or SIGTERM deregisters
//! before exiting.

use crate::coap::TxParams;
use crate::codec::Path;
use crate::firmware_backend::FirmwareBackend;
use crate::host::dtls::{CertIdentity, DtlsContext, Psk};
use crate::host::provisioned::TrustStore;
use crate::host::runtime::{self, Control, ForeignDatagrams, Tasks};
use crate::host::{coap_pull, http_pull, tcp_pull};
use crate::objects::security::SecurityMode;
use crate::objects::server::RetryPolicy;
use crate::objects::{Device, DeviceInfo, FirmwareUpdate, PullJob, Security, Server};
use crate::pull::qblock::QBlockParams;
use crate::pull::{PullError, Resume};
use crate::sim::firmware::{Acceptance, SharedDevice, SimFirmware};
use crate::{Config, Engine, Event, ObjectHandler};
use device_port::auth::StoredDecryptionKey;
use device_port::board::KeyValue;
use device_port::image::ImageBuilder;
use device_port::{FactoryImage, SimConfig, SimDevice};
use object5::author::{self, Delivery, PackageSpec, SignAlg};
use object5::machine::{InstallOutcome, Protocol, Protocols};
use object5::manifest::host_crypto::HostCrypto;
use object5::slots::BootPath;
use std::cell::{Cell, RefCell};
use std::path::{Path as FsPath, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// A simulated LwM2M 1.1 device (CoAP over UDP, plain or DTLS with PSK or certificates) that
/// registers with an LwM2M server, answers device-management requests (TLV, SenML JSON/CBOR,
/// text, opaque, link-format) and keeps its flash in a state directory.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceOptions {
    /// LwM2M server URI (`coap://host[:port]`, IPv4, `[IPv6]` or a name).
    #[arg(long, default_value = "coap://127.0.0.1:5683")]
    pub server: String,
    /// Local address of the device's socket (e.g. 0.0.0.0:5690 to be reachable from other
    /// hosts). Default: port 0 on the loopback address when the server is on loopback, else
    /// on the wildcard address of the server's family. Whatever the address, only the server
    /// is answered.
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Bootstrap server URI: bootstrap first (client-initiated) and register with the server
    /// it provisions; --server is then ignored.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Endpoint client name sent as `ep`: 1 to 252 bytes.
    #[arg(long, default_value = "sim-device", value_parser = endpoint_name)]
    pub endpoint: String,
    /// Directory holding the simulated flash (flash.bin), key-value store and factory key.
    #[arg(long, default_value = "lwm2m-client-state")]
    pub state_dir: PathBuf,
    /// Registration lifetime in seconds (at least 1).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub lifetime: u32,
    /// Queue Mode (LwM2M 1.1 `Q` at Register): after --awake-time seconds without an exchange
    /// with its server the device sleeps, taking nothing the server sends, until it sends
    /// again: a Registration Update before its lifetime runs out, or before a notification
    /// (a finished download, say). Package pulls go on meanwhile. Over DTLS it resumes its
    /// session on waking (a NAT may have given it another port while it slept). Without it
    /// the device is in Queue Mode while its Server's Binding (/1/0/7) is "UQ", as LwM2M 1.0
    /// servers write.
    #[arg(long)]
    pub queue_mode: bool,
    /// Seconds the device stays reachable after each exchange with its server in Queue Mode
    /// (CoAP MAX_TRANSMIT_WAIT by default, which servers such as Leshan assume).
    #[arg(long, default_value_t = 93, value_parser = clap::value_parser!(u32).range(1..))]
    pub awake_time: u32,
    /// Over DTLS, resume the session (an abbreviated handshake) before sending to the server
    /// once this many seconds passed without a record either way, as Californium's clients
    /// do (30 s): a NAT may have given the device another port meanwhile, where a server
    /// without DTLS Connection ID drops its records. 0: never.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub dtls_auto_resume: u32,
    /// Registers in one retry sequence (Server /1/0/17, Communication Retry Count) until a
    /// server or bootstrap server writes another; with a bootstrap account the device
    /// bootstraps once --retry-sequences sequences failed (LwM2M 1.1 Core §6.2.1.1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub retry_count: u32,
    /// Base of the retry back-off in seconds (/1/0/18, Communication Retry Timer): the n-th
    /// failed Register of a sequence is retried after this times 2^(n-1). The spec's default
    /// is 60 s, for fleets; this one suits a lab on loopback.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub retry_timer: u32,
    /// Seconds between retry sequences (/1/0/19, Communication Sequence Delay Timer; the
    /// spec's default is 86400).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub sequence_delay: u32,
    /// Retry sequences before the registration has failed (/1/0/20, Communication Sequence
    /// Retry Count).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub retry_sequences: u32,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// PEM public key (SPKI, P-256) of an update signer; repeat for several.
    #[arg(long = "trust-anchor")]
    pub trust_anchors: Vec<PathBuf>,
    /// PEM private key (PKCS#8, P-256) of this device, stored in its key store: decrypts
    /// packages encrypted for it with ECDH-ES+A128KW (draft-ietf-suit-firmware-encryption-24
    /// section 4.2); repeat for several.
    #[arg(long = "decryption-key")]
    pub decryption_keys: Vec<PathBuf>,
    /// File of exactly 16 bytes, an A128KW key-encryption key shared with the firmware
    /// author, stored in the key store (same draft, section 4.1); repeat for several.
    #[arg(long = "kek")]
    pub keks: Vec<PathBuf>,
    /// Version of the factory image installed on the first run.
    #[arg(long, default_value = "1.0.0")]
    pub factory_version: String,
    /// The factory also installs a second image (component 1, "sim-radio") of this version
    /// beside the application: the device then runs two images, which two-image packages
    /// update together (`package build --second-image`).
    #[arg(long, value_name = "VERSION")]
    pub factory_second_version: Option<String>,
    /// Vendor of this device: a UUID, or a name turned into UUIDv5 (DNS namespace) as the
    /// SUIT draft recommends; packages for another vendor are refused (Update Result 6).
    #[arg(long, default_value = "sim.example")]
    pub vendor_id: String,
    /// Device class: a UUID, or a name turned into UUIDv5 under the vendor id.
    #[arg(long, default_value = "sim-device")]
    pub class_id: String,
    /// PSK identity for a coaps:// server (and coaps:// package hosts), LwM2M Security /0/0/3.
    #[arg(long)]
    pub psk_identity: Option<String>,
    /// PSK key in hex, LwM2M Security /0/0/5. Others on the host see it in the process
    /// list: --psk-key-file keeps it out of there.
    #[arg(long, requires = "psk_identity")]
    pub psk_key: Option<String>,
    /// File holding the PSK key in hex (surrounding whitespace ignored), instead of
    /// --psk-key; a file others than its owner may open is used with a warning.
    #[arg(
        long,
        value_name = "FILE",
        requires = "psk_identity",
        conflicts_with = "psk_key"
    )]
    pub psk_key_file: Option<PathBuf>,
    /// Certificate mode instead of PSK: this device's certificate (PEM, P-256; the server
    /// expects the endpoint name as its CN), with --cert-key and --ca.
    #[arg(long, requires_all = ["cert_key", "ca"], conflicts_with = "psk_identity")]
    pub cert: Option<PathBuf>,
    /// The device certificate's private key (PEM).
    #[arg(long)]
    pub cert_key: Option<PathBuf>,
    /// The CA the server's certificate must chain to (PEM). The certificate must also name
    /// the host of the coaps:// URI (a subjectAltName IP address or DNS name, RFC 6125), as
    /// must a coaps:// package host's.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Roots this device trusts (PEM, one or more certificates) for servers a bootstrap
    /// server provisions with Certificate Usage 0 or 1 (CA or service certificate constraint,
    /// LwM2M 1.1 Security /0/x/15): their chains must end at one of these. Without it such
    /// an account is refused at Bootstrap-Finish (4.06); usages 2 and 3 do not use it.
    #[arg(long, value_name = "PEM")]
    pub trust_store: Option<PathBuf>,
    /// Simulated user: defer the first Execute Update of each boot when the server allows it
    /// (/5/0/13 Maximum Defer Period > 0, severity not critical): Update Result 11, and the
    /// update installs by itself when the period ends.
    #[arg(long)]
    pub defer_updates: bool,
    /// Lose power after this many flash operations of this power-on (overrides
    /// SIM_POWER_CUT_AFTER); the device then stops as if its supply were cut.
    #[arg(long)]
    pub power_cut_after: Option<u64>,
    /// With --power-cut-after: let the interrupted operation land partly (torn write or
    /// interrupted erase) instead of not at all.
    #[arg(long)]
    pub power_cut_partial: bool,
    /// Slot strategy: swap (with revert), ab (two bootable slots) or overwrite (no revert).
    #[arg(long, default_value = "swap", value_parser = parse_strategy)]
    pub strategy: object5::slots::Strategy,
    /// Capacity of each firmware slot in KiB (the largest image the device accepts), 16 (the
    /// factory image) to 65536.
    #[arg(long, default_value_t = 256, value_parser = parse_slot_kib)]
    pub slot_kib: u32,
    /// Signature checks (download path and bootloader): `software` is the portable p256
    /// backend a device without an accelerator runs; `openssl` simulates a P-256 accelerator
    /// (about 8x faster here), for fleets of simulated devices sharing a few host cores.
    #[arg(long, default_value = "software")]
    pub crypto: HostCrypto,
    /// Block size for CoAP package pulls: 16, 32, 64, 128, 256, 512 or 1024 (RFC 7959 2.2).
    #[arg(long, default_value_t = 1024, value_parser = parse_block_size)]
    pub pull_block_size: usize,
    /// CoAP ACK_TIMEOUT in ms for package pulls (RFC 7252 default 2000; tests shorten it).
    #[arg(long, default_value_t = 2000)]
    pub pull_ack_timeout_ms: u64,
    /// MAX_RETRANSMIT for package pulls, and Q-Block2's NON_MAX_RETRANSMIT (RFC 7252 §4.8 and
    /// RFC 9177 §7.2 default 4): requests for one block before the download fails with Update
    /// Result 4. Raise it on links that lose several datagrams in a row.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=20))]
    pub pull_max_retransmit: u8,
    /// CA certificates (PEM) trusted for coaps+tcp:// package hosts besides the system trust
    /// store (as for https://), e.g. the certificate a shim generated for its coaps+tcp host.
    #[arg(long, value_name = "PEM")]
    pub pull_ca: Option<PathBuf>,
    /// Pull coap:// and coaps:// packages with Q-Block2 (RFC 9177): bursts of 10 blocks per
    /// round trip instead of one, falling back to Block2 when the host does not support it.
    /// Its timers follow --pull-ack-timeout-ms (NON_RECEIVE_TIMEOUT = 2 x ACK_TIMEOUT).
    #[arg(long)]
    pub pull_qblock: bool,
    /// Answer Q-Block1 pushes (RFC 9177) with 4.02 Bad Option, as a device without them
    /// does, so the server pushes with Block1 (one block per round trip) instead.
    #[arg(long)]
    pub no_qblock1: bool,
    /// Keep flash and key-value store in memory and use a fresh factory key per process,
    /// shared by its in-memory devices (nothing is written to --state-dir, nothing survives
    /// the process): for fleets of thousands of devices in one process, e.g. the fleet
    /// benchmark.
    #[arg(long)]
    pub in_memory: bool,
}

/// [`DeviceOptions`] as the whole command line of a parser.
#[derive(clap::Parser)]
struct DeviceCommandLine {
    #[command(flatten)]
    options: DeviceOptions,
}

impl DeviceOptions {
    /// Parses `lwm2m-client` options (without the program name), e.g. `--server=coap://...`.
    pub fn from_args<I, S>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        use clap::Parser;
        let argv =
            std::iter::once("lwm2m-client".to_string()).chain(args.into_iter().map(Into::into));
        DeviceCommandLine::try_parse_from(argv).map(|c| c.options)
    }
}

/// Bytes of the factory image installed on a first run; the smallest slot must hold it.
const FACTORY_IMAGE_BYTES: usize = 16 * 1024;
/// Bytes of the factory's second image (`--factory-second-version`).
const FACTORY_SECOND_BYTES: usize = 4 * 1024;

/// Largest slot: 64 MiB (the flash file holds two or three of them).
const MAX_SLOT_KIB: u32 = 64 * 1024;

fn parse_slot_kib(s: &str) -> Result<u32, String> {
    let min = (FACTORY_IMAGE_BYTES / 1024) as u32;
    s.parse::<u32>()
        .ok()
        .filter(|k| (min..=MAX_SLOT_KIB).contains(k))
        .ok_or_else(|| {
            format!("slots hold {min} to {MAX_SLOT_KIB} KiB (the factory image takes {min} KiB)")
        })
}

/// `--endpoint`: refused at parse time rather than in a Register every server refuses.
fn endpoint_name(s: &str) -> Result<String, String> {
    crate::check_endpoint(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A Block2 size: a power of two from 16 to 1024 (SZX 0..6, RFC 7959 section 2.2).
fn parse_block_size(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|b| b.is_power_of_two() && (16..=1024).contains(b))
        .ok_or_else(|| "block sizes are 16, 32, 64, 128, 256, 512 or 1024 bytes".into())
}

fn parse_strategy(name: &str) -> Result<object5::slots::Strategy, String> {
    object5::slots::Strategy::from_name(name)
        .ok_or_else(|| format!("unknown strategy {name:?} (swap, ab, overwrite)"))
}

/// Why the device stopped.
#[derive(Debug)]
pub enum CliError {
    /// A file in the state directory or a trust anchor could not be used.
    Io(PathBuf, std::io::Error),
    /// A key could not be created or read.
    Key(author::KeyError),
    /// The simulated device failed (including a simulated power cut).
    Device(device_port::DeviceError),
    /// The server URI is not usable.
    Uri(runtime::BadServerUri),
    /// The UDP socket failed.
    Net(std::io::Error),
    /// The DTLS credentials are missing or unusable.
    Psk(&'static str),
    /// A --kek file is not exactly 16 bytes.
    Kek(PathBuf),
    /// A --trust-store file holds no certificate OpenSSL reads.
    TrustStore(PathBuf),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Key(e) => write!(f, "key: {e}"),
            Self::Device(e) => write!(f, "device: {e}"),
            Self::Uri(e) => write!(f, "{e}"),
            Self::Net(e) => write!(f, "network: {e}"),
            Self::Psk(e) => write!(f, "DTLS: {e}"),
            Self::Kek(p) => write!(f, "{}: an A128KW key is exactly 16 bytes", p.display()),
            Self::TrustStore(p) => write!(f, "{}: no PEM certificate to trust", p.display()),
        }
    }
}

/// A certificate or public-key file the user names (PEM), read no further than
/// [`author::CERT_FILE_LIMIT`].
fn read_pem(path: &FsPath) -> Result<Vec<u8>, CliError> {
    author::read_bounded(path, author::CERT_FILE_LIMIT)
        .map_err(|e| CliError::Io(path.to_owned(), e))
}

/// A secret the user hands the device (--psk-key-file, --kek, --decryption-key, --cert-key),
/// read no further than [`author::KEY_FILE_LIMIT`], with a warning when users other than its
/// owner may open the file: OpenSSH refuses such key files; the device names the file and
/// goes on (it is the user's to fix).
fn read_secret(path: &FsPath) -> Result<Vec<u8>, CliError> {
    let bytes = author::read_bounded(path, author::KEY_FILE_LIMIT)
        .map_err(|e| CliError::Io(path.to_owned(), e))?;
    if author::open_to_others(path).unwrap_or(false) {
        tracing::warn!(path = %path.display(), "secret file is open to other users; chmod 600 it");
    }
    Ok(bytes)
}

/// The factory signing key lives in the state directory so every run trusts the same key.
/// It is a private key: created readable by its owner only and never replaced (a second
/// device process starting on the same directory reads the one the first wrote); one that
/// others can read, as earlier versions wrote it, is restricted before use.
fn factory_key(state_dir: &FsPath) -> Result<String, CliError> {
    let path = state_dir.join("factory-key.pem");
    let io = |e| CliError::Io(path.clone(), e);
    if !path.exists() {
        let (private, _public) = author::generate_key_pem().map_err(CliError::Key)?;
        match author::create_pem_file(&path, private.as_bytes(), true) {
            Ok(()) => return Ok(private),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    if author::restrict_key_file(&path).map_err(io)? {
        tracing::warn!(path = %path.display(), "factory key was readable by others; now 0600");
    }
    let pem = author::read_bounded(&path, author::KEY_FILE_LIMIT).map_err(io)?;
    Ok(String::from_utf8_lossy(&pem).into_owned())
}

/// What the factory gives a device: the public half of the key that signed its factory
/// image (its first trust anchor), that image, and the vendor and class UUIDs it carries.
struct Factory {
    anchor: Vec<u8>,
    image: FactoryImage,
    vendor_id: [u8; 16],
    class_id: [u8; 16],
}

impl Factory {
    /// Signs a factory image for `args`' version, vendor and class with the key in `pem`.
    fn make(pem: &str, args: &DeviceOptions) -> Result<Self, CliError> {
        let key = author::signing_key_from_pem(pem).map_err(CliError::Key)?;
        let public = author::public_pem_from_private(pem).map_err(CliError::Key)?;
        let anchor = author::public_sec1_from_pem(&public).map_err(CliError::Key)?;
        let image = ImageBuilder::new("sim-fw", &args.factory_version)
            .total_len(FACTORY_IMAGE_BYTES)
            .build();
        let vendor_id = author::vendor_id(&args.vendor_id);
        let class_id = author::class_id(&args.class_id, &vendor_id);
        let spec = PackageSpec {
            vendor_id,
            class_id,
            sequence_number: 1,
            version: args.factory_version.clone(),
            name: "sim-fw".into(),
            image: &image,
            delivery: Delivery::Uri("coap://127.0.0.1/factory".into()),
            alg: SignAlg::Esp256,
        };
        let second = args.factory_second_version.as_ref().map(|v| {
            ImageBuilder::new("sim-radio", v)
                .total_len(FACTORY_SECOND_BYTES)
                .build()
        });
        let envelope = match (&second, &args.factory_second_version) {
            (Some(bytes), Some(version)) => {
                let second = author::SecondImage {
                    image: bytes,
                    name: "sim-radio".into(),
                    version: version.clone(),
                    delivery: Delivery::Uri("coap://127.0.0.1/factory-radio".into()),
                };
                author::build_envelope_two(&spec, &second, &author::AuthorKey::P256(key))
            }
            _ => author::build_envelope(&spec, &key),
        }
        .map_err(CliError::Key)?;
        Ok(Self {
            anchor,
            image: FactoryImage {
                envelope,
                image,
                second,
            },
            vendor_id,
            class_id,
        })
    }

    /// The factory of a device with a state directory: its key persists there, so every run
    /// trusts the same key.
    fn persistent(args: &DeviceOptions) -> Result<Self, CliError> {
        if args.state_dir.exists() && !args.state_dir.is_dir() {
            let e = std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory (--state-dir names the directory holding the simulated flash)",
            );
            return Err(CliError::Io(args.state_dir.clone(), e));
        }
        std::fs::create_dir_all(&args.state_dir)
            .map_err(|e| CliError::Io(args.state_dir.clone(), e))?;
        Self::make(&factory_key(&args.state_dir)?, args)
    }

    /// The factory of in-memory devices: one fresh key and signed image per process and
    /// model (version, vendor, class), shared as devices of one model share their vendor's.
    /// Generating and signing per device would cost a fleet of thousands more CPU than
    /// its updates.
    fn in_memory(args: &DeviceOptions) -> Result<std::sync::Arc<Self>, CliError> {
        type Model = (String, Option<String>, String, String);
        static MADE: std::sync::Mutex<Vec<(Model, std::sync::Arc<Factory>)>> =
            std::sync::Mutex::new(Vec::new());
        let model = (
            args.factory_version.clone(),
            args.factory_second_version.clone(),
            args.vendor_id.clone(),
            args.class_id.clone(),
        );
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, f)) = made.iter().find(|(m, _)| *m == model) {
            return Ok(f.clone());
        }
        let pem = author::generate_key_pem().map_err(CliError::Key)?.0;
        let f = std::sync::Arc::new(Self::make(&pem, args)?);
        made.push((model, f.clone()));
        Ok(f)
    }
}

/// The key store's payload decryption keys from --decryption-key and --kek.
fn stored_decryption_keys(args: &DeviceOptions) -> Result<Vec<StoredDecryptionKey>, CliError> {
    let mut keys = Vec::new();
    for p in &args.decryption_keys {
        let pem = String::from_utf8_lossy(&read_secret(p)?).into_owned();
        let private = author::p256_private_from_pem(&pem).map_err(CliError::Key)?;
        keys.push(StoredDecryptionKey::EcdhP256(private));
    }
    for p in &args.keks {
        let kek = read_secret(p)?
            .try_into()
            .map_err(|_| CliError::Kek(p.clone()))?;
        keys.push(StoredDecryptionKey::Aes128Kw(kek));
    }
    Ok(keys)
}

/// The simulated device of `args` (its state directory, or in memory), booted as at
/// power-on, without starting its LwM2M client: what a test inspects after the device
/// process stopped (the images its bootloader runs, its journal).
pub fn open(args: &DeviceOptions) -> Result<SimDevice, CliError> {
    open_device(args).map(|(device, _)| device)
}

fn open_device(args: &DeviceOptions) -> Result<(SimDevice, Acceptance), CliError> {
    let factory = if args.in_memory {
        Factory::in_memory(args)?
    } else {
        std::sync::Arc::new(Factory::persistent(args)?)
    };
    let mut anchors = vec![factory.anchor.clone()];
    for p in &args.trust_anchors {
        let pem = String::from_utf8_lossy(&read_pem(p)?).into_owned();
        anchors.push(author::public_sec1_from_pem(&pem).map_err(CliError::Key)?);
    }
    let (vendor, class) = (factory.vendor_id, factory.class_id);
    let acceptance = Acceptance {
        trust_anchors: anchors.clone(),
        vendor_id: vendor,
        class_id: class,
    };
    let mut config = SimConfig::new(anchors, factory.image.clone())
        .with_power_cut_from_env()
        .map_err(CliError::Device)?;
    config.identity = Some((vendor, class));
    config.decryption_keys = stored_decryption_keys(args)?;
    config.image_capacity = args.slot_kib.saturating_mul(1024);
    config.strategy = args.strategy;
    config.crypto = args.crypto;
    if let Some(after_ops) = args.power_cut_after {
        config.power_cut = Some(device_port::PowerCut {
            after_ops,
            mode: if args.power_cut_partial {
                device_port::CutMode::Partial
            } else {
                device_port::CutMode::Clean
            },
        });
    }
    let device = if args.in_memory {
        SimDevice::in_memory(config)
    } else {
        SimDevice::open(&args.state_dir, config)
    }
    .map_err(CliError::Device)?;
    Ok((device, acceptance))
}

/// Pull protocols this build carries (/5/0/8): CoAP with Block2, HTTP(S) through ureq and
/// CoAP over TCP and TLS (RFC 8323, values 4 and 5; TLS trusts what https does, plus
/// --pull-ca); CoAPS too when the device has DTLS credentials (the same PSK as for its server).
fn pull_protocols(dtls: Option<&DtlsContext>) -> Protocols {
    let p = Protocols::NONE
        .with(Protocol::Coap)
        .with(Protocol::Http)
        .with(Protocol::Https)
        .with(Protocol::CoapTcp)
        .with(Protocol::CoapTls);
    if dtls.is_some() {
        p.with(Protocol::Coaps)
    } else {
        p
    }
}

/// The certificate from --cert / --cert-key / --ca, or the PSK, as DTLS credentials.
fn dtls_context(args: &DeviceOptions, psk: Option<&Psk>) -> Result<Option<DtlsContext>, CliError> {
    if let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.cert_key, &args.ca) {
        let id = CertIdentity {
            cert_pem: read_pem(cert)?,
            key_pem: read_secret(key)?,
            ca_pem: read_pem(ca)?,
        };
        return DtlsContext::cert_client(&id)
            .map(Some)
            .map_err(|_| CliError::Psk("OpenSSL refused the certificate, key or CA"));
    }
    let Some(psk) = psk else {
        return Ok(None);
    };
    DtlsContext::psk_client(psk.clone())
        .map(Some)
        .map_err(|_| CliError::Psk("OpenSSL refused the PSK configuration"))
}

/// The PSK of --psk-identity with --psk-key or --psk-key-file (clap lets neither key come
/// without the identity), read once at start.
fn psk(args: &DeviceOptions) -> Result<Option<Psk>, CliError> {
    let Some(identity) = &args.psk_identity else {
        return Ok(None);
    };
    let (hex, not_hex) = match (&args.psk_key, &args.psk_key_file) {
        (Some(hex), _) => (hex.clone(), "--psk-key is not a key in hex"),
        (None, Some(path)) => {
            let bytes = read_secret(path)?;
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            (text, "--psk-key-file does not hold a key in hex")
        }
        (None, None) => {
            return Err(CliError::Psk(
                "--psk-identity needs --psk-key or --psk-key-file",
            ))
        }
    };
    let key = match crate::codec::hex::decode(&hex) {
        Some(key) if !key.is_empty() => key,
        _ => return Err(CliError::Psk(not_hex)),
    };
    Ok(Some(Psk {
        identity: identity.as_bytes().to_vec(),
        key,
    }))
}

/// Work the device runs beside its engine.
enum Job {
    /// A pull ended.
    Pulled(PullJob, Result<(), PullError>),
    /// The end of a deferral period: the deferred update installs now.
    DeferralOver,
}

/// What the run loop should do after the engine stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Exit,
    Reboot,
    PowerLost,
}

/// How one pull talks to its package host, owned by the pull's task.
struct PullTransport {
    block_size: usize,
    tx: TxParams,
    qblock: Option<QBlockParams>,
    dtls: Option<DtlsContext>,
    foreign: ForeignDatagrams,
    ca_pem: Option<Vec<u8>>,
    /// Offered to coaps+tcp hosts.
    psk: Option<Psk>,
}

/// Runs one pull of `job` into Object 5; yields the job and its outcome.
async fn pull(
    fw: FirmwareUpdate<SimFirmware>,
    job: PullJob,
    transport: PullTransport,
) -> (PullJob, Result<(), PullError>) {
    let PullTransport {
        block_size,
        tx,
        qblock,
        dtls,
        foreign,
        ca_pem,
        psk,
    } = transport;
    let capacity = fw
        .with_backend(|b| b.capacity())
        .map_or(u64::MAX, u64::from);
    let resume = job.resume.as_ref().map(|r| Resume {
        offset: r.offset,
        etag: r.etag.clone(),
    });
    let mut sink = fw.pull_sink(&job);
    tracing::info!(uri = %job.uri, resume = ?resume.as_ref().map(|r| r.offset), "pull started");
    // The image stage of a two-stage pull is raw image bytes, so the slot bounds it; the
    // envelope carries the image plus a small head.
    let max_size = capacity.saturating_add(8 * 1024);
    let outcome = match job.protocol {
        Protocol::Http | Protocol::Https => {
            let limits = http_pull::HttpLimits {
                stall: Duration::from_millis(tx.ack_timeout_ms * 16),
                max_size,
            };
            http_pull::pull_async(&job.uri, resume.as_ref(), &limits, &mut sink)
                .await
                .map(|p| p.size)
        }
        Protocol::CoapTcp | Protocol::CoapTls => {
            let config = tcp_pull::TcpPullConfig {
                params: crate::pull::coap_tcp::TcpPullParams {
                    max_size,
                    ..Default::default()
                },
                stall: Duration::from_millis(tx.ack_timeout_ms * 16),
                ca_pem,
                psk,
            };
            tcp_pull::fetch(&job.uri, resume.as_ref(), &config, &mut sink)
                .await
                .map(|p| p.size)
        }
        _ => {
            let config = coap_pull::CoapPullConfig {
                block_size,
                tx,
                max_size,
                dtls,
                qblock,
            };
            coap_pull::fetch_counting(&job.uri, resume.as_ref(), &config, &mut sink, &foreign)
                .await
                .map(|p| p.size)
        }
    };
    match &outcome {
        Ok(size) => tracing::info!(size, "pull complete"),
        Err(e) => tracing::warn!(error = %e, "pull failed"),
    }
    (job, outcome.map(|_| ()))
}

/// What a pull needs besides the job: the device's options, its DTLS credentials and the
/// count of dropped foreign datagrams it shares with the server link.
struct PullEnv<'a> {
    args: &'a DeviceOptions,
    dtls: Option<&'a DtlsContext>,
    foreign: &'a ForeignDatagrams,
    /// --pull-ca, read at start.
    ca_pem: Option<&'a [u8]>,
    /// --psk-identity / --psk-key, for coaps+tcp pulls.
    psk: Option<&'a Psk>,
}

/// Starts the pull Object 5 asked for, if any.
fn start_pull(fw: &FirmwareUpdate<SimFirmware>, tasks: &mut Tasks<Job>, env: &PullEnv<'_>) {
    if let Some(job) = fw.take_pull() {
        let tx = TxParams {
            ack_timeout_ms: env.args.pull_ack_timeout_ms,
            max_retransmit: env.args.pull_max_retransmit,
            ..TxParams::default()
        };
        let dtls = env.dtls.cloned();
        let qblock = env.args.pull_qblock.then(|| QBlockParams {
            non_max_retransmit: tx.max_retransmit,
            ..QBlockParams::scaled(tx.ack_timeout_ms)
        });
        let transport = PullTransport {
            block_size: env.args.pull_block_size,
            tx,
            qblock,
            dtls,
            foreign: env.foreign.clone(),
            ca_pem: env.ca_pem.map(<[u8]>::to_vec),
            psk: env.psk.cloned(),
        };
        let pull = pull(fw.clone(), job, transport);
        tasks.spawn(async move {
            let (job, outcome) = pull.await;
            Job::Pulled(job, outcome)
        });
    }
}

/// The Security object's first account, for the server the device talks to first (its
/// management server, or with `bootstrap` its bootstrap server): NoSec for `coap://`; for
/// `coaps://` PSK with the configured identity and key, or Certificate mode (the certificate
/// and key stay in their files, read by the DTLS layer).
fn security_account(uri: &str, bootstrap: bool, psk: Option<&Psk>, certificate: bool) -> Security {
    let mut security = if bootstrap {
        Security::bootstrap(uri)
    } else {
        Security::no_sec(uri)
    };
    if let (true, Some(account)) = (uri.starts_with("coaps://"), security.accounts.first_mut()) {
        if let Some(psk) = psk {
            account.mode = SecurityMode::Psk;
            account.identity = psk.identity.clone();
            account.key = psk.key.clone();
        } else if certificate {
            account.mode = SecurityMode::Certificate;
        }
    }
    security
}

/// Key-value store key of the configuration the last bootstrap provisioned
/// ([`Engine::saved_config`]).
const BOOTSTRAPPED_KEY: &str = "lwm2m-bootstrapped";

/// Keeps what the bootstrap just provisioned for the next start (the store's files are the
/// owner's alone: it holds the server's key).
fn keep_bootstrapped(engine: &mut Engine<std::net::SocketAddr>, device: &SharedDevice) {
    let kept = engine
        .saved_config()
        .map_err(|e| e.to_string())
        .and_then(|v| {
            device
                .borrow_mut()
                .kv_mut()
                .set(BOOTSTRAPPED_KEY, &v)
                .map_err(|e| e.to_string())
        });
    if let Err(error) = kept {
        tracing::warn!(%error, "cannot keep the bootstrapped configuration: the next start bootstraps again");
    }
}

/// The configuration the last bootstrap with `bootstrap_uri` provisioned, restored into
/// `engine`: the server to register with and the DTLS credentials to reach it. `None` when
/// none is kept, or (said in one line) when it cannot be used: the device then bootstraps.
fn restore_bootstrapped(
    engine: &mut Engine<std::net::SocketAddr>,
    device: &SharedDevice,
    bootstrap_uri: &str,
    trust: &TrustStore,
) -> Option<(std::net::SocketAddr, Option<DtlsContext>)> {
    let saved = match device.borrow().kv().get(BOOTSTRAPPED_KEY) {
        Ok(saved) => saved?,
        Err(error) => {
            tracing::warn!(%error, "cannot read the kept bootstrapped configuration; bootstrapping");
            return None;
        }
    };
    let (server_uri, credentials) = match engine.restore_config(0, &saved, bootstrap_uri) {
        Ok(account) => account,
        Err(error) => {
            tracing::warn!(%error, "not using the kept bootstrapped configuration; bootstrapping");
            return None;
        }
    };
    match trust.transport(&server_uri, &credentials) {
        Ok(target) => {
            tracing::info!(%server_uri, "registering as the kept bootstrapped configuration says");
            Some(target)
        }
        Err(error) => {
            tracing::warn!(%server_uri, %error, "the kept server cannot be reached; bootstrapping");
            None
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the device until `shutdown` becomes true (then it deregisters), resetting in-process
/// whenever the firmware asks for it. A power cut (SIM_POWER_CUT_AFTER) ends it with
/// [`CliError::Device`]`(`[`device_port::DeviceError::PowerLost`]`)`.
pub async fn run(
    args: DeviceOptions,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), CliError> {
    run_preferring(args, crate::codec::ContentFormat::SenmlCbor, shutdown).await
}

/// [`run`], announcing `preferred` as the one content format in the Register `ct`.
pub async fn run_preferring(
    args: DeviceOptions,
    preferred: crate::codec::ContentFormat,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), CliError> {
    let (device, acceptance) = open_device(&args)?;
    let psk = psk(&args)?;
    let dtls = dtls_context(&args, psk.as_ref())?;
    let pull_ca = match &args.pull_ca {
        Some(p) => Some(read_pem(p)?),
        None => None,
    };
    let trust = match &args.trust_store {
        Some(p) => {
            TrustStore::from_pem(&read_pem(p)?).ok_or_else(|| CliError::TrustStore(p.clone()))?
        }
        None => TrustStore::default(),
    };
    // The server the device talks to first: the bootstrap server when there is one.
    let first_uri = args.bootstrap.as_deref().unwrap_or(&args.server);
    if first_uri.starts_with("coaps://") && dtls.is_none() {
        return Err(CliError::Psk(
            "a coaps:// server needs --psk-identity with --psk-key or --psk-key-file, or --cert",
        ));
    }
    let device: SharedDevice = Rc::new(RefCell::new(device));
    let mut backend = SimFirmware::new(device.clone(), acceptance);
    let server = runtime::resolve_server(first_uri)
        .await
        .map_err(CliError::Uri)?;
    // The name a certificate-mode server's certificate must carry (it resolved, so it parses).
    let server_host = crate::pull::coap::CoapUri::parse(first_uri)
        .map(|u| u.host)
        .unwrap_or_default();
    // Datagrams dropped for coming from elsewhere than the server or the package host.
    let foreign = ForeignDatagrams::default();
    loop {
        let booted = device.borrow().booted().cloned();
        let damage = device.borrow().damage().clone();
        if !damage.is_empty() {
            tracing::error!("{damage}");
        }
        // No image verifies: the bootloader's recovery state runs, which registers and takes
        // an update (model "recovery", no firmware version).
        let (name, version) = booted
            .as_ref()
            .map(|b| (b.image.name.clone(), b.image.version.clone()))
            .unwrap_or_else(|| ("recovery".into(), String::new()));
        let path = booted.as_ref().map(|b| b.path);
        if let Some(b) = &booted {
            tracing::info!(%version, slot = b.slot, path = ?b.path, "booted");
            if let Some(second) = &b.second {
                tracing::info!(name = %second.name, version = %second.version, "second image");
            }
        }
        let info = DeviceInfo {
            manufacturer: "LwM2M SUIT project".into(),
            model: name,
            serial: args.endpoint.clone(),
            firmware_version: version,
        };
        let mut dev = Device::new(info);
        let epoch_ms = unix_ms();
        dev.set_time(0, i64::try_from(epoch_ms / 1000).unwrap_or(0));
        let fw = FirmwareUpdate::with_pull(backend, pull_protocols(dtls.as_ref()), epoch_ms);
        fw.set_defer_next_update(args.defer_updates);
        let security = security_account(
            first_uri,
            args.bootstrap.is_some(),
            psk.as_ref(),
            args.cert.is_some(),
        );
        let mut server_object = Server::new(args.lifetime).with_retry(RetryPolicy {
            count: args.retry_count,
            timer_s: args.retry_timer,
            sequence_delay_s: args.sequence_delay,
            sequence_count: args.retry_sequences,
        });
        // With a bootstrap server, the Server object is provisioned by it.
        server_object.present = args.bootstrap.is_none();
        let objects: Vec<Box<dyn ObjectHandler>> = vec![
            Box::new(security),
            Box::new(server_object),
            Box::new(dev),
            Box::new(fw.clone()),
        ];
        let mut config = Config::new(&args.endpoint);
        config.lifetime_s = args.lifetime;
        config.preferred_format = preferred;
        config.rng_seed = epoch_ms ^ u64::from(std::process::id()) << 32;
        if args.no_qblock1 {
            config.qblock1 = None;
        }
        config.queue_mode = crate::QueueMode {
            always: args.queue_mode,
            awake_ms: u64::from(args.awake_time) * 1000,
        };
        let checking = trust.clone();
        config.credentials_check =
            crate::CredentialsCheck::new(move |uri, c| checking.check(uri, c));
        let mut engine = Engine::new(config, server, objects);
        // What the last bootstrap provisioned, kept: register with that server, no bootstrap.
        let kept = match &args.bootstrap {
            Some(bootstrap_uri) => {
                restore_bootstrapped(&mut engine, &device, bootstrap_uri, &trust)
            }
            None => None,
        };
        if args.bootstrap.is_some() && kept.is_none() {
            engine.bootstrap(0);
        }
        let first = kept.as_ref().map_or(server, |(addr, _)| *addr);
        engine.set_server(first);
        let socket = runtime::bind_local(args.bind, &first)
            .await
            .map_err(CliError::Net)?;
        let link = match (kept, &dtls) {
            (Some((addr, Some(ctx))), _) => runtime::Link::secure(&socket, addr, ctx),
            (Some((_, None)), _) => runtime::Link::plain(&socket),
            (None, Some(ctx)) if first_uri.starts_with("coaps://") => {
                runtime::Link::secure(&socket, server, ctx.clone().with_peer_name(&server_host))
            }
            (None, _) => runtime::Link::plain(&socket),
        };
        let mut link = link
            .counting(foreign.clone())
            .trusting(trust.clone())
            .resuming_after(
                (args.dtls_auto_resume > 0)
                    .then(|| Duration::from_secs(u64::from(args.dtls_auto_resume))),
            );
        let pull_env = PullEnv {
            args: &args,
            dtls: dtls.as_ref(),
            foreign: &foreign,
            ca_pem: pull_ca.as_deref(),
            psk: psk.as_ref(),
        };
        tracing::info!(local = %socket.local_addr().map_err(CliError::Net)?, %server, endpoint = %args.endpoint, "starting");
        let next = Cell::new(Next::Exit);
        let mut stop = shutdown.clone();
        let ctrl_c = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let object5 = Path::object(5);
        let mut tasks = Tasks::default();
        // A download interrupted by the last reset continues now.
        start_pull(&fw, &mut tasks, &pull_env);
        let powered_off = || device.borrow().flash().is_powered_off();
        runtime::run_with_tasks(
            &mut engine,
            &mut link,
            ctrl_c,
            Duration::from_secs(5),
            &mut tasks,
            |e: &mut Engine<_>, now, ev, tasks| {
                match &ev {
                    // The runtime already points the engine and its link at the server.
                    Event::Bootstrapped { server_uri, .. } => {
                        tracing::info!(%server_uri, "bootstrapped");
                        keep_bootstrapped(e, &device);
                    }
                    Event::BootstrapTriggered {
                        server_uri, cause, ..
                    } => {
                        tracing::info!(%server_uri, %cause, "bootstrapping again");
                    }
                    Event::BootstrapAccountPurged => {
                        tracing::info!("bootstrap account purged (its timeout passed)");
                        keep_bootstrapped(e, &device);
                    }
                    Event::BootstrapRefused { reason } => tracing::warn!(
                        %reason,
                        "Bootstrap-Finish answered 4.06: the provisioned server account cannot be used"
                    ),
                    Event::BootstrapFailed { code, retry_in_ms } => tracing::warn!(
                        code = code.as_deref().unwrap_or("timeout"),
                        retry_in_ms,
                        "bootstrap failed"
                    ),
                    Event::Registered { location } => {
                        tracing::info!(%location, "registered");
                        if path == Some(BootPath::Test) {
                            // The new image runs and reached its server: it confirms itself,
                            // unless its self-test fails, in which case it resets (watchdog)
                            // and the bootloader reverts.
                            let confirmed = device.borrow_mut().confirm();
                            match confirmed {
                                Ok(()) => {
                                    tracing::info!("new image confirmed");
                                    fw.install_finished(InstallOutcome::Success, now);
                                    e.notify_changed(now, &object5);
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "self-test failed: resetting");
                                    next.set(Next::Reboot);
                                    return Control::Stop;
                                }
                            }
                        }
                    }
                    Event::RegistrationFailed { code, retry_in_ms } => {
                        tracing::warn!(
                            code = code.as_deref().unwrap_or("timeout"),
                            retry_in_ms,
                            "registration failed"
                        )
                    }
                    Event::Deregistered => tracing::info!("deregistered"),
                    Event::Sleeping => tracing::info!("queue mode: sleeping"),
                    Event::Awake => tracing::info!("queue mode: awake"),
                    Event::Disabled { for_ms } => tracing::info!(
                        for_s = for_ms / 1000,
                        "disabled by the server: de-registered, registering again after the Disable Timeout"
                    ),
                    Event::Executed { path } if *path == Path::resource(3, 0, 4) => {
                        tracing::info!("reboot requested");
                        next.set(Next::Reboot);
                        return Control::Stop;
                    }
                    // A management server changed what the bootstrap provisioned (a
                    // lifetime): the kept configuration follows, or a reset would undo it.
                    Event::Written { path }
                        if args.bootstrap.is_some() && path.object_id() == Some(1) =>
                    {
                        keep_bootstrapped(e, &device);
                    }
                    other => tracing::debug!(event = ?other, "event"),
                }
                if let Event::Written { path } | Event::Executed { path } = &ev {
                    if path.starts_with(&object5) {
                        e.notify_changed(now, &object5);
                        start_pull(&fw, tasks, &pull_env);
                        if let Some(at) = fw.deferred_until() {
                            // The user deferred the update: it installs by itself at `at`.
                            // Half a second late rather than early: the object decides on whole seconds.
                            let wait = (at * 1000 + 500).saturating_sub(unix_ms());
                            tasks.spawn(async move {
                                tokio::time::sleep(Duration::from_millis(wait)).await;
                                Job::DeferralOver
                            });
                        }
                        if fw.take_install_request() {
                            tracing::info!("installing: reset into the bootloader");
                            next.set(Next::Reboot);
                            return Control::Stop;
                        }
                    }
                }
                if let Event::BlockReceived { last: true, .. } = &ev {
                    e.notify_changed(now, &object5);
                    start_pull(&fw, tasks, &pull_env);
                }
                if powered_off() {
                    next.set(Next::PowerLost);
                    return Control::Stop;
                }
                Control::Continue
            },
            |e: &mut Engine<_>, now, done: Job, tasks| {
                if powered_off() {
                    next.set(Next::PowerLost);
                    return Control::Stop;
                }
                let changed = match done {
                    Job::Pulled(job, outcome) => fw.pull_finished(&job, outcome, now),
                    Job::DeferralOver => fw.poll_deferred(now),
                };
                if changed {
                    e.notify_changed(now, &object5);
                }
                // A two-stage package continues with its image; an automatic upgrade installs.
                start_pull(&fw, tasks, &pull_env);
                if fw.take_install_request() {
                    next.set(Next::Reboot);
                    return Control::Stop;
                }
                Control::Continue
            },
        )
        .await
        .map_err(CliError::Net)?;
        drop(tasks);
        drop(engine);
        if powered_off() {
            next.set(Next::PowerLost);
        }
        backend = match fw.into_backend() {
            Ok(b) => b,
            Err(_) => unreachable!("the engine and the pull tasks are gone"),
        };
        match next.get() {
            Next::Exit => return Ok(()),
            Next::PowerLost => return Err(CliError::Device(device_port::DeviceError::PowerLost)),
            Next::Reboot => {
                backend.power_cycle();
                match device.borrow_mut().reboot() {
                    // Recovery is a state the device runs in (logged at the top of the loop).
                    Ok(_) | Err(device_port::DeviceError::NoImage) => {}
                    Err(e) => return Err(CliError::Device(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &FsPath) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_factory_key_is_private_kept_and_tightened() {
        let dir = std::env::temp_dir().join(format!("factory-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("factory-key.pem");
        let first = factory_key(&dir).unwrap();
        assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"), "{first}");
        assert_eq!(
            mode(&path),
            0o600,
            "readable by its owner only from the start"
        );
        assert_eq!(
            factory_key(&dir).unwrap(),
            first,
            "the same key on every run"
        );
        // A key an earlier version wrote with the umask's 0644: kept, but no longer readable
        // by others.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(factory_key(&dir).unwrap(), first);
        assert_eq!(mode(&path), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn psk_of(args: &[&str]) -> Result<Option<Psk>, String> {
        let base = ["--server", "coaps://127.0.0.1:5684", "--in-memory"];
        let args = DeviceOptions::from_args(base.iter().chain(args).copied())
            .map_err(|e| format!("clap: {:?}", e.kind()))?;
        psk(&args).map_err(|e| e.to_string())
    }

    /// The key file holds what --psk-key takes (hex, whitespace around it ignored); either
    /// key needs the identity, and only one of them is taken.
    #[test]
    fn the_psk_key_comes_from_the_command_line_or_a_file() {
        let dir = std::env::temp_dir().join(format!("psk-key-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("psk.hex");
        let f = file.to_str().unwrap();
        std::fs::write(&file, " 000102030405060708090A0b0c0d0e0f\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let expected = Psk {
            identity: b"dev1-id".to_vec(),
            key: (0..16).collect(),
        };
        let from_file = psk_of(&["--psk-identity", "dev1-id", "--psk-key-file", f]).unwrap();
        let from_line = psk_of(&[
            "--psk-identity",
            "dev1-id",
            "--psk-key",
            "000102030405060708090a0b0c0d0e0f",
        ])
        .unwrap();
        assert_eq!(from_file.as_ref(), Some(&expected));
        assert_eq!(from_line.as_ref(), Some(&expected));
        // A file others may read still works (with a warning).
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loose = psk_of(&["--psk-identity", "dev1-id", "--psk-key-file", f]).unwrap();
        assert_eq!(loose.as_ref(), Some(&expected));

        for (content, what) in [("zz", "not hex"), ("", "empty"), ("0a0", "odd digits")] {
            std::fs::write(&file, content).unwrap();
            assert_eq!(
                psk_of(&["--psk-identity", "dev1-id", "--psk-key-file", f]),
                Err("DTLS: --psk-key-file does not hold a key in hex".into()),
                "{what}"
            );
        }
        let err = psk_of(&["--psk-identity", "i", "--psk-key-file", "/dev/zero"]);
        assert_eq!(
            err,
            Err("/dev/zero: larger than 64 KiB: not the file meant".into()),
            "read no further than a key can be long"
        );
        let missing = dir.join("absent.hex");
        let err = psk_of(&[
            "--psk-identity",
            "i",
            "--psk-key-file",
            missing.to_str().unwrap(),
        ]);
        assert!(
            err.as_ref().is_err_and(|e| e.contains("absent.hex")),
            "{err:?}"
        );
        assert_eq!(
            psk_of(&["--psk-identity", "dev1-id"]),
            Err("DTLS: --psk-identity needs --psk-key or --psk-key-file".into())
        );
        assert_eq!(
            psk_of(&["--psk-key", "00"]),
            Err("clap: MissingRequiredArgument".into())
        );
        assert_eq!(
            psk_of(&[
                "--psk-identity",
                "i",
                "--psk-key",
                "00",
                "--psk-key-file",
                f
            ]),
            Err("clap: ArgumentConflict".into())
        );
        assert_eq!(psk_of(&[]), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
