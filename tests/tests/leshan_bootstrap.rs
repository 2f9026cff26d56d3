//! Eclipse Leshan's bootstrap server provisions our `lwm2m-client` binary for Leshan's demo
//! server: two peers we did not write judge the device's bootstrap client (LwM2M 1.1 Core
//! §6.1: client-initiated bootstrap, Bootstrap-Delete, Bootstrap-Write of whole Security and
//! Server instances in TLV, Bootstrap-Finish) and what it does with what was written: the
//! provisioned server, lifetime and credentials. Until these tests the device had met only
//! our own fake bootstrap server, and the first run against Leshan showed it refusing Leshan's
//! Security instances (resources 6-9 and 12 it did not model) and ignoring a provisioned PSK.

use std::path::Path;
use std::time::Duration;

use tests::e2e::{temp_dir, write_key_file};
use tests::leshan::{is_registered, read_int, LeshanBootstrap, LeshanServer};
use tests::pki::Pki;
use tests::process::{lwm2m_client, LoggedChild};

const REGISTER: Duration = Duration::from_secs(60);
/// What the device asks for on its command line; the bootstrap server's value must win.
const CLI_LIFETIME: &str = "60";

/// Our device, told only where its bootstrap server is (and `extra`).
fn device(dir: &Path, bootstrap: &LeshanBootstrap, ep: &str, extra: &[&str]) -> LoggedChild {
    let state = dir.join(format!("state-{ep}")).display().to_string();
    let mut args = vec![
        "--bootstrap",
        bootstrap.uri(),
        "--endpoint",
        ep,
        "--state-dir",
        &state,
        "--lifetime",
        CLI_LIFETIME,
    ];
    args.extend_from_slice(extra);
    lwm2m_client(dir, ep, &args)
}

/// Checks the registration Leshan's server holds for `ep` came from what was provisioned:
/// the bootstrap server's lifetime, its Short Server ID in /1/0/0, and the transport.
fn provisioned_registration(
    leshan: &LeshanServer,
    bootstrap: &LeshanBootstrap,
    ep: &str,
    secure: bool,
) {
    let reg = leshan.wait_registered(ep, REGISTER);
    assert_eq!(reg["secure"], secure, "{reg}\n{}", bootstrap.log());
    assert_eq!(reg["lifetime"], LeshanBootstrap::LIFETIME_S, "{reg}");
    assert_eq!(read_int(&leshan.rest, ep, "/1/0/0"), Some(123));
    let log = bootstrap.log();
    for path in ["/0", "/1"] {
        assert!(
            log.contains(&format!("response DELETED(202) to {path}\n")),
            "{log}"
        );
    }
    for path in ["/0/0", "/0/1", "/1/0"] {
        assert!(
            log.contains(&format!("response CHANGED(204) to {path}\n")),
            "{log}"
        );
    }
    assert!(log.contains(&format!("bootstrap end {ep}")), "{log}");
}

#[test]
fn leshans_bootstrap_server_provisions_our_device_for_leshans_server() {
    let dir = temp_dir("leshan-bootstrap-nosec");
    let leshan = LeshanServer::start("leshan-bs-nosec-server");
    let ep = "bs-nosec-dev";
    // Leshan picks the Security instance ids itself, from a Bootstrap-Discover of the device.
    let bootstrap = LeshanBootstrap::start_discovering(&dir, ep, &leshan.coap_uri());
    let _dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, false);
    let log = bootstrap.log();
    assert!(log.contains("request DiscoverRequest [/]"), "{log}");
    assert!(log.contains("response CONTENT(205) to /\n"), "{log}");
}

/// A bootstrap server on IPv4 provisioning a management server on IPv6 (LwM2M has the two
/// apart; Leshan's sandbox serves both families): the device's socket, bound on 127.0.0.1
/// for its bootstrap server, cannot send to `[::1]`, so it takes another for the server.
#[test]
fn a_bootstrap_server_on_ipv4_provisions_our_device_for_leshans_server_on_ipv6() {
    let dir = temp_dir("leshan-bootstrap-v6");
    let leshan = LeshanServer::start_v6("leshan-bs-v6-server");
    let ep = "bs-v6-dev";
    assert!(leshan.coap_uri().starts_with("coap://[::1]:"));
    let bootstrap = LeshanBootstrap::start(&dir, ep, &leshan.coap_uri(), None, None);
    assert!(bootstrap.uri().starts_with("coap://127.0.0.1:"));
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, false);
    let reg = leshan.wait_registered(ep, REGISTER);
    // Leshan writes the device's IPv6 loopback address out in full, then the port.
    assert!(
        reg["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("0:0:0:0:0:0:0:1:")),
        "{reg}"
    );
    dev.wait_log("new socket for the server", REGISTER);
}

