//! `lwm2m-server-shim serve` as a real process on loopback (coap, coaps and HTTP on free ports),
//! for the tests that drive the shim the way a user runs it.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{free_tcp_port, free_udp_port, workspace_bin, LoggedChild};
use crate::rest::Rest;

/// A running `serve`; stopped by its pid when dropped.
pub struct ShimServe {
    /// The process (its log is `dir/shim.log`).
    pub proc: LoggedChild,
    /// Its REST API.
    pub rest: Rest,
    /// Plain CoAP port.
    pub coap: u16,
    /// CoAP over DTLS port.
    pub coaps: u16,
}

impl ShimServe {
    /// Starts `serve` with packages in `dir/packages` and `extra` arguments; returns once its
    /// REST API answers (panics with the log if it ends or stays silent for 30 s).
    pub fn start<S: AsRef<OsStr>>(dir: &Path, extra: &[S]) -> Self {
        let packages = dir.join("packages");
        std::fs::create_dir_all(&packages).expect("packages dir");
        let (coap, coaps, http) = (free_udp_port(), free_udp_port(), free_tcp_port());
        let mut cmd = Command::new(workspace_bin("lwm2m-server-shim"));
        cmd.arg("serve")
            .args(["--coap", &format!("127.0.0.1:{coap}")])
            .args(["--coaps", &format!("127.0.0.1:{coaps}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .arg("--packages")
            .arg(&packages)
            .args(extra);
        let mut proc =
            LoggedChild::spawn("lwm2m-server-shim", &mut cmd, dir.join("shim.log"), false);
        let rest = Rest::new(format!("http://127.0.0.1:{http}"), Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(rest.try_get("/api/clients"), Ok((200, _))) {
            assert!(proc.exited().is_none(), "shim ended:\n{}", proc.log());
            assert!(
                Instant::now() < deadline,
                "shim REST API not up:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            proc,
            rest,
            coap,
            coaps,
        }
    }
}
