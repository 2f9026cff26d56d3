//! The `lwm2m-client` binary against a strict LwM2M server scripted on a raw UDP socket: it
//! refuses what the specifications do not allow instead of reading it leniently, as widely
//! deployed servers do. Register `ct` must be one unquoted integer (OMA TS Core 1.1 section
//! 6.2.1), else 4.00.

mod common;

use coap_lite::ResponseType;
use common::net::{answer, recv_request, server_socket, spawn_client, temp_dir};
use common::strict_ct;
use std::process::Command;

/// The device registers at the first Register with a server that refuses a `ct` list.
#[test]
fn strict_server_accepts_the_first_register_in_each_preferred_format() {
    for (flag, want) in [(None, 112), (Some("senml-json"), 110), (Some("tlv"), 11542)] {
        let server = server_socket("127.0.0.1:0").unwrap();
        let uri = format!("coap://{}", server.local_addr().unwrap());
        let state = temp_dir("strict-ct");
        let mut args = vec![
            "--server",
            &uri,
            "--endpoint",
            "strict-ep",
            "--log-level",
            "warn",
        ];
        if let Some(f) = flag {
            args.extend(["--preferred-format", f]);
        }
        let _child = spawn_client(&args, &state);
        let (reg, from) = recv_request(&server, "Register");
        let payload = String::from_utf8(reg.payload.clone()).unwrap();
        match strict_ct(&payload) {
            Ok(ct) => {
                answer(&server, from, &reg, ResponseType::Created, &["rd", "s"]);
                assert_eq!(ct, want, "{flag:?}: {payload}");
            }
            Err(e) => {
                answer(&server, from, &reg, ResponseType::BadRequest, &[]);
                panic!("the strict server refused the Register with 4.00 ({e}): {payload}");
            }
        }
        let _ = std::fs::remove_dir_all(&state);
    }
}

/// A format the client cannot announce is refused at start with one line and a failure code.
#[test]
fn unknown_preferred_format_is_refused_at_start() {
    let state = temp_dir("strict-ct-bad");
    let out = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(["--preferred-format", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("senml-cbor, senml-json, tlv, lwm2m-cbor"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
