//! End-to-end harness: the shim (in-process, real loopback sockets, REST API over HTTP), one
//! or more simulated devices ([`lwm2m_client::sim::InThreadDevice`]: the `lwm2m-client` device library on its own
//! thread, with file-backed flash in temp dirs), and signed packages built with the project's
//! author tool. Everything a test does to a device goes through the shim's Leshan-style REST
//! API, the way an operator's script would. With `E2E_LOG=debug` (or any tracing filter) the
//! shim and the devices log to stderr.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use device_port::image::ImageBuilder;
use lwm2m_client::sim::device::DeviceOptions;
use lwm2m_client::sim::InThreadDevice;
use lwm2m_server_shim::app::{self, RunningShim, ShimConfig};
use lwm2m_server_shim::coap::timing::CoapTiming;
use lwm2m_server_shim::packages::test_packages::Signer;
use object5::author::{self, AuthorKey, Delivery, Encryption, PackageSpec, SignAlg};
use serde_json::Value;

use crate::rest::{Events, Rest};

/// Makes `path` readable by its owner only, as a key file should be.
pub fn owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

/// Writes a key file (`contents`) readable by its owner only, as users keep the keys they give
/// on a command line out of `ps`; its path, for that command line.
pub fn write_key_file(path: &Path, contents: &str) -> String {
    std::fs::write(path, contents).expect("write key file");
    owner_only(path);
    path.display().to_string()
}

/// A unique, empty temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("e2e-{tag}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The shim in this process as a coaps package host (and its HTTP API) on free loopback
/// ports, packages in `dir`: `psk` ("endpoint:identity:hexkey", as `serve --psk` takes it) in
/// its security store and `image` stored as `name`.
pub async fn coaps_package_host(dir: &Path, psk: &str, name: &str, image: &[u8]) -> RunningShim {
    let running = app::start(ShimConfig {
        coap_addr: None,
        coaps_addr: Some("127.0.0.1:0".parse().expect("addr")),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        package_dir: dir.to_path_buf(),
        ..ShimConfig::default()
    })
    .await
    .expect("shim starts");
    let shim = &running.shim;
    shim.security
        .put(lwm2m_server_shim::server::security::store::SecurityInfo::parse_cli(psk).expect("psk"))
        .expect("stored");
    shim.packages.store(name, image).expect("package");
    running
}

/// Asserts that a transfer of `blocks` blocks, interrupted after `before` requests (or
/// blocks), asked for the rest only with its `after` ones (a resume goes back at most to the
/// journal's last sector; a restart asks for every block again).
pub fn assert_resumed(before: u64, after: u64, blocks: u64) {
    assert!(
        after < blocks - before / 2,
        "{after} requests after the interruption, {before} before, {blocks} blocks: not resumed"
    );
}

/// The vendor and class names every simulated device here is built with.
pub const VENDOR: &str = "sim.example";
/// See [`VENDOR`].
pub const CLASS: &str = "sim-device";

/// What a package should contain.
#[derive(Clone, Debug)]
pub struct PackageKind {
    /// Firmware version in the image and the manifest.
    pub version: String,
    /// Sequence number (anti-rollback).
    pub seq: u64,
    /// Image length in bytes.
    pub len: usize,
    /// The image fails its self-test after installation (revert path).
    pub fails_self_test: bool,
    /// Vendor name (a wrong one gives Update Result 6).
    pub vendor: String,
    /// Integrated payload, or the image at this URI (two-stage pull).
    pub delivery: Delivery,
    /// Encrypt the image for this recipient (draft-ietf-suit-firmware-encryption-24); a
    /// two-stage pull then serves the ciphertext.
    pub encryption: Option<Encryption>,
    /// A second image (component 1, "sim-radio") in the same package.
    pub second: Option<SecondKind>,
}

/// The second image of a two-image package.
#[derive(Clone, Debug)]
pub struct SecondKind {
    /// Version in the image and in the manifest's text for component 1.
    pub version: String,
    /// Image length in bytes.
    pub len: usize,
    /// Integrated payload ("#fw1"), or the image at this URI.
    pub delivery: Delivery,
}

