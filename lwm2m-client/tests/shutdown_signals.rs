//! Stopping the `lwm2m-client` binary: SIGTERM (what `kill`, systemd and container runtimes
//! send) and SIGINT (Ctrl-C) both De-register first (OMA LwM2M TS Core 1.1 §6.2.3: DELETE on
//! the registration's location), then the process exits 0. The test plays the server.

mod common;

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use common::net::{answer, recv_request, server_socket, spawn_client, temp_dir};
use std::time::Duration;

fn deregisters_on(signal: &str) {
    let server = server_socket("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let state = temp_dir(&format!("signal-{signal}"));
    let uri = format!("coap://127.0.0.1:{port}");
    let mut child = spawn_client(
        &[
            "--server",
            &uri,
            "--endpoint",
            "sig-ep",
            "--log-level",
            "warn",
        ],
        &state,
    );
    let (reg, device) = recv_request(&server, "Register");
    assert_eq!(reg.header.code, MessageClass::Request(RequestType::Post));
    let id = format!("s{}", signal.to_lowercase());
    answer(&server, device, &reg, ResponseType::Created, &["rd", &id]);

    child.signal(signal);
    let (dereg, from) = recv_request(&server, &format!("De-register after SIG{signal}"));
    assert_eq!(
        dereg.header.code,
        MessageClass::Request(RequestType::Delete),
        "SIG{signal}"
    );
    let path: Vec<Vec<u8>> = dereg
        .get_option(CoapOption::UriPath)
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(path, vec![b"rd".to_vec(), id.into_bytes()], "SIG{signal}");
    answer(&server, from, &dereg, ResponseType::Deleted, &[]);
    let status = child.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIG{signal}: {status}");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn sigterm_deregisters_before_exit() {
    deregisters_on("TERM");
}

#[test]
fn sigint_deregisters_before_exit() {
    deregisters_on("INT");
}
