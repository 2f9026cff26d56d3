//! The shim's `update`, `conformance` and `demo` commands as a user runs them with our
//! device: the shim binary on loopback, our simulated device in-process
//! (`lwm2m_client::sim::InThreadDevice`) or, for the demo, as the `lwm2m-client` binary; exit
//! codes and the printed tables checked.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use lwm2m_server_shim::packages::test_packages::{fresh_sequence, Kind, Signer};
use tests::e2e::{start_device_trusting, temp_dir, trusted_signer};
use tests::process::{free_tcp_port, free_udp_port, workspace_bin};

/// The shim binary, built with the device binary beside it (as `cargo build` leaves them).
fn shim() -> PathBuf {
    workspace_bin("lwm2m-server-shim")
}

/// Our device for a shim on loopback CoAP `port`.
fn start_device(port: u16, endpoint: &str, state: &Path, anchor: &Path) -> InThreadDevice {
    start_device_trusting(([127, 0, 0, 1], port).into(), endpoint, state, anchor, None)
}

/// The lines a child writes to its piped stderr, read on a thread to its end.
fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `command` (a subcommand and its options) for a shim of its own: plain CoAP on loopback
/// `port`, HTTP on any port.
fn own_shim_args(command: &[&str], port: u16) -> Vec<String> {
    let listeners = [
        "--coap",
        &format!("127.0.0.1:{port}"),
        "--http",
        "127.0.0.1:0",
    ];
    command
        .iter()
        .chain(&listeners)
        .map(|a| a.to_string())
        .collect()
}

/// Runs the shim with `args`; once it says it waits for devices, `then` runs (e.g. starts a
/// device). Returns (exit code, stdout).
fn run_shim(args: &[String], then: impl FnOnce() -> Vec<InThreadDevice>) -> (i32, String) {
    let mut child = Command::new(shim())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shim starts");
    let lines = stderr_lines(&mut child);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines
        .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        .expect("shim ready for devices")
        .contains("waiting for")
    {}
    let device = then();
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    let status = child.wait().expect("exit");
    drop(device);
    (status.code().unwrap_or(-1), out)
}

/// The first five columns of `endpoint`'s row in the printed update table: endpoint, outcome,
/// State, Update Result, firmware version.
fn update_row<'a>(out: &'a str, endpoint: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(endpoint))
        .map(|l| l.split_whitespace().take(5).collect())
        .unwrap_or_default()
}

