//! Eclipse Leshan's bootstrap server provisions our `lwm2m-client` binary for Leshan's demo
//! server: two peers we did not write judge the device's bootstrap client (LwM2M 1.1 Core
//! §5.2: client-initiated bootstrap, Bootstrap-Delete, Bootstrap-Write of whole Security and
//! Server instances in TLV, Bootstrap-Finish) and what it does with what was written: the
//! provisioned server, lifetime and credentials. Until these tests the device had met only
//! our own fake bootstrap server, and the first run against Leshan showed it refusing Leshan's
//! Security instances (resources 6-9 and 12 it did not model) and ignoring a provisioned PSK.

use std::time::Duration;

use tests::e2e::temp_dir;
use tests::leshan::{read_int, LeshanBootstrap, LeshanServer};
use tests::process::{lwm2m_client, LoggedChild};

const REGISTER: Duration = Duration::from_secs(60);
/// What the device asks for on its command line; the bootstrap server's value must win.
const CLI_LIFETIME: &str = "60";

/// Our device, told only where its bootstrap server is.
fn device(dir: &std::path::Path, bootstrap: &LeshanBootstrap, ep: &str) -> LoggedChild {
    let state = dir.join(format!("state-{ep}")).display().to_string();
    let uri = bootstrap.coap_uri();
    lwm2m_client(
        dir,
        ep,
        &[
            "--bootstrap",
            &uri,
            "--endpoint",
            ep,
            "--state-dir",
            &state,
            "--lifetime",
            CLI_LIFETIME,
        ],
    )
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
    let bootstrap = LeshanBootstrap::start(&dir, ep, &leshan.coap_uri(), None);
    let _dev = device(&dir, &bootstrap, ep);
    provisioned_registration(&leshan, &bootstrap, ep, false);
}

#[test]
fn our_device_reaches_leshans_server_over_dtls_with_the_psk_leshans_bootstrap_server_wrote() {
    let dir = temp_dir("leshan-bootstrap-psk");
    let leshan = LeshanServer::start("leshan-bs-psk-server");
    let ep = "bs-psk-dev";
    let (identity, key) = ("bs-psk-identity", "5a1e0f7d0c2b4a69887766554433aa01");
    assert_eq!(leshan.add_psk(ep, identity, key), 200);
    let bootstrap = LeshanBootstrap::start(&dir, ep, &leshan.coaps_uri(), Some((identity, key)));
    // The device has no PSK of its own: only the bootstrap server's gets it in.
    let _dev = device(&dir, &bootstrap, ep);
    provisioned_registration(&leshan, &bootstrap, ep, true);
}