/// Leshan's server (tagged `tag`) taking `ep` with the PSK (`identity`, `server_key`), and
/// Leshan's bootstrap server, in clear, provisioning `ep` for it with (`identity`,
/// `provisioned_key`).
fn psk_servers(
    dir: &Path,
    tag: &str,
    ep: &str,
    identity: &str,
    server_key: &str,
    provisioned_key: &str,
) -> (LeshanServer, LeshanBootstrap) {
    let leshan = LeshanServer::start(&format!("leshan-bs-{tag}-server"));
    assert_eq!(leshan.add_psk(ep, identity, server_key), 200);
    let psk = Some((identity, provisioned_key));
    let bootstrap = LeshanBootstrap::start(dir, ep, &leshan.coaps_uri(), psk, None);
    (leshan, bootstrap)
}

#[test]
fn our_device_reaches_leshans_server_over_dtls_with_the_psk_leshans_bootstrap_server_wrote() {
    let dir = temp_dir("leshan-bootstrap-psk");
    let ep = "bs-psk-dev";
    let (identity, key) = ("bs-psk-identity", "5a1e0f7d0c2b4a69887766554433aa01");
    let (leshan, bootstrap) = psk_servers(&dir, "psk", ep, identity, key, key);
    // The device has no PSK of its own: only the bootstrap server's gets it in.
    let _dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, true);
}