/// A test's directory (removed when dropped), a signing key, the device's trust anchor for it
/// and the private key as a file (the shim's `--key`).
struct Setup {
    dir: PathBuf,
    signer: Signer,
    anchor: PathBuf,
    key: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let dir = temp_dir(tag);
        let (signer, anchor) = trusted_signer(&dir);
        let key = dir.join("k.pem");
        std::fs::write(&key, &signer.private_pem).expect("key");
        Setup {
            dir,
            signer,
            anchor,
            key,
        }
    }

    /// A package of `kind` for `version` with sequence number `seq`, written to `name` in the
    /// test's directory.
    fn package(&self, name: &str, kind: Kind, version: &str, seq: u64) -> PathBuf {
        let path = self.dir.join(name);
        let bytes = self.signer.build(kind, version, seq).expect("pkg");
        std::fs::write(&path, bytes).expect("w");
        path
    }

    /// Where a conformance run writes its reports.
    fn reports(&self) -> PathBuf {
        self.dir.join("reports")
    }

    /// Our device `endpoint` for a shim on loopback CoAP `port`, its state in `state` of the
    /// test's directory.
    fn device(&self, port: u16, endpoint: &str, state: &str) -> InThreadDevice {
        start_device(port, endpoint, &self.dir.join(state), &self.anchor)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn update_command_reports_success_and_failure_with_exit_codes() {
    let s = Setup::new("cli-update");
    let seq = fresh_sequence();
    let good = s.package("fw-2.1.0.suit", Kind::Good, "2.1.0", seq);
    let bad = s.package("fw-selftest.suit", Kind::FailsSelfTest, "6.6.6", seq + 1);
    for (pkg, method, expect_code, expect_line) in [
        (&good, "pull", 0, ["upd-1", "ok", "0", "1", "2.1.0"]),
        (&bad, "push", 1, ["upd-1", "FAILED", "2", "8", "2.1.0"]),
    ] {
        let port = free_udp_port();
        let pkg = pkg.display().to_string();
        let args = own_shim_args(
            &[
                "update",
                "--endpoint",
                "upd-1",
                "--package",
                &pkg,
                "--method",
                method,
                "--wait",
                "30",
                "--poll-ms",
                "200",
                "--timeout-update",
                "30",
            ],
            port,
        );
        let (code, out) = run_shim(&args, || vec![s.device(port, "upd-1", "state")]);
        assert_eq!(code, expect_code, "{out}");
        assert_eq!(update_row(&out, "upd-1"), expect_line, "{out}");
    }
}

#[test]
fn update_all_waits_for_min_devices_and_updates_each() {
    let s = Setup::new("cli-update-all");
    let pkg = s.package("fleet.suit", Kind::Good, "4.0.0", fresh_sequence());
    let port = free_udp_port();
    let args = own_shim_args(
        &[
            "update",
            "--all",
            "--min-devices",
            "2",
            "--package",
            &pkg.display().to_string(),
            "--method",
            "push",
            "--concurrency",
            "1",
            "--wait",
            "30",
            "--poll-ms",
            "200",
        ],
        port,
    );
    let (code, out) = run_shim(&args, || {
        vec![s.device(port, "all-a", "a"), s.device(port, "all-b", "b")]
    });
    assert_eq!(code, 0, "{out}");
    for ep in ["all-a", "all-b"] {
        assert_eq!(update_row(&out, ep), [ep, "ok", "0", "1", "4.0.0"], "{out}");
    }
}

/// `conformance --endpoint endpoint --cases cases` with `extra` options against our device
/// `endpoint`, the shim on a free loopback CoAP port, its reports to `reports` in the test's
/// directory. Returns (exit code, stdout).
fn run_conformance(s: &Setup, endpoint: &str, cases: &str, extra: &[&str]) -> (i32, String) {
    let port = free_udp_port();
    let reports = s.reports().display().to_string();
    let mut command = vec!["conformance", "--endpoint", endpoint, "--cases", cases];
    command.extend_from_slice(&["--report", &reports]);
    command.extend_from_slice(extra);
    run_shim(&own_shim_args(&command, port), || {
        vec![s.device(port, endpoint, "state")]
    })
}

/// The verdict column of `case`'s row in the printed table.
fn verdict_of(out: &str, case: &str) -> Option<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(case))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
}

/// Asserts each `(case, verdict)` against the printed table.
fn assert_verdicts(out: &str, want: &[(&str, &str)]) {
    for (case, verdict) in want {
        assert_eq!(
            verdict_of(out, case).as_deref(),
            Some(*verdict),
            "{case}: {out}"
        );
    }
}

/// The `report.json` a run wrote to `reports`.
fn report_json(reports: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(reports.join("report.json")).expect("json"))
        .expect("report.json parses")
}

#[test]
fn conformance_command_with_native_packages_fails_only_on_a_failed_case() {
    let s = Setup::new("cli-conformance");
    // A "good" package that is in fact corrupted: the device rightly refuses it, so the
    // successful-update case FAILs, and only that makes the run fail.
    let bad_good = s.package(
        "not-really-good.bin",
        Kind::Corrupted,
        "5.0.0",
        fresh_sequence(),
    );
    let bad_good = bad_good.display().to_string();
    let (code, out) = run_conformance(
        &s,
        "conf-1",
        "751,772,774,771",
        &["--package-good", &bad_good],
    );
    assert_verdicts(
        &out,
        &[
            ("1.0-int-751", "PASS"),
            ("1.0-int-772", "PASS"),
            // 774 cannot be provoked from the server: asked for, it is INCONCLUSIVE, not a
            // failure.
            ("1.0-int-774", "INCONCLUSIVE"),
            ("1.0-int-771[coap]", "FAIL"),
            ("1.0-int-771[http]", "FAIL"),
            ("1.0-int-771[https]", "N/A"),
            // coap+tcp is served too (the run's coap+tcp package host); coaps+tcp is N/A,
            // the device cannot know the certificate made for the run.
            ("1.0-int-771[coap+tcp]", "FAIL"),
            ("1.0-int-771[coaps+tcp]", "N/A"),
        ],
    );
    assert!(out.contains("Result 5"), "{out}");
    assert!(
        out.contains("8 cases: 2 PASS, 3 FAIL, 2 N/A, 1 INCONCLUSIVE"),
        "{out}"
    );
    assert_eq!(code, 1, "{out}");
    let junit = std::fs::read_to_string(s.reports().join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("failures=\"3\""), "{junit}");
    let json = report_json(&s.reports());
    assert_eq!(json["summary"]["fail"], 3, "{json}");
    assert_eq!(json["registration"]["endpoint"], "conf-1", "{json}");
    assert_eq!(
        json["firmware"]["protocols"],
        serde_json::json!([0, 2, 3, 4, 5]),
        "{json}"
    );
}

