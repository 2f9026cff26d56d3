//! Our device updated by a second LwM2M server implementation besides Eclipse Leshan:
//! Telefonica's lwm2m-node-lib (npm; an LwM2M 1.0 server on node-coap) reads and writes it in
//! text/plain through its own API, with aiocoap's file server (PyPI) as the package host. None
//! of the peers is ours: `tests/node/lwm2m_node_lib_update.js` drives the update and reports
//! what the server saw, one JSON line each, and this test judges those lines.

use std::path::Path;
use std::time::Duration;

use lwm2m_server_shim::packages::test_packages::{Kind, Signer};
use serde_json::{json, Value};
use tests::e2e::temp_dir;
use tests::process::{
    aiocoap_fileserver, free_udp_port, lwm2m_client, node_lib_command, LoggedChild,
};

/// Starts the node-lib server on `port` with the scenario's two Package URIs; returns once it
/// listens.
fn node_lib_server(dir: &Path, port: u16, bad: &str, good: &str) -> LoggedChild {
    let mut cmd = node_lib_command("lwm2m_node_lib_update.js");
    cmd.arg(port.to_string()).args([bad, good]);
    let mut server =
        LoggedChild::spawn("lwm2m-node-lib", &mut cmd, dir.join("node-lib.log"), false);
    server.wait_log(r#"{"listening":"#, Duration::from_secs(30));
    server
}

/// A wrong-key package refused with Update Result 5, then a good one downloaded, installed and
/// confirmed: the version and the results as lwm2m-node-lib reads them.
#[test]
fn lwm2m_node_lib_updates_our_device_and_sees_a_refused_package() {
    let dir = temp_dir("node-lib");
    let packages = dir.join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    let trusted = Signer::generate().expect("key");
    let stranger = Signer::generate().expect("key");
    let good = trusted.build(Kind::Good, "2.0.0", 2).expect("package");
    let bad = stranger.build(Kind::Good, "2.0.0", 2).expect("package");
    std::fs::write(packages.join("good.suit"), good).unwrap();
    std::fs::write(packages.join("bad.suit"), bad).unwrap();
    let anchor = dir.join("anchor.pub.pem");
    std::fs::write(&anchor, &trusted.public_pem).unwrap();

    let host_port = free_udp_port();
    let _host = aiocoap_fileserver(&packages, host_port);
    let uri = |name: &str| format!("coap://127.0.0.1:{host_port}/{name}");
    let port = free_udp_port();
    let mut server = node_lib_server(&dir, port, &uri("bad.suit"), &uri("good.suit"));
    let ep = "node-lib-dev";
    let state = dir.join("state");
    let _device = lwm2m_client(
        &dir,
        ep,
        &[
            "--server",
            &format!("coap://127.0.0.1:{port}"),
            "--endpoint",
            ep,
            "--state-dir",
            state.to_str().unwrap(),
            "--trust-anchor",
            anchor.to_str().unwrap(),
            "--pull-ack-timeout-ms",
            "300",
        ],
    );
    let status = server.wait_exit(Duration::from_secs(170));
    let log = server.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "lwm2m-node-lib did not finish ({status:?}):\n{log}"
    );
    // Its JSON lines; node's own warnings on stderr are not.
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let registers: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("register").is_some())
        .collect();
    assert_eq!(
        registers.len(),
        2,
        "registered, then again after the reboot:\n{log}"
    );
    for r in &registers {
        assert_eq!(
            (&r["register"], &r["version"], &r["binding"]),
            (&json!(ep), &json!("1.1"), &json!("U")),
            "{log}"
        );
        let links = r["links"].as_str().unwrap_or_default();
        assert!(
            links.contains("</5/0>") && links.contains("</3/0>"),
            "{links}"
        );
    }
    let seen: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("register").is_none() && l.get("listening").is_none())
        .collect();
    let read = |path: &str, value: &str| json!({"read": path, "value": value});
    let wrote = |name: &str| json!({"wrote": "/5/0/1", "value": uri(name)});
    let expected = [
        read("/3/0/3", "1.0.0"),
        read("/5/0/3", "0"),
        wrote("bad.suit"),
        // Integrity check failure: the signer is not trusted (Object 5 Update Result 5).
        read("/5/0/5", "5"),
        read("/5/0/3", "0"),
        wrote("good.suit"),
        read("/5/0/3", "2"),
        json!({"executed": "/5/0/2"}),
        read("/3/0/3", "2.0.0"),
        read("/5/0/3", "0"),
        read("/5/0/5", "1"),
        json!({"done": true}),
    ];
    assert_eq!(
        seen,
        expected.iter().collect::<Vec<_>>(),
        "what lwm2m-node-lib saw:\n{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