#[test]
fn our_device_bootstraps_over_dtls_with_one_psk_and_registers_with_another() {
    let dir = temp_dir("leshan-bootstrap-dtls");
    let leshan = LeshanServer::start("leshan-bs-dtls-server");
    let ep = "bs-dtls-dev";
    let server_psk = ("bs-dtls-server-id", "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    let bootstrap_psk = ("bs-dtls-boot-id", "00112233445566778899aabbccddeeff");
    assert_eq!(leshan.add_psk(ep, server_psk.0, server_psk.1), 200);
    let bootstrap = LeshanBootstrap::start(
        &dir,
        ep,
        &leshan.coaps_uri(),
        Some(server_psk),
        Some(bootstrap_psk),
    );
    assert!(bootstrap.uri().starts_with("coaps://"));
    // The factory PSK is the bootstrap server's; the server's comes from it.
    let key_file = write_key_file(&dir.join("bootstrap-psk.hex"), bootstrap_psk.1);
    let _dev = device(
        &dir,
        &bootstrap,
        ep,
        &[
            "--psk-identity",
            bootstrap_psk.0,
            "--psk-key-file",
            &key_file,
        ],
    );
    provisioned_registration(&leshan, &bootstrap, ep, true);
}

/// Bootstrap on Registration Failure (LwM2M 1.1 Core §6.2.1.1): Leshan's server already has
/// the device's new key, its bootstrap server still hands out the old one. Each handshake
/// with the server fails (Leshan drops the Finished it cannot decrypt: 15 s until the device
/// gives up on it); after five (the default Communication Retry Count, with 2 + 4 + 8 + 16 s
/// of back-off between them) the device bootstraps again, by then with the new key, and
/// registers.
#[test]
fn a_device_whose_server_refuses_its_key_bootstraps_again_and_registers() {
    let dir = temp_dir("leshan-bootstrap-fallback");
    let ep = "bs-fallback-dev";
    let identity = "bs-fallback-identity";
    let (stale, current) = (
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    );
    let (leshan, mut bootstrap) = psk_servers(&dir, "fallback", ep, identity, current, stale);
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    bootstrap.wait_log(&format!("bootstrap end {ep}"), REGISTER);
    bootstrap.rotate_psk(identity, current);
    dev.wait_log("DTLS handshake failed", REGISTER);
    assert!(
        !is_registered(&leshan.rest, ep),
        "registered with a stale key"
    );
    dev.wait_log(
        "5 failed Registers (Bootstrap on Registration Failure)",
        Duration::from_secs(150),
    );
    provisioned_registration(&leshan, &bootstrap, ep, true);
    let log = bootstrap.log();
    assert_eq!(
        log.matches(&format!("bootstrap end {ep}")).count(),
        2,
        "{log}"
    );
    let log = dev.log();
    assert_eq!(log.matches("DTLS handshake failed").count(), 5, "{log}");
}

/// A device keeps what the bootstrap server provisioned (Security and Server objects, in a
/// file of its state directory only its owner may read, since it holds the server's key), and
/// what the management server changed there since (a lifetime): stopped and started again, it
/// registers with Leshan's server over DTLS with the provisioned key and the lifetime Leshan
/// wrote, without a second bootstrap session.
#[test]
fn a_restarted_device_registers_with_what_leshans_bootstrap_server_provisioned() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("leshan-bootstrap-kept");
    let ep = "bs-kept-dev";
    let (identity, key) = ("bs-kept-identity", "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5");
    let (leshan, bootstrap) = psk_servers(&dir, "kept", ep, identity, key, key);
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, true);
    // Leshan's server changes the provisioned lifetime: that is kept too.
    let (status, v) = leshan.rest.put(
        &format!("/api/clients/{ep}/1/0/1?format=TLV&timeout=10"),
        &serde_json::json!({"id": 1, "kind": "singleResource", "type": "integer", "value": 240}),
    );
    assert_eq!((status, &v["status"]), (200, &"CHANGED(204)".into()), "{v}");
    // Stopped, it deregisters.
    assert!(dev.terminate(REGISTER).is_some(), "{}", dev.log());
    let deadline = std::time::Instant::now() + REGISTER;
    while is_registered(&leshan.rest, ep) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!is_registered(&leshan.rest, ep), "{}", dev.log());
    let kept = dir.join(format!("state-{ep}/kv/lwm2m-bootstrapped"));
    let mode = std::fs::metadata(&kept).expect("kept").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", kept.display());

    let mut dev = device(&dir, &bootstrap, ep, &[]);
    let reg = leshan.wait_registered(ep, REGISTER);
    assert_eq!(reg["secure"], true, "{reg}");
    assert_eq!(reg["lifetime"], 240, "{reg}");
    assert_eq!(read_int(&leshan.rest, ep, "/1/0/0"), Some(123));
    dev.wait_log(
        "registering as the kept bootstrapped configuration says",
        REGISTER,
    );
    let log = bootstrap.log();
    assert_eq!(
        log.matches(&format!("bootstrap end {ep}")).count(),
        1,
        "{log}"
    );
}

/// The Bootstrap-Server Account Timeout Leshan's bootstrap server writes for its own account
/// (/0/0/12 = 2 s, LwM2M 1.1 Core E.1): the device purges that account 2 s after the
/// bootstrap, after which Leshan's server executing the Bootstrap-Request Trigger (/1/0/9)
/// gets 4.05: there is no bootstrap server left to go back to.
#[test]
fn the_bootstrap_account_leshan_gives_a_timeout_is_purged() {
    let dir = temp_dir("leshan-bootstrap-timeout");
    let leshan = LeshanServer::start("leshan-bs-timeout-server");
    let ep = "bs-timeout-dev";
    let bootstrap = LeshanBootstrap::start_with_account_timeout(&dir, ep, &leshan.coap_uri(), 2);
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, false);
    let log = bootstrap.log();
    assert!(
        log.contains("12=LwM2mSingleResource [id=12, value=2,"),
        "{log}"
    );
    dev.wait_log("bootstrap account purged", REGISTER);
    let (status, v) = leshan
        .rest
        .post(&format!("/api/clients/{ep}/1/0/9?timeout=10"), b"");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "METHOD_NOT_ALLOWED(405)", "{v}");
}