/// Our device driven as any third-party device would be: its packages as files in a TOML
/// profile (four good ones, one per update, since it refuses a sequence number it ran), with
/// its expectations; every firmware case passes, and https is N/A (the shim hosts none), as is
/// coaps+tcp (the device cannot know the certificate made for the run).
#[test]
fn conformance_command_with_a_profile_passes_every_firmware_case_of_our_device() {
    let s = Setup::new("cli-conformance-profile");
    let seq = fresh_sequence();
    let files = [
        ("g1.suit", Kind::Good, "7.1.0"),
        ("g2.suit", Kind::Good, "7.2.0"),
        ("g3.suit", Kind::Good, "7.3.0"),
        ("g4.suit", Kind::Good, "7.4.0"),
        ("big.suit", Kind::TooLarge, "7.5.0"),
        ("bad.suit", Kind::Corrupted, "7.6.0"),
        ("other.suit", Kind::WrongClass, "7.7.0"),
        ("selftest.suit", Kind::FailsSelfTest, "7.8.0"),
    ];
    for (i, (name, kind, version)) in files.into_iter().enumerate() {
        s.package(name, kind, version, seq + i as u64);
    }
    let profile = s.dir.join("sim.toml");
    std::fs::write(
        &profile,
        r#"[packages]
good = [
  { file = "g1.suit", version = "7.1.0" },
  { file = "g2.suit", version = "7.2.0" },
  { file = "g3.suit", version = "7.3.0" },
  { file = "g4.suit", version = "7.4.0" },
]
too_large = "big.suit"
corrupt = "bad.suit"
wrong_type = "other.suit"
failing = "selftest.suit"

[device]
results = [1, 2, 4, 5, 6, 7, 8, 9]
reboots_on_update = true
update_timeout_s = 30
"#,
    )
    .expect("profile");
    let profile = profile.display().to_string();
    let (code, out) = run_conformance(&s, "conf-p", "fw", &["--profile", &profile]);
    assert_eq!(code, 0, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("1.0-int-")).collect();
    assert_eq!(rows.len(), 18, "{out}");
    for row in rows {
        let case = row.split_whitespace().next().unwrap_or_default();
        let want = if ["1.0-int-771[https]", "1.0-int-771[coaps+tcp]"].contains(&case) {
            "N/A"
        } else {
            "PASS"
        };
        assert_verdicts(&out, &[(case, want)]);
    }
    // The updates installed the profile's good packages in turn.
    for v in ["7.1.0", "7.2.0", "7.3.0", "7.4.0"] {
        assert!(out.contains(&format!("-> \"{v}\"")), "{v}: {out}");
    }
    let json = report_json(&s.reports());
    assert_eq!(json["summary"]["pass"], 16, "{json}");
}

#[test]
fn conformance_command_exits_zero_without_a_fail() {
    let s = Setup::new("cli-conformance-ok");
    let key = s.key.display().to_string();
    let (code, out) = run_conformance(&s, "conf-2", "751,774,core-101", &["--key", &key]);
    assert_verdicts(
        &out,
        &[
            ("1.1-int-101", "PASS"),
            ("1.0-int-751", "PASS"),
            ("1.0-int-774", "INCONCLUSIVE"),
        ],
    );
    assert_eq!(code, 0, "{out}");
}

/// `bin demo`, with `CARGO` set to `cargo` or, for `None`, removed (as outside cargo).
fn demo(bin: &Path, cargo: Option<&str>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("demo").stdin(Stdio::null());
    match cargo {
        Some(cargo) => cmd.env("CARGO", cargo),
        None => cmd.env_remove("CARGO"),
    };
    cmd.output().expect("demo runs")
}

#[test]
fn demo_updates_the_simulated_device_to_2_0_0() {
    let out = demo(&shim(), None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("running firmware 1.0.0"), "{text}");
    assert!(
        text.contains("final: State 0, Update Result 1 (firmware updated successfully), firmware version 2.0.0"),
        "{text}"
    );
}

