//! The shim's command line where no device takes part: help texts, refusals at parse time and
//! before start-up, start-up failures and logs, exit codes checked. The commands run with our
//! device are tested in the workspace's `tests/tests/shim_commands.rs`.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_udp_port, stderr_lines, temp_dir, SHIM};

/// `serve` on ports the system picks.
const SERVE_ANY_PORTS: [&str; 5] = ["serve", "--coaps", "127.0.0.1:0", "--http", "127.0.0.1:0"];

#[test]
fn conformance_command_refuses_a_missing_package_before_it_starts() {
    let dir = temp_dir("cli-conformance-missing");
    let missing = dir.join("no-such-firmware.bin");
    let port = free_udp_port();
    let started = std::time::Instant::now();
    let out = Command::new(SHIM)
        .args(["conformance", "--endpoint", "x", "--package-corrupt"])
        .arg(&missing)
        .args([
            "--coap",
            &format!("127.0.0.1:{port}"),
            "--http",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait for a device"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("no-such-firmware.bin") && lines[0].contains("--package-corrupt"),
        "{stderr}"
    );
    assert!(!stderr.contains("waiting for"), "nothing started: {stderr}");
    assert!(out.stdout.is_empty());
    // Unknown cases are refused the same way.
    let out = Command::new(SHIM)
        .args(["conformance", "--endpoint", "x", "--cases", "fw,9999"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("'9999'"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_texts_name_the_options() {
    for (cmd, words) in [
        (
            "update",
            &[
                "--endpoint",
                "--all",
                "--package",
                "--method",
                "--concurrency",
                "--timeout-download",
            ][..],
        ),
        (
            "conformance",
            &[
                "--endpoint",
                "--key",
                "--cases",
                "--trust-anchor",
                "--package-good",
                "--package-good-2",
                "--package-corrupt",
                "--package-wrong-type",
                "--package-too-large",
                "--package-failing",
                "--profile",
                "--report",
            ][..],
        ),
        ("demo", &["--client", "--push", "--keep"][..]),
    ] {
        let out = Command::new(SHIM)
            .args([cmd, "--help"])
            .output()
            .expect("help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd}: {text}");
        for w in words {
            assert!(text.contains(w), "{cmd} --help lacks {w}: {text}");
        }
    }
}

#[test]
fn serve_names_a_packages_path_that_is_a_file() {
    let dir = temp_dir("cli-serve-packages-file");
    let file = dir.join("packages.txt");
    std::fs::write(&file, b"a file").expect("file");
    let out = Command::new(SHIM)
        .args(SERVE_ANY_PORTS)
        .arg("--packages")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("serve runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("packages.txt: not a directory") && !err.contains("File exists"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_and_update_refuse_zero_timeouts_at_parse_time() {
    for args in [
        &[
            "serve",
            "--coaps",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--timeout",
            "0",
        ][..],
        &[
            "update",
            "--all",
            "--package",
            "x.suit",
            "--timeout-request",
            "0",
        ][..],
        &[
            "update",
            "--all",
            "--package",
            "x.suit",
            "--timeout-download",
            "0",
        ][..],
    ] {
        let out = Command::new(SHIM).args(args).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines()
                .next()
                .is_some_and(|l| l.starts_with("error: ") && l.contains("0 is not in 1..")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn serve_logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let dir = temp_dir("cli-serve-plain-logs");
    let mut child = Command::new(SHIM)
        .args(SERVE_ANY_PORTS)
        .arg("--packages")
        .arg(dir.join("packages"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let rx = stderr_lines(&mut child);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let done = line.contains("serving");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.iter().any(|l| l.contains("serving")), "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "escape codes in piped logs: {lines:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn start_up_failures_are_one_error_line_naming_the_address() {
    let dir = temp_dir("cli-bind-errors");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let udp_port = udp.local_addr().expect("addr").port();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let tcp_port = tcp.local_addr().expect("addr").port();
    let pkg = dir.join("p.suit");
    std::fs::write(&pkg, b"x").expect("package");
    let packages = dir.join("packages");
    let runs: [(Vec<String>, String); 3] = [
        (
            [
                "serve",
                "--no-coaps",
                "--coap",
                &format!("127.0.0.1:{udp_port}"),
            ]
            .into_iter()
            .map(String::from)
            .chain(["--http".into(), "127.0.0.1:0".into()])
            .chain(["--packages".into(), packages.display().to_string()])
            .collect(),
            format!("error: cannot bind 127.0.0.1:{udp_port}: address in use (coap listener)"),
        ),
        (
            [
                "serve",
                "--coaps",
                "127.0.0.1:0",
                "--http",
                &format!("127.0.0.1:{tcp_port}"),
            ]
            .into_iter()
            .map(String::from)
            .chain(["--packages".into(), packages.display().to_string()])
            .collect(),
            format!("error: cannot bind 127.0.0.1:{tcp_port}: address in use (HTTP listener)"),
        ),
        (
            ["update", "--all", "--package", &pkg.display().to_string()]
                .into_iter()
                .map(String::from)
                .chain(["--coap".into(), format!("127.0.0.1:{udp_port}")])
                .chain(["--http".into(), "127.0.0.1:0".into()])
                .collect(),
            format!(
                "error: cannot bind 127.0.0.1:{udp_port}: address in use (coap listener); \
                 update starts its own shim, to drive one already running pass --server \
                 http://HOST:PORT"
            ),
        ),
    ];
    for (args, expect) in runs {
        let out = Command::new(SHIM)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end(), expect, "{args:?}");
    }
    drop((udp, tcp));
    let _ = std::fs::remove_dir_all(&dir);
}