/// A bootstrap server configured for LwM2M 1.0 devices writes Binding "UQ" (1.0 E.2: UDP with
/// Queue Mode), as Leshan's does when an operator picks it (node-lwm2m's Server schema lists it
/// too). The device refused it (4.00 for the whole Server instance), so Leshan's
/// Bootstrap-Finish left it without a Server instance: it bootstrapped again and again and
/// never registered. Now the device takes it
/// as a request for Queue Mode: it registers with `Q` (its LwM2M 1.1 way of saying so), keeps
/// "UQ" in /1/0/7, and after its awake window Leshan's read goes unanswered.
#[test]
fn a_uq_binding_from_leshans_bootstrap_server_puts_our_device_in_queue_mode() {
    let dir = temp_dir("leshan-bootstrap-uq");
    let leshan = LeshanServer::start("leshan-bs-uq-server");
    let ep = "bs-uq-dev";
    let bootstrap = LeshanBootstrap::start_with_binding(&dir, ep, &leshan.coap_uri(), "UQ");
    let mut dev = device(&dir, &bootstrap, ep, &["--awake-time", "3"]);
    provisioned_registration(&leshan, &bootstrap, ep, false);
    let log = bootstrap.log();
    assert!(
        log.contains("7=LwM2mSingleResource [id=7, value=UQ,"),
        "{log}"
    );
    let reg = leshan.wait_registered(ep, REGISTER);
    assert_eq!(reg["queuemode"], true, "{reg}");
    let (status, v) = leshan
        .rest
        .get(&format!("/api/clients/{ep}/1/0/7?format=TLV&timeout=10"));
    assert_eq!(v["content"]["value"], "UQ", "HTTP {status} {v}");
    dev.wait_log("queue mode: sleeping", REGISTER);
    let (status, v) = leshan
        .rest
        .get(&format!("/api/clients/{ep}/1/0/1?format=TLV&timeout=2"));
    assert_ne!(
        v["status"], "CONTENT(205)",
        "read while asleep: HTTP {status} {v}"
    );
}

/// Bootstrap-Read (LwM2M 1.1 Core §6.1.7.1, OMA test case int-8): Leshan's bootstrap server
/// reads the Server object it wrote, and one instance, before Bootstrap-Finish; it decodes
/// what the device sends with its own model. The device answered 4.05 (METHOD_NOT_ALLOWED in
/// Leshan's log), so Leshan read nothing back.
#[test]
fn leshans_bootstrap_server_reads_back_the_server_object() {
    let dir = temp_dir("leshan-bootstrap-read");
    let leshan = LeshanServer::start("leshan-bs-read-server");
    let ep = "bs-read-dev";
    let bootstrap = LeshanBootstrap::start_reading(&dir, ep, &leshan.coap_uri(), &["/1", "/1/0"]);
    let _dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, false);
    let log = bootstrap.log();
    for path in ["/1", "/1/0"] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("read {path} ")))
            .unwrap_or_else(|| panic!("no read of {path}: {log}"));
        for written in [
            "0=LwM2mSingleResource [id=0, value=123,",
            "1=LwM2mSingleResource [id=1, value=300,",
            "7=LwM2mSingleResource [id=7, value=U,",
        ] {
            assert!(line.contains(written), "{written} in {line}");
        }
    }
}

/// The Server 1.1 resources Leshan's bootstrap server writes when an operator sets them
/// (LwM2M 1.1 Core E.2): Disable Timeout (5), which the device uses, and APN Link (10),
/// Trigger (21), Preferred Transport (22) and Mute Send (23), which it keeps. Refusing any
/// refused the whole Server instance and left the device unprovisioned.
#[test]
fn leshans_bootstrap_server_writes_the_server_1_1_resources() {
    let dir = temp_dir("leshan-bootstrap-server-1-1");
    let leshan = LeshanServer::start("leshan-bs-server-1-1-server");
    let ep = "bs-server-1-1-dev";
    let bootstrap = LeshanBootstrap::start_with_server_1_1(&dir, ep, &leshan.coap_uri());
    let _dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, false);
    let log = bootstrap.log();
    for written in [
        "5=LwM2mSingleResource [id=5, value=3600,",
        "23=LwM2mSingleResource [id=23, value=true,",
    ] {
        assert!(log.contains(written), "{log}");
    }
    assert_eq!(read_int(&leshan.rest, ep, "/1/0/5"), Some(3600));
}

#[test]
fn leshans_bootstrap_server_hears_406_for_an_account_our_device_cannot_use() {
    let dir = temp_dir("leshan-bootstrap-406");
    let ep = "bs-406-dev";
    // coaps:// with Security Mode NoSec: no DTLS session can be made of it.
    let bootstrap = LeshanBootstrap::start(&dir, ep, "coaps://127.0.0.1:5684", None, None);
    finish_refused(&dir, bootstrap, ep, "does not fit Security Mode NoSec");
}

