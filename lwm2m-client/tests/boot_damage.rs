//! The `lwm2m-client` binary on a state directory whose flash was damaged while it was off
//! (issue 12 items 2 and 3): it logs one error line that says what the bootloader found, is
//! not re-provisioned, and registers in recovery (no firmware version) so its server can
//! update it. The test plays the server.

mod common;

use coap_lite::{RequestType, ResponseType};
use common::net::{
    answer, recv_request, request_to, server_socket, spawn_client, spawn_client_logged, temp_dir,
};
use device_port::device::SECTOR_SIZE;
use object5::slots::{Layout, Strategy};
use std::time::Duration;

/// Provisions a device, stops it, applies `damage` to its flash.bin, starts it again and
/// checks that it registers in recovery after one error line containing each of `expect`.
fn recovers_from(tag: &str, damage: impl Fn(&mut Vec<u8>), expect: &[&str]) {
    let server = server_socket("127.0.0.1:0").unwrap();
    let uri = format!("coap://{}", server.local_addr().unwrap());
    let state = temp_dir(tag);
    let args = [
        "--server",
        &uri,
        "--endpoint",
        "damaged",
        "--log-level",
        "info",
    ];

    // First run: the factory image is provisioned and boots.
    let mut child = spawn_client(&args, &state);
    let (reg, device) = recv_request(&server, "Register");
    answer(&server, device, &reg, ResponseType::Created, &["rd", "d1"]);
    let fw = request_to(&server, device, 1, RequestType::Get, "/3/0/3", None, &[]);
    assert_eq!(fw.payload, b"1.0.0");
    child.signal("TERM");
    let (dereg, from) = recv_request(&server, "De-register");
    answer(&server, from, &dereg, ResponseType::Deleted, &[]);
    assert!(child.wait_exit(Duration::from_secs(10)).success());

    let mut flash = std::fs::read(state.join("flash.bin")).unwrap();
    damage(&mut flash);
    std::fs::write(state.join("flash.bin"), &flash).unwrap();

    let (_child, log) = spawn_client_logged(&args, &state);
    let (reg, device) = recv_request(&server, "Register in recovery");
    answer(&server, device, &reg, ResponseType::Created, &["rd", "d2"]);
    let fw = request_to(&server, device, 2, RequestType::Get, "/3/0/3", None, &[]);
    assert_eq!(
        fw.payload, b"",
        "{tag}: no image runs, no version is claimed (the factory image was not written again)"
    );
    let model = request_to(&server, device, 3, RequestType::Get, "/3/0/1", None, &[]);
    assert_eq!(model.payload, b"recovery");
    log.wait_for(Duration::from_secs(5), |l| l.contains("flash damaged: "))
        .expect("the damage is logged");
    let errors: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "{tag}: one error line: {errors:?}");
    for e in expect {
        assert!(errors[0].contains(e), "{tag}: {:?} in {}", e, errors[0]);
    }
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_damaged_image_is_logged_once_and_the_device_registers_in_recovery() {
    // A byte of the image in slot 0 flips (default layout: swap, 256 KiB slots).
    let layout = Layout::packed(Strategy::Swap, SECTOR_SIZE as u32, 256 * 1024);
    let at = (layout.slots[0] + SECTOR_SIZE as u32 + 500) as usize;
    recovers_from(
        "image-damage",
        |flash| flash[at] ^= 0x5A,
        &[
            "flash damaged: ",
            "no slot holds an image that verifies (slot 0: image digest mismatch",
        ],
    );
}

#[test]
fn an_emptied_flash_is_not_reprovisioned() {
    recovers_from(
        "emptied-flash",
        Vec::clear,
        &[
            "the slot journal held no valid record",
            "no slot holds an image that verifies",
            "anti-rollback floor 0 was below the kept copy 1 and was restored",
        ],
    );
}