/// The shim binary alone in a profile directory of `dir` named as the real one (`debug`,
/// `release`, ...), so no `lwm2m-client` stands beside it: a hard link (the same file, no copy).
fn lone_shim(dir: &Path) -> PathBuf {
    let real = shim();
    let profile = real
        .parent()
        .and_then(Path::file_name)
        .expect("profile directory");
    let lone_dir = dir.join(profile);
    std::fs::create_dir_all(&lone_dir).expect("dir");
    let lone = lone_dir.join(real.file_name().expect("name"));
    if std::fs::hard_link(&real, &lone).is_err() {
        std::fs::copy(&real, &lone).expect("copy the shim binary");
    }
    lone
}

/// README's first command (`cargo run -p lwm2m-server-shim -- demo`) builds only the shim:
/// started by cargo (`CARGO` set) without the device binary beside it, the demo says in one
/// line that it builds it, has cargo build it in the same profile and runs the update.
#[test]
fn demo_started_by_cargo_builds_the_device_binary_it_lacks() {
    let dir = temp_dir("demo-builds-client");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = demo(&lone_shim(&dir), Some(&cargo));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let building: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("lwm2m-client is not built yet: cargo build -p lwm2m-client"))
        .collect();
    assert_eq!(building.len(), 1, "{text}");
    assert!(text.contains("running firmware 1.0.0"), "{text}");
    assert!(text.contains("demo: firmware updated to 2.0.0"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Outside cargo, a missing device binary is one error line that says how to get one.
#[test]
fn demo_without_the_device_binary_outside_cargo_is_one_error_line() {
    let dir = temp_dir("demo-no-client");
    let out = demo(&lone_shim(&dir), None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("demo failed: no simulated device at ")
            && err.contains("(build it: cargo build -p lwm2m-client, or pass --client)"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve` on plain CoAP `coap_port` and HTTP `http_port`; killed when dropped.
struct Serve(std::process::Child);

impl Serve {
    fn start(coap_port: u16, http_port: u16, packages: &Path) -> Self {
        let child = Command::new(shim())
            .args([
                "serve",
                "--no-coaps",
                "--coap",
                &format!("127.0.0.1:{coap_port}"),
            ])
            .args(["--http", &format!("127.0.0.1:{http_port}"), "--packages"])
            .arg(packages)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let up = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(20),
                "serve did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn update_says_it_starts_its_own_shim_and_can_drive_a_running_one() {
    let s = Setup::new("cli-update-server");
    let pkg = s.package("fw-2.2.0.suit", Kind::Good, "2.2.0", fresh_sequence());
    // Its own shim: the ports it listens on, and the way to use a running one instead.
    let port = free_udp_port();
    let pkg_arg = pkg.display().to_string();
    let out = Command::new(shim())
        .args(own_shim_args(
            &[
                "update",
                "--endpoint",
                "nobody",
                "--package",
                &pkg_arg,
                "--wait",
                "1",
            ],
            port,
        ))
        .stdin(Stdio::null())
        .output()
        .expect("update runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "update starts its own shim: devices register at coap://127.0.0.1:{port}, REST API at http://127.0.0.1:"
        )) && err.contains("--server URL"),
        "{err}"
    );
    assert_eq!(
        err.lines().last(),
        Some("error: not registered within 1 s: nobody"),
        "{err}"
    );

    // A running shim (as README's flow starts one) driven through its REST API.
    let (coap, http) = (free_udp_port(), free_tcp_port());
    let _serve = Serve::start(coap, http, &s.dir.join("served"));
    let _device = s.device(coap, "remote-1", "state");
    let out = Command::new(shim())
        .args(["update", "--server", &format!("http://127.0.0.1:{http}")])
        .args(["--endpoint", "remote-1", "--package"])
        .arg(&pkg)
        .args(["--wait", "30"])
        .stdin(Stdio::null())
        .output()
        .expect("update runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(
        err.contains(&format!(
            "update drives the shim at http://127.0.0.1:{http} (package fw-2.2.0.suit uploaded)"
        )),
        "{err}"
    );
    assert_eq!(
        update_row(&text, "remote-1"),
        ["remote-1", "ok", "0", "1", "2.2.0"],
        "{text}{err}"
    );
    // Options of the own-shim mode make no sense with --server.
    let out = Command::new(shim())
        .args([
            "update",
            "--server",
            "http://127.0.0.1:1",
            "--all",
            "--package",
            "x",
        ])
        .args(["--coap", "127.0.0.1:5683"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
