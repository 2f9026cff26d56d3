//! The package host the package targets share: a small package (kept in memory), an empty one
//! and one too large to keep (read from its file handle).

use std::sync::OnceLock;

use lwm2m_server_shim::packages::host::{PackageHost, MAX_CACHED_PACKAGE};

/// The host, set up once per process in a directory of its own.
pub fn host() -> &'static PackageHost {
    static HOST: OnceLock<PackageHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shim-fuzz-packages-{}", std::process::id()));
        let host = PackageHost::new(&dir).expect("package dir");
        let small: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        host.store("small.bin", &small).expect("small");
        host.store("empty.bin", &[]).expect("empty");
        let large = vec![0x5a; MAX_CACHED_PACKAGE as usize + 3000];
        host.store("large.bin", &large).expect("large");
        host
    })
}