/// Runs our device `ep` against `bootstrap`, whose configuration it cannot use: Leshan hears
/// 4.06 to Bootstrap-Finish and ends the session FINISH_FAILED; the device logs `reason`.
fn finish_refused(dir: &Path, mut bootstrap: LeshanBootstrap, ep: &str, reason: &str) {
    let mut dev = device(dir, &bootstrap, ep, &[]);
    bootstrap.wait_log(&format!("bootstrap failed {ep} FINISH_FAILED"), REGISTER);
    let log = bootstrap.log();
    assert!(log.contains("response NOT_ACCEPTABLE(406)"), "{log}");
    dev.wait_log("Bootstrap-Finish answered 4.06", REGISTER);
    assert!(dev.log().contains(reason), "{}", dev.log());
}

/// DTLS/TLS Ciphersuite (Security /0/x/16, LwM2M 1.1 Core E.1) as Leshan's bootstrap server
/// writes it: the device proposes that suite, and only it, in its ClientHello. Here
/// TLS_PSK_WITH_AES_128_CCM (0xC0A4), which Leshan's server takes but the device does not
/// offer on its own (the mandated CCM_8, then GCM), so the session's suite shows the resource
/// was followed.
#[test]
fn our_device_offers_the_cipher_suite_leshans_bootstrap_server_writes() {
    let dir = temp_dir("leshan-bootstrap-suite");
    let leshan = LeshanServer::start("leshan-bs-suite-server");
    let ep = "bs-suite-dev";
    let psk = ("bs-suite-identity", "7c6b5a4938271605f4e3d2c1b0a99887");
    assert_eq!(leshan.add_psk(ep, psk.0, psk.1), 200);
    let bootstrap =
        LeshanBootstrap::start_with_cipher_suite(&dir, ep, &leshan.coaps_uri(), psk, 0xC0A4);
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, true);
    let log = bootstrap.log();
    assert!(
        log.contains("16=LwM2mSingleResource [id=16, value=49316,"),
        "{log}"
    );
    dev.wait_log("cipher=\"PSK-AES128-CCM\"", REGISTER);
    assert_eq!(log.matches("bootstrap end").count(), 1, "{log}");
}

/// A Ciphersuite the device cannot propose for the account (0xC0AE is a certificate-mode
/// suite, the account is PSK): the configuration is inconsistent, so Bootstrap-Finish gets
/// 4.06 and the device says why, rather than failing every handshake later.
#[test]
fn leshans_bootstrap_server_hears_406_for_a_cipher_suite_our_device_cannot_offer() {
    let dir = temp_dir("leshan-bootstrap-suite-406");
    let ep = "bs-suite-406-dev";
    let psk = ("bs-suite-406-identity", "00112233445566778899aabbccddeeff");
    let bootstrap =
        LeshanBootstrap::start_with_cipher_suite(&dir, ep, "coaps://127.0.0.1:5684", psk, 0xC0AE);
    let reason = "none of the DTLS/TLS Ciphersuites (resource 16) is implemented";
    finish_refused(&dir, bootstrap, ep, reason);
}

#[test]
fn our_device_reaches_leshans_x509_server_with_the_certificates_leshans_bootstrap_server_wrote() {
    let dir = temp_dir("leshan-bootstrap-x509");
    let pki = Pki::new(&dir.join("pki"), "bs-x509-ca");
    let server = pki.issue("leshan", "leshan.test", &["IP:127.0.0.1"]);
    let ep = "bs-x509-dev";
    let leshan = LeshanServer::start_x509("leshan-bs-x509-server", &pki, &server, ep);
    let mine = pki.issue(ep, ep, &[]);
    // The device is given no certificate, key or CA: only the bootstrap server's, which pins
    // Leshan's own certificate (resource 4).
    let bootstrap =
        LeshanBootstrap::start_x509(&dir, ep, &leshan.coaps_uri(), &mine, &server.cert_der, None);
    let _dev = device(&dir, &bootstrap, ep, &[]);
    provisioned_registration(&leshan, &bootstrap, ep, true);
}