impl PackageKind {
    /// A good integrated package.
    pub fn good(version: &str, seq: u64, len: usize) -> Self {
        Self {
            version: version.into(),
            seq,
            len,
            fails_self_test: false,
            vendor: VENDOR.into(),
            delivery: Delivery::Integrated,
            encryption: None,
            second: None,
        }
    }
}

/// The simulated application image (component 0) of `version` and `len` bytes.
pub fn app_image(version: &str, len: usize, fails_self_test: bool) -> Vec<u8> {
    ImageBuilder::new("sim-fw", version)
        .fails_self_test(fails_self_test)
        .total_len(len)
        .build()
}

/// The simulated second image (component 1) of `version` and `len` bytes.
pub fn second_image(version: &str, len: usize) -> Vec<u8> {
    ImageBuilder::new("sim-radio", version)
        .total_len(len)
        .build()
}

/// The shim plus a signing key the devices trust.
pub struct Harness {
    /// Keeps the shim's tasks alive.
    pub rt: tokio::runtime::Runtime,
    running: Option<RunningShim>,
    /// `http://127.0.0.1:PORT` of the REST API.
    pub base: String,
    /// The shim's CoAP address (devices register here; packages are served here too).
    pub coap: SocketAddr,
    /// Working directory (packages, device state, keys).
    pub dir: PathBuf,
    key_pem: String,
    /// Public key of the signer, as the devices' `--trust-anchor`.
    pub trust_anchor: PathBuf,
    /// The coaps+tcp package host's certificate, as the devices' `--pull-ca`.
    pub tls_ca: PathBuf,
    rest: Rest,
}

