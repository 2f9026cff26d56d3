//! Shared helpers for the workspace-level tests: where the shared reference folder is, the
//! in-process end-to-end harness, real peer processes (our binaries, Eclipse Leshan), a
//! Leshan-style REST client, a CA for certificate-mode peers, a fault-injecting UDP relay, a
//! UDP NAT whose mapping changes and a delaying TCP relay for loopback network tests, and an
//! IP-level link emulator (two private network namespaces joined by TUN devices) that gives TCP
//! the relay's delay and loss.

use std::path::PathBuf;

pub mod coap_tcp;
pub mod device_policy;
pub mod e2e;
pub mod faults;
pub mod ip_link;
pub mod junit;
pub mod leshan;
pub mod nat;
pub mod pki;
pub mod process;
pub mod qblock_peers;
pub mod relay;
pub mod rest;
pub mod serve;
pub mod tcp_relay;

/// The tokio runtime the tests and benches run shims and pulls on: two workers, one per core
/// of the machines they run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `../shared` folder beside the checkout (design notes, SUIT vectors and keys).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}