/// Leshan's bootstrap server writing Certificate Usage (Security 1.1 resource 15, LwM2M 1.1
/// Core E.1) with a certificate-mode account: 3 (domain-issued certificate: resource 4 is the
/// server's own certificate, as without resource 15) and 2 (trust anchor assertion: resource 4
/// is the CA the server's chain must end at, and the server's certificate must name the URI's
/// host). A server whose certificate comes from that CA for another address is refused.
#[test]
fn our_device_takes_the_certificate_usage_leshans_bootstrap_server_writes() {
    let dir = temp_dir("leshan-bootstrap-x509-usage");
    let pki = Pki::new(&dir.join("pki"), "bs-x509-usage-ca");
    let server = pki.issue("leshan", "leshan.test", &["IP:127.0.0.1"]);
    let elsewhere = pki.issue("elsewhere", "leshan.test", &["IP:127.0.0.2"]);
    let cases = [
        ("usage3", 3, &server, server.cert_der.clone(), true),
        ("usage2", 2, &server, pki.ca_der(), true),
        ("usage2-name", 2, &elsewhere, pki.ca_der(), false),
    ];
    for (tag, usage, leshans, anchor, accepted) in cases {
        let ep = format!("bs-x509-{tag}-dev");
        let leshan =
            LeshanServer::start_x509(&format!("leshan-bs-x509-{tag}-server"), &pki, leshans, &ep);
        let mine = pki.issue(&ep, &ep, &[]);
        let bootstrap = LeshanBootstrap::start_x509(
            &dir,
            &ep,
            &leshan.coaps_uri(),
            &mine,
            &anchor,
            Some(usage),
        );
        let mut dev = device(&dir, &bootstrap, &ep, &[]);
        if accepted {
            provisioned_registration(&leshan, &bootstrap, &ep, true);
            let log = bootstrap.log();
            assert!(log.contains(&format!("id=15, value={usage}")), "{log}");
        } else {
            dev.wait_log("DTLS handshake failed", REGISTER);
            assert!(dev.log().contains("IP address mismatch"), "{}", dev.log());
            assert!(!is_registered(&leshan.rest, &ep), "{tag}: registered");
        }
    }
}

/// The PKIX Certificate Usages (0, CA constraint; 1, service certificate constraint) and the
/// hashed Matching Types (LwM2M 1.1 Core E.1 resources 15 and 13) as Leshan's bootstrap server
/// writes them: the server's chain must also end at a root the device trusts itself
/// (`--trust-store`), and resource 4 may be the certificate's SHA-2 hash. Roots without the
/// server's CA, or the hash of another certificate, and the device never registers; without
/// roots at all it refuses a PKIX account at Bootstrap-Finish.
#[test]
fn our_device_takes_pkix_usages_and_certificate_hashes_leshans_bootstrap_server_writes() {
    use sha2::Digest;
    let dir = temp_dir("leshan-bootstrap-x509-pkix");
    let pki = Pki::new(&dir.join("pki"), "bs-x509-pkix-ca");
    let stranger = Pki::new(&dir.join("stranger"), "bs-x509-stranger-ca");
    let server = pki.issue("leshan", "leshan.test", &["IP:127.0.0.1"]);
    let other = pki.issue("other", "leshan.test", &["IP:127.0.0.1"]);
    let hashed = |cert: &Path, bits: u16| {
        let der = std::fs::read(cert).unwrap();
        let hash = match bits {
            256 => sha2::Sha256::digest(&der).to_vec(),
            384 => sha2::Sha384::digest(&der).to_vec(),
            _ => sha2::Sha512::digest(&der).to_vec(),
        };
        let file = cert.with_extension(format!("sha{bits}"));
        std::fs::write(&file, hash).unwrap();
        file
    };
    let (trusted, untrusted) = (pki.ca_pem(), stranger.ca_pem());
    let leshan = LeshanServer::start_x509("leshan-bs-x509-pkix-server", &pki, &server, "unused");
    // (tag, usage, matching type, resource 4, --trust-store, registers)
    let cases = [
        ("usage0", 0, 0, pki.ca_der(), Some(&trusted), true),
        (
            "usage1-sha256",
            1,
            1,
            hashed(&server.cert_der, 256),
            Some(&trusted),
            true,
        ),
        (
            "usage3-sha512",
            3,
            3,
            hashed(&server.cert_der, 512),
            None,
            true,
        ),
        ("usage0-roots", 0, 0, pki.ca_der(), Some(&untrusted), false),
        (
            "usage1-roots",
            1,
            0,
            server.cert_der.clone(),
            Some(&untrusted),
            false,
        ),
        (
            "usage3-other",
            3,
            2,
            hashed(&other.cert_der, 384),
            None,
            false,
        ),
    ];
    for (tag, usage, matching, resource_4, roots, registers) in cases {
        let ep = format!("bs-x509-{tag}-dev");
        assert_eq!(leshan.add_x509(&ep), 200);
        let mine = pki.issue(&ep, &ep, &[]);
        let bootstrap = LeshanBootstrap::start_x509_matching(
            &dir,
            &ep,
            &leshan.coaps_uri(),
            &mine,
            &resource_4,
            usage,
            matching,
        );
        let roots = roots.map(|r| r.display().to_string());
        let extra: Vec<&str> = roots
            .iter()
            .flat_map(|r| ["--trust-store", r.as_str()])
            .collect();
        let mut dev = device(&dir, &bootstrap, &ep, &extra);
        if registers {
            provisioned_registration(&leshan, &bootstrap, &ep, true);
            let log = bootstrap.log();
            for written in [
                format!("id=15, value={usage}"),
                format!("id=13, value={matching}"),
            ] {
                assert!(log.contains(&written), "{tag}: {written}\n{log}");
            }
        } else {
            dev.wait_log("DTLS handshake failed", REGISTER);
            assert!(!is_registered(&leshan.rest, &ep), "{tag}: registered");
        }
    }
    // No roots of its own: a PKIX account is one the device cannot use.
    let ep = "bs-x509-usage0-no-roots-dev";
    let mine = pki.issue(ep, ep, &[]);
    let (uri, ca) = (leshan.coaps_uri(), pki.ca_der());
    let mut bootstrap = LeshanBootstrap::start_x509_matching(&dir, ep, &uri, &mine, &ca, 0, 0);
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    bootstrap.wait_log(&format!("bootstrap failed {ep} FINISH_FAILED"), REGISTER);
    dev.wait_log("Bootstrap-Finish answered 4.06", REGISTER);
    assert!(dev.log().contains("needs trusted roots"), "{}", dev.log());
}

