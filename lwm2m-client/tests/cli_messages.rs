//! The `lwm2m-client` binary refuses bad options with a line that names the real problem, and
//! checks option ranges before it starts.

use std::process::{Command, Output};

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(args)
        .output()
        .expect("lwm2m-client runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("client-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `option value` is refused while parsing (exit 2, nothing touched on disk) with a first
/// line that names the option and says `expect`.
fn refused_at_parse_time(option: &str, value: &str, expect: &str) {
    let o = client(&[option, value, "--state-dir", "/nonexistent/never-created"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{option} {value}: {e}");
    let first = e.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(option) && first.contains(expect),
        "{option} {value}: {e}"
    );
}

/// `option value` gets past parsing: the device goes on to its state directory, a file
/// here, and stops there.
fn gets_past_parsing(tag: &str, option: &str, value: &str) {
    let d = temp_dir(tag);
    let file = d.join("f");
    std::fs::write(&file, b"").expect("file");
    let o = client(&[option, value, "--state-dir", file.to_str().expect("utf-8")]);
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_state_dir_that_is_a_file_is_named_as_such() {
    let d = temp_dir("state-file");
    let file = d.join("flash-here");
    std::fs::write(&file, b"not a directory").expect("file");
    let o = client(&["--state-dir", file.to_str().expect("utf-8")]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("error: ")
            && e.contains("flash-here: not a directory")
            && !e.contains("File exists"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn slot_sizes_outside_what_the_device_can_hold_are_refused_at_parse_time() {
    for kib in ["0", "15", "65537"] {
        let o = client(&[
            "--slot-kib",
            kib,
            "--state-dir",
            "/nonexistent/never-created",
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{kib}: {e}");
        let first = e.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ")
                && first.contains("slots hold 16 to 65536 KiB (the factory image takes 16 KiB)"),
            "{kib}: {e}"
        );
        assert!(!e.contains("journal"), "{kib}: {e}");
    }
}

#[test]
fn block_sizes_and_lifetime_are_checked_at_parse_time() {
    for (option, value, expect) in [
        (
            "--pull-block-size",
            "7",
            "block sizes are 16, 32, 64, 128, 256, 512 or 1024 bytes",
        ),
        (
            "--pull-block-size",
            "1000",
            "block sizes are 16, 32, 64, 128, 256, 512 or 1024",
        ),
        (
            "--pull-block-size",
            "2048",
            "block sizes are 16, 32, 64, 128, 256, 512 or 1024",
        ),
        (
            "--pull-block-size",
            "8",
            "block sizes are 16, 32, 64, 128, 256, 512 or 1024",
        ),
        ("--lifetime", "0", "0 is not in 1.."),
        ("--pull-max-retransmit", "0", "0 is not in 1..=20"),
        ("--pull-max-retransmit", "21", "21 is not in 1..=20"),
    ] {
        refused_at_parse_time(option, value, expect);
    }
    // A valid size gets past parsing.
    gets_past_parsing("block-ok", "--pull-block-size", "64");
}

#[test]
fn help_names_the_security_modes() {
    let o = client(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(!help.contains("NoSec)"), "{help}");
    assert!(help.contains("DTLS with PSK or certificates"), "{help}");
    assert!(help.contains("16, 32, 64, 128, 256, 512 or 1024"), "{help}");
}

/// An endpoint name no server takes (empty: Leshan's 4.00 "endpoint is mandatory"; longer
/// than a Uri-Query option holds after `ep=`: Leshan's 4.02 Bad Option) is refused before the
/// device starts, instead of a Register retried for ever.
#[test]
fn endpoint_names_servers_refuse_are_refused_at_parse_time() {
    let long = "e".repeat(253);
    for (name, expect) in [
        ("", "the endpoint name is empty"),
        (long.as_str(), "has 253 bytes; at most 252"),
    ] {
        refused_at_parse_time("--endpoint", name, expect);
    }
    gets_past_parsing("endpoint-ok", "--endpoint", &"e".repeat(252));
}
