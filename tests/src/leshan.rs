//! Eclipse Leshan as a real peer: its demo LwM2M server (REST API, SSE events, security store)
//! and a Leshan LwM2M client, run with `java` on loopback ports.
//!
//! The artifacts are pinned in `tests/leshan/pom.xml` and resolved from Maven Central into the
//! local Maven cache (`scripts/test` does it first; the harness runs the same Maven goal, which
//! is quick once cached). When Maven cannot resolve them the tests fail with Maven's output: a
//! missing peer never turns into a skipped test.

use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::e2e::temp_dir;
use crate::pki::{Issued, Pki};
use crate::process::{free_tcp_port, free_udp_port, LoggedChild};
use crate::rest::Rest;

/// The Leshan demo server artifact (the newest demo server Maven Central serves here).
pub const SERVER_ARTIFACT: &str = "org.eclipse.leshan:leshan-server-demo:2.0.0-M4";
/// The Leshan client library artifact the test client runs on.
pub const CLIENT_ARTIFACT: &str = "org.eclipse.leshan:leshan-lwm2m-client:2.0.0-M18";

/// `tests/leshan`: the pom, the client launcher's source and extra object models.
fn leshan_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("leshan")
}

/// What the resolution step produced.
struct Jars {
    /// The demo server's shaded jar.
    server_jar: PathBuf,
    /// Classpath of the test client: Leshan's client jars plus the compiled launcher.
    client_cp: String,
    /// Classpath of the test bootstrap server: the demo server's jar (Leshan's bootstrap
    /// server library is inside it) plus the compiled launcher.
    bootstrap_cp: String,
}

