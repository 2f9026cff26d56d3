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
        e.contains("flash-here: not a directory") && !e.contains("File exists"),
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
