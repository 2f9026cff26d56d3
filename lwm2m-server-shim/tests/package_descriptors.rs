//! The package host serves a package too large to keep in memory without a descriptor per
//! request: with the process's descriptor table full (as thousands of connections once left
//! it), CoAP blocks and HTTP ranges of the package still come back.
//!
//! One test in its own binary: it fills this process's descriptor table, which would break
//! tests running beside it.

use std::fs::File;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_client::codec::BlockOpt;
use lwm2m_server_shim::packages::coap as package_coap;
use lwm2m_server_shim::packages::host::{PackageHost, MAX_CACHED_PACKAGE};

mod common;

fn block_request(num: u32) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, b"fw".to_vec());
    p.add_option(CoapOption::UriPath, b"big.bin".to_vec());
    p.add_option(
        CoapOption::Block2,
        BlockOpt::new(num, false, 6).expect("block").encode(),
    );
    p
}

#[test]
fn a_large_package_is_served_with_the_descriptor_table_full() {
    let dir = common::temp_dir("pkg-fds");
    let host = PackageHost::new(&dir).expect("dir");
    let size = usize::try_from(MAX_CACHED_PACKAGE).expect("size") + 4096;
    let content = common::bytes(size, 11);
    host.store("big.bin", &content).expect("store");
    let path = vec!["fw".to_string(), "big.bin".to_string()];
    let first = package_coap::handle(&host, &block_request(0), &path, 6);
    assert_eq!(
        first.header.code,
        MessageClass::Response(ResponseType::Content)
    );

    // Take every descriptor left.
    let mut hog = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "EMFILE expected: {e}");
                break;
            }
        }
        assert!(hog.len() < 1_000_000, "no descriptor limit");
    }
    let mut answers = Vec::new();
    for num in [1u32, 2, 9_000, 16_387] {
        let r = package_coap::handle(&host, &block_request(num), &path, 6);
        let start = num as usize * 1024;
        answers.push((
            num,
            r.header.code,
            r.payload == content[start..(start + 1024).min(size)],
        ));
    }
    let range = host.read_range("big.bin", 5, 100).ok();
    drop(hog);
    for (num, code, same) in answers {
        assert_eq!(
            (code, same),
            (MessageClass::Response(ResponseType::Content), true),
            "block {num}"
        );
    }
    assert_eq!(range.as_deref(), Some(&content[5..105]), "HTTP range read");
    let _ = std::fs::remove_dir_all(&dir);
}