impl Harness {
    /// Starts a shim on loopback with plain CoAP (ports chosen by the OS).
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, false, |_| {})
    }

    /// Like [`Self::start`], with `edit` applied to the shim's configuration first (e.g.
    /// Q-Block1 pushes off).
    pub fn start_configured(tag: &str, edit: impl FnOnce(&mut ShimConfig)) -> Self {
        Self::start_with(tag, false, edit)
    }

    /// Starts a shim that only speaks CoAP over DTLS (its secure default); `coap` is then
    /// the coaps address.
    pub fn start_secure(tag: &str) -> Self {
        Self::start_with(tag, true, |_| {})
    }

    /// Like [`Self::start_secure`], with `edit` applied to the shim's configuration first.
    pub fn start_secure_configured(tag: &str, edit: impl FnOnce(&mut ShimConfig)) -> Self {
        Self::start_with(tag, true, edit)
    }

    fn start_with(tag: &str, secure: bool, edit: impl FnOnce(&mut ShimConfig)) -> Self {
        if let Ok(filter) = std::env::var("E2E_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        let dir = temp_dir(tag);
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let config = ShimConfig {
            coap_addr: (!secure).then_some(any),
            coaps_addr: secure.then_some(any),
            // Package hosts over CoAP over TCP and TLS (RFC 8323) too.
            coap_tcp_addr: Some(any),
            coaps_tcp_addr: Some(any),
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            package_dir: dir.join("packages"),
            expiry_check: Duration::from_millis(200),
            timing: CoapTiming {
                ack_timeout: Duration::from_millis(500),
                ..CoapTiming::default()
            },
            ..ShimConfig::default()
        };
        let mut config = config;
        edit(&mut config);
        std::fs::create_dir_all(&config.package_dir).expect("package dir");
        let rt = crate::runtime();
        let running = rt.block_on(app::start(config)).expect("shim starts");
        let (key_pem, public) = author::generate_key_pem().expect("key");
        let trust_anchor = dir.join("signer.pub.pem");
        std::fs::write(&trust_anchor, public).expect("write key");
        // The coaps+tcp host's self-signed certificate, which the devices trust (--pull-ca).
        let tls_ca = dir.join("coaps-tcp-cert.pem");
        std::fs::write(&tls_ca, running.tls_cert_pem.as_deref().unwrap_or_default())
            .expect("write certificate");
        let base = format!("http://{}", running.http_addr);
        Self {
            rest: Rest::new(base.clone(), Duration::from_secs(120)),
            base,
            coap: running
                .coap_addr
                .or(running.coaps_addr)
                .expect("a CoAP listener"),
            running: Some(running),
            rt,
            dir,
            key_pem,
            trust_anchor,
            tls_ca,
        }
    }

    /// Builds and signs a package into the shim's package directory as `name`; returns its
    /// `coap://` URI on the shim's package host.
    pub fn package(&self, name: &str, kind: &PackageKind) -> String {
        let image = app_image(&kind.version, kind.len, kind.fails_self_test);
        let vendor = author::vendor_id(&kind.vendor);
        let spec = PackageSpec {
            vendor_id: vendor,
            class_id: author::class_id(CLASS, &vendor),
            sequence_number: kind.seq,
            version: kind.version.clone(),
            name: "sim-fw".into(),
            image: &image,
            delivery: kind.delivery.clone(),
            alg: SignAlg::Esp256,
        };
        let key = AuthorKey::from_pem(&self.key_pem).expect("key");
        if let Some(second) = &kind.second {
            let bytes = second_image(&second.version, second.len);
            let component = author::SecondImage {
                image: &bytes,
                name: "sim-radio".into(),
                version: second.version.clone(),
                delivery: second.delivery.clone(),
            };
            let envelope = author::build_envelope_two(&spec, &component, &key).expect("sign");
            self.put_package(name, &envelope);
            for (delivery, bytes) in [(&kind.delivery, &image), (&second.delivery, &bytes)] {
                self.host_fetched(delivery, bytes);
            }
            return self.package_uri(name);
        }
        let (envelope, payload) = match &kind.encryption {
            Some(enc) => author::build_envelope_encrypted(&spec, &key, enc).expect("encrypt"),
            None => (
                author::build_envelope_with(&spec, &key).expect("sign"),
                image,
            ),
        };
        self.put_package(name, &envelope);
        self.host_fetched(&kind.delivery, &payload);
        self.package_uri(name)
    }

    /// Two-stage: serves `bytes` (possibly encrypted) under the name a URI delivery ends with.
    fn host_fetched(&self, delivery: &Delivery, bytes: &[u8]) {
        if let Delivery::Uri(uri) = delivery {
            if let Some(image_name) = uri.rsplit('/').next() {
                self.put_package(image_name, bytes);
            }
        }
    }

    /// Stores raw bytes as a package file.
    pub fn put_package(&self, name: &str, bytes: &[u8]) {
        let dir = self.dir.join("packages");
        std::fs::write(dir.join(name), bytes).expect("write package");
    }

    /// The `coap://` URI of a hosted package (`coaps://` on a secure shim).
    pub fn package_uri(&self, name: &str) -> String {
        let scheme = if self.secure() { "coaps" } else { "coap" };
        format!("{scheme}://{}/fw/{name}", self.coap)
    }

    /// The `coap+tcp://` (or with `secure`, `coaps+tcp://`) URI of a hosted package.
    pub fn package_tcp_uri(&self, name: &str, secure: bool) -> String {
        let host = if secure {
            &self.running().coaps_tcp
        } else {
            &self.running().coap_tcp
        };
        host.as_ref().expect("TCP package hosts run").url(name)
    }

    /// Whether this shim speaks only CoAP over DTLS.
    pub fn secure(&self) -> bool {
        self.running().coap_addr.is_none()
    }

    /// Registers PSK credentials for `endpoint` through the REST API, as Leshan's does.
    pub fn add_psk(&self, endpoint: &str, identity: &str, key_hex: &str) -> u16 {
        self.put(
            "/api/security/clients",
            &serde_json::json!({"endpoint": endpoint, "psk": {"identity": identity, "key": key_hex}}),
        )
        .0
    }

    /// The `http://` URI of a hosted package.
    pub fn package_http_uri(&self, name: &str) -> String {
        format!("{}/fw/{name}", self.base)
    }

    /// [`Harness::device_options`] of a device in PSK mode: `identity` and the key `key_hex`
    /// (hex), as `--psk-identity` / `--psk-key` take them.
    pub fn psk_device_options(
        &self,
        endpoint: &str,
        identity: &str,
        key_hex: &str,
    ) -> DeviceOptions {
        let mut opts = self.device_options(endpoint);
        opts.psk_identity = Some(identity.into());
        opts.psk_key = Some(key_hex.into());
        opts
    }

    /// Options for a device named `endpoint` with its state in a new directory.
    pub fn device_options(&self, endpoint: &str) -> DeviceOptions {
        DeviceOptions {
            server: format!(
                "{}://{}",
                if self.secure() { "coaps" } else { "coap" },
                self.coap
            ),
            psk_identity: None,
            psk_key: None,
            psk_key_file: None,
            defer_updates: false,
            cert: None,
            cert_key: None,
            ca: None,
            trust_store: None,
            queue_mode: false,
            awake_time: 93,
            dtls_auto_resume: 30,
            bootstrap: None,
            bind: None,
            endpoint: endpoint.into(),
            state_dir: self.dir.join(format!("dev-{endpoint}")),
            lifetime: 60,
            // The lwm2m-client binary's registration retry defaults.
            retry_count: 5,
            retry_timer: 2,
            sequence_delay: 120,
            retry_sequences: 1,
            log_level: "info".into(),
            trust_anchors: vec![self.trust_anchor.clone()],
            decryption_keys: Vec::new(),
            keks: Vec::new(),
            factory_version: "1.0.0".into(),
            factory_second_version: None,
            vendor_id: VENDOR.into(),
            class_id: CLASS.into(),
            power_cut_after: None,
            power_cut_partial: false,
            strategy: object5::slots::Strategy::Swap,
            slot_kib: 64,
            pull_block_size: 1024,
            pull_ack_timeout_ms: 300,
            pull_max_retransmit: 4,
            pull_ca: Some(self.tls_ca.clone()),
            pull_qblock: false,
            no_qblock1: false,
            in_memory: false,
            // The portable backend: the tests run the device-side verifier as devices do.
            crypto: Default::default(),
        }
    }

    /// GET on the REST API.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.rest.get(path)
    }

    /// PUT JSON on the REST API.
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.rest.put(path, body)
    }

    /// PUT raw bytes as `content_type` on the REST API (package uploads).
    pub fn put_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        self.rest.put_bytes(path, content_type, body)
    }

    /// POST on the REST API (Execute).
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, Value) {
        self.rest.post(path, body)
    }

    /// Reads one integer resource through the REST API (`/5/0/3` ...).
    pub fn read_int(&self, ep: &str, path: &str) -> Option<i64> {
        let (status, v) = self.get(&format!("/api/clients/{ep}{path}?format=TEXT"));
        if status != 200 {
            return None;
        }
        v["content"]["value"].as_str()?.parse().ok()
    }

    /// Reads one string resource through the REST API.
    pub fn read_string(&self, ep: &str, path: &str) -> Option<String> {
        let (status, v) = self.get(&format!("/api/clients/{ep}{path}?format=TEXT"));
        (status == 200).then(|| v["content"]["value"].as_str().map(str::to_owned))?
    }

    /// State and Update Result of `ep`.
    pub fn state_result(&self, ep: &str) -> Option<(i64, i64)> {
        Some((self.read_int(ep, "/5/0/3")?, self.read_int(ep, "/5/0/5")?))
    }

    /// Whether `ep` is registered.
    pub fn registered(&self, ep: &str) -> bool {
        self.get(&format!("/api/clients/{ep}")).0 == 200
    }

    /// Waits until `cond` holds, polling every 100 ms; panics with `what` after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }

    /// Waits for `ep`'s (State, Update Result) to equal `want`.
    pub fn wait_state(&self, ep: &str, want: (i64, i64), limit: Duration) {
        let mut last = None;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            last = self.state_result(ep);
            if last == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{ep}: waited for (State, Result) = {want:?}, last seen {last:?}");
    }

    /// Writes the Package URI the way Leshan's REST API does.
    pub fn write_uri(&self, ep: &str, uri: &str) -> (u16, Value) {
        self.put(
            &format!("/api/clients/{ep}/5/0/1?format=TEXT"),
            &serde_json::json!({"id": 1, "kind": "singleResource", "type": "string", "value": uri}),
        )
    }

    /// Pulls `uri` through /5/0/1, installs it and waits for the device to run `version`
    /// (/3/0/3) and report success (Idle, Update Result 1).
    pub fn pull_and_install(&self, ep: &str, uri: &str, version: &str) {
        let limit = Duration::from_secs(60);
        let (status, v) = self.write_uri(ep, uri);
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("CHANGED(204)")),
            "{v}"
        );
        self.wait_state(ep, (2, 0), limit);
        self.install(ep, version);
    }

    /// Installs the Downloaded package (Execute /5/0/2) and waits for the device to run
    /// `version` (/3/0/3) and report success (Idle, Update Result 1).
    pub fn install(&self, ep: &str, version: &str) {
        let limit = Duration::from_secs(60);
        assert_eq!(self.read_string(ep, "/5/0/7").as_deref(), Some(version));
        assert_eq!(self.execute(ep, "/5/0/2"), "CHANGED(204)");
        self.wait_until(&format!("{ep} to run {version}"), limit, || {
            self.read_string(ep, "/3/0/3").as_deref() == Some(version)
        });
        self.wait_state(ep, (0, 1), limit);
    }

    /// Pulls `uri` and expects the download to end with Idle / Update Result 5, the factory
    /// image (1.0.0) still running and nothing to install (Update refused: OMA ETS
    /// 1.0-int-772, Method Not Allowed).
    pub fn pull_refused(&self, ep: &str, uri: &str) {
        let (status, v) = self.write_uri(ep, uri);
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("CHANGED(204)")),
            "{v}"
        );
        self.wait_state(ep, (0, 5), Duration::from_secs(60));
        assert_eq!(self.read_string(ep, "/3/0/3").as_deref(), Some("1.0.0"));
        assert_eq!(self.execute(ep, "/5/0/2"), "METHOD_NOT_ALLOWED(405)");
        assert_eq!(self.read_string(ep, "/3/0/3").as_deref(), Some("1.0.0"));
    }

    /// Resets the device (Execute /3/0/4, Device Reboot) and waits for it to register again
    /// (the registration id changes).
    pub fn reset(&self, ep: &str) {
        assert_eq!(self.execute(ep, "/3/0/4"), "CHANGED(204)");
        self.wait_until(
            "the device to go away and come back",
            Duration::from_secs(90),
            || self.state_result(ep).is_some(),
        );
    }

    /// A relay to the shim's CoAP port that adds 4 ms each way, so that a reset lands in the
    /// middle of a transfer through it.
    pub fn slow_relay(&self) -> crate::relay::Relay {
        slow_relay_to(self.coap)
    }

    /// Pulls the package at `uri`, resets the device (Execute /3/0/4) once more than
    /// `reset_after` requests went through `relay` (a slow one, [`Harness::slow_relay`], on
    /// the way of the package or of the image it names), and waits for it to come back and
    /// report Downloaded. Returns the requests through `relay` before the reset and after
    /// it: a resumed pull asks only for the rest.
    pub fn pull_with_reset(
        &self,
        ep: &str,
        uri: &str,
        relay: &crate::relay::Relay,
        reset_after: u64,
    ) -> (u64, u64) {
        let limit = Duration::from_secs(90);
        let requests = || relay.requests();
        self.write_uri(ep, uri);
        self.wait_until(&format!("{reset_after} requests"), limit, || {
            requests() > reset_after
        });
        assert_eq!(self.state_result(ep), Some((1, 0)), "still downloading");
        let before = requests();
        self.reset(ep);
        self.wait_state(ep, (2, 0), limit);
        (before, requests() - before)
    }

    /// [`Harness::pull_with_reset`] a third into package `name` of `blocks` blocks: after the
    /// reset the device asks only for the rest (plus the partly written sector), not for all
    /// of it again; then it installs `version`.
    pub fn pull_resumes_and_installs(&self, ep: &str, name: &str, blocks: u64, version: &str) {
        let relay = self.slow_relay();
        let uri = format!("coap://{}/fw/{name}", relay.addr());
        let (before, after) = self.pull_with_reset(ep, &uri, &relay, blocks / 3);
        assert_resumed(before, after, blocks);
        self.install(ep, version);
    }

    /// Pushes a package to /5/0/0 (Block1) the way Leshan's REST API does.
    pub fn push(&self, ep: &str, bytes: &[u8]) -> (u16, Value) {
        self.push_within(ep, bytes, 300)
    }

    /// [`Harness::push`] that the shim gives up after `timeout_s` seconds.
    pub fn push_within(&self, ep: &str, bytes: &[u8], timeout_s: u32) -> (u16, Value) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.put(
            &format!("/api/clients/{ep}/5/0/0?format=OPAQUE&timeout={timeout_s}"),
            &serde_json::json!({"id": 0, "kind": "singleResource", "type": "opaque", "value": hex}),
        )
    }

    /// Executes a resource; returns the LwM2M status string (e.g. `CHANGED(204)`).
    pub fn execute(&self, ep: &str, path: &str) -> String {
        let (status, v) = self.post(&format!("/api/clients/{ep}{path}"), b"");
        assert_eq!(status, 200, "execute {path}: {v}");
        v["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Server-sent events of `/api/event?ep=EP` (every endpoint's when `ep` is empty).
    pub fn events(&self, ep: &str) -> Events {
        self.rest.events(ep)
    }

    /// Starts observing `path` of `ep` through the REST API.
    pub fn observe(&self, ep: &str, path: &str) -> (u16, Value) {
        self.post(&format!("/api/clients/{ep}{path}/observe?format=TEXT"), b"")
    }

    /// Write-Attributes through the REST API (`pmin=2&pmax=10`).
    pub fn write_attributes(&self, ep: &str, path: &str, query: &str) -> (u16, Value) {
        self.rest
            .put_empty(&format!("/api/clients/{ep}{path}/attributes?{query}"))
    }

    /// The shim (stops with the harness).
    pub fn running(&self) -> &RunningShim {
        self.running.as_ref().expect("running")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.running.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Our simulated device on a thread of this process with `lwm2m-client`'s defaults, as the
/// shim's commands meet it: plain CoAP to `server`, its state in `state_dir`, trusting the
/// signer whose public key is `anchor`, and a short pull ACK timeout for loopback; `pull_ca`
/// is the certificate of a coaps+tcp package host it should trust.
pub fn start_device_trusting(
    server: SocketAddr,
    endpoint: &str,
    state_dir: &Path,
    anchor: &Path,
    pull_ca: Option<&Path>,
) -> InThreadDevice {
    let mut args = vec![
        format!("--server=coap://{server}"),
        format!("--endpoint={endpoint}"),
        format!("--state-dir={}", state_dir.display()),
        format!("--trust-anchor={}", anchor.display()),
        "--pull-ack-timeout-ms=300".to_string(),
    ];
    args.extend(pull_ca.map(|p| format!("--pull-ca={}", p.display())));
    InThreadDevice::start_args(args).expect("device options")
}

/// A fresh signing key for test packages, and the file a device trusts it by: its public key
/// written to `dir/anchor.pub.pem` (the device's `--trust-anchor`).
pub fn trusted_signer(dir: &Path) -> (Signer, PathBuf) {
    let signer = Signer::generate().expect("key");
    let anchor = dir.join("anchor.pub.pem");
    std::fs::write(&anchor, &signer.public_pem).expect("anchor");
    (signer, anchor)
}

/// A relay to `to` (a CoAP server on loopback) that adds 4 ms each way, so that a reset lands
/// in the middle of a transfer through it.
pub fn slow_relay_to(to: SocketAddr) -> crate::relay::Relay {
    let faults = crate::relay::Faults {
        delay: Duration::from_millis(4),
        ..Default::default()
    };
    crate::relay::Relay::start("127.0.0.1:0".parse().expect("addr"), to, faults)
        .expect("relay starts")
}

/// Reads a whole file (test data).
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")
}