/// Resolves the pinned artifacts with Maven and compiles the client launcher, once per test
/// process. Panics with Maven's or javac's output when that fails.
fn jars() -> &'static Jars {
    static JARS: OnceLock<Result<Jars, String>> = OnceLock::new();
    JARS.get_or_init(resolve)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn resolve() -> Result<Jars, String> {
    let work = temp_dir("leshan-jars");
    let cp_file = work.join("classpath.txt");
    let out = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(leshan_dir().join("pom.xml"))
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", cp_file.display()))
        .output()
        .map_err(|e| format!("cannot run mvn (Maven is needed for the Leshan tests): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "Maven could not resolve the Leshan artifacts of tests/leshan/pom.xml:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let cp = std::fs::read_to_string(&cp_file).map_err(|e| format!("{cp_file:?}: {e}"))?;
    let (server, client): (Vec<&str>, Vec<&str>) = cp
        .trim()
        .split(':')
        .partition(|p| p.contains("leshan-server-demo"));
    let server_jar = PathBuf::from(
        server
            .first()
            .ok_or_else(|| format!("no leshan-server-demo jar in the classpath: {cp}"))?,
    );
    let client_jars = client.join(":");
    let client_classes = javac(&work, "LeshanTestClient", &client_jars)?;
    let bootstrap_classes = javac(&work, "LeshanTestBootstrap", &server_jar.to_string_lossy())?;
    Ok(Jars {
        client_cp: format!("{}:{client_jars}", client_classes.display()),
        bootstrap_cp: format!("{}:{}", bootstrap_classes.display(), server_jar.display()),
        server_jar,
    })
}

/// Compiles `tests/leshan/src/{class}.java` against `classpath`; the classes directory.
fn javac(work: &Path, class: &str, classpath: &str) -> Result<PathBuf, String> {
    let classes = work.join(format!("classes-{class}"));
    let out = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(classpath)
        .arg(leshan_dir().join(format!("src/{class}.java")))
        .output()
        .map_err(|e| format!("cannot run javac: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "javac {class}.java failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(classes)
}

/// JVM options for Leshan 2.0.0-M4 on Java 17: its JSON layer (Gson) reflects into
/// `java.util` collections, which Java 17 closes unless opened.
const JVM_OPENS: [&str; 4] = [
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
];

/// Leshan's demo server on loopback: CoAP, CoAPS and its REST API on free ports.
pub struct LeshanServer {
    proc: LoggedChild,
    /// Its REST API and event stream.
    pub rest: Rest,
    /// `coap://` address.
    pub coap: SocketAddr,
    /// `coaps://` address (DTLS; PSK clients added with [`LeshanServer::add_psk`]).
    pub coaps: SocketAddr,
    dir: PathBuf,
    /// How it was started, for [`LeshanServer::restart`] (boxed: a `Command` is large).
    cmd: Box<Command>,
    restarts: u32,
}

impl LeshanServer {
    /// Starts the demo server and waits until its REST API answers.
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, &[])
    }

    /// [`LeshanServer::start`] with more of the demo's options, e.g. its X.509 credentials
    /// (`-cert PEM -prik PKCS8-DER -truststore DER`).
    pub fn start_with(tag: &str, extra: &[&OsStr]) -> Self {
        Self::start_on(tag, IpAddr::from([127, 0, 0, 1]), extra)
    }

    /// [`LeshanServer::start`] with its CoAP and DTLS endpoints on IPv6 loopback (`[::1]`);
    /// its REST API stays on 127.0.0.1.
    pub fn start_v6(tag: &str) -> Self {
        Self::start_on(tag, IpAddr::from(std::net::Ipv6Addr::LOCALHOST), &[])
    }

    /// The demo server with its CoAP and DTLS endpoints on `host`.
    fn start_on(tag: &str, host: IpAddr, extra: &[&OsStr]) -> Self {
        let jars = jars();
        let dir = temp_dir(tag);
        // Californium reads its settings from ./Californium.properties. Its default largest
        // block-wise body (8 KiB) is below a firmware package, so a push (Write /5/0/0 with
        // Block1, RFC 7959 section 2.5) would be refused before it starts.
        std::fs::write(
            dir.join("Californium.properties"),
            "MAX_RESOURCE_BODY_SIZE=4194304\n",
        )
        .expect("write Californium.properties");
        let (coap, coaps, web) = (free_udp_port(), free_udp_port(), free_tcp_port());
        let mut cmd = Command::new("java");
        cmd.current_dir(&dir)
            .args(JVM_OPENS)
            .arg("-jar")
            .arg(&jars.server_jar)
            .args(["-lh", &host.to_string(), "-lp", &coap.to_string()])
            .args(["-slh", &host.to_string(), "-slp", &coaps.to_string()])
            .args(["-wh", "127.0.0.1", "-wp", &web.to_string()])
            // Object models Leshan 2.0.0-M4 lacks (Object 5 version 1.1), as a user adds them.
            .arg("-m")
            .arg(leshan_dir().join("models"))
            .args(extra);
        let proc = LoggedChild::spawn(
            "leshan-server-demo",
            &mut cmd,
            dir.join("leshan.log"),
            false,
        );
        let mut server = Self {
            proc,
            rest: Rest::new(format!("http://127.0.0.1:{web}"), Duration::from_secs(120)),
            coap: SocketAddr::new(host, coap),
            coaps: SocketAddr::new(host, coaps),
            dir,
            cmd: Box::new(cmd),
            restarts: 0,
        };
        server.wait_ready(Duration::from_secs(90));
        server
    }

    /// Stops the server (killed: it forgets its registrations and DTLS sessions, as after a
    /// crash) and starts it again on the same ports and directory, whose security store
    /// (`./data/`) it reloads; returns once its REST API answers.
    pub fn restart(&mut self) {
        self.restarts += 1;
        let log = self.dir.join(format!("leshan-{}.log", self.restarts));
        self.proc.kill();
        self.proc = LoggedChild::spawn("leshan-server-demo", &mut self.cmd, log, false);
        self.wait_ready(Duration::from_secs(90));
    }

    /// The demo server in X.509 mode with `server`'s certificate and key, trusting `pki`'s CA
    /// for clients; `ep` may register with a certificate whose CN is `ep`.
    pub fn start_x509(tag: &str, pki: &Pki, server: &Issued, ep: &str) -> Self {
        let leshan = Self::start_with(
            tag,
            &[
                "-cert".as_ref(),
                server.cert_pem.as_os_str(),
                "-prik".as_ref(),
                server.key_der.as_os_str(),
                "-truststore".as_ref(),
                pki.ca_der().as_os_str(),
            ],
        );
        assert_eq!(leshan.add_x509(ep), 200);
        leshan
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.rest.try_get("/api/clients") {
                return;
            }
            if let Some(status) = self.proc.exited() {
                panic!(
                    "Leshan's demo server ended ({status}) before its REST API answered:\n{}",
                    self.proc.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "Leshan's REST API did not answer within {limit:?}:\n{}",
            self.proc.log()
        );
    }

    /// Leshan's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The JVM's process id (its peak resident memory is in `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `coap://127.0.0.1:PORT`.
    pub fn coap_uri(&self) -> String {
        format!("coap://{}", self.coap)
    }

    /// `coaps://127.0.0.1:PORT`.
    pub fn coaps_uri(&self) -> String {
        format!("coaps://{}", self.coaps)
    }

    /// Adds PSK credentials for `endpoint` through Leshan's security REST API; the HTTP status.
    pub fn add_psk(&self, endpoint: &str, identity: &str, key_hex: &str) -> u16 {
        self.rest
            .put(
                "/api/security/clients",
                &json!({"endpoint": endpoint, "psk": {"identity": identity, "key": key_hex}}),
            )
            .0
    }

    /// Lets `endpoint` in with an X.509 certificate (its CN must be `endpoint`) through
    /// Leshan's security REST API; the HTTP status.
    pub fn add_x509(&self, endpoint: &str) -> u16 {
        self.rest
            .put(
                "/api/security/clients",
                &json!({"endpoint": endpoint, "x509": true}),
            )
            .0
    }

    /// Waits until `ep` is registered; its registration JSON.
    pub fn wait_registered(&self, ep: &str, limit: Duration) -> Value {
        wait_registered(&self.rest, ep, limit)
    }

    /// The working directory (the server's cwd and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LeshanServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether `ep` is among the registrations `GET /api/clients` lists (Leshan's server and the
/// shim alike).
pub fn is_registered(rest: &Rest, ep: &str) -> bool {
    let (status, clients) = rest.get("/api/clients");
    assert_eq!(status, 200, "GET /api/clients: {clients}");
    clients
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["endpoint"] == ep))
}

/// Reads one integer resource of `ep` (TLV) through Leshan's REST API; `None` unless Leshan
/// answers CONTENT.
pub fn read_int(rest: &Rest, ep: &str, path: &str) -> Option<i64> {
    let (status, v) = rest.get(&format!("/api/clients/{ep}{path}?format=TLV&timeout=10"));
    (status == 200 && v["status"] == "CONTENT(205)")
        .then(|| node_int(&v["content"]))
        .flatten()
}

/// Polls `GET /api/clients/{ep}` until it answers 200; the registration JSON.
pub fn wait_registered(rest: &Rest, ep: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, reg) = rest.get(&format!("/api/clients/{ep}"));
        if status == 200 {
            return reg;
        }
        assert!(
            Instant::now() < deadline,
            "{ep} not registered within {limit:?} (last: {status} {reg})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Leshan's bootstrap server library on a loopback port (see
/// `tests/leshan/src/LeshanTestBootstrap.java`), configured for one endpoint: it deletes /0 and
/// /1, then writes its own account, one management server account (Short Server ID 123,
/// NoSec or PSK) and its Server instance (lifetime 300 s), and finishes.
pub struct LeshanBootstrap {
    proc: LoggedChild,
    uri: String,
}

impl LeshanBootstrap {
    /// The lifetime the bootstrap server writes into the Server object.
    pub const LIFETIME_S: u64 = 300;

    /// Starts it for `endpoint` with `server_uri`, PSK credentials for that server when `psk`
    /// = (identity, hex key); over DTLS itself, letting `endpoint` in with `own_psk` only,
    /// when that is given. Returns once it listens.
    pub fn start(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        psk: Option<(&str, &str)>,
        own_psk: Option<(&str, &str)>,
    ) -> Self {
        assert!(own_psk.is_none() || psk.is_some(), "own_psk needs psk");
        let credentials: Vec<&str> = psk
            .into_iter()
            .chain(own_psk)
            .flat_map(|(identity, key)| [identity, key])
            .collect();
        let scheme = if own_psk.is_some() { "coaps" } else { "coap" };
        let mut bs = Self::start_with(dir, endpoint, server_uri, &credentials, Vec::new());
        bs.uri = bs.uri.replacen("coap", scheme, 1);
        bs
    }

    /// [`LeshanBootstrap::start`] for a `coaps://` server in certificate mode: `mine`'s DER
    /// certificate and key as the device's (resources 3 and 5) and `server_cert` (DER) as the
    /// certificate resource 4 holds: by default (no Certificate Usage written) the server's
    /// own, which the device must then find at the server; with `usage` Leshan also writes
    /// resource 15 (2: `server_cert` is a trust anchor the server's chain ends at).
    pub fn start_x509(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        mine: &Issued,
        server_cert: &Path,
        usage: Option<u8>,
    ) -> Self {
        let env: Vec<_> = usage
            .map(|u| ("LESHAN_CERT_USAGE", u.to_string()))
            .into_iter()
            .collect();
        Self::start_x509_with(dir, endpoint, server_uri, mine, server_cert, env)
    }

    /// [`LeshanBootstrap::start_x509`] with Certificate Usage `usage` and Matching Type
    /// `matching` (resource 13; 1-3: the file `server_key` holds the certificate's SHA-256,
    /// -384 or -512 hash, which Leshan writes into resource 4).
    pub fn start_x509_matching(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        mine: &Issued,
        server_key: &Path,
        usage: u8,
        matching: u8,
    ) -> Self {
        let env = vec![
            ("LESHAN_CERT_USAGE", usage.to_string()),
            ("LESHAN_MATCHING_TYPE", matching.to_string()),
        ];
        Self::start_x509_with(dir, endpoint, server_uri, mine, server_key, env)
    }

    fn start_x509_with(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        mine: &Issued,
        server_key: &Path,
        env: Vec<(&str, String)>,
    ) -> Self {
        let files = [&mine.cert_der, &mine.key_der, server_key].map(|p| p.display().to_string());
        let x509 = ["x509", &files[0], &files[1], &files[2]];
        Self::start_with(dir, endpoint, server_uri, &x509, env)
    }

    /// [`LeshanBootstrap::start`] in clear for a PSK server, with the management server
    /// account's DTLS/TLS Ciphersuite (resource 16) set to `suite` (an IANA code point).
    pub fn start_with_cipher_suite(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        psk: (&str, &str),
        suite: u16,
    ) -> Self {
        let env = ("LESHAN_CIPHER_SUITE", format!("0x{suite:04X}"));
        Self::start_with(dir, endpoint, server_uri, &[psk.0, psk.1], vec![env])
    }

    /// [`LeshanBootstrap::start`] in clear for a NoSec server, its Server instance with the
    /// Server 1.1 resources an operator may set besides: Disable Timeout 3600 s, APN Link
    /// 11:0, Trigger false, Preferred Transport U, Mute Send true.
    pub fn start_with_server_1_1(dir: &Path, endpoint: &str, server_uri: &str) -> Self {
        let env = ("LESHAN_SERVER_1_1", "1".into());
        Self::start_with(dir, endpoint, server_uri, &[], vec![env])
    }

    /// [`LeshanBootstrap::start`] in clear for a NoSec server whose Server instance has
    /// `binding` in resource 7 (e.g. LwM2M 1.0's "UQ", UDP with Queue Mode).
    pub fn start_with_binding(dir: &Path, endpoint: &str, server_uri: &str, binding: &str) -> Self {
        let env = ("LESHAN_BINDING", binding.into());
        Self::start_with(dir, endpoint, server_uri, &[], vec![env])
    }

    /// [`LeshanBootstrap::start`] in clear for a NoSec server, Leshan reading `paths` with
    /// Bootstrap-Read after its writes, before Bootstrap-Finish; the log has a line
    /// "read PATH NODE" for each answered read.
    pub fn start_reading(dir: &Path, endpoint: &str, server_uri: &str, paths: &[&str]) -> Self {
        let env = ("LESHAN_BOOTSTRAP_READ", paths.join(","));
        Self::start_with(dir, endpoint, server_uri, &[], vec![env])
    }

    /// [`LeshanBootstrap::start`] with Leshan choosing the Security instance ids
    /// (`autoIdForSecurityObject`): it reads the client's objects with Bootstrap-Discover
    /// first.
    pub fn start_discovering(dir: &Path, endpoint: &str, server_uri: &str) -> Self {
        Self::start_with(
            dir,
            endpoint,
            server_uri,
            &[],
            vec![("LESHAN_AUTO_ID", "1".into())],
        )
    }

    /// [`LeshanBootstrap::start`] in clear for a NoSec server, with its own account's
    /// Bootstrap-Server Account Timeout (resource 12) set to `seconds`.
    pub fn start_with_account_timeout(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        seconds: u32,
    ) -> Self {
        let env = ("LESHAN_BS_ACCOUNT_TIMEOUT", seconds.to_string());
        Self::start_with(dir, endpoint, server_uri, &[], vec![env])
    }

    /// Starts the launcher with `credentials` after the server URI (see its usage line) and
    /// `env` (one of its settings); its URI is `coap://` (callers that make it listen on DTLS
    /// say so).
    fn start_with(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        credentials: &[&str],
        env: Vec<(&str, String)>,
    ) -> Self {
        let jars = jars();
        let port = free_udp_port();
        let mut cmd = Command::new("java");
        cmd.envs(env);
        cmd.current_dir(dir)
            .arg("-cp")
            .arg(&jars.bootstrap_cp)
            .arg("LeshanTestBootstrap")
            .args([&port.to_string(), endpoint, server_uri])
            .args(credentials);
        let mut proc = LoggedChild::spawn(
            "leshan-bootstrap",
            &mut cmd,
            dir.join(format!("leshan-bootstrap-{endpoint}.log")),
            true,
        );
        proc.wait_log(&format!("ready {port}"), Duration::from_secs(60));
        Self {
            proc,
            uri: format!("coap://127.0.0.1:{port}"),
        }
    }

    /// `coap://127.0.0.1:PORT`, or `coaps://` when it runs over DTLS.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Its log so far: each request, each answer and how each session ended.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Waits until its log holds `needle` (panics with the log after `limit`).
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        self.proc.wait_log(needle, limit);
    }

    /// Gives the management server account a new PSK for the bootstraps to come.
    pub fn rotate_psk(&mut self, identity: &str, key_hex: &str) {
        self.proc.send_line(&format!("psk {identity} {key_hex}"));
        self.proc
            .wait_log(&format!("config psk {identity}"), Duration::from_secs(10));
    }
}

/// A Leshan LwM2M client process (Leshan's client library with its Security, Server and Device
/// objects, see `tests/leshan/src/LeshanTestClient.java`).
pub struct LeshanClient {
    proc: LoggedChild,
}

/// What [`LeshanClient::start_plain`] turns on in the launcher.
#[derive(Debug, Clone, Copy)]
pub enum LaunchOption {
    /// A Firmware Update instance (/5/0) that takes bodies up to 4 MiB and logs
    /// `package N bytes sha256=HEX` for each package written to /5/0/0.
    Firmware,
    /// Queue Mode (LwM2M 1.1 `Q`, its `DefaultRegistrationEngineFactory.setQueueMode`).
    /// Leshan's client then sends its Updates as usual and never goes offline: it stays
    /// reachable, which Queue Mode allows.
    QueueMode,
}

impl LeshanClient {
    /// Starts a client named `endpoint` against `server_uri` (`coap://` or, with `psk` =
    /// (identity, hex key), `coaps://`), logging into `dir`; returns once it has started.
    pub fn start(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        lifetime_s: u32,
        psk: Option<(&str, &str)>,
    ) -> Self {
        let security: Vec<&OsStr> = psk
            .map(|(identity, key)| vec![identity.as_ref(), key.as_ref()])
            .unwrap_or_default();
        Self::start_with(dir, endpoint, server_uri, lifetime_s, &security, None)
    }

    /// Like [`Self::start`] in certificate mode against a `coaps://` server: `mine` (CN
    /// `endpoint`) as the client's certificate, and Certificate Usage 2 with `server_ca` (DER)
    /// as the trust anchor the server's certificate must chain to and name the URI's host.
    pub fn start_x509(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        lifetime_s: u32,
        mine: &crate::pki::Issued,
        server_ca: &Path,
    ) -> Self {
        let security: [&OsStr; 4] = [
            "x509".as_ref(),
            mine.cert_der.as_os_str(),
            mine.key_der.as_os_str(),
            server_ca.as_os_str(),
        ];
        Self::start_with(dir, endpoint, server_uri, lifetime_s, &security, None)
    }

    /// Like [`Self::start`] over plain CoAP, with one of the launcher's options.
    pub fn start_plain(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        lifetime_s: u32,
        option: LaunchOption,
    ) -> Self {
        let switch = match option {
            LaunchOption::Firmware => "LESHAN_FIRMWARE",
            LaunchOption::QueueMode => "LESHAN_QUEUE_MODE",
        };
        Self::start_with(dir, endpoint, server_uri, lifetime_s, &[], Some(switch))
    }

    /// Starts the launcher; `switch` names the environment variable (set to 1) that turns on
    /// one of its options (`LESHAN_FIRMWARE`, `LESHAN_QUEUE_MODE`).
    fn start_with(
        dir: &Path,
        endpoint: &str,
        server_uri: &str,
        lifetime_s: u32,
        security: &[&OsStr],
        switch: Option<&str>,
    ) -> Self {
        let jars = jars();
        let mut cmd = Command::new("java");
        if let Some(var) = switch {
            cmd.env(var, "1");
        }
        cmd.current_dir(dir)
            .arg("-cp")
            .arg(&jars.client_cp)
            .arg("LeshanTestClient")
            .args([endpoint, server_uri, &lifetime_s.to_string()])
            .args(security);
        let mut proc = LoggedChild::spawn(
            "leshan-client",
            &mut cmd,
            dir.join(format!("leshan-client-{endpoint}.log")),
            true,
        );
        proc.wait_log("started", Duration::from_secs(60));
        Self { proc }
    }

    /// Leshan's client log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Waits until the client's log holds `needle` (panics with the log after `limit`).
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        self.proc.wait_log(needle, limit);
    }

    /// Asks the client to stop: it deregisters and exits. Panics if it has not exited within
    /// `limit`; returns its log.
    pub fn stop(mut self, limit: Duration) -> String {
        self.proc.close_stdin();
        let status = self.proc.wait_exit(limit);
        assert!(
            status.is_some_and(|s| s.success()),
            "Leshan client did not stop cleanly within {limit:?} ({status:?}):\n{}",
            self.proc.log()
        );
        self.proc.log()
    }
}

/// The value of a single-resource node in either JSON dialect: Leshan 2.0.0-M4's
/// `{"id":3,"value":0}` and the newer `{"kind":"singleResource","type":"integer","value":"0"}`.
pub fn node_value(node: &Value) -> &Value {
    &node["value"]
}

/// A single resource node's value as an integer (a JSON number or a decimal string).
pub fn node_int(node: &Value) -> Option<i64> {
    match node_value(node) {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The resource `id` of an instance node (`{"id":0,"resources":[...]}`).
pub fn instance_resource(instance: &Value, id: u64) -> Option<&Value> {
    instance["resources"]
        .as_array()?
        .iter()
        .find(|r| r["id"].as_u64() == Some(id))
}