#[test]
fn our_device_refuses_a_server_other_than_the_certificate_its_bootstrap_server_pinned() {
    let dir = temp_dir("leshan-bootstrap-x509-pin");
    let pki = Pki::new(&dir.join("pki"), "bs-x509-pin-ca");
    let server = pki.issue("leshan", "leshan.test", &["IP:127.0.0.1"]);
    // Same CA, same name, but not the certificate the bootstrap server wrote.
    let other = pki.issue("other", "leshan.test", &["IP:127.0.0.1"]);
    let ep = "bs-x509-pin-dev";
    let leshan = LeshanServer::start_x509("leshan-bs-x509-pin-server", &pki, &server, ep);
    let mine = pki.issue(ep, ep, &[]);
    let bootstrap =
        LeshanBootstrap::start_x509(&dir, ep, &leshan.coaps_uri(), &mine, &other.cert_der, None);
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    dev.wait_log("DTLS handshake failed", REGISTER);
    assert!(!is_registered(&leshan.rest, ep), "not registered");
}

#[test]
fn a_provisioned_key_that_is_not_the_certificates_is_not_acceptable_either() {
    let dir = temp_dir("leshan-bootstrap-406-x509");
    let pki = Pki::new(&dir.join("pki"), "bs-406-x509-ca");
    let ep = "bs-406-x509-dev";
    let server = pki.issue("server", "server", &["IP:127.0.0.1"]);
    // The device's certificate with another certificate's key: each decodes (Leshan's own
    // configuration check passes), but they do not belong together.
    let mut mine = pki.issue(ep, ep, &[]);
    mine.key_der = pki.issue("stranger", "stranger", &[]).key_der;
    let mut bootstrap = LeshanBootstrap::start_x509(
        &dir,
        ep,
        "coaps://127.0.0.1:5684",
        &mine,
        &server.cert_der,
        None,
    );
    let mut dev = device(&dir, &bootstrap, ep, &[]);
    bootstrap.wait_log(&format!("bootstrap failed {ep} FINISH_FAILED"), REGISTER);
    dev.wait_log("Bootstrap-Finish answered 4.06", REGISTER);
    assert!(
        dev.log()
            .contains("the DTLS layer refused the certificate or key"),
        "{}",
        dev.log()
    );
}
